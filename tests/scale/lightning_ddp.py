"""Run as ``python tests/scale/lightning_ddp.py OUT SEED``: Lightning's DDP launcher starts the
second rank itself (it re-runs this script), so this cannot run inside pytest's process.

Two fits with ``Trainer(strategy="ddp", accelerator="cpu", devices=2)`` and the nnrecipe
callback: ``healthy`` (quiet, one report, on rank 0) and ``nan`` (rank 1's batch 12 holds a
NaN: every rank stops at that step, and the report names rank 1). Each rank writes what it saw
into ``OUT/<fit>/rank<r>.json``.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnrecipe.train.lightning import NNRecipeCallback
from tests.toys import blobs

NAN_AT = 12


class Classifier(pl.LightningModule):
    def __init__(self, seed: int, nan_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                                 nn.Linear(32, 3))
        self.nan_at = nan_at

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.nan_at is not None and self.global_rank == 1 and self.global_step == self.nan_at:
            x = x.clone()
            x[0, 0] = float("nan")
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def fit(name: str, out: Path, seed: int, nan_at: int | None) -> None:
    X, y = blobs(n=512, seed=0)
    train = TensorDataset(torch.from_numpy(X[:448]), torch.from_numpy(y[:448]))
    val = TensorDataset(torch.from_numpy(X[448:]), torch.from_numpy(y[448:]))
    callback = NNRecipeCallback(out_dir=out / name)
    live: list[Any] = []
    callback.on_finding = live.append
    trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_epochs=4,
                         callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    pl.seed_everything(seed, verbose=False)  # the DistributedSampler's shuffling
    trainer.fit(Classifier(seed, nan_at), DataLoader(train, batch_size=32, shuffle=True),
                DataLoader(val, batch_size=64))
    w = callback.watcher
    assert w is not None
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    findings = w.finish()["findings"] if hasattr(w, "finish") else w.findings
    (folder / f"rank{trainer.global_rank}.json").write_text(json.dumps({
        "rank": trainer.global_rank, "type": type(w).__name__,
        "steps": w.monitor.steps_recorded(), "global_step": trainer.global_step,
        "should_stop": bool(getattr(w, "should_stop", False)),
        "paths": {k: str(v) for k, v in callback.paths.items()},
        "live": [f.to_dict() for f in live], "findings": [f.to_dict() for f in findings]},
        indent=1))


def main() -> None:
    out, seed = Path(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")  # Lightning's advice about workers and logging on CPU
    fit("healthy", out, seed, None)
    fit("nan", out, seed, NAN_AT)


if __name__ == "__main__":
    main()
