"""The Hugging Face ``Trainer`` callback on a real ``transformers.Trainer``: a tiny GPT-2 built
from a config (2 layers, 32 dimensions, a 32-token vocabulary; random weights, nothing
downloaded) learning arithmetic sequences of synthetic tokens."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from nnrecipe.core.findings import Finding
from tests.seeds import TEST_SEED

transformers = pytest.importorskip("transformers")  # the [hf] extra, installed by `make test`
from nnrecipe.train.hf import NNRecipeTrainerCallback, eval_metrics, torch_optimizer  # noqa: E402

VOCAB, LENGTH = 32, 16
HEALTHY_LR = 1e-3  # AdamW; the validation loss falls every epoch (3.3 -> ~1.9)


def sequences(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Token t = (start + stride * t) mod 32, stride 1-3: learnable from two tokens."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB, (n, 1), generator=g)
    stride = torch.randint(1, 4, (n, 1), generator=g)
    ids = (start + stride * torch.arange(LENGTH)) % VOCAB
    return [{"input_ids": row, "labels": row} for row in ids]


def train(tmp: Path, lr: float, seed: int) -> tuple[NNRecipeTrainerCallback, list[Finding]]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched; make sure of it
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=LENGTH, n_embd=32,
                                     n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    args = transformers.TrainingArguments(
        output_dir=str(tmp / "trainer"), per_device_train_batch_size=16,
        per_device_eval_batch_size=64, num_train_epochs=8, learning_rate=lr,
        eval_strategy="epoch", logging_strategy="no", save_strategy="no", report_to=[],
        use_cpu=True, disable_tqdm=True, seed=seed)
    live: list[Finding] = []
    callback = NNRecipeTrainerCallback(out_dir=tmp / "report", on_finding=live.append)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=sequences(256, seed),
                                   eval_dataset=sequences(64, 1000 + seed), callbacks=[callback])
    trainer.train()
    return callback, live


def _serious(findings: list[dict[str, Any]]) -> list[str]:
    return [f["code"] for f in findings if f["severity"] != "info"]


@pytest.mark.statistical
def test_healthy_trainer_run_is_quiet(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    callback, live = train(tmp_path, HEALTHY_LR, TEST_SEED)
    w = callback.watcher
    assert w is not None
    rec = w.recording
    assert len(rec.loss) == 8 * 256 // 16  # one entry per optimizer step, from the model's loss
    assert len(rec.epochs) == 8 and rec.epochs[-1]["val_loss"] < rec.epochs[0]["val_loss"]
    assert rec.grad_clip == 1.0 and rec.grad.steps  # per-layer gradients were measured
    assert [f.code for f in live if f.severity.value != "info"] == []
    doc = json.loads(callback.paths["findings"].read_text())
    assert _serious(doc["findings"]) == [] and doc["command"] == "watch"
    assert callback.paths["report"].exists()
    # hooks gone: the model and optimizer are as the Trainer left them
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in w.monitor.model.modules())
    # seeds 0-9: quiet on all; the worst seed's largest per-layer update ratio (median over the
    # second half) is 0.0097 (seed 8), 10x under update-ratio's 0.1 ceiling


@pytest.mark.statistical
def test_learning_rate_1000x_too_high_is_found(tmp_path: Path) -> None:
    """AdamW at 1.0 (1000x the healthy rate): the validation loss starts near 40 and the run
    is broken. (100x was not broken: with the Trainer's linear decay and clipping at 1.0 it
    trained better than the healthy run, 2.62 -> 1.34, and was only ever flagged by Adam's
    first-step update ratio, judged before the monitor's 50-step minimum: a false alarm.)"""
    torch.set_num_threads(1)
    callback, live = train(tmp_path, HEALTHY_LR * 1000, TEST_SEED)
    doc = json.loads(callback.paths["findings"].read_text())
    codes = _serious(doc["findings"])
    assert {"update-ratio", "lr-too-high", "loss-diverging", "loss-nonfinite"} & set(codes), codes
    assert [f.code for f in live if f.severity.value != "info"]  # seen while training
    # seeds 0-9 pass (NNRECIPE_TEST_SEED): a warning or error both in the report and live


def test_pieces() -> None:
    assert eval_metrics({"eval_loss": 1.5, "eval_accuracy": 0.5, "eval_runtime": 2.0,
                         "eval_samples_per_second": 9.0, "epoch": 3.0, "eval_x": "n/a"}
                        ) == {"loss": 1.5, "accuracy": 0.5}
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)

    class Wrapped(torch.optim.Optimizer):  # like accelerate's AcceleratedOptimizer
        def __init__(self, inner: torch.optim.Optimizer) -> None:
            self.optimizer = inner

    assert torch_optimizer(Wrapped(opt)) is opt and torch_optimizer(opt) is opt
    assert torch_optimizer(None) is None
