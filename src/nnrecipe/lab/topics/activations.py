"""Activation functions and their derivatives (seed questions 2-5), all from autograd.

``activations``: sigmoid, tanh, ReLU and leaky ReLU and their derivatives as autograd computes
them; what ReLU's gradient is at exactly 0; the sigmoid derivative checked against
sigma(1 - sigma), elementwise and as the Jacobian of a vector input.

``dead-relu``: units whose pre-activation is negative on every training input get exactly zero
gradient and stop learning; a too-large learning rate produces them, leaky ReLU keeps them
reachable.
"""

from __future__ import annotations

from collections.abc import Callable

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
    register,
)
from nnrecipe.lab.common import (
    diagnosed,
    evaluate,
    fired,
    fmt,
    grid_legend,
    load,
    mlp,
    sd_of,
    sgd_steps,
    watch,
)
from nnrecipe.report.plots import COLORS, new_figure

LEAKY_SLOPE = 0.01
FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": lambda x: nn.functional.leaky_relu(x, LEAKY_SLOPE),
}
# A derivative below 1% of the function's own maximum derivative: the unit passes back almost
# nothing (the usual informal meaning of "saturated").
SATURATED = 0.01
DEPTH = 10  # for "what this derivative does through a stack of layers"


def _derivative(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    y = f(x)
    (dy,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), dy.detach()


def measure_activations(lab: Lab, points: int = 481, samples: int = 100_000) -> Numbers:
    x = torch.linspace(-6, 6, points, dtype=torch.float64)
    z = torch.randn(samples, dtype=torch.float64, generator=torch.Generator().manual_seed(lab.seed))
    out: Numbers = {"x": x.tolist(), "functions": {}}
    for name, f in FUNCTIONS.items():
        y, dy = _derivative(f, x)
        _, dz = _derivative(f, z)
        fz = f(z)
        _, d0 = _derivative(f, torch.zeros(1, dtype=torch.float64))
        peak = float(dy.max())
        out["functions"][name] = {
            "y": y.tolist(), "dy": dy.tolist(),
            "max_derivative": peak, "argmax": round(float(x[int(dy.argmax())]), 6) + 0.0,
            "derivative_at_0": float(d0[0]),
            "saturated_fraction_normal": float((dz.abs() < SATURATED * peak).float().mean()),
            "zero_grad_fraction_normal": float((dz == 0).float().mean()),
            "mean_output_normal": float(fz.mean()),
            "gain_through_depth": peak ** DEPTH,
        }
    # the sigmoid derivative, checked against sigma * (1 - sigma)
    s, ds = _derivative(torch.sigmoid, x)
    out["sigmoid_formula_max_error"] = float((ds - s * (1 - s)).abs().max())
    v = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(lab.seed + 1))
    jac = torch.autograd.functional.jacobian(torch.sigmoid, v)
    sv = torch.sigmoid(v)
    out["jacobian_offdiag_max"] = float((jac - torch.diag(torch.diagonal(jac))).abs().max())
    out["jacobian_diag_error"] = float((torch.diagonal(jac) - sv * (1 - sv)).abs().max())
    out["jacobian"] = jac.tolist()
    return out


