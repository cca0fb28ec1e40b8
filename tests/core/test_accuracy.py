"""One accuracy for every output layout (core/training.py prediction_hits): scripted outputs
whose right answer is known, and the layouts it must refuse with a reason, never a crash."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nnrecipe.core.training import Hits, metrics_from_outputs, prediction_hits


def _flat_ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def _scores(pred: torch.Tensor, classes: int, dim: int) -> torch.Tensor:
    """Outputs whose argmax along ``dim`` is ``pred``."""
    out = nn.functional.one_hot(pred, classes).float()
    return out.movedim(-1, dim)


def _hits(out: torch.Tensor, y: torch.Tensor, loss: object = None) -> Hits:
    h = prediction_hits(out, y, loss)  # type: ignore[arg-type]
    assert isinstance(h, Hits), h
    return h


def test_class_scores_b_c() -> None:
    y = torch.tensor([0, 1, 2, 1])
    pred = torch.tensor([0, 1, 0, 1])
    h = _hits(_scores(pred, 3, 1), y, nn.CrossEntropyLoss())
    assert h.accuracy() == 0.75 and h.layout == "class scores (B, C)"
    assert h.per_sample().tolist() == [1.0, 1.0, 0.0, 1.0]


def test_class_dim_first_and_last_for_sequences() -> None:
    torch.manual_seed(0)
    y = torch.randint(0, 5, (4, 7))
    pred = y.clone()
    pred[0, :3] = (y[0, :3] + 1) % 5  # 3 of 28 wrong
    # (B, C, T): PyTorch's convention
    h = _hits(_scores(pred, 5, 1), y, nn.CrossEntropyLoss())
    assert h.accuracy() == pytest.approx(25 / 28) and "(B, C, ...)" in h.layout
    # (B, T, V): nanoGPT / Hugging Face logits with a loss that flattens
    h = _hits(_scores(pred, 5, -1), y, _flat_ce)
    assert h.accuracy() == pytest.approx(25 / 28) and "(B, ..., C)" in h.layout
    assert h.per_sample()[0] == pytest.approx(4 / 7)


def test_square_sequence_layout_is_resolved_by_the_loss() -> None:
    torch.manual_seed(0)
    y = torch.randint(0, 6, (3, 6))  # T == C: both dimensions fit the targets
    pred = y.clone()
    pred[:, 0] = (y[:, 0] + 1) % 6
    h = _hits(_scores(pred, 6, -1), y, _flat_ce)  # the flattening loss reads the last dim
    assert "(B, ..., C)" in h.layout and h.accuracy() == pytest.approx(5 / 6)
    h = _hits(_scores(pred, 6, 1), y, nn.CrossEntropyLoss())  # CE reads dim 1
    assert "(B, C, ...)" in h.layout and h.accuracy() == pytest.approx(5 / 6)
    reason = prediction_hits(_scores(pred, 6, 1), y, None)
    assert isinstance(reason, str) and "both fit" in reason


def test_ignore_index_and_padding_are_not_scored() -> None:
    y = torch.tensor([[1, 2, -100], [0, -100, -100]])
    pred = torch.tensor([[1, 0, 0], [0, 0, 0]])
    h = _hits(_scores(pred, 3, -1), y, nn.CrossEntropyLoss())
    assert h.accuracy() == pytest.approx(2 / 3)
    assert h.per_sample().tolist() == pytest.approx([0.5, 1.0])
    y2 = torch.tensor([[1, -1]])  # nanoGPT pads with -1 (ignore_index=-1 in its loss call)
    assert _hits(_scores(torch.tensor([[1, 0]]), 3, -1), y2, _flat_ce).accuracy() == 1.0


def test_binary_and_multilabel() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0])
    y = torch.tensor([1.0, 0.0, 0.0, 0.0])
    h = _hits(logits.unsqueeze(1), y, nn.BCEWithLogitsLoss())  # (B, 1) with (B,)
    assert h.accuracy() == 0.75 and h.layout.startswith("binary")
    probs = torch.sigmoid(logits)
    assert _hits(probs, y, nn.BCELoss()).accuracy() == 0.75
    multi = torch.tensor([[3.0, -2.0, 1.0], [-1.0, -1.0, 2.0]])
    ym = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    h = _hits(multi, ym, nn.BCEWithLogitsLoss())
    assert h.layout.startswith("multi-label") and h.accuracy() == pytest.approx(5 / 6)
    assert _hits(torch.tensor([1.5, -0.2]), torch.tensor([1, 0]), None).accuracy() == 1.0


def test_soft_labels_under_cross_entropy() -> None:
    out = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    y = torch.tensor([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1]])
    assert _hits(out, y, nn.CrossEntropyLoss()).accuracy() == 0.5


@pytest.mark.parametrize(("out", "y"), [
    (torch.zeros(4, 3), torch.zeros(5, dtype=torch.long)),        # rows differ
    (torch.zeros(4, 3, 2, 2), torch.zeros(4, dtype=torch.long)),  # two extra dims
    (torch.zeros(4, 3), torch.zeros(4, 5, dtype=torch.long)),     # no class dim fits
    (torch.zeros(4), torch.tensor([0, 3, 1, 2])),                 # one score, many classes
    (torch.zeros(4, 2), torch.full((4, 2), 3.5)),                 # regression-like floats
    (torch.zeros(4, 3), torch.zeros(4, 7)),                       # float targets, other shape
])
def test_unsupported_layouts_give_a_reason(out: torch.Tensor, y: torch.Tensor) -> None:
    reason = prediction_hits(out, y, None)
    assert isinstance(reason, str) and reason


def test_nonfinite_outputs_do_not_crash() -> None:
    out = torch.tensor([[math.nan, 1.0], [0.0, 1.0]])
    assert _hits(out, torch.tensor([1, 1]), None).accuracy() == 1.0


def test_metrics_from_outputs_sequence_layout() -> None:
    torch.manual_seed(0)
    y = torch.randint(0, 5, (4, 7))
    out = torch.randn(4, 7, 5)
    m = metrics_from_outputs(out, y, _flat_ce, "classification")
    expected = float((out.argmax(-1) == y).float().mean())
    assert m["accuracy"] == pytest.approx(expected) and math.isfinite(m["loss"])
    m = metrics_from_outputs(torch.zeros(4, 3), torch.zeros(4, 3), nn.MSELoss(), "classification")
    assert m["accuracy"] == 1.0  # 0/1 targets of the outputs' shape: scored as labels
