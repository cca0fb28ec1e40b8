"""Weight normalisation (Q9) and batch norm vs layer norm (Q17)."""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.ticker import NullLocator
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

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
from nnrecipe.lab.common import (
    evaluate,
    fmt,
    grid_legend,
    line,
    load,
    mlp,
    sd_of,
    sgd_steps,
)
from nnrecipe.report.plots import COLORS, new_figure

# ----------------------------------------------------------------------- weight normalisation
WN_LRS = (0.1, 0.3, 1.0, 1.5, 3.0)
# Where the plain net becomes unstable on this problem: seeds 0-7 at lr 1.5 end at loss
# 1.5-2.2 or NaN (plain) vs 0.27-1.27 (weight norm), a gap of at least 0.77.
WN_HIGH_LR = 1.5
WN_MARGIN = 0.2  # "better" at the high rate: lower final loss by at least this much


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _wn_model(seed: int, d_in: int, d_out: int, normalized: bool) -> nn.Module:
    torch.manual_seed(seed)
    model = mlp(d_in, d_out, hidden=64, depth=3)
    if normalized:
        for lin in _linears(model):
            weight_norm(lin)  # w = g * v / ||v|| per output unit; g starts at ||v||
    return model


def _final_loss(losses: list[float]) -> float:
    tail = losses[-20:]
    return float(np.mean(tail)) if losses and all(math.isfinite(v) for v in tail) else math.inf


def measure_weight_norm(lab: Lab, epochs: int = 3, lrs: tuple[float, ...] = WN_LRS) -> Numbers:
    data = load("digits")
    out: Numbers = {"lrs": list(lrs), "epochs": epochs, "runs": {}}
    with lab.task("weight normalisation", 2 * len(lrs)) as task:
        for name, normalized in (("plain", False), ("weight norm", True)):
            finals, curves, v_growth = [], {}, []
            for lr in lrs:
                model = _wn_model(lab.seed, data.features, data.classes, normalized)
                with torch.no_grad():
                    v0 = ([float(lin.parametrizations.weight.original1.norm()) for lin in
                           _linears(model)] if normalized else [])
                opt = torch.optim.SGD(model.parameters(), lr=lr)
                losses = sgd_steps(model, opt, data.X, data.y, batch_size=32, epochs=epochs,
                                   seed=lab.seed)
                finals.append(_final_loss(losses))
                curves[str(lr)] = losses
                if normalized:
                    with torch.no_grad():
                        v1 = [float(lin.parametrizations.weight.original1.norm())
                              for lin in _linears(model)]
                    v_growth.append(float(np.mean([b / a for a, b in zip(v0, v1, strict=False)])))
                task.advance()
            out["runs"][name] = {"final_loss": finals, "curves": curves, "v_growth": v_growth}
    # the gradient with respect to v is orthogonal to v: the norm is left to g
    model = _wn_model(lab.seed, data.features, data.classes, True)
    nn.functional.cross_entropy(model(data.X[:256]), data.y[:256]).backward()
    cosines = []
    for lin in _linears(model):
        v = lin.parametrizations.weight.original1
        cos = nn.functional.cosine_similarity(v.grad, v.detach(), dim=1)
        cosines.append(float(cos.abs().max()))
    out["max_abs_cos_grad_v"] = max(cosines)
    return out


