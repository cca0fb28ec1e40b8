"""``nondeterministic``: two identical short runs from the same seed must agree.

The recipe's first skeleton step is "fix random seed": the same code run twice should give
the same result, otherwise every comparison you make later (this change helped, that one
hurt) is measured against noise. nnrecipe seeds Python, NumPy and torch before each run; what
still differs comes from a random source the seed does not govern. The two probe runs (see
:mod:`nnrecipe.skeleton.probe`) start from the same seed, take the same steps through the
user's ``train_step``, and are compared: the initial weights, the batches, each step's loss
and the final weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.report.plots import line_plot
from nnrecipe.skeleton._util import fmt_names
from nnrecipe.skeleton.probe import ProbeRun, get_probe, probe_skip_reason

# "Beyond float noise", by reasoning: on one device with the same kernels two seeded runs are
# bit-identical (measured: exactly 0 on CPU for every bundled example). Non-deterministic GPU
# kernels (atomic adds in scatter/conv backward) reorder float32 sums, which changes results
# by ~1e-7 relative per op and ~1e-6 after a few steps; a different initialisation, dropout
# mask or batch changes the loss by >= 1e-3. 1e-4 sits between the two with margin on both.
REL_TOL = 1e-4


@dataclass
class DeterminismVerdict:
    fires: bool
    loss_diff: float  # max relative difference of the per-step losses
    param_diff: float  # max relative difference of the final weights
    first_step: int | None  # first step whose loss differs


def rel_diff(a: float, b: float) -> float:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def determinism_verdict(losses_a: list[float], losses_b: list[float],
                        param_diffs: list[float], tol: float = REL_TOL) -> DeterminismVerdict:
    """Pure decision on the per-step losses and the final weights' relative differences."""
    diffs = [rel_diff(a, b) for a, b in zip(losses_a, losses_b, strict=False)]
    first = next((i for i, d in enumerate(diffs) if d > tol), None)
    loss_diff = max(diffs, default=0.0)
    param_diff = max(param_diffs, default=0.0)
    return DeterminismVerdict(loss_diff > tol or param_diff > tol, loss_diff, param_diff, first)


def tensor_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return math.inf
    if torch.equal(a, b):
        return 0.0
    a, b = a.double(), b.double()
    return float((a - b).norm() / max(float(a.norm()), float(b.norm()), 1e-12))


def _diffs(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> dict[str, float]:
    return {n: tensor_rel_diff(x[n], y[n]) for n in x if n in y}


def _batches_differ(a: ProbeRun, b: ProbeRun) -> int | None:
    for i, (xa, xb) in enumerate(zip(a.inputs, b.inputs, strict=False)):
        if xa is None or xb is None:
            continue
        if tensor_rel_diff(xa.float(), xb.float()) > REL_TOL:
            return i
    return None


class Nondeterministic(Check):
    code = "nondeterministic"
    stage = "skeleton"
    severity = Severity.WARNING
    title = "Two runs from the same seed agree"
    fix = ("Make every random source follow the seed: create generators from it "
           "(np.random.default_rng(seed), torch.Generator().manual_seed(seed)) instead of "
           "unseeded ones, seed DataLoader workers (worker_init_fn / generator=), and on GPU "
           "call torch.use_deterministic_algorithms(True) (with "
           "CUBLAS_WORKSPACE_CONFIG=:4096:8) while debugging.")
    order = 5

    def applies(self, ctx: Context) -> str | None:
        return probe_skip_reason(ctx, self.name)

    def run(self, ctx: Context) -> list[Finding]:
        probe = get_probe(ctx, self.name)
        a, b = probe["a"], probe["b"]
        init = _diffs(a.init_params, b.init_params)
        final = _diffs(a.final_params, b.final_params)
        verdict = determinism_verdict(a.losses, b.losses, list(final.values()))
        ctx.record("seed", ctx.seed)
        ctx.record("steps", len(a.losses))
        ctx.record("max_rel_loss_diff", verdict.loss_diff)
        ctx.record("max_rel_weight_diff", verdict.param_diff)
        if not verdict.fires:
            return []
        init_differs = sorted(n for n, d in init.items() if d > REL_TOL)
        batch_step = _batches_differ(a, b)
        if init_differs:
            cause = (f"the model factory gives different initial weights for the same seed "
                     f"({fmt_names(init_differs)}): it draws from a random source the seed does "
                     "not govern (an unseeded NumPy/Python generator, or one created inside)")
        elif batch_step is not None:
            cause = (f"the inputs reaching model(x) differ from step {batch_step} on although "
                     "the sampler is seeded: the dataset's __getitem__ (augmentation, noise) or "
                     "the training step draws from an unseeded random source")
        else:
            cause = ("weights and batches agree, so the training step itself draws unseeded "
                     "randomness (its own generator, NumPy/Python RNG) or uses "
                     "non-deterministic kernels")
        ctx.add_figure("Two runs from the same seed", line_plot(
            {"run 1": a.losses, "run 2": b.losses}, title="loss per step, same seed"))
        evidence = {"seed": ctx.seed, "steps": len(a.losses), "losses_run1": a.losses,
                    "losses_run2": b.losses, "max_rel_loss_diff": verdict.loss_diff,
                    "max_rel_weight_diff": verdict.param_diff, "first_differing_step":
                    verdict.first_step, "init_differs": init_differs,
                    "first_differing_batch": batch_step, "tolerance": REL_TOL,
                    "custom_train_step": ctx.uses_custom_step}
        return [self.finding(
            f"two {len(a.losses)}-step runs from seed {ctx.seed} disagree: losses differ by up "
            f"to {verdict.loss_diff:.2g} and final weights by {verdict.param_diff:.2g} (relative; "
            f"float noise stays below {REL_TOL:g}); {cause}", evidence)]
