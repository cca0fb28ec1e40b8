"""``causal-leak``: in a causal sequence model, output t must not see inputs after t.

For experiments marked ``causal=True`` (autoregressive language models, forecasters), the
output at position t may depend on inputs at positions <= t only. A missing or off-by-one
attention mask, a bidirectional RNN, a centred convolution or a normalisation over the time
axis lets the model read the future: training loss falls fast, generation fails. Backprop
charts it: the gradient of output t with respect to input t' > t must be exactly zero.

Inputs are taken batch-first, time on axis 1 ((N, T) token ids or (N, T, F) features);
outputs have time on the one axis (other than 0) of length T, or are (N*T, ...) flattened.
``options={"causal_output_time_axis": k}`` settles an ambiguous output layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.report.plots import new_figure
from nnrecipe.skeleton.dependency import DEP_TOL, norms_along, output_weights, traced_forward

N_SAMPLES = 2
MAX_POSITIONS = 24  # output positions queried (all of them for short sequences)


@dataclass
class CausalVerdict:
    leaks: list[tuple[int, int, float]]  # (output t, input t' > t, relative gradient)
    max_lookahead: int


def causal_verdict(dep: np.ndarray, positions: list[int], tol: float = DEP_TOL) -> CausalVerdict:
    """Pure decision on ``dep[row, t']``: gradient norm of output ``positions[row]`` with
    respect to input position t'."""
    scale = float(np.max(dep)) if dep.size else 0.0
    rel = dep / scale if scale > 0 else np.zeros_like(dep)
    leaks = [(t, s, float(rel[row, s])) for row, t in enumerate(positions)
             for s in range(t + 1, dep.shape[1]) if rel[row, s] > tol]
    return CausalVerdict(leaks, max((s - t for t, s, _ in leaks), default=0))


def output_time_axis(out: torch.Tensor, n: int, t: int, forced: int | None
                     ) -> tuple[torch.Tensor, int] | str:
    """The output viewed with its time axis found; or a reason why it cannot be found."""
    if forced is not None:
        return out, int(forced)
    axes = [i for i in range(1, out.ndim) if out.shape[i] == t]
    if len(axes) == 1:
        return out, axes[0]
    if not axes and out.shape[0] == n * t:
        return out.reshape(n, t, -1), 1
    if not axes:
        return f"no output axis has the sequence length {t} (output shape {tuple(out.shape)})"
    return (f"several output axes have the sequence length {t} (shape {tuple(out.shape)}); "
            "set options={'causal_output_time_axis': k}")


class CausalLeak(Check):
    code = "causal-leak"
    stage = "skeleton"
    severity = Severity.ERROR
    title = "Outputs do not depend on future inputs (causal models)"
    fix = ("Mask the future: for attention pass a causal mask "
           "(`nn.Transformer.generate_square_subsequent_mask(T)` or is_causal=True with the "
           "mask) and check it is not shifted by one; use unidirectional RNNs; pad "
           "convolutions on the left only (causal padding); never normalise over the time axis.")
    order = 42

    def applies(self, ctx: Context) -> str | None:
        if not ctx.experiment.causal:
            return "the experiment is not marked causal (Experiment(causal=True))"
        X, _ = ctx.tensors("train", limit=N_SAMPLES)
        if X.ndim < 2 or X.shape[1] < 2:
            return f"inputs of shape {tuple(X.shape[1:])} have no time axis 1 of length >= 2"
        return None

    def run(self, ctx: Context) -> list[Finding]:
        X, _ = ctx.tensors("train", limit=N_SAMPLES)
        n, T = len(X), X.shape[1]
        traced = traced_forward(ctx, X)
        x, out = traced.x, traced.out
        if x.requires_grad:
            ref = x
        else:
            ref = next((e.tensor for e in traced.events if e.tensor.shape[:2] == (n, T)), None)
            if ref is None:
                ctx.record("skipped", "integer inputs and no traced float (N, T, ...) tensor")
                return []
        found = output_time_axis(out, n, T, ctx.options.get("causal_output_time_axis"))
        if isinstance(found, str):
            ctx.record("skipped", found)
            return []
        out, axis = found
        positions = list(range(T)) if T <= MAX_POSITIONS else \
            sorted(set(np.linspace(0, T - 1, MAX_POSITIONS).round().astype(int).tolist()))
        weights = output_weights(out, ctx.seed)
        dep = np.zeros((len(positions), T))
        for row, t in enumerate(positions):
            target = (out.select(axis, t) * weights.select(axis, t)).sum()
            (g,) = torch.autograd.grad(target, [ref], retain_graph=True, allow_unused=True)
            dep[row] = norms_along(g, 1, T).numpy()
        verdict = causal_verdict(dep, positions)
        ctx.record("sequence_length", T)
        ctx.record("output_time_axis", axis)
        ctx.record("max_future_dependency", max((r for _, _, r in verdict.leaks), default=0.0))
        self._plot(ctx, dep, positions)
        if not verdict.leaks:
            return []
        worst = sorted(verdict.leaks, key=lambda v: -v[2])[:10]
        lookaheads = sorted({s - t for t, s, _ in verdict.leaks})
        off_by_one = lookaheads == [1]
        t, s, r = worst[0]
        evidence = {"sequence_length": T, "output_time_axis": axis,
                    "leaks": [[a, b, round(c, 6)] for a, b, c in worst],
                    "n_leaks": len(verdict.leaks), "lookaheads": lookaheads[:20],
                    "positions_checked": len(positions), "tolerance": DEP_TOL}
        msg = (f"output at position {t} depends on the input at position {s} (gradient {r:.3g} "
               f"of the largest; should be exactly 0); {len(verdict.leaks)} (output, future "
               f"input) pairs leak, looking up to {verdict.max_lookahead} step(s) ahead")
        if off_by_one:
            msg += ": exactly one step ahead, the signature of a mask shifted by one"
        return [self.finding(msg, evidence)]

    def _plot(self, ctx: Context, dep: np.ndarray, positions: list[int]) -> None:
        scale = float(dep.max()) or 1.0
        vals = np.log10(np.maximum(dep / scale, 1e-12))
        fig, (ax,) = new_figure(width=4.8, height=4.0)
        im = ax.imshow(vals, cmap="magma", vmin=-12, vmax=0, interpolation="nearest",
                       aspect="auto")
        fig.colorbar(im, ax=ax, label="log10 relative gradient norm")
        ax.plot(positions, range(len(positions)), color="#1a7f37", lw=1)
        ax.set(title="d output[t] / d input[t']: zero right of the line",
               xlabel="input position t'", ylabel="output position (row)")
        ax.title.set_fontsize(8)
        ctx.add_figure("Causal dependencies charted by backprop", fig)