def conclude_weight_norm(n: Numbers) -> Conclusion:
    plain, wn = n["runs"]["plain"], n["runs"]["weight norm"]
    lrs = n["lrs"]
    good = 1.0  # "trains": mean loss of the last 20 steps below 1.0 (chance is ln 10 = 2.3)
    plain_ok = [lr for lr, v in zip(lrs, plain["final_loss"], strict=False) if v < good]
    wn_ok = [lr for lr, v in zip(lrs, wn["final_loss"], strict=False) if v < good]
    obs = [f"lr {lr:g}: final training loss {fmt(a)} (plain) vs {fmt(b)} (weight norm)"
           for lr, a, b in zip(lrs, plain["final_loss"], wn["final_loss"], strict=False)]
    obs.append(f"|cos(dL/dv, v)| at most {fmt(n['max_abs_cos_grad_v'])}: the gradient with "
               f"respect to the direction v is orthogonal to v")
    if wn["v_growth"]:
        obs.append(f"||v|| grew by x{fmt(min(wn['v_growth']))} (lr {lrs[0]:g}) to "
                   f"x{fmt(max(wn['v_growth']))} (lr {lrs[-1]:g}) during training, which lowers "
                   f"the effective step on the direction (it scales as g/||v||)")
    i = lrs.index(WN_HIGH_LR) if WN_HIGH_LR in lrs else len(lrs) - 1
    wn_i, plain_i = wn["final_loss"][i], plain["final_loss"][i]
    # a diverged plain run counts as a final loss of ln 10 (chance) for the gap
    gap = min(plain_i, math.log(10)) - wn_i if math.isfinite(wn_i) else -math.inf
    crit = [below("largest |cos(dL/dv, v)| (the gradient is orthogonal to v)",
                  n["max_abs_cos_grad_v"], 1e-3),
            above(f"final loss at lr {lrs[i]:g}, plain (NaN: ln 10) − weight norm", gap,
                  WN_MARGIN)]
    shown = decided(crit)
    if shown:
        text = (f"Weight normalisation writes each weight vector as g·v/||v||: the gradient "
                f"moves v only sideways (|cos| ≤ {fmt(n['max_abs_cos_grad_v'])}), so ||v|| can "
                f"only grow and large steps shrink the effective learning rate on the "
                f"direction by themselves, while the scale g is learnt on its own. In this run "
                f"the plain net trained (loss < {good:g}) up to lr {max(plain_ok, default=0):g} "
                f"and the weight-normalised one up to lr {max(wn_ok, default=0):g}; at lr "
                f"{lrs[i]:g} the final loss is {fmt(wn['final_loss'][i])} with weight norm vs "
                f"{fmt(plain['final_loss'][i])} without. At small learning rates the two are "
                f"nearly identical: the gain is robustness and conditioning, not a free speed-up.")
    else:
        text = (f"This run shows no advantage for weight normalisation: it trains up to lr "
                f"{max(wn_ok, default=0):g}, the plain net up to {max(plain_ok, default=0):g}.")
    return Conclusion(shown, text, obs, crit)


def draw_weight_norm(n: Numbers) -> list[Plot]:
    fig, (a, b) = new_figure(width=10, height=3.6, ncols=2)
    for i, (name, run) in enumerate(n["runs"].items()):
        line(a, n["lrs"], run["final_loss"], "o-", color=COLORS[i], label=name)
        diverged = [lr for lr, v in zip(n["lrs"], run["final_loss"], strict=False)
                    if not math.isfinite(v) or getattr(v, "nonfinite", 0)]
        a.plot(diverged, [3.0] * len(diverged), "x", ms=9, color=COLORS[i])
        curve = run["curves"].get(str(WN_HIGH_LR), [])
        line(b, None, curve, color=COLORS[i], label=name, lw=1)
    a.set(xscale="log", title="final training loss vs learning rate (x = diverged on a seed)",
          xlabel="SGD learning rate", ylabel="loss (last 20 steps)", ylim=(0, 3.2))
    b.set(title=f"training loss at lr {WN_HIGH_LR:g}", xlabel="step", ylabel="cross-entropy",
          ylim=(0, 4))
    grid_legend(a, b, fontsize=8)
    return [Plot("Weight normalisation vs plain parameterisation", fig,
                 "4-layer MLP on digits, plain SGD, 3 epochs per learning rate")]


WEIGHT_NORM = register(Topic(
    name="weight-norm",
    question="Weight normalisation separates a weight vector's norm from its direction. How "
             "does it help training?",
    questions=(9,),
    codes=("lr-too-high", "loss-diverging"),
    advice="No detector is specific to weight normalisation; the learning-rate range test "
           "(nnrecipe lr) shows how wide the usable range of learning rates is for your model.",
    setup="A 64-64-64-64-10 ReLU MLP on scikit-learn digits, plain SGD (batch 32) for 3 epochs "
          "at learning rates 0.1 to 3, with and without torch.nn.utils.parametrizations.weight_norm "
          "on every Linear layer, from the same initial function.",
    measure=measure_weight_norm, conclude=conclude_weight_norm, draw=draw_weight_norm,
))


