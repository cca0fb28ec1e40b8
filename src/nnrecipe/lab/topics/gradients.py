"""Gradient flow: skip connections with depth (Q6), exploding gradients and clipping (Q7),
and vanishing/exploding gradients in an RNN over sequence length (Q8)."""

from __future__ import annotations

import math
from typing import Any

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
    check,
    decided,
    ratio_below,
    register,
)
from nnrecipe.lab.common import (
    context_for,
    diagnosed,
    evaluate,
    fired,
    fmt,
    grid_legend,
    line,
    load,
    mlp,
    sgd_steps,
    smooth,
    watch,
)
from nnrecipe.report.plots import COLORS, new_figure

# ------------------------------------------------------------------------ skip connections


class DeepNet(nn.Module):
    """An input layer, ``depth`` hidden Linear layers with ReLU, an output layer; with
    ``residual`` each hidden layer is a pre-activation residual block ``h + W relu(h)``."""

    def __init__(self, d_in: int, d_out: int, depth: int, width: int, residual: bool) -> None:
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, d_out)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(torch.relu(h)) if self.residual else block(torch.relu(h))
        return self.out(torch.relu(h))


def block_grad_norms(model: DeepNet, X: torch.Tensor, y: torch.Tensor) -> list[float]:
    model.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    norms = [float(b.weight.grad.norm()) for b in model.blocks]
    model.zero_grad()
    return norms


def measure_skip(lab: Lab, depth: int = 20, width: int = 32, epochs: int = 5) -> Numbers:
    data = load("digits")
    out: Numbers = {"depth": depth, "width": width, "epochs": epochs, "runs": {}}
    with lab.task("skip connections", 2) as task:
        for name, residual in (("plain", False), ("residual", True)):
            torch.manual_seed(lab.seed)
            model = DeepNet(data.features, data.classes, depth, width, residual)
            init_norms = block_grad_norms(model, data.X[:256], data.y[:256])
            # SGD with momentum at 0.01: stable for the residual net (3 seeds), and a fair
            # rate for the plain one, which does not move at any rate we tried (0.01-0.1)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            mon = watch(model, opt)
            losses = sgd_steps(model, opt, data.X, data.y, batch_size=64, epochs=epochs,
                               seed=lab.seed, on_step=lambda i, v, mon=mon: mon.record_loss(v))
            out["runs"][name] = {
                "findings": diagnosed(mon),
                "grad_norms_init": init_norms,
                "first_last": _first_last(init_norms),
                "grad_norms_trained": block_grad_norms(model, data.X[:256], data.y[:256]),
                "losses": losses,
                "val_accuracy": evaluate(model, data.Xv, data.yv)["accuracy"],
            }
            task.advance()
    return out


def _first_last(norms: list[float]) -> float:
    return norms[0] / norms[-1] if norms[-1] > 0 else math.inf


