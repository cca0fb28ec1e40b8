"""Why networks with hidden units are not convex: permutation symmetry (Q27)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from nnrecipe.lab._base import (
    Conclusion,
    Lab,
    Numbers,
    Plot,
    Topic,
    above,
    below,
    decided,
    register,
)
from nnrecipe.lab.common import fmt, grid_legend, line, load, mlp, sgd_steps
from nnrecipe.report.plots import COLORS, new_figure

HIDDEN = 32


def permuted(model: nn.Sequential, perm: torch.Tensor) -> nn.Sequential:
    """The same network with its hidden units reordered: rows of the first layer (and its
    bias) and columns of the second layer move together, so the function is unchanged."""
    import copy

    other = copy.deepcopy(model)
    first, second = other[0], other[2]
    with torch.no_grad():
        first.weight.copy_(model[0].weight[perm])
        first.bias.copy_(model[0].bias[perm])
        second.weight.copy_(model[2].weight[:, perm])
    return other


def _vector(model: nn.Module) -> torch.Tensor:
    return nn.utils.parameters_to_vector(model.parameters()).detach().clone()


def measure_symmetry(lab: Lab, epochs: int = 5, permutations: int = 5, points: int = 21
                     ) -> Numbers:
    data = load("digits")
    torch.manual_seed(lab.seed)
    model = mlp(data.features, data.classes, hidden=HIDDEN, depth=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sgd_steps(model, opt, data.X, data.y, batch_size=32, epochs=epochs, seed=lab.seed)
    model.eval()
    theta = _vector(model)
    probe = mlp(data.features, data.classes, hidden=HIDDEN, depth=1)
    alphas = np.linspace(0, 1, points)
    gen = torch.Generator().manual_seed(lab.seed + 1)
    runs = []
    with lab.task("permutation symmetry", permutations) as task:
        for _ in range(permutations):
            perm = torch.randperm(HIDDEN, generator=gen)
            other = permuted(model, perm)
            with torch.no_grad():
                out_diff = float((model(data.Xv) - other(data.Xv)).abs().max())
            theta_p = _vector(other)
            losses = []
            for a in alphas:
                nn.utils.vector_to_parameters((1 - a) * theta + a * theta_p, probe.parameters())
                with torch.no_grad():
                    losses.append(float(nn.functional.cross_entropy(probe(data.X), data.y)))
            runs.append({"moved_units": int((perm != torch.arange(HIDDEN)).sum()),
                         "max_output_difference": out_diff,
                         "weight_distance": float((theta - theta_p).norm() / theta.norm()),
                         "path_loss": losses})
            task.advance()
    out = {"hidden": HIDDEN, "alphas": alphas.tolist(), "runs": runs,
           "equivalent_minima": math.lgamma(HIDDEN + 1) / math.log(10)}  # log10(hidden!)
    out.update(_summary(runs))  # per seed: extremes over the permutations
    return out


def _summary(runs: list[Numbers]) -> Numbers:
    ends = [max(r["path_loss"][0], r["path_loss"][-1]) for r in runs]
    peaks = [max(r["path_loss"]) for r in runs]
    mids = [r["path_loss"][len(r["path_loss"]) // 2] for r in runs]
    # convexity: L((1-a)θ + aθ') <= (1-a)L(θ) + aL(θ') = L(θ) here, since L(θ') = L(θ)
    return {"ends": [min(ends), max(ends)], "mids": [min(mids), max(mids)],
            "peaks": [min(peaks), max(peaks)],
            "violation": min(p - e for p, e in zip(peaks, ends, strict=True)),
            "output_difference": max(r["max_output_difference"] for r in runs),
            "distance": min(r["weight_distance"] for r in runs)}


def conclude_symmetry(n: Numbers) -> Conclusion:
    runs = n["runs"]
    ends, peaks, mids = n["ends"], n["peaks"], n["mids"]
    violation, diff, dist = n["violation"], n["output_difference"], n["distance"]
    obs = [
        f"{len(runs)} random permutations of the {n['hidden']} hidden units: largest change in "
        f"any output {fmt(diff)} (float rounding), while the weight vector moved by at least "
        f"{dist:.0%} of its norm",
        f"training loss at both ends {fmt(ends[0])}–{fmt(ends[1])}; halfway along the "
        f"straight line {fmt(mids[0])}–{fmt(mids[1])}; highest point "
        f"{fmt(peaks[0])}–{fmt(peaks[1])}",
        f"{n['hidden']}! ≈ 10^{n['equivalent_minima']:.0f} weight vectors compute this same "
        f"function",
    ]
    # float32 round-off of a 64-32-10 forward pass is ~1e-6; a 10% move in weight space and a
    # 0.1-nat barrier are far past it
    crit = [below("largest output change from reordering the hidden units", diff, 1e-4),
            above("smallest weight-space distance / weight norm", dist, 0.1),
            above("smallest barrier on the straight path (peak − ends)", violation, 0.1)]
    shown = decided(crit)
    if shown:
        text = (f"Reordering the hidden units gives a different point in weight space (moved by "
                f"{dist:.0%} or more of the weight norm) that computes exactly the same "
                f"function, so the same loss. If the loss were convex, every point on the "
                f"straight segment between two minima would be at most as high as they are. "
                f"Here the loss halfway is {fmt(mids[0])} or more against "
                f"{fmt(ends[1])} at the ends — a barrier of at least {fmt(violation)} — so the "
                f"loss surface is not convex: it has ~10^{n['equivalent_minima']:.0f} "
                f"equivalent minima from permutations alone, separated by higher ground. "
                f"(Averaging two trained networks' weights without aligning their units fails "
                f"for the same reason.)")
    else:
        text = (f"This run did not show the barrier clearly (rise {fmt(violation)}, output "
                f"difference {fmt(diff)}).")
    return Conclusion(shown, text, obs, crit)


def draw_symmetry(n: Numbers) -> list[Plot]:
    fig, (ax,) = new_figure(width=7, height=3.6)
    for i, r in enumerate(n["runs"]):
        line(ax, n["alphas"], r["path_loss"], color=COLORS[i % len(COLORS)], lw=1.2,
             label=f"permutation {i + 1}")
    ax.set(title="loss along the straight line θ → π(θ)", xlabel="α in (1−α)·θ + α·π(θ)",
           ylabel="training loss", yscale="log")
    grid_legend(ax, fontsize=7)
    return [Plot("Same function, different weights: the loss between them rises", fig,
                 "a trained 64-32-10 MLP on digits and copies with permuted hidden units")]


SYMMETRY = register(Topic(
    name="permutation-symmetry",
    question="Why are neural networks with hidden units not convex?",
    questions=(27,),
    codes=(),
    advice="No finding: a property of every network. In practice it is why runs from "
           "different seeds end at different weights with similar loss, and why the ensemble "
           "stage averages predictions, not weights.",
    setup="A 64-32-10 ReLU MLP trained on scikit-learn digits (Adam 3e-3, 5 epochs). Five "
          "random permutations π of its hidden units; the training loss at 21 points on the "
          "segment from θ to π(θ).",
    measure=measure_symmetry, conclude=conclude_symmetry, draw=draw_symmetry,
))
