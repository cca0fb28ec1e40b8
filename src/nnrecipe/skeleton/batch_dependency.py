"""``batch-dependency``: sample i's output must not depend on sample j's input.

The recipe's example of charting dependencies with backprop: "set the loss to be something
trivial like the sum of all outputs of example i, run the backward pass all the way to the
input, and ensure that you get a non-zero gradient only on the i-th input". A ``view`` where
a ``transpose``/``permute`` was meant, an RNN fed batch-first data without
``batch_first=True``, or a reduction over dim 0 mixes the samples of a batch: the model
trains, on scrambled data, and predicts differently depending on what else is in the batch.

Batch normalisation in training mode mixes samples on purpose (batch statistics); those
layers are put in eval mode for this check, which leaves every other dependency visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.report.plots import new_figure
from nnrecipe.skeleton.dependency import (
    DEP_TOL,
    Event,
    axis_of_size,
    carries,
    locate,
    norms_along,
    output_weights,
    traced_forward,
)

BATCH_CANDIDATES = (5, 7, 11, 13)  # a batch size unlikely to equal any other dimension
MAX_QUERIES = 5  # rows i of the dependency matrix computed when the batch must be larger

_HINTS = {
    "LSTM": "an RNN treats dim 0 as time unless batch_first=True",
    "GRU": "an RNN treats dim 0 as time unless batch_first=True",
    "RNN": "an RNN treats dim 0 as time unless batch_first=True",
    "MultiheadAttention": "attention treats dim 0 as the sequence unless batch_first=True",
    "TransformerEncoderLayer": "the layer treats dim 0 as the sequence unless batch_first=True",
    "TransformerDecoderLayer": "the layer treats dim 0 as the sequence unless batch_first=True",
    "TransformerEncoder": "the layers treat dim 0 as the sequence unless batch_first=True",
}


@dataclass
class DependencyMatrix:
    values: np.ndarray  # [i, j]: norm of d(output i) / d(input j), relative to the largest
    pairs: list[tuple[int, int, float]]  # (i, j, relative) with j != i above tolerance


def batch_dependency_verdict(norms: np.ndarray, tol: float = DEP_TOL) -> DependencyMatrix:
    """Pure decision on the matrix of gradient norms ``norms[i, j]`` (rows: outputs)."""
    scale = float(np.max(norms)) if norms.size else 0.0
    rel = norms / scale if scale > 0 else np.zeros_like(norms)
    pairs = [(i, j, float(rel[i, j])) for i in range(rel.shape[0]) for j in range(rel.shape[1])
             if i != j and rel[i, j] > tol]
    return DependencyMatrix(rel, pairs)


def pick_batch_size(shape: tuple[int, ...], available: int) -> int:
    for n in BATCH_CANDIDATES:
        if n <= available and n not in shape[1:]:
            return n
    return min(available, BATCH_CANDIDATES[0])


class BatchDependency(Check):
    code = "batch-dependency"
    stage = "skeleton"
    severity = Severity.ERROR
    title = "Each sample's output depends only on its own input"
    fix = ("Find the operation that mixes the batch dimension: a `view`/`reshape` used where "
           "`transpose`/`permute` was meant (they only agree when a dimension has size 1), an "
           "RNN/attention layer without batch_first=True fed (N, T, F) data, or a "
           "mean/sum/softmax over dim 0. Use `x.permute(...)` / `x.transpose(0, 1)` and "
           "`x.flatten(1)` instead of `x.view(-1, ...)`.")
    order = 40

    def run(self, ctx: Context) -> list[Finding]:
        n_train = len(ctx.dataset("train"))
        X, _ = ctx.tensors("train", limit=max(BATCH_CANDIDATES))
        n = pick_batch_size(tuple(X.shape), min(n_train, len(X)))
        if n < 2:
            ctx.record("skipped", "fewer than 2 training samples")
            return []
        try:
            result = self._measure(ctx, X[:n])
        except Exception:  # noqa: BLE001 - some models only accept their training batch size
            m = min(ctx.experiment.batch_size, n_train)
            if m == n or m < 2:
                raise
            X, _ = ctx.tensors("train", limit=m)
            n = m
            result = self._measure(ctx, X[:n])
        if result is None:
            return []
        norms, events, dirty, bn_names = result
        verdict = batch_dependency_verdict(norms)
        ctx.record("batch_size", n)
        ctx.record("batchnorm_in_eval", bn_names)
        ctx.record("max_cross_dependency", max((p[2] for p in verdict.pairs), default=0.0))
        if not verdict.pairs:
            return []
        self._plot(ctx, verdict)  # only when it fires: an all-dark matrix tells nothing
        where, where_ev = locate(events, dirty)
        kind = where_ev.get("type") or where_ev.get("after_type") or ""
        hint = _HINTS.get(kind, "")
        if "between" in where:
            hint = "typically a view/reshape that should be a transpose/permute"
        top = sorted(verdict.pairs, key=lambda p: -p[2])[:10]
        evidence = {"batch_size": n, "pairs": [[i, j, round(r, 6)] for i, j, r in top],
                    "n_pairs": len(verdict.pairs), "location": where_ev,
                    "batchnorm_put_in_eval": bn_names, "tolerance": DEP_TOL}
        i, j, r = top[0]
        return [self.finding(
            f"in a batch of {n}, the output of sample {i} depends on the input of sample {j} "
            f"(gradient {r:.3g} of the largest; {len(verdict.pairs)} of {n * (n - 1)} cross "
            f"pairs are non-zero, where all should be exactly 0). The mixing happens {where}"
            + (f": {hint}" if hint else ""), evidence)]

    def _measure(self, ctx: Context, X: torch.Tensor
                 ) -> tuple[np.ndarray, list[Event], list[bool], list[str]] | None:
        traced = traced_forward(ctx, X)
        x, out, bn_names = traced.x, traced.out, traced.batchnorm_put_in_eval
        n = len(X)
        if not isinstance(out, torch.Tensor) or out.ndim == 0 or out.shape[0] != n:
            ctx.record("skipped", "the model's output has no batch dimension first")
            return None
        events = [e for e in traced.events if axis_of_size(e.tensor, n) is not None]
        if x.requires_grad:
            ref, ref_axis = x, 0
        else:  # integer inputs (token ids): the first float tensor, e.g. the embedding's output
            first = next((e for e in events if e.tensor.shape[:1] == (n,)), None)
            if first is None:
                ctx.record("skipped", "integer inputs and no traced float tensor with a batch "
                                      "dimension to differentiate")
                return None
            ref, ref_axis = first.tensor, 0
        queries = range(min(n, MAX_QUERIES)) if n > max(BATCH_CANDIDATES) else range(n)
        norms = np.zeros((len(queries), n))
        dirty = [False] * len(events)
        weights = output_weights(out, ctx.seed)
        tensors = [ref] + [e.tensor for e in events]
        for row, i in enumerate(queries):
            target = (out[i] * weights[i]).sum()
            grads = torch.autograd.grad(target, tensors, retain_graph=True, allow_unused=True)
            norms[row] = norms_along(grads[0], ref_axis, n).numpy()
            for k, (e, g) in enumerate(zip(events, grads[1:], strict=True)):
                if not dirty[k]:
                    axis = axis_of_size(e.tensor, n)
                    dirty[k] = carries(g, axis, n, i) if axis is not None else False
        return norms, events, dirty, bn_names

    def _plot(self, ctx: Context, verdict: DependencyMatrix) -> None:
        fig, (ax,) = new_figure(width=4.6, height=3.8)
        vals = np.log10(np.maximum(verdict.values, 1e-12))
        im = ax.imshow(vals, cmap="magma", vmin=-12, vmax=0, interpolation="nearest")
        fig.colorbar(im, ax=ax, label="log10 relative gradient norm")
        ax.set(title="d output[i] / d input[j]: only the diagonal may be non-zero",
               xlabel="input sample j", ylabel="output sample i")
        ax.title.set_fontsize(8)
        ctx.add_figure("Batch dependencies charted by backprop", fig)