def conclude_activations(n: Numbers) -> Conclusion:
    f = n["functions"]
    sig, tanh, relu, leaky = f["sigmoid"], f["tanh"], f["relu"], f["leaky_relu"]
    formula_ok = n["sigmoid_formula_max_error"] < 1e-12 and n["jacobian_diag_error"] < 1e-12
    diagonal = n["jacobian_offdiag_max"] == 0.0
    obs = [
        f"autograd's sigmoid derivative differs from σ(x)(1−σ(x)) by at most "
        f"{fmt(n['sigmoid_formula_max_error'])} on [−6, 6]",
        f"for a vector input the Jacobian of the elementwise sigmoid is diagonal "
        f"(largest off-diagonal entry {fmt(n['jacobian_offdiag_max'])}), its diagonal is "
        f"σ(x)(1−σ(x)) to {fmt(n['jacobian_diag_error'])}",
        f"largest derivative: sigmoid {fmt(sig['max_derivative'])} at x={fmt(sig['argmax'])}, "
        f"tanh {fmt(tanh['max_derivative'])} at x={fmt(tanh['argmax'])}, ReLU "
        f"{fmt(relu['max_derivative'])}, leaky ReLU {fmt(leaky['max_derivative'])}",
        f"through {DEPTH} layers the best case gradient factor is "
        f"{fmt(sig['gain_through_depth'])} for sigmoid and {fmt(tanh['gain_through_depth'])} "
        f"for tanh",
        f"for N(0, 1) pre-activations: derivative below {SATURATED:.0%} of its peak for "
        f"{sig['saturated_fraction_normal']:.1%} (sigmoid) and "
        f"{tanh['saturated_fraction_normal']:.1%} (tanh); exactly zero for "
        f"{relu['zero_grad_fraction_normal']:.1%} (ReLU) and "
        f"{leaky['zero_grad_fraction_normal']:.1%} (leaky ReLU)",
        f"mean output for N(0, 1) inputs: sigmoid {fmt(sig['mean_output_normal'])} "
        f"(not zero-centred), tanh {fmt(tanh['mean_output_normal'])}, ReLU "
        f"{fmt(relu['mean_output_normal'])}",
        f"at exactly x=0 autograd returns {fmt(relu['derivative_at_0'])} for ReLU and "
        f"{fmt(leaky['derivative_at_0'])} for leaky ReLU",
    ]
    # float64 round-off is ~1e-16; 1e-12 leaves room for a few operations
    crit = [below("largest |autograd − σ(1−σ)| (elementwise and Jacobian diagonal)",
                  max(n["sigmoid_formula_max_error"], n["jacobian_diag_error"]), 1e-12),
            check("the sigmoid's Jacobian is diagonal", diagonal),
            check("ReLU's autograd derivative at 0 is a subgradient (0 or 1)",
                  relu["derivative_at_0"] in (0.0, 1.0))]
    shown = decided(crit) and formula_ok
    if shown:
        text = (f"ReLU is not differentiable at 0; PyTorch uses the subgradient "
                f"{fmt(relu['derivative_at_0'])} there (any value in [0, 1] is a valid "
                f"subgradient, and hitting exactly 0 is rare in float arithmetic). The sigmoid's "
                f"derivative is σ(1−σ) — autograd agrees "
                + ("exactly" if n["sigmoid_formula_max_error"] == 0 else
                   f"to {fmt(n['sigmoid_formula_max_error'])}")
                + f" — and for a vector it is the diagonal matrix diag(σ(1−σ)). Its peak of "
                f"{fmt(sig['max_derivative'])} shrinks a gradient to at most "
                f"{fmt(sig['gain_through_depth'])} through {DEPTH} layers, which is why deep "
                f"sigmoid nets vanish; tanh (peak {fmt(tanh['max_derivative'])}, zero-centred) "
                f"is better, ReLU passes gradient 1 but none for "
                f"{relu['zero_grad_fraction_normal']:.0%} of inputs, leaky ReLU never exactly 0.")
    else:
        text = ("The autograd derivatives did not match the textbook formulas here (see the "
                "numbers): the sigmoid check failed or ReLU's gradient at 0 is outside [0, 1].")
    return Conclusion(shown, text, obs, crit)


def draw_activations(n: Numbers) -> list[Plot]:
    fig, (a, b) = new_figure(width=10, height=3.6, ncols=2)
    for i, (name, f) in enumerate(n["functions"].items()):
        ls = "--" if name == "leaky_relu" else "-"
        a.plot(n["x"], f["y"], label=name, color=COLORS[i], lw=1.6, ls=ls)
        b.plot(n["x"], f["dy"], label=name, color=COLORS[i], lw=1.6, ls=ls)
    a.set(title="activation f(x)", xlabel="x", ylim=(-1.5, 3))
    b.set(title="derivative f'(x), from autograd", xlabel="x")
    grid_legend(a, b, fontsize=8)
    return [Plot("Activations and their autograd derivatives", fig,
                 "sigmoid, tanh, ReLU, leaky ReLU (slope 0.01)")]


ACTIVATIONS = register(Topic(
    name="activations",
    question="Sigmoid, tanh, ReLU, leaky ReLU: what they and their derivatives look like, "
             "ReLU at 0, and the sigmoid derivative",
    questions=(2, 3, 4, 5),
    codes=("saturated-activations", "vanishing-gradients", "dead-relu"),
    advice="The train-stage monitor records activations with forward hooks and reports "
           "saturated tanh/sigmoid units and ReLU units that are never active.",
    setup="Each activation evaluated on 481 points of [−6, 6] in float64; derivatives by "
          "torch.autograd.grad, never by formula; the sigmoid's vector Jacobian by "
          "torch.autograd.functional.jacobian; statistics over 100 000 N(0, 1) samples.",
    measure=measure_activations, conclude=conclude_activations, draw=draw_activations,
))


