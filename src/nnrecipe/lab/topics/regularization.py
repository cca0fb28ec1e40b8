"""Regularisation: squared L2 vs L2 (Q18) and weight decay, coupled vs decoupled (Q19)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from nnrecipe.core.fit import Callback, EpochRecord, FitHistory
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
    ratio_above,
    register,
)
from nnrecipe.lab.common import Data, evaluate, fmt, grid_legend, line, load, mlp, train
from nnrecipe.lab.topics.learning_rate import _noisy_labels
from nnrecipe.report.plots import COLORS, new_figure

# ------------------------------------------------------------------------ L2 vs squared L2
L2_LAMBDAS = (0.01, 0.3, 3.0)
L2_LR = 0.1  # full-batch gradient descent on logistic regression (stable for both penalties)


def _penalty(kind: str, w: torch.Tensor, lam: float) -> torch.Tensor:
    return lam * (w.pow(2).sum() if kind == "squared" else torch.linalg.vector_norm(w))


def measure_l2(lab: Lab, steps: int = 200, lambdas: tuple[float, ...] = L2_LAMBDAS) -> Numbers:
    data = load("breast_cancer")
    out: Numbers = {"steps": steps, "lambdas": list(lambdas), "lr": L2_LR, "runs": {}}
    # autograd at w = 0: the norm has no derivative there
    z = torch.zeros(4, requires_grad=True)
    torch.sqrt(z.pow(2).sum()).backward()
    out["grad_sqrt_at_0"] = z.grad.tolist()
    z = torch.zeros(4, requires_grad=True)
    z.pow(2).sum().backward()
    out["grad_squared_at_0"] = z.grad.tolist()
    # the gradient of each penalty as the weights shrink (direction fixed)
    radii = np.logspace(-3, 1, 30)
    out["radii"] = radii.tolist()
    for kind in ("squared", "norm"):
        mags = []
        for r in radii:
            w = (torch.ones(4) * r / 2).requires_grad_(True)
            _penalty(kind, w, 1.0).backward()
            mags.append(float(w.grad.norm()))
        out[f"grad_magnitude_{kind}"] = mags
    with lab.task("L2 vs squared L2", 2 * len(lambdas)) as task:
        for kind in ("squared", "norm"):
            for lam in lambdas:
                torch.manual_seed(lab.seed)
                model = nn.Linear(data.features, data.classes)
                opt = torch.optim.SGD(model.parameters(), lr=L2_LR)
                norms = []
                for _ in range(steps):
                    opt.zero_grad(set_to_none=True)
                    loss = nn.functional.cross_entropy(model(data.X), data.y)
                    (loss + _penalty(kind, model.weight, lam)).backward()
                    opt.step()
                    norms.append(float(model.weight.detach().norm()))
                tail = norms[-50:]
                out["runs"][f"{kind} {lam:g}"] = {
                    "kind": kind, "lambda": lam, "norms": norms,
                    "final_norm": norms[-1], "chatter": max(tail) - min(tail),
                    "val_accuracy": evaluate(model, data.Xv, data.yv)["accuracy"]}
                task.advance()
    return out


def conclude_l2(n: Numbers) -> Conclusion:
    runs = n["runs"]
    big = max(n["lambdas"])
    sq, nm = runs[f"squared {big:g}"], runs[f"norm {big:g}"]
    nan_at_0 = all(math.isnan(v) for v in n["grad_sqrt_at_0"])
    mags_sq, mags_nm = n["grad_magnitude_squared"], n["grad_magnitude_norm"]
    obs = [
        f"at w = 0 autograd returns {n['grad_sqrt_at_0'][0]} for d||w||/dw (written "
        f"sqrt(sum w²)) and {n['grad_squared_at_0'][0]} for d||w||²/dw",
        f"penalty gradient as ||w|| shrinks from {n['radii'][-1]:g} to {n['radii'][0]:g}: "
        f"squared {fmt(mags_sq[-1])} → {fmt(mags_sq[0])}, plain norm {fmt(mags_nm[-1])} → "
        f"{fmt(mags_nm[0])} (constant)",
    ]
    for name, r in runs.items():
        obs.append(f"{name}: final ||w|| {fmt(r['final_norm'])}, range of ||w|| over the last "
                   f"50 steps {fmt(r['chatter'])}, validation accuracy {r['val_accuracy']:.1%}")
    # 10x and 100x: an order (two) of magnitude, not a matter of tuning
    crit = [check("autograd's d||w||/dw at w = 0 is NaN", nan_at_0),
            ratio_above(f"range of ||w|| over the last 50 steps at λ={big:g}, norm / squared",
                        nm["chatter"] / max(sq["chatter"], 1e-6), 10.0),
            ratio_above("penalty gradient at ||w|| = 1e-3, norm / squared",
                        mags_nm[0] / mags_sq[0], 100.0)]
    shown = decided(crit)
    if shown:
        text = (f"The squared norm's gradient 2λw shrinks each weight in proportion to its size "
                f"— exactly weight decay, a multiplication by (1 − 2·lr·λ) per step — and fades "
                f"as the weights approach 0, so gradient descent settles: at λ={big:g} the "
                f"weight norm stops moving (range {fmt(sq['chatter'])} over the last 50 steps). "
                f"The plain norm's gradient λw/||w|| has the same size λ at any distance from 0: "
                f"it is undefined at 0 (autograd gives {n['grad_sqrt_at_0'][0]}), and with a "
                f"fixed step size the weights overshoot 0 and chatter (range "
                f"{fmt(nm['chatter'])}). The squared penalty is also smooth and strongly convex "
                f"(a unique minimum, a closed-form ridge solution, a Gaussian prior), and a sum "
                f"over coordinates, so per-layer penalties simply add.")
    else:
        text = (f"This run did not separate the two penalties: chatter {fmt(nm['chatter'])} "
                f"(norm) vs {fmt(sq['chatter'])} (squared) at λ={big:g}.")
    return Conclusion(shown, text, obs, crit)


def draw_l2(n: Numbers) -> list[Plot]:
    fig, (a, b) = new_figure(width=10, height=3.6, ncols=2)
    a.loglog(n["radii"], n["grad_magnitude_squared"], color=COLORS[0], label="squared: ||2λw||")
    a.loglog(n["radii"], n["grad_magnitude_norm"], color=COLORS[1], label="norm: ||λw/||w||||")
    a.set(title="size of the penalty's gradient (λ = 1)", xlabel="||w||",
          ylabel="||∇ penalty||")
    big = max(n["lambdas"])
    for i, kind in enumerate(("squared", "norm")):
        r = n["runs"][f"{kind} {big:g}"]
        line(b, None, r["norms"], color=COLORS[i], label=f"{kind}, λ={big:g}")
    b.set(title="||w|| during gradient descent", xlabel="step", ylabel="||w||")
    grid_legend(a, b, fontsize=8)
    return [Plot("Squared L2 vs L2 regularisation", fig,
                 "logistic regression on scikit-learn breast cancer, full-batch GD, lr 0.1")]


L2 = register(Topic(
    name="l2-vs-squared-l2",
    question="Why is the squared L2 norm sometimes preferred to the L2 norm for regularising "
             "neural networks?",
    questions=(18,),
    codes=(),
    advice="No finding: weight decay (the squared L2 penalty as an update rule) is one rung of "
           "the regularize stage's ladder, measured on your model.",
    setup="Logistic regression on scikit-learn breast cancer (standardised), full-batch "
          "gradient descent (lr 0.1, 200 steps) with λ·||w||² or λ·||w|| added to the loss, "
          "λ = 0.01, 0.3, 3; the penalties' gradients from autograd.",
    measure=measure_l2, conclude=conclude_l2, draw=draw_l2,
))


# ------------------------------------------------------------------------------ weight decay
WD_LR = 2e-3
WD_COUPLED = 1e-2  # Adam(weight_decay=...): an L2 term in the gradient, rescaled by Adam
WD_DECOUPLED = 2.0  # AdamW: w <- w (1 - lr*wd) per step, 0.4% per step at lr 2e-3


class UnusedWeights(Callback):
    """Tracks the first-layer weights attached to inputs that are always zero: they get no
    gradient from the data, so only the decay moves them."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask
        self.norms: list[float] = []
        self.steps: list[int] = []

    def _first(self, model: nn.Module) -> torch.Tensor:
        lin = next(m for m in model.modules() if isinstance(m, nn.Linear))
        return lin.weight.detach()[:, self.mask]

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.norms, self.steps = [float(self._first(model).norm())], [0]

    def on_epoch_end(self, record: EpochRecord, history: FitHistory, model: nn.Module
                     ) -> str | None:
        self.norms.append(float(self._first(model).norm()))
        self.steps.append(history.steps)
        return None