def conclude_skip(n: Numbers) -> Conclusion:
    plain, res = n["runs"]["plain"], n["runs"]["residual"]
    rp, rr = plain["first_last"], res["first_last"]
    lp = float(np.mean(plain["losses"][-10:]))
    lr_ = float(np.mean(res["losses"][-10:]))
    obs = [
        f"at initialisation, gradient norm of the first hidden layer / last hidden layer: "
        f"{fmt(rp)} without skip connections, {fmt(rr)} with them ({n['depth']} layers)",
        f"smallest per-layer gradient norm: {fmt(min(plain['grad_norms_init']))} (plain) vs "
        f"{fmt(min(res['grad_norms_init']))} (residual)",
        f"after {n['epochs']} epochs: training loss {fmt(lp)} and validation accuracy "
        f"{plain['val_accuracy']:.1%} (plain) vs {fmt(lr_)} and {res['val_accuracy']:.1%} "
        f"(residual); chance is {1 / 10:.0%}",
        f"nnrecipe's monitor: {fired(plain.get('findings', []))} (plain), "
        f"{fired(res.get('findings', []))} (residual)",
    ]
    # 1e-3: three orders of magnitude, the vanishing the recipe means (not a slow decline)
    crit = [ratio_below("first/last-layer gradient ratio at init, plain / residual",
                        rp / rr if rr > 0 else math.inf, 1e-3),
            above("training loss (last 10 steps), plain − residual", lp - lr_, 0.0),
            above("validation accuracy, residual − plain",
                  res["val_accuracy"] - plain["val_accuracy"], 0.0)]
    shown = decided(crit)
    if shown:
        text = (f"Without skip connections the gradient reaching the first of {n['depth']} "
                f"layers is {fmt(rp)} times the last layer's: it shrinks at every layer and the "
                f"early layers barely learn (validation accuracy {plain['val_accuracy']:.0%}). "
                f"The identity path of a residual block adds 1 to each layer's Jacobian, so the "
                f"gradient arrives nearly undiminished (ratio {fmt(rr)}) and the same depth "
                f"trains ({res['val_accuracy']:.0%}).")
    else:
        text = (f"This run did not separate the two nets clearly: first/last gradient ratio "
                f"{fmt(rp)} (plain) vs {fmt(rr)} (residual), validation accuracy "
                f"{plain['val_accuracy']:.0%} vs {res['val_accuracy']:.0%}.")
    return Conclusion(shown, text, obs, crit)


def draw_skip(n: Numbers) -> list[Plot]:
    fig, (a, b) = new_figure(width=10, height=3.6, ncols=2)
    for i, (name, run) in enumerate(n["runs"].items()):
        layers = np.arange(1, len(run["grad_norms_init"]) + 1)
        line(a, layers, run["grad_norms_init"], "o-", ms=3, color=COLORS[i], label=name)
        line(b, None, smooth(run["losses"], 10), color=COLORS[i], label=name)
    a.set_yscale("log")
    a.set(title="per-layer gradient norm at init", xlabel="hidden layer (1 = nearest the input)",
          ylabel="||dL/dW||")
    b.set(title="training loss", xlabel="step", ylabel="cross-entropy (10-step mean)")
    grid_legend(a, b, fontsize=8)
    return [Plot("Gradient flow with and without skip connections", fig,
                 f"{n['depth']} hidden layers of {n['width']} units on digits")]


SKIP = register(Topic(
    name="skip-connections",
    question="What's the motivation for skip connections? Per-layer gradient norms with depth",
    questions=(6,),
    codes=("vanishing-gradients", "exploding-gradients"),
    advice="The train-stage monitor records the gradient norm of every layer at every step and "
           "reports layers whose gradients are orders of magnitude below the others.",
    setup="Two 20-hidden-layer MLPs (32 units, ReLU, PyTorch's default init) on scikit-learn "
          "digits, identical except that one wraps every hidden layer in a residual block "
          "h + W·relu(h). Per-layer weight-gradient norms at initialisation on 256 samples, then "
          "5 epochs of SGD (lr 0.01, momentum 0.9, batch 64) from the same seed.",
    measure=measure_skip, conclude=conclude_skip, draw=draw_skip,
))


# ---------------------------------------------------------------- exploding gradients, clipping
TARGET_SCALE = 100.0  # targets left in raw units (std 100): the bug the seed answer names
CLIP = 10.0  # a clipping threshold a few times the healthy gradient norm of the scaled run
EXPLODE_LR = 0.01