# ------------------------------------------------------------------ batch norm vs layer norm
NORM_BATCH_SIZES = (2, 8, 64)
NORM_STEPS = 200  # the same number of updates for every batch size and normalisation


def _norm_factory(kind: str) -> type[nn.Module] | None:
    return {"none": None, "batch norm": nn.BatchNorm1d, "layer norm": nn.LayerNorm}[kind]


def _batch_dependency(model: nn.Module, X: torch.Tensor, size: int, seed: int) -> float:
    """In train mode: how much sample 0's output moves when the rest of its batch changes."""
    g = torch.Generator().manual_seed(seed)
    a = X[torch.randperm(len(X), generator=g)[:size]]
    b = X[torch.randperm(len(X), generator=g)[:size]].clone()
    b[0] = a[0]
    was = model.training
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}  # BN running stats
    with torch.no_grad():
        delta = float((model(a)[0] - model(b)[0]).abs().max())
    model.load_state_dict(state)
    model.train(was)
    return delta


def measure_norms(lab: Lab, batch_sizes: tuple[int, ...] = NORM_BATCH_SIZES,
                  steps: int = NORM_STEPS) -> Numbers:
    data = load("digits")
    kinds = ("none", "batch norm", "layer norm")
    out: Numbers = {"batch_sizes": list(batch_sizes), "steps": steps, "runs": {}}
    with lab.task("batch norm vs layer norm", len(kinds) * len(batch_sizes)) as task:
        for kind in kinds:
            acc, dep, train_eval_gap = [], [], []
            for bs in batch_sizes:
                torch.manual_seed(lab.seed)
                model = mlp(data.features, data.classes, hidden=64, depth=2,
                            norm=_norm_factory(kind))
                opt = torch.optim.Adam(model.parameters(), lr=1e-3)
                epochs = math.ceil(steps * bs / len(data.X))
                sgd_steps(model, opt, data.X, data.y, batch_size=bs, epochs=epochs,
                          seed=lab.seed, drop_last=True, max_steps=steps)
                ev = evaluate(model, data.Xv, data.yv)
                acc.append(ev["accuracy"])
                dep.append(_batch_dependency(model, data.Xv, max(bs, 2), lab.seed))
                # train-mode (batch statistics) vs eval-mode (running statistics) predictions
                with torch.no_grad():
                    model.train()
                    state = {k: v.clone() for k, v in model.state_dict().items()}
                    chunks = [model(c) for c in data.Xv.split(max(bs, 2)) if len(c) > 1]
                    model.load_state_dict(state)
                    model.eval()
                    n = sum(len(c) for c in chunks)
                    agree = float((torch.cat(chunks).argmax(1) ==
                                   model(data.Xv[:n]).argmax(1)).float().mean())
                    model.train()
                train_eval_gap.append(1.0 - agree)
                task.advance()
            out["runs"][kind] = {"val_accuracy": acc, "batch_dependency": dep,
                                 "train_eval_disagreement": train_eval_gap,
                                 # per seed: what batch size 2 costs against the best size
                                 "drop": max(acc) - acc[0]}
    return out


