"""What the monitor measured, as plain CPU numbers: :class:`Recording` and its per-layer
:class:`Series`. Detectors and plots read only this (measure -> decide -> render); it is
JSON-ready (``Recording.to_dict()``), so saved runs are redrawn from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Series:
    """A per-layer series: ``values[i]`` (one float per layer) measured at ``steps[i]``."""

    steps: list[int] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)
    stride: int = 1  # thinning factor applied to the monitor's schedule

    def append(self, step: int, values: Sequence[float] | np.ndarray, max_points: int) -> None:
        self.steps.append(step)
        self.values.append(values.tolist() if isinstance(values, np.ndarray)
                           else [float(v) for v in values])
        if len(self.steps) > max_points:
            self.thin()

    def thin(self) -> None:
        """Drop every other point and double the stride (long runs stay bounded)."""
        self.steps, self.values = self.steps[::2], self.values[::2]
        self.stride *= 2

    def array(self) -> np.ndarray:
        """``(len(steps), n_layers)`` float array (empty ``(0, 0)`` if nothing recorded)."""
        return np.asarray(self.values, dtype=float) if self.values else np.zeros((0, 0))

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "values": self.values}


@dataclass
class Recording:
    """Everything the monitor measured, as CPU numbers. Detectors and plots read only this.

    ``layers`` are the modules that own parameters, in registration (≈ forward) order;
    ``activations`` the activation modules (name, kind in {"relu", "tanh", "sigmoid"}).
    ``grad``/``param``/``update`` are per-layer series (L2 norms; update = ||Δθ||/||θ||),
    ``grad_total`` the global gradient norm at ``grad.steps``, ``dead``/``saturated``
    per-activation fractions. ``epochs`` holds dicts with ``epoch``, ``step``, ``train_loss``
    (epoch mean), ``val_loss``, ``val_<metric>``, ``lr`` and, from the train stage,
    ``train_eval_loss`` (end-of-epoch weights, eval mode) and ``train_mode_loss`` (same
    weights, train mode, no update).

    Gradient hygiene, per optimizer step (``grad_arrivals[i]`` belongs to optimizer step
    ``i``): how many backward passes reached the watched parameter ``grad_probe`` since the
    previous optimizer step, and how many of them found its ``.grad`` cleared (None or all
    zeros). ``accumulate`` is the number of micro-batches per optimizer step the user declared.

    Mixed precision: ``precision`` is the autocast dtype seen in the training forward
    ("float16"/"bfloat16") or None; with a GradScaler, ``loss_scale[i]`` is its scale after the
    step of ``loss[i]`` and ``scaler_skipped`` the indices of ``loss`` whose update the scaler
    skipped (inf/NaN gradients while it searches its scale); ``overflow`` traces the first
    non-finite loss among those (the layer, and whether float32 would have been finite).

    ``coverage`` counts the steps each signal covered (``steps``, ``nonfinite_guard``,
    ``grad_norms``, ``update_ratios``, ``activations``).
    """

    layers: list[str] = field(default_factory=list)
    layer_types: list[str] = field(default_factory=list)
    activations: list[tuple[str, str]] = field(default_factory=list)
    activation_inputs: dict[str, str] = field(default_factory=dict)  # act module -> layer before it
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad: Series = field(default_factory=Series)
    grad_total: list[float] = field(default_factory=list)
    param: Series = field(default_factory=Series)
    update: Series = field(default_factory=Series)
    weight_samples: Series = field(default_factory=Series)  # a few coordinates per layer
    weight_sample_layers: list[int] = field(default_factory=list)  # layer of each column
    dead: Series = field(default_factory=Series)
    saturated: Series = field(default_factory=Series)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    prediction_targets: list[float] = field(default_factory=list)
    nonfinite: dict[str, Any] | None = None
    optimizer_steps: int = 0
    skipped_updates: int = 0
    grad_clip: float | None = None
    schedule_stretch: int = 1  # set by the overhead governor (MonitorConfig.overhead_budget)
    grad_probe: str | None = None
    grad_arrivals: list[int] = field(default_factory=list)
    grad_cleared: list[int] = field(default_factory=list)
    accumulate: int = 1
    precision: str | None = None
    loss_scale: list[float] = field(default_factory=list)
    scaler_skipped: list[int] = field(default_factory=list)
    overflow: dict[str, Any] | None = None  # first non-finite loss the scaler skipped, traced
    coverage: dict[str, int] = field(default_factory=dict)

    def epoch_series(self, key: str) -> list[float]:
        return [float(e.get(key, math.nan)) for e in self.epochs]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the report and saved runs are redrawn from it)."""
        out: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            out[name] = value.to_dict() if isinstance(value, Series) else value
        return out
