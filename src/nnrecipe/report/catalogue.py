"""The finding catalogue as a static table, so that ``nnrecipe codes`` answers without importing
torch and every stage (which takes seconds).

``catalogue.json`` beside this module is generated from the registry (the single source of
codes) plus :data:`PROBLEMS`, the problem each code names. A check's ``title`` is what the
check verifies ("Gradients are cleared between training steps"): right in the report's
checklist, but it reads as the opposite of the code in a list of problems. ``PROBLEMS`` says
what a finding of the code *means*. ``tests/report/test_catalogue.py`` fails when the table
and the registry disagree; regenerate with ``python -m nnrecipe.report.catalogue``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TABLE = Path(__file__).with_name("catalogue.json")

# What a finding of each code says is wrong (the column "what it means" of `nnrecipe codes`).
PROBLEMS: dict[str, str] = {
    "check-crashed": "A check itself failed (its error is in the evidence); the others still ran",
    "batch-larger-than-data": "batch_size exceeds the training set: full-batch steps, one per epoch",
    "singleton-last-batch": "The last training batch holds one sample, which the model cannot train on (BatchNorm)",
    # data
    "corrupt-samples": "Some samples fail to load, hold NaN/inf, or differ in shape, dtype or label type",
    "data-duplicates": "Exact or near-duplicate samples within a split",
    "split-leakage": "Validation/test samples are (near) copies of training samples",
    "constant-features": "Some input features never vary across the training set",
    "unscaled-features": "Inputs are not centred or not on a common, unit-like scale",
    "shortcut-feature": "One feature or a trivial statistic nearly gives the label away",
    "label-errors": "Labels that similar samples disagree with: likely mislabelled",
    "class-imbalance": "Some classes are rare (or missing) in a split",
    "conflicting-labels": "Identical inputs carry different labels",
    "outliers": "Extreme values or very isolated samples",
    "distribution-shift": "Validation/test data look different from the training data",
    "group-leakage": "The same patient/user/session/document has samples in two splits",
    "unscaled-targets": "Regression targets are far from mean 0 / std 1 (standardise them)",
    "padding-in-loss": "Padding positions of sequence targets are counted in the loss",
    # skeleton
    "nondeterministic": "Two runs from the same seed disagree",
    "augmentation-active": "Samples are randomly augmented when read (the same index gives different tensors)",
    "init-loss-mismatch": "The loss at initialisation is far from its expected value",
    "input-independent": "The model does no better with its inputs than with zeroed inputs",
    "cannot-overfit-batch": "The model cannot drive the loss on a tiny batch to ~zero",
    "batch-dependency": "A sample's output depends on other samples of the batch",
    "causal-leak": "An output depends on future inputs (a causal model sees the future)",
    "baseline-not-beaten": "A short training run does not beat the dumb baselines",
    "inputs-not-normalized": "The batch that reaches the model is not normalised",
    "double-softmax": "The loss receives probabilities (softmax/sigmoid applied twice), not logits",
    "target-shape-mismatch": "Outputs and targets have different shapes in the loss (silent broadcasting)",
    "grads-not-zeroed": "Gradients accumulate across training steps (zero_grad missing)",
    "params-not-updating": "Some trainable parameters never move during training steps",
    "eval-mode-training": "Training steps run with the model in eval mode",
    "dropout-before-batchnorm": "Dropout feeds a batch-norm layer",
    "dropout-rate-high": "Dropout rates of 0.5+ in several layers: keep probabilities passed as p?",
    "output-activation": "The model's last activation does not fit the loss (ReLU/sigmoid on logits or targets)",
    "unregistered-parameters": "Parameters the forward uses are not registered (Python list/dict, made in forward)",
    "params-not-in-optimizer": "Parameters the loss depends on are held by no optimizer that steps",
    "optimizer-rebuilt-each-step": "A new optimizer is built every step: its state is thrown away",
    "channel-order": "Channels-last (N, H, W, C) images reach a channels-first Conv2d",
    # overfit
    "lr-suggestion": "Advice: the learning rate the range test suggests, its range and confidence",
    "warmup-advised": "Advice: learning-rate warmup would help this run",
    "grad-clip-threshold": "Advice: a gradient-clipping threshold from the observed gradient norms",
    "lr-batch-scaling": "Advice: how to change the learning rate with the batch size",
    # train
    "loss-nonfinite": "The loss became NaN or infinite",
    "loss-diverging": "The training loss climbs instead of falling",
    "exploding-gradients": "Gradient norms grow out of bounds",
    "vanishing-gradients": "Gradients vanish before they reach the first layers",
    "dead-relu": "ReLU units are dead (never active)",
    "saturated-activations": "tanh/sigmoid units are saturated",
    "update-ratio": "Update-to-weight ratios are far from ~1e-3",
    "lr-too-high": "The learning rate is too high: the loss spikes or oscillates",
    "lr-too-low": "The learning rate is too low: the loss falls too slowly",
    "loss-plateau": "The loss stops improving",
    "overfitting": "Validation loss rises while training loss falls",
    "underfitting": "Training loss stays far above what the model can reach",
    "val-below-train": "The validation loss is below the training loss",
    "weights-fluctuating": "Validation results swing from epoch to epoch",
    "lr-schedule-misstepped": "The learning-rate schedule is stepped per batch instead of per epoch (or never)",
    "val-metric-inconsistent": "The validation accuracy contradicts the validation loss (labels paired wrongly)",
    "accumulation-discarded": "zero_grad runs inside the accumulation loop: micro-batch gradients are thrown away",
    "loss-scale-collapse": "The float16 loss scale keeps falling (toward 1 or below): the GradScaler keeps skipping steps",
    "fp16-overflow": "Activations or the loss overflow float16's range (inf) in the forward pass",
    "ranks-diverged": "The DDP ranks hold different weights or statistics: the replicas drifted apart",
    # regularize
    "first-layer-noise": "First-layer filters still look like noise after training",
    "dropout-with-batchnorm": "The model's dropout knob puts dropout in front of batch normalisation",
    "regularization-advice": "Advice: the regularisation ladder's results, ranked against the reference",
    # tune
    "tuning-advice": "Advice: the best trial of the search, and ranges to widen",
    # ensemble
    "ensemble-advice": "Advice: the gain of an ensemble of the best models",
    "tuned-to-validation": "Tuning raised validation while test fell: the search may have fit the validation set",
}


def build_table() -> list[dict[str, Any]]:
    """The table from the registry (imports every stage, so torch)."""
    from nnrecipe.core.registry import CATALOGUE
    from nnrecipe.core.runner import load_stage_checks
    from nnrecipe.core.stages import STAGE_NAMES

    load_stage_checks()
    order = {s: i for i, s in enumerate((*STAGE_NAMES, "any"))}
    infos = sorted(CATALOGUE.values(), key=lambda c: (order.get(c.stage, 99), c.code))
    return [{"code": c.code, "stage": c.stage, "severity": c.severity.value,
             "means": PROBLEMS.get(c.code, c.title), "title": c.title, "fix": c.fix}
            for c in infos]


def load_table() -> list[dict[str, Any]]:
    """The generated table (no torch). Raises FileNotFoundError when it was never generated."""
    return json.loads(TABLE.read_text(encoding="utf-8"))


def write_table() -> Path:
    TABLE.write_text(json.dumps(build_table(), indent=1, ensure_ascii=False) + "\n",
                     encoding="utf-8")
    return TABLE


if __name__ == "__main__":
    write_table()
