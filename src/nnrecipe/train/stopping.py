"""Early stopping: patience on a smoothed metric, and Prechelt's GL and PQ criteria.

Prechelt, "Early stopping — but when?" (1998), with E_va the validation loss, E_opt its
lowest value so far and E_tr the training loss:

* GL(t) = 100 · (E_va(t) / E_opt(t) − 1), the *generalisation loss* in percent; GL_α stops
  as soon as GL(t) > α.
* P_k(t) = 1000 · (Σ E_tr over the last strip of k epochs / (k · min of E_tr in that strip)
  − 1), the *training progress* in per mille; PQ_α stops when GL(t) / P_k(t) > α, checked
  at the end of each strip (every k epochs), so that a run still making fast progress on the
  training set is given more generalisation loss before it is stopped.

:func:`stopping_verdict` is the whole decision (pure, tested on scripted series);
:class:`EarlyStopping` is the :func:`~nnrecipe.core.fit.fit` callback that applies it. The
best weights are restored by ``fit(restore_best=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from nnrecipe.core.fit import Callback, EpochRecord, FitHistory
from nnrecipe.errors import ConfigurationError

CRITERIA = ("patience", "GL", "PQ")


@dataclass
class StoppingConfig:
    """``monitor``: an epoch key ("val_loss", "val_accuracy", "train_loss"); ``mode``: "min"
    or "max". ``min_delta`` is absolute, or a fraction of the best value with ``relative``.
    ``smoothing`` is the EMA factor a in s_t = a·s_{t-1} + (1-a)·x_t (0: none). GL and PQ
    apply to losses (``mode="min"``) and are off when their alpha is None."""

    monitor: str = "val_loss"
    mode: str = "min"
    patience: int | None = 5
    min_delta: float = 1e-3
    relative: bool = True
    smoothing: float = 0.5
    gl_alpha: float | None = 10.0
    pq_alpha: float | None = 3.0
    strip: int = 5
    min_epochs: int = 1

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ConfigurationError(f"early stopping mode must be 'min' or 'max', got {self.mode!r}")
        if self.patience is not None and self.patience < 1:
            raise ConfigurationError(f"patience must be at least 1 epoch, got {self.patience}")
        if not 0 <= self.smoothing < 1:
            raise ConfigurationError(f"smoothing must be in [0, 1), got {self.smoothing}")
        if self.min_delta < 0:
            raise ConfigurationError(f"min_delta cannot be negative, got {self.min_delta}")
        if self.strip < 1:
            raise ConfigurationError(f"the PQ strip length must be at least 1, got {self.strip}")

    @classmethod
    def from_options(cls, options: dict | None) -> StoppingConfig:
        """From ``ctx.options["early_stopping"]`` (a dict of these fields, or False to disable)."""
        if options is False:
            return cls(patience=None, gl_alpha=None, pq_alpha=None)
        options = dict(options or {})
        unknown = set(options) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigurationError(f"unknown early_stopping options {sorted(unknown)}; valid: "
                                     f"{sorted(cls.__dataclass_fields__)}")
        return cls(**options)

    def describe(self) -> str:
        parts = []
        if self.patience:
            delta = f"{self.min_delta:.2%} relative" if self.relative else f"{self.min_delta:g}"
            parts.append(f"patience {self.patience} epochs (min_delta {delta}, EMA {self.smoothing:g})")
        if self.gl_alpha is not None and self.mode == "min":
            parts.append(f"GL>{self.gl_alpha:g}")
        if self.pq_alpha is not None and self.mode == "min":
            parts.append(f"PQ>{self.pq_alpha:g} (strips of {self.strip})")
        return f"{self.monitor}: " + ("; ".join(parts) or "off")


@dataclass
class StopVerdict:
    stop: bool
    criterion: str = ""  # "patience" | "GL" | "PQ"
    reason: str = ""
    best_epoch: int | None = None  # 1-based, on the raw metric
    gl: float = math.nan
    pq: float = math.nan


def smooth_ema(values: Sequence[float], a: float) -> list[float]:
    out: list[float] = []
    for v in values:
        out.append(v if not out or not math.isfinite(out[-1]) else a * out[-1] + (1 - a) * v)
    return out


def generalization_loss(val: Sequence[float]) -> float:
    """Prechelt's GL at the last epoch, in percent."""
    finite = [v for v in val if math.isfinite(v)]
    if not finite or not math.isfinite(val[-1]) or min(finite) <= 0:
        return math.nan
    return 100.0 * (val[-1] / min(finite) - 1.0)


