"""The search space: the experiment's own (``Experiment.search_space``) or a sensible default.

A search space is a function of an ``optuna.Trial`` returning a dict of overrides: ``lr``,
``weight_decay``, ``batch_size``, ``epochs``, and any other key is passed to the model
factory (see :func:`nnrecipe.regularize.knobs.settings_from_overrides`). For example::

    def search_space(trial):
        return {"lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
                "width": trial.suggest_categorical("width", [8, 16, 32])}

The default space:

- ``lr``: log-uniform over the overfit stage's plausible range (``ctx.state["lr"]``: low..high,
  widened to at least suggested/3..suggested*3), else 1e-4..1e-2; always containing the
  experiment's own rate;
- ``weight_decay``: log-uniform 1e-6..1e-2 (L2) or 1e-4..1e-1 (decoupled, AdamW), when the
  optimizer has one;
- ``dropout``: uniform 0..0.5, when the model factory takes a dropout argument;
- ``batch_size``: half, the same or twice the experiment's.

The experiment's own settings are enqueued as the first trial of a fresh study, so the search
starts from (and is measured against) where the user stands.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nnrecipe.core.context import Context
from nnrecipe.regularize import knobs

DEFAULT_LR_RANGE = (1e-4, 1e-2)
COUPLED_DECAY_RANGE = (1e-6, 1e-2)
DECOUPLED_DECAY_RANGE = (1e-4, 1e-1)
DROPOUT_RANGE = (0.0, 0.5)
# The LR range test's plausible range can be narrow; the search looks at least this far
# either side of its suggestion.
MIN_LR_SPREAD = 3.0


@dataclass
class SearchSpace:
    fn: Callable[[Any], dict[str, Any]]
    declared: bool  # the experiment's own
    description: list[list[str]] = field(default_factory=list)  # rows: name, range, why
    # parameters of the first, enqueued trials: the experiment's own settings, then the
    # regularize stage's winner (when it maps into the space)
    starts: list[dict[str, Any]] = field(default_factory=list)


def lr_range(ctx: Context, base_lr: float) -> tuple[float, float, str]:
    state = ctx.state.get("lr") or {}
    low, high, sug = state.get("low"), state.get("high"), state.get("suggested")
    if all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in (low, high, sug)) \
            and low <= high:  # type: ignore[operator]
        lo = min(low, sug / MIN_LR_SPREAD)  # type: ignore[operator]
        hi = max(high, sug * MIN_LR_SPREAD)  # type: ignore[operator]
        source = f"the LR range test (suggested {sug:.2g}, confidence {state.get('confidence')})"
    else:
        lo, hi = DEFAULT_LR_RANGE
        source = "default (no LR range test in this run)"
    if math.isfinite(base_lr) and base_lr > 0:
        lo, hi = min(lo, base_lr), max(hi, base_lr)
    return float(lo), float(hi), source


def default_space(ctx: Context) -> SearchSpace:
    probe = ctx.make_optimizer(ctx.fresh_model())
    base_lr = knobs.base_lr(probe)
    lo, hi, source = lr_range(ctx, base_lr)
    rows = [["lr", f"log-uniform {lo:.2g}..{hi:.2g}", source]]
    start: dict[str, Any] = {"lr": base_lr} if math.isfinite(base_lr) else {}
    wd_range: tuple[float, float] | None = None
    if knobs.supports_weight_decay(probe):
        decoupled = knobs.decoupled_weight_decay(probe)
        wd_range = DECOUPLED_DECAY_RANGE if decoupled else COUPLED_DECAY_RANGE
        rows.append(["weight_decay", f"log-uniform {wd_range[0]:g}..{wd_range[1]:g}",
                     "decoupled (AdamW)" if decoupled else "L2 in the gradient"])
        current = knobs.current_weight_decay(probe)
        if wd_range[0] <= current <= wd_range[1]:
            start["weight_decay"] = current
        else:
            start["weight_decay"] = wd_range[0]  # "off", as close as a log scale gets
    arg = knobs.dropout_arg(ctx)
    if arg:
        rows.append([arg, f"uniform {DROPOUT_RANGE[0]}..{DROPOUT_RANGE[1]}",
                     "the model factory's dropout argument"])
        start[arg] = min(max(knobs.dropout_default(ctx), DROPOUT_RANGE[0]), DROPOUT_RANGE[1])
    bs = ctx.experiment.batch_size
    regularised = regularised_start(ctx, start, arg)
    sizes = sorted({max(1, bs // 2), bs, bs * 2, *([regularised["batch_size"]] if regularised
                                                     else [])})
    rows.append(["batch_size", f"one of {sizes}", "the experiment's, halved and doubled"
                 + (" (and the regularize stage's)" if len(sizes) > 3 else "")])
    start["batch_size"] = bs

    def space(trial: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"lr": trial.suggest_float("lr", lo, hi, log=True)}
        if wd_range is not None:
            out["weight_decay"] = trial.suggest_float("weight_decay", *wd_range, log=True)
        if arg:
            out[arg] = trial.suggest_float(arg, *DROPOUT_RANGE)
        out["batch_size"] = trial.suggest_categorical("batch_size", sizes)
        return out

    starts = [start] + ([regularised] if regularised and regularised != start else [])
    return SearchSpace(space, False, rows, starts)


def regularised_start(ctx: Context, start: dict[str, Any], dropout: str | None
                      ) -> dict[str, Any] | None:
    """The regularize stage's chosen setting as parameters of the default space (None when it
    chose the unregularised reference or changed nothing the space has)."""
    best = (ctx.state.get("regularize") or {}).get("best") or {}
    settings = best.get("settings")
    if settings is None or best.get("name") == "unregularised reference":
        return None
    point = dict(start)
    point["batch_size"] = settings.batch_size or ctx.experiment.batch_size
    if settings.weight_decay is not None and "weight_decay" in start:
        point["weight_decay"] = settings.weight_decay
    if dropout and dropout in settings.model_kwargs:
        point[dropout] = float(settings.model_kwargs[dropout])
    return point


def search_space(ctx: Context) -> SearchSpace:
    declared = ctx.experiment.search_space
    if declared is not None:
        return SearchSpace(declared, True, [["(declared)", "Experiment.search_space", ""]])
    return default_space(ctx)