def conclude_norms(n: Numbers) -> Conclusion:
    bss = n["batch_sizes"]
    bn, ln = n["runs"]["batch norm"], n["runs"]["layer norm"]
    obs = [f"{kind}: validation accuracy "
           + ", ".join(f"{a:.1%} (batch {bs})" for bs, a in zip(bss, run["val_accuracy"], strict=False))
           for kind, run in n["runs"].items()]
    obs.append("how much one sample's output (train mode) moves when the rest of its batch "
               "changes: batch norm " + ", ".join(fmt(v) for v in bn["batch_dependency"])
               + "; layer norm " + ", ".join(fmt(v) for v in ln["batch_dependency"]))
    obs.append("train-mode vs eval-mode prediction disagreement on validation data: batch norm "
               + ", ".join(f"{v:.1%}" for v in bn["train_eval_disagreement"])
               + "; layer norm " + ", ".join(f"{v:.1%}" for v in ln["train_eval_disagreement"]))
    bn_drop, ln_drop = bn["drop"], ln["drop"]
    # float32 round-off vs a real dependence; 5 accuracy points: past the seed noise of a
    # 540-sample validation set (binomial sd ~1 point)
    crit = [below("layer norm: largest change of a sample's output with its batch",
                  max(ln["batch_dependency"]), 1e-5),
            above("batch norm: smallest change of a sample's output with its batch",
                  min(bn["batch_dependency"]), 1e-3),
            above(f"accuracy lost at batch {bss[0]}: batch norm − layer norm",
                  bn_drop - ln_drop, 0.05)]
    shown = decided(crit)
    if shown:
        text = (f"Batch norm normalises each feature over the batch, so a sample's output "
                f"depends on the other samples in its batch (it moved by up to "
                f"{fmt(max(bn['batch_dependency']))}) and training uses batch statistics while "
                f"evaluation uses running averages. With batches of {bss[0]} those statistics "
                f"are noise: validation accuracy falls to {bn['val_accuracy'][0]:.0%} from "
                f"{max(bn['val_accuracy']):.0%}. Layer norm normalises each sample over its own "
                f"features — no batch dependency (≤ {fmt(max(ln['batch_dependency']))}), the "
                f"same computation in training and evaluation — and loses "
                f"{max(ln_drop, 0):.0%} at batch {bss[0]}. Use layer norm for small or variable "
                f"batches and sequence models; batch norm where batches are large.")
    else:
        text = (f"This run did not show batch norm's batch-size dependence clearly: its "
                f"accuracy at batch {bss[0]} is {bn['val_accuracy'][0]:.0%} (best "
                f"{max(bn['val_accuracy']):.0%}); layer norm {ln['val_accuracy'][0]:.0%}.")
    return Conclusion(shown, text, obs, crit)


def draw_norms(n: Numbers) -> list[Plot]:
    fig, (a, b) = new_figure(width=10, height=3.6, ncols=2)
    for i, (kind, run) in enumerate(n["runs"].items()):
        line(a, n["batch_sizes"], run["val_accuracy"], "o-", color=COLORS[i], label=kind)
        dep = run["batch_dependency"]
        b.errorbar(n["batch_sizes"], [max(float(v), 1e-9) for v in dep],
                   yerr=[sd_of(v) for v in dep], fmt="o-", capsize=3, color=COLORS[i],
                   label=kind)
    a.set(xscale="log", title=f"validation accuracy after {n['steps']} updates",
          xlabel="batch size", ylabel="accuracy")
    b.set(xscale="log", yscale="log", title="one sample's output vs the rest of its batch",
          xlabel="batch size", ylabel="max |change| (train mode)")
    for ax in (a, b):
        ax.set_xticks(n["batch_sizes"], [str(s) for s in n["batch_sizes"]])
        ax.xaxis.set_minor_locator(NullLocator())  # log-scale minor labels overlapped these
        grid_legend(ax, fontsize=8)
    return [Plot("Batch norm vs layer norm across batch sizes", fig,
                 "3-layer MLP on digits, Adam 1e-3; mean over seeds, band / bars ± one "
                 "standard deviation")]


NORMS = register(Topic(
    name="batchnorm-layernorm",
    question="Compare batch norm and layer norm (and how batch norm depends on the batch size)",
    questions=(17,),
    codes=("batch-dependency", "dropout-before-batchnorm"),
    advice="The skeleton stage's batch-dependency check (the gradient of sample i's loss on "
           "input j) notices batch norm in train mode; dropout placed before batch norm is "
           "reported as dropout-before-batchnorm.",
    setup="A 64-64-64-10 MLP on scikit-learn digits with no normalisation, BatchNorm1d or "
          "LayerNorm after each hidden Linear; Adam 1e-3 for the same 200 updates at batch sizes "
          "2, 8 and 64. Validation in eval mode; batch dependency measured in train mode by "
          "swapping the other samples of a batch.",
    measure=measure_norms, conclude=conclude_norms, draw=draw_norms,
))