def measure_decay(lab: Lab, epochs: int = 30, samples: int = 300) -> Numbers:
    full = load("digits")
    y = _noisy_labels(full.y[:samples], full.classes, 0.3, lab.seed + 7)
    data = Data("digits-noisy", full.X[:samples], y, full.Xv, full.yv, full.classes)
    unused = data.X.abs().sum(0) == 0  # pixels that are 0 in every training image
    arms = {
        "Adam, no decay": lambda p: torch.optim.Adam(p, lr=WD_LR),
        f"Adam + L2 (coupled, {WD_COUPLED:g})": lambda p: torch.optim.Adam(
            p, lr=WD_LR, weight_decay=WD_COUPLED),
        f"AdamW (decoupled, {WD_DECOUPLED:g})": lambda p: torch.optim.AdamW(
            p, lr=WD_LR, weight_decay=WD_DECOUPLED),
    }
    out: Numbers = {"epochs": epochs, "samples": samples, "unused_inputs": int(unused.sum()),
                    "lr": WD_LR, "wd_coupled": WD_COUPLED, "wd_decoupled": WD_DECOUPLED,
                    "runs": {}}
    with lab.task("weight decay", len(arms)) as task:
        for name, make in arms.items():
            probe = UnusedWeights(unused)
            model, history = train(data, lambda: mlp(data.features, data.classes, hidden=256,
                                                     depth=1),
                                   optimizer=make, epochs=epochs, seed=lab.seed,
                                   callbacks=[probe])
            with torch.no_grad():
                norm = float(torch.cat([p.reshape(-1) for p in model.parameters()]).norm())
            ev = evaluate(model, data.Xv, data.yv)
            out["runs"][name] = {"unused_norms": probe.norms, "unused_steps": probe.steps,
                                 "kept": (probe.norms[-1] / probe.norms[0] if probe.norms[0]
                                          else math.nan),
                                 "weight_norm": norm, "val_loss": ev["loss"],
                                 "val_accuracy": ev["accuracy"],
                                 "val_curve": history.val_losses(),
                                 "train_loss": history.train_losses()[-1]}
            task.advance()
    return out


