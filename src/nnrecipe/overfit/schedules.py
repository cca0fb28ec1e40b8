"""Learning-rate schedules for :func:`nnrecipe.core.fit.fit`: constant by default.

The recipe: start with a constant rate and add decay only at the very end ("don't trust
learning rate decay defaults"). Every schedule here is a multiplier of the optimizer's own
rate(s), a pure function of the step (:func:`schedule_factor`, unit tested on numbers), wrapped
in a ``LambdaLR``; :func:`make_scheduler` returns the factory ``(optimizer, total_steps) ->
LRScheduler`` that ``fit(scheduler=...)`` calls, stepped once per optimizer step. The train
stage reads the name from ``ctx.options["schedule"]`` (or ``Experiment.options``).

======================  =============================================================
name                    multiplier of the base rate at step ``t`` of ``T``
======================  =============================================================
``constant``            1
``warmup``              linear from ``warmup_start`` to 1 over ``warmup_steps``, then 1
``cosine``              (optional warmup, then) cosine from 1 down to ``min_factor``
``step``                ``gamma ** (t // step_size)`` (default: x0.1 at 1/3 and 2/3 of T)
``one-cycle``           cosine up from 1/``div_factor`` to 1 over ``pct_start`` of T, then
                        cosine down to 1/(``div_factor`` * ``final_div_factor``)
======================  =============================================================

One-cycle here scales the rate only (momentum is not cycled), so it works with any optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from nnrecipe.errors import ConfigurationError

SCHEDULES = ("constant", "warmup", "cosine", "step", "one-cycle")
ALIASES = {"none": "constant", "linear-warmup": "warmup", "warmup-constant": "warmup",
           "cosine-annealing": "cosine", "step-decay": "step", "onecycle": "one-cycle",
           "one_cycle": "one-cycle"}
# Defaults and why: a warmup of 5% of training (at most 1000 steps) is the usual range in
# the papers that made it common (Goyal et al. 2017: 5 epochs of 90; transformers: a few
# thousand steps of ~100k); one-cycle's pct_start/div_factor/final_div_factor are Smith's and
# PyTorch's OneCycleLR defaults.
DEFAULTS: dict[str, Any] = {
    "warmup_fraction": 0.05, "max_warmup_steps": 1000, "warmup_start": 0.0,
    "min_factor": 0.0, "gamma": 0.1, "pct_start": 0.3, "div_factor": 25.0,
    "final_div_factor": 1e4,
}
_KEYS = {
    "constant": set(),
    "warmup": {"warmup_steps", "warmup_fraction", "max_warmup_steps", "warmup_start"},
    "cosine": {"warmup_steps", "warmup_fraction", "max_warmup_steps", "warmup_start",
               "min_factor"},
    "step": {"step_size", "gamma", "milestones"},
    "one-cycle": {"pct_start", "div_factor", "final_div_factor"},
}


def canonical(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    if key not in SCHEDULES:
        raise ConfigurationError(f"unknown learning-rate schedule {name!r}; valid: "
                                 f"{', '.join(SCHEDULES)}")
    return key


def _warmup_steps(total: int, kw: dict[str, Any], default_fraction: float) -> int:
    if "warmup_steps" in kw:
        return max(0, int(kw["warmup_steps"]))
    frac = kw.get("warmup_fraction", default_fraction)
    return min(int(round(frac * total)), int(kw.get("max_warmup_steps",
                                                    DEFAULTS["max_warmup_steps"])))


def _warmup(t: int, warm: int, start: float) -> float:
    return start + (1.0 - start) * (t + 1) / warm if t < warm else 1.0


def schedule_factor(name: str, step: int, total_steps: int, **kw: Any) -> float:
    """The multiplier of the base rate at optimizer step ``step`` (0-based) of ``total_steps``."""
    name = canonical(name)
    total = max(1, int(total_steps))
    t = max(0, int(step))
    if name == "constant":
        return 1.0
    if name == "warmup":
        warm = _warmup_steps(total, kw, DEFAULTS["warmup_fraction"])
        return _warmup(t, warm, kw.get("warmup_start", DEFAULTS["warmup_start"]))
    if name == "cosine":
        warm = _warmup_steps(total, kw, 0.0)
        if t < warm:
            return _warmup(t, warm, kw.get("warmup_start", DEFAULTS["warmup_start"]))
        lo = kw.get("min_factor", DEFAULTS["min_factor"])
        progress = min(1.0, (t - warm) / max(1, total - warm))
        return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if name == "step":
        gamma = kw.get("gamma", DEFAULTS["gamma"])
        if "milestones" in kw:
            return gamma ** sum(t >= m for m in kw["milestones"])
        size = int(kw.get("step_size", max(1, math.ceil(total / 3))))
        return gamma ** (t // max(1, size))
    # one-cycle
    pct = kw.get("pct_start", DEFAULTS["pct_start"])
    start = 1.0 / kw.get("div_factor", DEFAULTS["div_factor"])
    end = start / kw.get("final_div_factor", DEFAULTS["final_div_factor"])
    up = max(1, int(round(pct * total)))
    if t < up:
        return start + (1.0 - start) * 0.5 * (1.0 - math.cos(math.pi * t / up))
    progress = min(1.0, (t - up) / max(1, total - up))
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


SchedulerFactory = Callable[[torch.optim.Optimizer, int], LambdaLR]


def make_scheduler(name: str = "constant", **kw: Any) -> SchedulerFactory:
    """A factory ``(optimizer, total_steps) -> LRScheduler`` for ``fit(scheduler=...)``.

    >>> fit(ctx, model, scheduler=make_scheduler("cosine", warmup_steps=100))
    """
    key = canonical(name)
    unknown = set(kw) - _KEYS[key]
    if unknown:
        raise ConfigurationError(f"schedule {key!r} does not take {sorted(unknown)}; it takes "
                                 f"{sorted(_KEYS[key]) or 'no options'}")
    for k in ("gamma", "div_factor", "final_div_factor"):
        if k in kw and not kw[k] > 0:
            raise ConfigurationError(f"schedule {key!r}: {k} must be > 0, got {kw[k]}")
    if "pct_start" in kw and not 0 < kw["pct_start"] < 1:
        raise ConfigurationError(f"schedule {key!r}: pct_start must be in (0, 1), "
                                 f"got {kw['pct_start']}")

    def factory(optimizer: torch.optim.Optimizer, total_steps: int) -> LambdaLR:
        return LambdaLR(optimizer, lambda t: schedule_factor(key, t, total_steps, **kw))

    factory.schedule_name = key  # type: ignore[attr-defined]
    return factory


def scheduler_from_options(options: dict[str, Any]) -> SchedulerFactory | None:
    """The factory named by ``options["schedule"]`` (a name, or a dict with "name" and
    options), or None for a constant rate."""
    spec = options.get("schedule")
    if spec is None:
        return None
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", "constant")
        return None if canonical(name) == "constant" else make_scheduler(name, **spec)
    if callable(spec):
        return spec
    return None if canonical(str(spec)) == "constant" else make_scheduler(str(spec))


def schedule_name(options: dict[str, Any]) -> str | None:
    """The canonical name of the schedule ``options["schedule"]`` names (a name, a dict with
    "name", or a factory from :func:`make_scheduler`); None for a constant rate or a factory
    whose shape is unknown. Never raises: an unknown name is the train stage's to report."""
    spec = options.get("schedule")
    if spec is None:
        return None
    if isinstance(spec, dict):
        spec = spec.get("name", "constant")
    elif callable(spec):
        spec = getattr(spec, "schedule_name", None)
        if spec is None:
            return None
    try:
        key = canonical(str(spec))
    except ConfigurationError:
        return None
    return None if key == "constant" else key