def _regression_data(seed: int, n: int = 512, d: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    w = torch.randn(d, 1, generator=g)
    y = torch.tanh(X @ w / 3) * 2 + 0.1 * torch.randn(n, 1, generator=g)
    return X, (y - y.mean()) / y.std()


def measure_exploding(lab: Lab, epochs: int = 20) -> Numbers:
    from nnrecipe.core.fit import fit
    from nnrecipe.train import Extras, Monitor, diagnose

    X, y = _regression_data(lab.seed)
    arms = {"targets scaled": (1.0, None), f"raw targets (x{TARGET_SCALE:g})": (TARGET_SCALE, None),
            f"raw targets, clipped at {CLIP:g}": (TARGET_SCALE, CLIP)}
    out: Numbers = {"epochs": epochs, "lr": EXPLODE_LR, "clip": CLIP, "runs": {}}
    with lab.task("exploding gradients", len(arms)) as task:
        for name, (scale, clip) in arms.items():
            ctx = context_for((X, y * scale), lambda: mlp(10, 1, hidden=32, depth=2),
                              optimizer=lambda p: torch.optim.SGD(p, lr=EXPLODE_LR),
                              loss=nn.MSELoss(), task="regression", epochs=epochs,
                              seed=lab.seed)
            model = ctx.fresh_model(seed=lab.seed)
            opt = ctx.make_optimizer(model)
            norms: list[float] = []

            def record(o: Any, args: Any, kwargs: Any, model: nn.Module = model,
                       norms: list[float] = norms) -> None:
                gs = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
                norms.append(float(torch.stack(gs).norm()) if gs else math.nan)

            handle = opt.register_step_pre_hook(record)  # before fit's clip hook: raw norms
            mon = Monitor()  # the train stage's monitor: it also guards non-finite updates
            history = fit(ctx, model, optimizer=opt, epochs=epochs, grad_clip=clip,
                          val_split=None, restore_best=False, description=name,
                          callbacks=[mon])
            handle.remove()
            losses = history.step_losses
            out["runs"][name] = {
                "scale": scale, "clip": clip, "grad_norms": norms,
                "relative_losses": [v / scale**2 for v in losses],
                "stopped": history.stopped_reason,
                "nonfinite": any(not math.isfinite(v) for v in losses + norms)
                or mon.recording.nonfinite is not None,
                "findings": diagnose(mon.recording, Extras(where="this lab run")).findings,
            }
            out["runs"][name]["findings"] = [{"code": f.code, "severity": f.severity.value,
                                              "message": f.message}
                                             for f in out["runs"][name]["findings"]]
            task.advance()
    return out


def _final(run: Numbers) -> float:
    vals = run["relative_losses"][-10:]
    return float(np.mean(vals)) if all(math.isfinite(v) for v in vals) else math.inf


def conclude_exploding(n: Numbers) -> Conclusion:
    runs = list(n["runs"].values())
    scaled, raw, clipped = runs
    obs = []
    for name, run in n["runs"].items():
        gmax = max((g for g in run["grad_norms"] if math.isfinite(g)), default=math.nan)
        obs.append(f"{name}: largest finite gradient norm {fmt(gmax)}, "
                   f"{'a non-finite value appeared' if run['nonfinite'] else 'all values finite'}, "
                   f"final loss / initial loss {fmt(_final(run) / run['relative_losses'][0])}; "
                   f"nnrecipe's monitor: {fired(run.get('findings', []))}")
    first = raw["relative_losses"][0]
    # "diverged": non-finite or 10x its first loss; "converges": below half its first loss
    crit = [check("raw targets: non-finite, or the loss ends 10x above its first",
                  raw["nonfinite"] or _final(raw) > 10 * first),
            below("clipped: final / first loss (inf if non-finite)",
                  math.inf if clipped["nonfinite"] else
                  _final(clipped) / clipped["relative_losses"][0], 0.5),
            check("scaled targets: every value finite", not scaled["nonfinite"])]
    raw_diverged, clipped_ok = crit[0].holds, crit[1].holds
    shown = decided(crit)
    if shown:
        text = (f"With the targets left in raw units (std {TARGET_SCALE:g}) the gradients are "
                f"~{TARGET_SCALE:g}x larger, each SGD step overshoots, the gradient norm grows "
                f"without bound and the run "
                f"{'hits NaN/inf' if raw['nonfinite'] else 'diverges'}: that is how exploding "
                f"gradients show — a gradient norm that grows step over step, then a non-finite "
                f"loss. Clipping the global norm at {n['clip']:g} bounds every step, so the same "
                f"run converges (final loss {fmt(_final(clipped))} of the target variance); "
                f"scaling the targets removes the cause (final {fmt(_final(scaled))}).")
    else:
        text = ("This run did not show the pattern: "
                + ("the raw-target run did not diverge. " if not raw_diverged else "")
                + ("the clipped run did not converge. " if not clipped_ok else ""))
    return Conclusion(shown, text, obs, crit)


def draw_exploding(n: Numbers) -> list[Plot]:
    fig, (a, b) = new_figure(width=10, height=3.6, ncols=2)
    for i, (name, run) in enumerate(n["runs"].items()):
        line(a, None, run["grad_norms"], color=COLORS[i], label=name, lw=1.2)
        line(b, None, run["relative_losses"], color=COLORS[i], label=name, lw=1.2)
        if run["nonfinite"]:
            b.axvline(len(run["relative_losses"]) - 1, color=COLORS[i], ls=":", lw=1)
    a.set_yscale("log")
    b.set_yscale("log")
    a.axhline(n["clip"], color=COLORS[5], ls="--", lw=1, label=f"clip threshold {n['clip']:g}")
    a.set(title="global gradient norm (before clipping)", xlabel="step", ylabel="||g||")
    b.set(title="loss / target variance", xlabel="step", ylabel="relative MSE")
    grid_legend(a, b, fontsize=8)
    return [Plot("Exploding gradients, and clipping by norm", fig,
                 "a dotted line marks where a run hit NaN/inf")]


EXPLODING = register(Topic(
    name="exploding-gradients",
    question="How do we know that gradients are exploding? How do we prevent it?",
    questions=(7,),
    codes=("exploding-gradients", "loss-diverging", "loss-nonfinite"),
    advice="The train-stage monitor watches the global and per-layer gradient norms, names the "
           "first non-finite value and the layer it came from, and suggests a clipping threshold "
           "from the gradient-norm quantiles of a healthy stretch of training.",
    setup="A 10-32-32-1 MLP regressing a smooth function of 10 Gaussian inputs (512 samples) "
          "with plain SGD at lr 0.01 for 20 epochs through nnrecipe's trainer: once with "
          "standardised targets, once with the targets x100, once x100 with the trainer's "
          "gradient clipping (global norm 10).",
    measure=measure_exploding, conclude=conclude_exploding, draw=draw_exploding,
))


# ------------------------------------------------------------------------------------- RNN
RNN_GAINS = (0.5, 1.0, 3.0)  # recurrent weight = gain x a random orthogonal matrix


def measure_rnn(lab: Lab, hidden: int = 32, lengths: tuple[int, ...] = (5, 10, 20, 30, 40, 60),
                batch: int = 16) -> Numbers:
    out: Numbers = {"hidden": hidden, "lengths": list(lengths), "runs": {}}
    longest = max(lengths)
    with lab.task("RNN gradients", len(RNN_GAINS)) as task:
        for gain in RNN_GAINS:
            torch.manual_seed(lab.seed)
            rnn = nn.RNN(4, hidden, batch_first=True, nonlinearity="tanh")
            with torch.no_grad():
                q, _ = torch.linalg.qr(torch.randn(hidden, hidden))
                rnn.weight_hh_l0.copy_(gain * q)
            x = torch.randn(batch, longest, 4, requires_grad=True)
            by_length = []
            for T in lengths:
                xs = x[:, :T]
                h, _ = rnn(xs)
                (g,) = torch.autograd.grad(h[:, -1].sum(), x)
                by_length.append(float(g[:, 0].norm()))  # the first input, T steps back
            h, _ = rnn(x)
            (g,) = torch.autograd.grad(h[:, -1].sum(), x)
            per_step = g.norm(dim=(0, 2)).flip(0).tolist()  # index k = k steps before the end
            out["runs"][str(gain)] = {"gain": gain, "grad_first_input": by_length,
                                      "grad_by_distance": per_step,
                                      "rate_per_step": _rate(per_step)}
            task.advance()
    return out


def _rate(per_step: list[float]) -> float:
    """Geometric factor per step back in time, fitted on log norms (distances 5..end)."""
    k = np.arange(len(per_step))[5:]
    v = np.log(np.maximum(np.asarray(per_step)[5:], 1e-300))
    slope = np.polyfit(k, v, 1)[0]
    return float(np.exp(slope))


def conclude_rnn(n: Numbers) -> Conclusion:
    runs = n["runs"]
    lo, hi = runs[str(min(RNN_GAINS))], runs[str(max(RNN_GAINS))]
    T = n["lengths"][-1]
    obs = [f"recurrent gain {r['gain']:g}: the gradient is multiplied by {fmt(r['rate_per_step'])} "
           f"per step back in time; gradient reaching the first input of a {T}-step sequence "
           f"{fmt(r['grad_first_input'][-1])} (vs {fmt(r['grad_first_input'][0])} at "
           f"{n['lengths'][0]} steps)" for r in runs.values()]
    # 10% per step either way: over 60 steps a factor 500 (vanishing) or 300 (exploding)
    crit = [below(f"gradient factor per step, gain {lo['gain']:g}", lo["rate_per_step"], 0.9),
            above(f"gradient factor per step, gain {hi['gain']:g}", hi["rate_per_step"], 1.1)]
    shown = decided(crit)
    if shown:
        text = (f"Backpropagation through time multiplies the gradient by the recurrent "
                f"Jacobian once per step, so its size changes geometrically with sequence "
                f"length: x{fmt(lo['rate_per_step'])} per step with recurrent gain "
                f"{lo['gain']:g} (vanishing: {fmt(lo['grad_first_input'][-1])} after {T} steps) "
                f"and x{fmt(hi['rate_per_step'])} per step with gain {hi['gain']:g} (exploding: "
                f"{fmt(hi['grad_first_input'][-1])}). A feed-forward net has different weights "
                f"per layer; an RNN reuses the same matrix at every step, so the product "
                f"compounds over the sequence length — long dependencies get either no signal "
                f"or huge steps (clip the gradient norm; use gated cells such as LSTM/GRU).")
    else:
        text = (f"The per-step factors were {fmt(lo['rate_per_step'])} (gain {lo['gain']:g}) "
                f"and {fmt(hi['rate_per_step'])} (gain {hi['gain']:g}): this run did not show "
                f"clear geometric vanishing and exploding.")
    return Conclusion(shown, text, obs, crit)


def draw_rnn(n: Numbers) -> list[Plot]:
    fig, (a, b) = new_figure(width=10, height=3.6, ncols=2)
    for i, r in enumerate(n["runs"].values()):
        line(a, None, r["grad_by_distance"], color=COLORS[i], label=f"gain {r['gain']:g}")
        line(b, n["lengths"], r["grad_first_input"], "o-", ms=3, color=COLORS[i],
             label=f"gain {r['gain']:g}")
    a.set_yscale("log")
    b.set_yscale("log")
    a.set(title="||dh_T/dx_(T-k)|| vs steps back k", xlabel="k (steps back in time)",
          ylabel="gradient norm")
    b.set(title="gradient reaching the first input", xlabel="sequence length T",
          ylabel="||dh_T/dx_1||")
    grid_legend(a, b, fontsize=8)
    return [Plot("Vanishing and exploding gradients through time", fig,
                 "a tanh RNN (32 units) whose recurrent matrix is gain x orthogonal")]


RNN = register(Topic(
    name="rnn-gradients",
    question="Why are RNNs especially susceptible to vanishing and exploding gradients?",
    questions=(8,),
    codes=("vanishing-gradients", "exploding-gradients"),
    advice="The train-stage monitor's per-layer gradient norms cover recurrent layers too "
           "(weight_hh is a parameter like any other); clip the norm when it grows.",
    setup="A single-layer tanh RNN (4 inputs, 32 units) with its recurrent matrix set to "
          "gain x a random orthogonal matrix, gains 0.5, 1 and 3; Gaussian input sequences "
          "(batch 16). Gradients of the last hidden state with respect to every input by "
          "autograd, for sequence lengths 5 to 60.",
    measure=measure_rnn, conclude=conclude_rnn, draw=draw_rnn,
))