def conclude_decay(n: Numbers) -> Conclusion:
    none, coupled, decoupled = n["runs"].values()
    names = list(n["runs"])
    steps = decoupled["unused_steps"][-1]
    predicted = (1 - n["lr"] * n["wd_decoupled"]) ** steps

    def ratio(r: Numbers) -> float:
        return r["kept"]

    obs = [f"{name}: weight norm {fmt(r['weight_norm'])}, final training loss "
           f"{fmt(r['train_loss'])}, validation loss {fmt(r['val_loss'])}, accuracy "
           f"{r['val_accuracy']:.1%}; weights on the {n['unused_inputs']} always-zero inputs "
           f"kept {ratio(r):.1%} of their norm" for name, r in zip(names, n["runs"].values(),
                                                                  strict=True)]
    obs.append(f"(1 − lr·wd)^steps for AdamW = (1 − {n['lr']:g}·{n['wd_decoupled']:g})^{steps} "
               f"= {predicted:.1%}")
    # "exact": within 1% of the prediction (+0.001 for float32 round-off of tiny norms)
    tolerance = 0.01 * max(predicted, 1e-3) + 1e-3
    # seeds 0-3 at 20 epochs: +3.6 to +7 accuracy points for both decays; the validation loss
    # gain is smaller and less regular (it needs ~40 epochs of memorising the noise to show)
    crit = [below("AdamW: |kept − (1 − lr·wd)^steps| / tolerance",
                  abs(ratio(decoupled) - predicted) / tolerance, 1.0),
            below("no decay: |kept − 1| (no data gradient, nothing moves them)",
                  abs(ratio(none) - 1), 1e-6),
            above("validation accuracy, the weaker decay − no decay",
                  min(decoupled["val_accuracy"], coupled["val_accuracy"]) -
                  none["val_accuracy"], 0.0)]
    shown = decided(crit)
    if shown:
        text = (f"Weight decay pulls every weight toward 0 by a fixed fraction per step, so "
                f"weights the data does not keep pushing up fade away and the net stays small "
                f"and smooth: on this small, noisy training set it lowers the weight norm from "
                f"{fmt(none['weight_norm'])} to {fmt(decoupled['weight_norm'])}, fits the wrong "
                f"labels less (training loss {fmt(none['train_loss'])} → "
                f"{fmt(decoupled['train_loss'])}) and raises validation accuracy from "
                f"{none['val_accuracy']:.0%} to {decoupled['val_accuracy']:.0%} (validation loss "
                f"{fmt(none['val_loss'])} → {fmt(decoupled['val_loss'])}). The weights on always-zero input pixels "
                f"show the mechanism in isolation: AdamW multiplies them by (1 − lr·wd) per "
                f"step, {ratio(decoupled):.1%} left vs {predicted:.1%} predicted. Adam with an "
                f"L2 term (coupled) divides that term by √v like any gradient, so a weight with "
                f"no data gradient is pushed to 0 at ≈ lr per step whatever its size "
                f"({ratio(coupled):.1%} left), and by the same division a weight with large "
                f"gradients gets little of it: the strength of coupled decay depends on the "
                f"gradient history, which is why AdamW decouples the decay from the adaptive "
                f"step.")
    else:
        text = (f"This run did not show the expected decay: AdamW kept {ratio(decoupled):.1%} "
                f"of the unused weights ({predicted:.1%} predicted); validation loss "
                f"{fmt(decoupled['val_loss'])} (AdamW) vs {fmt(none['val_loss'])} (no decay), accuracy "
                f"{decoupled['val_accuracy']:.0%} vs {none['val_accuracy']:.0%}.")
    return Conclusion(shown, text, obs, crit)