def training_progress(train: Sequence[float], k: int) -> float:
    """Prechelt's P_k at the last epoch, in per mille."""
    strip = [v for v in train[-k:] if math.isfinite(v)]
    if len(strip) < k or min(strip) <= 0:
        return math.nan
    return 1000.0 * (sum(strip) / (k * min(strip)) - 1.0)


def _patience(metric: Sequence[float], cfg: StoppingConfig) -> tuple[int, int]:
    """(epochs since the smoothed metric last improved by min_delta, that epoch, 1-based)."""
    s = smooth_ema(metric, cfg.smoothing)
    sign = 1.0 if cfg.mode == "min" else -1.0
    best, best_i = math.inf, 0
    for i, v in enumerate(s):
        if not math.isfinite(v):
            continue
        x = sign * v
        delta = cfg.min_delta * abs(best) if cfg.relative and math.isfinite(best) else cfg.min_delta
        if x < best - delta:
            best, best_i = x, i
    return len(s) - 1 - best_i, best_i + 1


def stopping_verdict(metric: Sequence[float], train: Sequence[float], cfg: StoppingConfig
                     ) -> StopVerdict:
    """Should training stop after the last epoch of ``metric`` (and ``train``, the training
    loss per epoch, for PQ)? Criteria are checked in the order GL, PQ, patience."""
    n = len(metric)
    if n == 0:
        return StopVerdict(False)
    finite = [(v, i) for i, v in enumerate(metric) if math.isfinite(v)]
    best_epoch = (min(finite)[1] if cfg.mode == "min" else max(finite)[1]) + 1 if finite else None
    if n < cfg.min_epochs:
        return StopVerdict(False, best_epoch=best_epoch)
    gl = generalization_loss(metric) if cfg.mode == "min" else math.nan
    if cfg.gl_alpha is not None and math.isfinite(gl) and gl > cfg.gl_alpha:
        return StopVerdict(True, "GL", f"GL={gl:.3g} > {cfg.gl_alpha:g}: {cfg.monitor} is {gl:.3g}% "
                           f"above its best (epoch {best_epoch})", best_epoch, gl)
    pq = math.nan
    if cfg.pq_alpha is not None and cfg.mode == "min" and n % cfg.strip == 0 and math.isfinite(gl):
        p = training_progress(train[:n], cfg.strip)
        if math.isfinite(p):  # a perfectly flat strip (P = 0) has made no progress at all
            pq = gl / p if p > 0 else (math.inf if gl > 0 else 0.0)
            if pq > cfg.pq_alpha:
                return StopVerdict(True, "PQ", f"PQ={pq:.3g} > {cfg.pq_alpha:g}: GL={gl:.3g} while the "
                                   f"training progress P{cfg.strip}={p:.1f}‰", best_epoch, gl, pq)
    if cfg.patience:
        wait, since = _patience(metric, cfg)
        if wait >= cfg.patience:
            return StopVerdict(True, "patience", f"{cfg.monitor} (smoothed) has not improved for "
                               f"{wait} epochs since epoch {since}", best_epoch, gl, pq)
    return StopVerdict(False, best_epoch=best_epoch, gl=gl, pq=pq)


class EarlyStopping(Callback):
    """A :func:`fit` callback applying :func:`stopping_verdict` after every epoch.

    ``stopped`` holds the verdict that stopped the run (None if it ran to the end)."""

    def __init__(self, config: StoppingConfig | None = None) -> None:
        self.config = config or StoppingConfig()
        self.metric: list[float] = []
        self.train: list[float] = []
        self.stopped: StopVerdict | None = None
        self.last: StopVerdict | None = None

    def on_fit_start(self, model: nn.Module, optimizer: object) -> None:  # type: ignore[override]
        self.metric, self.train, self.stopped, self.last = [], [], None, None

    def on_epoch_end(self, record: EpochRecord, history: FitHistory, model: nn.Module
                     ) -> str | None:
        key = self.config.monitor
        if key == "train_loss":
            value = record.train_loss
        else:
            value = record.val.get(key[4:] if key.startswith("val_") else key, math.nan)
        self.metric.append(float(value))
        self.train.append(float(record.train_loss))
        if not any(math.isfinite(v) for v in self.metric):
            return None  # no validation split: nothing to stop on
        self.last = verdict = stopping_verdict(self.metric, self.train, self.config)
        if verdict.stop:
            self.stopped = verdict
            return f"early stopping ({verdict.criterion}): {verdict.reason}"
        return None