# ------------------------------------------------------------------------------- dead units
DEAD_BIG_LR = 0.1  # Adam at 0.1 on this MLP: ~95% of layer-2 ReLUs die (4 seeds, see tests)
DEAD_LR = 1e-3  # the recipe's safe Adam range


def dead_fractions(model: nn.Sequential, X: torch.Tensor) -> list[float]:
    """Per hidden layer: fraction of units whose pre-activation is <= 0 on every input."""
    fractions = []
    with torch.no_grad():
        h = X
        for layer in model:
            h = layer(h)
            if isinstance(layer, nn.Linear) and layer is not model[-1]:
                fractions.append(float((h.max(0).values <= 0).float().mean()))
    return fractions


def _zero_grad_units(model: nn.Sequential, X: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Per hidden layer: fraction of units whose incoming weights get exactly zero gradient."""
    model.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    linears = [m for m in model if isinstance(m, nn.Linear)][:-1]
    out = [float((lin.weight.grad.abs().sum(1) == 0).float().mean()) for lin in linears]
    model.zero_grad()
    return out


def measure_dead(lab: Lab, hidden: int = 64, depth: int = 3, burn_epochs: int = 3,
                 recover_epochs: int = 5) -> Numbers:
    data = load("digits")
    out: Numbers = {"hidden": hidden, "depth": depth, "runs": {}}
    arms = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(LEAKY_SLOPE)}
    with lab.task("dead units", 2 * len(arms)) as task:
        for name, act in arms.items():
            torch.manual_seed(lab.seed)
            model = mlp(data.features, data.classes, hidden=hidden, depth=depth, act=act)
            run: Numbers = {"dead_init": dead_fractions(model, data.X)}
            opt = torch.optim.Adam(model.parameters(), lr=DEAD_BIG_LR)
            mon = watch(model, opt)  # the train stage's monitor, as `nnrecipe train` runs it
            sgd_steps(model, opt, data.X, data.y, batch_size=32, epochs=burn_epochs, seed=lab.seed,
                      on_step=lambda i, v, mon=mon: mon.record_loss(v))
            run["findings"] = diagnosed(mon)
            task.advance()
            run["dead_after_big_lr"] = dead_fractions(model, data.X)
            run["zero_grad_after_big_lr"] = _zero_grad_units(model, data.X, data.y)
            for g in opt.param_groups:
                g["lr"] = DEAD_LR
            sgd_steps(model, opt, data.X, data.y, batch_size=32, epochs=recover_epochs,
                      seed=lab.seed + 1)
            task.advance()
            run["dead_after_recovery"] = dead_fractions(model, data.X)
            run["val_accuracy"] = evaluate(model, data.Xv, data.yv)["accuracy"]
            # the worst layer, per seed (a maximum does not survive averaging)
            for key in ("dead_init", "dead_after_big_lr", "zero_grad_after_big_lr",
                        "dead_after_recovery"):
                run[f"worst_{key}"] = max(run[key])
            out["runs"][name] = run
    # a healthy reference: the same ReLU net at the safe learning rate throughout
    torch.manual_seed(lab.seed)
    model = mlp(data.features, data.classes, hidden=hidden, depth=depth)
    opt = torch.optim.Adam(model.parameters(), lr=DEAD_LR)
    mon = watch(model, opt)
    sgd_steps(model, opt, data.X, data.y, batch_size=32, epochs=burn_epochs + recover_epochs,
              seed=lab.seed, on_step=lambda i, v: mon.record_loss(v))
    dead = dead_fractions(model, data.X)
    out["healthy"] = {"dead": dead, "worst_dead": max(dead), "findings": diagnosed(mon),
                      "val_accuracy": evaluate(model, data.Xv, data.yv)["accuracy"]}
    return out


def conclude_dead(n: Numbers) -> Conclusion:
    relu, leaky, healthy = n["runs"]["relu"], n["runs"]["leaky_relu"], n["healthy"]
    relu_dead = relu["worst_dead_after_big_lr"]
    relu_zero = relu["worst_zero_grad_after_big_lr"]
    relu_after = relu["worst_dead_after_recovery"]
    leaky_zero = leaky["worst_zero_grad_after_big_lr"]
    leaky_after = leaky["worst_dead_after_recovery"]
    healthy_dead = healthy["worst_dead"]
    obs = [
        f"at initialisation no layer has more than {relu['worst_dead_init']:.0%} dead units",
        f"after {DEAD_BIG_LR:g} (Adam) for a few epochs: up to {relu_dead:.0%} of a layer's ReLU "
        f"units are never active on the training set, and {relu_zero:.0%} get exactly zero "
        f"gradient",
        f"after lowering the learning rate to {DEAD_LR:g}: still {relu_after:.0%} dead ReLUs; "
        f"validation accuracy {relu['val_accuracy']:.1%}",
        f"leaky ReLU under the same schedule: {leaky_zero:.0%} zero-gradient units, "
        f"{leaky_after:.0%} never active after recovery, validation accuracy "
        f"{leaky['val_accuracy']:.1%}",
        f"the same ReLU net at {DEAD_LR:g} throughout: at most {healthy_dead:.0%} dead, "
        f"validation accuracy {healthy['val_accuracy']:.1%}",
        f"nnrecipe's monitor during the lr-{DEAD_BIG_LR:g} phase: {fired(relu.get('findings', []))} "
        f"(ReLU), {fired(leaky.get('findings', []))} (leaky ReLU: its hooks watch ReLU units "
        f"only); on the healthy run: {fired(healthy.get('findings', []))}",
    ]
    # "many dead": 30% of a layer, far past the 0-2% a healthy ReLU layer shows
    crit = [above("worst layer: ReLUs never active after the large rate", relu_dead, 0.3),
            above("worst layer: ReLUs with exactly zero gradient", relu_zero, 0.3),
            below("worst layer: leaky ReLUs with exactly zero gradient", leaky_zero, 1e-9),
            above("dead ReLUs after the large rate − at a sane rate throughout",
                  relu_dead - healthy_dead, 0.0)]
    shown = decided(crit)
    if shown:
        text = (f"A too-large learning rate killed up to {relu_dead:.0%} of a layer's ReLUs: their "
                f"pre-activation is negative for every training input, so their gradient is "
                f"exactly 0 ({relu_zero:.0%} of units) and a lower learning rate afterwards "
                f"revives few of them ({relu_after:.0%} still dead). Leaky ReLU always passes "
                f"gradient ({leaky_zero:.0%} zero-gradient units), and the same ReLU net at a "
                f"sane learning rate keeps {1 - healthy_dead:.0%} of its units alive.")
    else:
        text = (f"This run did not produce many dead ReLUs (at most {relu_dead:.0%} of a layer, "
                f"{relu_zero:.0%} with zero gradient; leaky ReLU {leaky_zero:.0%}).")
    return Conclusion(shown, text, obs, crit)


def draw_dead(n: Numbers) -> list[Plot]:
    fig, (ax,) = new_figure(width=7, height=3.4)
    series: dict[str, list[float]] = {}
    for name, run in n["runs"].items():
        for phase in ("dead_init", "dead_after_big_lr", "dead_after_recovery"):
            series.setdefault(name, []).append(run[f"worst_{phase}"])
    phases = ["at init", f"after lr {DEAD_BIG_LR:g}", f"after lr {DEAD_LR:g}"]
    width = 0.38
    for i, (name, values) in enumerate(series.items()):
        ax.bar([j + (i - 0.5) * width for j in range(3)], [float(v) for v in values], width,
               yerr=[sd_of(v) for v in values], capsize=3, label=name, color=COLORS[i])
    ax.axhline(n["healthy"]["worst_dead"], ls="--", color=COLORS[2], lw=1,
               label=f"ReLU at lr {DEAD_LR:g} throughout")
    ax.set_xticks(range(3), phases)
    ax.set(ylabel="never-active units (worst layer)", ylim=(0, 1),
           title="Dead units: a large learning rate kills ReLUs")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return [Plot("Fraction of hidden units never active on the training set", fig,
                 "worst hidden layer of a 3-layer MLP on digits; error bars: ± one standard "
                 "deviation over the seeds")]


DEAD_RELU = register(Topic(
    name="dead-relu",
    question="ReLU is not differentiable at 0 — and what happens to units stuck below 0?",
    questions=(3, 4),
    codes=("dead-relu", "lr-too-high"),
    advice="The train-stage monitor counts, per layer, the ReLU units that are never active "
           "on a batch and reports dead-relu.",
    setup="A 64-64-64-64-10 ReLU MLP on scikit-learn digits, Adam at lr 0.1 for 3 epochs "
          "(too high), then at lr 1e-3 for 5; the same with leaky ReLU (slope 0.01); a reference "
          "ReLU net at lr 1e-3 throughout. A unit is dead when its pre-activation is <= 0 on "
          "every training input.",
    measure=measure_dead, conclude=conclude_dead, draw=draw_dead,
))