def draw_decay(n: Numbers) -> list[Plot]:
    fig, (a, b) = new_figure(width=10, height=3.6, ncols=2)
    for i, (name, r) in enumerate(n["runs"].items()):
        norms = np.asarray([float(v) for v in r["unused_norms"]])
        a.plot([float(s) for s in r["unused_steps"]], norms / (norms[0] or 1.0), color=COLORS[i],
               label=name)
        line(b, np.arange(1, len(r["val_curve"]) + 1), r["val_curve"], color=COLORS[i],
             label=name)
    steps = np.asarray([float(s) for s in n["runs"][next(iter(n["runs"]))]["unused_steps"]])
    a.plot(steps, (1 - n["lr"] * n["wd_decoupled"]) ** steps, "k:", lw=1,
           label="(1 − lr·wd)^t")
    a.set(title="weights on always-zero inputs (no data gradient)", xlabel="step",
          ylabel="norm / initial norm")
    b.set(title="validation loss", xlabel="epoch", ylabel="loss")
    grid_legend(a, b, fontsize=7)
    return [Plot("Weight decay, coupled (Adam + L2) vs decoupled (AdamW)", fig,
                 f"300 digits with 30% wrong labels, a 64-256-10 MLP, lr 2e-3, {n['epochs']} epochs")]


DECAY = register(Topic(
    name="weight-decay",
    question="Weight decay multiplies the weights by a factor slightly below 1 after each "
             "update. What is this useful for? (And coupled vs decoupled, Adam vs AdamW.)",
    questions=(19,),
    codes=("overfitting",),
    advice="The regularize stage trains with weight decay as one rung of its ladder and "
           "reports the gain on validation; overfitting in the train stage points there.",
    setup="A 64-256-10 MLP on 300 scikit-learn digits with 30% of the labels replaced, "
          "trained by nnrecipe's trainer for 30 epochs (lr 2e-3) with Adam, Adam with "
          "weight_decay=1e-2 (an L2 term in the gradient) and AdamW with weight_decay=2 "
          "(decoupled). Four input pixels are 0 in every training image: their first-layer "
          "weights get no data gradient and show the decay alone.",
    measure=measure_decay, conclude=conclude_decay, draw=draw_decay,
))
