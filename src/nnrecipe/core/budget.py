"""The time budget of ``nnrecipe run --budget SECONDS``, shared by the stages that train.

``ctx.options["budget_s"]`` bounds the run's training time. The runner starts the clock
(:func:`start`, which sets ``ctx.state["deadline"]`` to a ``time.monotonic()`` value) before
the first stage, so every stage sees the same deadline. A stage asks for its allowance with
:func:`allowance` (a fraction of what is left, so stages that finish early leave more to the
later ones) and hands it to ``fit(time_budget_s=...)``. Without a budget every function here
answers ``None`` ("no limit") and stages use their own small defaults.
"""

from __future__ import annotations

import time
from typing import Any

# Below this many seconds a training run is not worth starting: it would be cut off before
# it says anything (an epoch of the bundled demo takes ~0.1 s, a real model's far more).
MIN_USEFUL_S = 1.0


def budget_s(ctx: Any) -> float | None:
    value = ctx.options.get("budget_s")
    return float(value) if value else None


def start(ctx: Any) -> None:
    """Start the clock (idempotent): ``ctx.state["deadline"]`` is set once per run."""
    total = budget_s(ctx)
    if total is not None and "deadline" not in ctx.state:
        ctx.state["deadline"] = time.monotonic() + total


def time_left(ctx: Any) -> float | None:
    """Seconds left before the deadline (never negative), or None without a budget."""
    if budget_s(ctx) is None:
        return None
    start(ctx)
    return max(0.0, ctx.state["deadline"] - time.monotonic())


def allowance(ctx: Any, fraction: float = 1.0) -> float | None:
    """``fraction`` of the time left, for one stage or one piece of work; None: no limit."""
    left = time_left(ctx)
    return None if left is None else left * fraction


def exhausted(ctx: Any, need_s: float = MIN_USEFUL_S) -> bool:
    left = time_left(ctx)
    return left is not None and left < need_s


def skip_reason(ctx: Any) -> str | None:
    """The reason a training check gives when the budget is used up, else None."""
    if exhausted(ctx):
        return f"the --budget of {budget_s(ctx):.0f}s is used up"
    return None
