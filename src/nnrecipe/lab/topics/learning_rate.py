"""The learning rate: too high / too low / acceptable (Q15), warmup (Q16), decay and when it
does not help (Q20), and how to scale it with the batch size (Q23)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe.core.fit import Callback
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
    ratio_below,
    register,
)
from nnrecipe.lab.common import (
    evaluate,
    fired,
    fmt,
    grid_legend,
    line,
    load,
    mlp,
    sgd_steps,
    smooth,
    train_watched,
)
from nnrecipe.report.plots import COLORS, new_figure

LN10 = math.log(10)  # the loss of a uniform guess over digits' 10 classes

# ------------------------------------------------------------- too high / too low / acceptable
# SGD on a 64-64-64-10 MLP, 10 epochs. Chosen from a sweep (seeds 0-2): 0.002 still at
# 2.24-2.26 after 10 epochs; 0.1 at 0.054-0.059; 1.0 oscillates between 0.2 and 1.8;
# 3.0 blows up (NaN, or a jump to ~12 and then stuck at chance, 2.33).
LR_ARMS = {"too low": 0.002, "acceptable": 0.1, "high": 1.0, "too high": 3.0}
RISE = 0.10  # an epoch whose mean loss is 10% above the previous one: the curve went up


class UpdateRatio(Callback):
    """Records ||w_t - w_(t-1)|| / ||w_(t-1)|| over all parameters at every step."""

    def __init__(self) -> None:
        self.ratios: list[float] = []
        self._prev: torch.Tensor | None = None

    @staticmethod
    def _flat(model: nn.Module) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self._prev = self._flat(model)

    def on_step_end(self, step: int, loss: float, model: nn.Module,
                    optimizer: torch.optim.Optimizer) -> str | None:
        now = self._flat(model)
        assert self._prev is not None
        self.ratios.append(float((now - self._prev).norm() / self._prev.norm().clamp_min(1e-12)))
        self._prev = now
        return None


def measure_lr(lab: Lab, epochs: int = 10, arms: dict[str, float] | None = None) -> Numbers:
    data = load("digits")
    arms = arms or LR_ARMS
    out: Numbers = {"epochs": epochs, "runs": {}}
    with lab.task("learning rates", len(arms)) as task:
        for name, lr in arms.items():
            ratio = UpdateRatio()
            w = train_watched(data, lambda: mlp(data.features, data.classes, hidden=64, depth=2),
                              optimizer=lambda p, lr=lr: torch.optim.SGD(p, lr=lr),
                              epochs=epochs, seed=lab.seed, callbacks=[ratio])
            model, history = w.model, w.history
            ep = history.train_losses()
            out["runs"][name] = {
                "findings": w.findings(),
                "lr": lr, "epoch_train_loss": ep,
                "rises": sum(1 for a, b in zip(ep, ep[1:], strict=False) if b > (1 + RISE) * a),
                "step_losses_example": history.step_losses, "stopped": history.stopped_reason,
                "val_accuracy": evaluate(model, data.Xv, data.yv)["accuracy"],
                "update_ratio": float(np.median(ratio.ratios)) if ratio.ratios else math.nan,
            }
            task.advance()
    return out


def _last(values: list[float]) -> float:
    return values[-1] if values and math.isfinite(values[-1]) else math.inf


def conclude_lr(n: Numbers) -> Conclusion:
    runs = n["runs"]
    low, ok, high = runs["too low"], runs["acceptable"], runs["too high"]
    obs = []
    rises = {name: r["rises"] for name, r in runs.items()}
    for name, r in runs.items():
        ep = r["epoch_train_loss"]
        state = ("stopped: " + r["stopped"]) if r["stopped"] != "completed" else \
            f"final epoch loss {fmt(_last(ep))}"
        obs.append(f"{name} (lr {r['lr']:g}): first epoch {fmt(ep[0])}, {state}; the epoch "
                   f"loss rose in {fmt(rises[name])} of {len(ep) - 1} epochs; validation accuracy "
                   f"{r['val_accuracy']:.0%}; median update/weight ratio {fmt(r['update_ratio'])}; "
                   f"nnrecipe's monitor: {fired(r.get('findings', []))}")
    low_ep = low["epoch_train_loss"]
    # lines from reasoning, in units of chance (ln 10): "crawls" = still above half of chance
    # while falling; "fails" = NaN or back at chance; "converges" = below a quarter of chance
    crit = [above("too low: final epoch loss / ln 10", _last(low_ep) / LN10, 0.5),
            above("too low: first − final epoch loss (still falling)",
                  low_ep[0] - _last(low_ep), 0.0),
            check("too high: NaN, or a final loss at chance (> 0.9 ln 10)",
                  _last(high["epoch_train_loss"]) > 0.9 * LN10 or
                  high["stopped"] != "completed"),
            below("acceptable: final epoch loss / ln 10",
                  _last(ok["epoch_train_loss"]) / LN10, 0.25)]
    low_slow = crit[0].holds and crit[1].holds
    high_bad = crit[2].holds
    ok_good = crit[3].holds
    shown = decided(crit)
    if shown:
        text = (f"Too low (lr {low['lr']:g}): the training loss falls, but slowly and steadily — "
                f"after {n['epochs']} epochs it is still {fmt(_last(low_ep))}, near the "
                f"{fmt(LN10)} of a uniform guess; the weights change by only "
                f"{fmt(low['update_ratio'])} of their size per step. Acceptable (lr "
                f"{ok['lr']:g}): a fast drop, then a slow decline, to {fmt(_last(ok['epoch_train_loss']))}. "
                f"Too high (lr {high['lr']:g}): the loss jumps up in the first steps and the run "
                + ("becomes NaN" if high["stopped"] != "completed" else
                   f"ends at {fmt(_last(high['epoch_train_loss']))}, no better than chance")
                + "."
                + (f" In between (lr {runs['high']['lr']:g}) the loss falls fast at first, then "
                   f"goes up again in {fmt(rises['high'])} of the epochs: the first sign of a "
                   f"rate that is slightly too high." if "high" in runs and rises["high"] else ""))
    else:
        text = ("The curves did not separate as expected in this run: "
                + ("the low rate was not slow; " if not low_slow else "")
                + ("the high rate did not fail; " if not high_bad else "")
                + ("the acceptable rate did not reach a low loss." if not ok_good else ""))
    return Conclusion(shown, text, obs, crit)


def draw_lr(n: Numbers) -> list[Plot]:
    fig, (a, b) = new_figure(width=10, height=3.6, ncols=2)
    for i, (name, r) in enumerate(n["runs"].items()):
        ep = r["epoch_train_loss"]
        line(a, range(1, len(ep) + 1), ep, "o-", ms=3, color=COLORS[i],
             label=f"{name} (lr {r['lr']:g})")
        steps = [min(v, 50) if math.isfinite(v) else np.nan for v in r["step_losses_example"]]
        b.plot(steps, color=COLORS[i], lw=0.8, label=name)
    a.axhline(LN10, ls="--", color=COLORS[5], lw=1, label="chance (ln 10)")
    a.set(title="training error vs epochs", xlabel="epoch", ylabel="mean training loss",
          yscale="log")
    b.set(title="every step (capped at 50; one seed)", xlabel="step", ylabel="loss",
          yscale="log")
    grid_legend(a, b, fontsize=7)
    return [Plot("Training loss vs epochs for four learning rates", fig,
                 "SGD on a 3-hidden-layer MLP, scikit-learn digits; left: mean ± sd over the "
                 "seeds, right: the first seed's steps")]


LR_HIGH_LOW = register(Topic(
    name="lr-high-low",
    question="Training error vs epochs when the learning rate is too high, too low, acceptable",
    questions=(15,),
    codes=("lr-too-high", "lr-too-low", "loss-diverging", "loss-nonfinite", "update-ratio"),
    advice="The train-stage monitor reads the same curves: spikes and epoch-to-epoch rises "
           "(lr-too-high), a loss that falls too slowly while the weights barely move "
           "(lr-too-low), a loss that climbs (loss-diverging); `nnrecipe lr` suggests a rate.",
    setup="A 64-64-64-10 ReLU MLP on scikit-learn digits trained by nnrecipe's trainer with "
          "plain SGD (batch 32) for 10 epochs at learning rates 0.002, 0.1, 1 and 3, same seed.",
    measure=measure_lr, conclude=conclude_lr, draw=draw_lr,
))


# ---------------------------------------------------------------------------------- warmup
WARMUP_LR = 0.03  # Adam on a 6-layer LayerNorm MLP: unstable without warmup (see tests)
WARMUP_STEPS = 50


def warmup_schedule(steps: int) -> Any:
    """A scheduler factory for fit(): linear warmup over ``steps``, then constant."""
    def factory(optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / steps))
    return factory


def measure_warmup(lab: Lab, epochs: int = 3, lr: float = WARMUP_LR,
                   warmup: int = WARMUP_STEPS) -> Numbers:
    data = load("digits")
    out: Numbers = {"lr": lr, "warmup": warmup, "epochs": epochs, "runs": {}}
    with lab.task("warmup", 2) as task:
        for name, sched in (("no warmup", None), (f"{warmup}-step warmup",
                                                  warmup_schedule(warmup))):
            ratio = UpdateRatio()
            w = train_watched(
                data, lambda: mlp(data.features, data.classes, hidden=64, depth=6,
                                  norm=nn.LayerNorm),
                optimizer=lambda p: torch.optim.Adam(p, lr=lr), epochs=epochs, seed=lab.seed,
                scheduler=sched, callbacks=[ratio])
            model, history = w.model, w.history
            losses = history.step_losses
            out["runs"][name] = {
                "findings": w.findings(),
                "step_losses": losses, "lrs": history.step_lrs,
                "update_ratios": ratio.ratios,
                "early_max_loss": max(losses[:warmup]),
                "final_loss": float(np.mean(losses[-20:])),
                "val_accuracy": evaluate(model, data.Xv, data.yv)["accuracy"],
            }
            task.advance()
    return out


def conclude_warmup(n: Numbers) -> Conclusion:
    cold, warm = n["runs"].values()
    names = list(n["runs"])
    first = [float(np.mean(r["update_ratios"][:5])) for r in (cold, warm)]
    obs = [f"{name}: largest loss in the first {n['warmup']} steps {fmt(r['early_max_loss'])}, "
           f"mean update/weight ratio over the first 5 steps {fmt(f)}, final loss "
           f"{fmt(r['final_loss'])}, validation accuracy {r['val_accuracy']:.1%}; nnrecipe's "
           f"monitor: {fired(r.get('findings', []))}"
           for name, r, f in zip(names, (cold, warm), first, strict=False)]
    # 0.2 nats: a gap well past the step-to-step noise of a 20-step mean at this loss
    crit = [above("final loss without − with warmup", cold["final_loss"] - warm["final_loss"],
                  0.2),
            above("validation accuracy with − without warmup",
                  warm["val_accuracy"] - cold["val_accuracy"], 0.0)]
    shown = decided(crit)
    if shown:
        text = (f"Adam's first updates move every weight by about the learning rate whatever its "
                f"gradient (m/√v ≈ ±1 when the moment estimates hold one sample), so at lr "
                f"{n['lr']:g} the first steps change the weights by {fmt(first[0])} of their size "
                f"— the healthy rule of thumb is ~1e-3 — and the loss jumps to "
                f"{fmt(cold['early_max_loss'])}. The run never recovers fully (final loss "
                f"{fmt(cold['final_loss'])}, {cold['val_accuracy']:.0%} accuracy). Ramping the "
                f"rate up over {n['warmup']} steps starts with updates of {fmt(first[1])} while "
                f"the moment estimates and the early, large-gradient phase settle, then trains "
                f"at the same peak rate to {fmt(warm['final_loss'])} ({warm['val_accuracy']:.0%}).")
    else:
        text = (f"Warmup did not help in this run: final loss {fmt(warm['final_loss'])} with "
                f"warmup vs {fmt(cold['final_loss'])} without.")
    return Conclusion(shown, text, obs, crit)


def draw_warmup(n: Numbers) -> list[Plot]:
    fig, (a, b) = new_figure(width=10, height=3.6, ncols=2)
    for i, (name, r) in enumerate(n["runs"].items()):
        line(a, None, smooth(r["step_losses"], 5), color=COLORS[i], label=name)
        line(b, None, r["update_ratios"], color=COLORS[i], label=name, lw=0.9)
        b.set_yscale("log")
    a.axvline(n["warmup"], color=COLORS[5], ls=":", lw=1, label="end of warmup")
    b.axhline(1e-3, color=COLORS[5], ls="--", lw=1, label="~1e-3 rule of thumb")
    a.set(title="training loss (5-step mean)", xlabel="step", ylabel="cross-entropy")
    b.set(title="update size ||Δw|| / ||w||", xlabel="step", ylabel="ratio")
    grid_legend(a, b, fontsize=8)
    return [Plot("Learning-rate warmup", fig,
                 f"Adam at lr {n['lr']:g} on a 6-layer LayerNorm MLP (digits)")]


WARMUP = register(Topic(
    name="warmup",
    question="What's learning rate warmup? Why do we need it?",
    questions=(16,),
    codes=("lr-too-high", "update-ratio", "loss-diverging"),
    advice="The monitor's update-to-weight ratio shows the size of the first steps; when the "
           "loss spikes early (lr-too-high) the finding suggests warmup alongside a lower rate.",
    setup="A 6-hidden-layer MLP (64 units, LayerNorm, ReLU) on scikit-learn digits, Adam at lr "
          "0.03 for 3 epochs through nnrecipe's trainer, without and with a 50-step linear "
          "warmup (a scheduler factory passed to fit), same seed.",
    measure=measure_warmup, conclude=conclude_warmup, draw=draw_warmup,
))


# --------------------------------------------------------------------------------- LR decay
LABEL_NOISE = 0.2  # noisy labels keep minibatch gradients noisy at the optimum


def _noisy_labels(y: torch.Tensor, classes: int, fraction: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    flip = torch.rand(len(y), generator=g) < fraction
    return torch.where(flip, torch.randint(0, classes, (len(y),), generator=g), y)


def _full_loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(X), y))


def _decay_run(X: torch.Tensor, y: torch.Tensor, *, lr: float, batch: int, epochs: int,
               cosine: bool, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = mlp(X.shape[1], 10, hidden=32, depth=1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(X) / batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if cosine else None
    curve: list[float] = []
    every = max(1, steps // 40)

    def on_step(i: int, loss: float) -> None:
        if i % every == every - 1:
            curve.append(_full_loss(model, X, y))

    sgd_steps(model, opt, X, y, batch_size=batch, epochs=epochs, seed=seed, scheduler=sched,
              on_step=on_step)
    return {"full_loss_curve": curve, "every": every, "final_full_loss": _full_loss(model, X, y)}


def measure_decay(lab: Lab, epochs: int = 4, gd_steps: int = 200, gd_samples: int = 256
                  ) -> Numbers:
    data = load("digits")
    y = _noisy_labels(data.y, data.classes, LABEL_NOISE, lab.seed + 100)
    out: Numbers = {"epochs": epochs, "gd_steps": gd_steps, "label_noise": LABEL_NOISE,
                    "minibatch": {}, "full_batch": {}}
    with lab.task("LR decay", 4) as task:
        for name, cosine in (("constant", False), ("cosine decay", True)):
            # mini-batch SGD: batch 8, lr 0.3 (seeds 0-4: constant ends at 0.96-2.27, cosine
            # at 0.81-0.82 — decay removes the noise floor)
            out["minibatch"][name] = _decay_run(data.X, y, lr=0.3, batch=8, epochs=epochs,
                                                cosine=cosine, seed=lab.seed)
            task.advance()
            # full-batch gradient descent: no gradient noise, nothing for decay to average out
            Xs, ys = data.X[:gd_samples], y[:gd_samples]
            out["full_batch"][name] = _decay_run(Xs, ys, lr=2.0, batch=len(Xs), epochs=gd_steps,
                                                 cosine=cosine, seed=lab.seed)
            task.advance()
    return out


def conclude_decay(n: Numbers) -> Conclusion:
    mb, gd = n["minibatch"], n["full_batch"]
    mc, md = mb["constant"]["final_full_loss"], mb["cosine decay"]["final_full_loss"]
    gc, gdd = gd["constant"]["final_full_loss"], gd["cosine decay"]["final_full_loss"]
    tail = mb["constant"]["full_loss_curve"][len(mb["constant"]["full_loss_curve"]) // 2:]
    obs = [
        f"mini-batch SGD (batch 8, {n['label_noise']:.0%} noisy labels): final full training "
        f"loss {fmt(mc)} at a constant rate vs {fmt(md)} with cosine decay; over the second "
        f"half the constant-rate loss wanders between {fmt(min(tail))} and {fmt(max(tail))}",
        f"full-batch gradient descent ({n['gd_steps']} steps): {fmt(gc)} constant vs "
        f"{fmt(gdd)} with decay",
    ]
    # 5% either way: past the seed-to-seed noise of the final full-data loss (see the tests)
    crit = [ratio_below("mini-batch: final loss with cosine decay / constant rate", md / mc,
                        0.95),
            ratio_above("full batch: final loss with cosine decay / constant rate", gdd / gc,
                        1.05)]
    helps, exception = crit[0].holds, crit[1].holds
    shown = decided(crit)
    if shown:
        text = (f"With mini-batches the gradient is noisy, so at a constant rate the weights keep "
                f"bouncing around the minimum at a distance set by the rate (loss between "
                f"{fmt(min(tail))} and {fmt(max(tail))}); decaying the rate shrinks the bounce "
                f"and the loss settles lower ({fmt(md)} vs {fmt(mc)}). The exception: with the "
                f"full batch there is no noise to average out, and decay only slows the descent "
                f"({fmt(gdd)} vs {fmt(gc)} at a constant rate). Decay also hurts when it starts "
                f"before the model has converged, and is unnecessary with a rate that is already "
                f"small — test a constant rate first, as the recipe says.")
    else:
        text = ("This run did not show both effects: "
                + ("decay did not lower the mini-batch loss; " if not helps else "")
                + ("decay did not hurt full-batch descent." if not exception else ""))
    return Conclusion(shown, text, obs, crit)


def draw_decay(n: Numbers) -> list[Plot]:
    fig, (a, b) = new_figure(width=10, height=3.6, ncols=2)
    for ax, key, title in ((a, "minibatch", "mini-batch SGD (batch 8)"),
                           (b, "full_batch", "full-batch gradient descent")):
        for i, (name, r) in enumerate(n[key].items()):
            xs = [(j + 1) * r["every"] for j in range(len(r["full_loss_curve"]))]
            line(ax, xs, r["full_loss_curve"], color=COLORS[i], label=name)
        ax.set(title=title, xlabel="step", ylabel="full training loss", yscale="log")
        grid_legend(ax, fontsize=8)
    return [Plot("Learning-rate decay: where it helps and where it does not", fig,
                 "digits with 20% noisy labels, a 32-unit MLP")]


DECAY = register(Topic(
    name="lr-decay",
    question="Why reduce the learning rate during training, and when does it not help?",
    questions=(20,),
    codes=("weights-fluctuating", "loss-plateau"),
    advice="The recipe: train at a constant rate first and add decay last (nnrecipe's trainer "
           "is constant by default); the monitor reports a validation loss that jitters while "
           "the weights keep moving (weights-fluctuating), which is what decay fixes.",
    setup="A 64-32-10 MLP on scikit-learn digits with 20% of the training labels replaced at "
          "random. Mini-batch SGD (batch 8, lr 0.3, 4 epochs) and full-batch gradient descent on "
          "256 samples (lr 2, 200 steps), each at a constant rate and with cosine decay to 0.",
    measure=measure_decay, conclude=conclude_decay, draw=draw_decay,
))


# ----------------------------------------------------------------- LR vs batch size scaling
SCALE_BASE_BATCH, SCALE_BASE_LR = 16, 0.04
SCALE_BATCHES = (16, 64, 256, 1024)


def measure_scaling(lab: Lab, epochs: int = 5, batches: tuple[int, ...] = SCALE_BATCHES
                    ) -> Numbers:
    data = load("digits")
    rules = {"same lr": lambda b: SCALE_BASE_LR,
             "lr x sqrt(B)": lambda b: SCALE_BASE_LR * math.sqrt(b / SCALE_BASE_BATCH),
             "lr x B (linear)": lambda b: SCALE_BASE_LR * b / SCALE_BASE_BATCH}
    out: Numbers = {"epochs": epochs, "batches": list(batches), "rules": {}}
    with lab.task("LR vs batch size", len(rules) * len(batches)) as task:
        for rule, lr_of in rules.items():
            runs = {}
            for b in batches:
                torch.manual_seed(lab.seed)
                model = mlp(data.features, data.classes, hidden=32, depth=1)
                opt = torch.optim.SGD(model.parameters(), lr=lr_of(b))
                curve: list[float] = []
                sgd_steps(model, opt, data.X, data.y, batch_size=b, epochs=epochs, seed=lab.seed,
                          on_epoch=lambda e, m=model, c=curve: c.append(
                              _full_loss(m, data.X, data.y)))
                runs[str(b)] = {"lr": lr_of(b), "epoch_loss": curve}
                task.advance()
            out["rules"][rule] = runs
    # per seed: the spread over all but the largest batch (the largest probes the rule's limit)
    out["spreads"] = {rule: _spread(dict(list(runs.items())[:-1]))
                      for rule, runs in out["rules"].items()}
    return out


def _spread(runs: dict[str, Any]) -> float:
    """max/min ratio of the final loss across batch sizes (1 = identical)."""
    finals = [r["epoch_loss"][-1] if r["epoch_loss"] and math.isfinite(r["epoch_loss"][-1])
              else math.inf for r in runs.values()]
    return max(finals) / min(finals)


def conclude_scaling(n: Numbers) -> Conclusion:
    rules = n["rules"]
    spreads = n["spreads"]
    big = str(n["batches"][-1])
    lin = rules["lr x B (linear)"]
    lin_big = lin[big]["epoch_loss"][-1]
    lin_small = min(r["epoch_loss"][-1] for r in lin.values())
    breaks = not math.isfinite(lin_big) or lin_big > 1.3 * lin_small
    obs = [f"{rule}: final training loss after {n['epochs']} epochs "
           + ", ".join(f"{fmt(r['epoch_loss'][-1])} (batch {b}, lr {fmt(r['lr'])})"
                       for b, r in runs.items())
           + f"; largest/smallest up to batch {n['batches'][-2]}: {fmt(spreads[rule])}"
           for rule, runs in rules.items()]
    same, linear = spreads["same lr"], spreads["lr x B (linear)"]
    # "agree": within 20% of each other; the fixed rate must spread 3x more (reasoning: the
    # batch factor between the extremes compared is >= 8)
    crit = [ratio_below("largest / smallest final loss across batch sizes, linear rule",
                        linear, 1.2),
            ratio_above("that spread with a fixed rate / with the linear rule",
                        same / linear, 3.0)]
    shown = decided(crit)
    k = n["batches"][-2] // n["batches"][0]
    if shown:
        text = (f"With the same learning rate, a {k}x larger batch takes {k}x fewer steps per "
                f"epoch, each no bigger, so after {n['epochs']} epochs the loss differs by "
                f"x{fmt(same)} across batch sizes. A mini-batch gradient is an average: k times the batch "
                f"gives one step in the direction of k small steps, so multiplying the rate by "
                f"the batch-size factor (the linear scaling rule, for SGD) makes the runs nearly "
                f"identical per epoch (x{fmt(linear)}). The square-root rule (x"
                f"{fmt(spreads['lr x sqrt(B)'])}) keeps the noise of each step constant instead "
                f"and is the usual choice for Adam. "
                + (f"The linear rule has a limit: at batch {big} (lr {fmt(lin[big]['lr'])}) the "
                   f"run ends at {fmt(lin_big)} instead of ~{fmt(lin_small)} — the rate passed "
                   f"the stability limit; large-batch training adds warmup there."
                   if breaks else
                   f"It still held at batch {big} (lr {fmt(lin[big]['lr'])}); it breaks once "
                   f"the rate passes the stability limit, where large-batch training adds "
                   f"warmup."))
    else:
        text = (f"The linear scaling rule did not equalise the runs here (spread "
                f"x{fmt(linear)} vs x{fmt(same)} with a fixed rate).")
    return Conclusion(shown, text, obs, crit)


def draw_scaling(n: Numbers) -> list[Plot]:
    rules = list(n["rules"])
    fig, axes = new_figure(width=11, height=3.4, ncols=len(rules))
    for ax, rule in zip(axes, rules, strict=False):
        for i, (b, r) in enumerate(n["rules"][rule].items()):
            line(ax, range(1, len(r["epoch_loss"]) + 1), r["epoch_loss"], "o-", ms=3,
                 color=COLORS[i], label=f"batch {b} (lr {fmt(r['lr'])})")
        ax.set(title=rule, xlabel="epoch", ylabel="training loss", yscale="log")
        grid_legend(ax, fontsize=7)
    return [Plot("Learning rate vs batch size", fig,
                 "SGD on a 64-32-10 MLP (digits); loss per epoch for each batch size")]


SCALING = register(Topic(
    name="lr-batch-scaling",
    question="How should we adjust the learning rate as we increase or decrease the batch size?",
    questions=(23,),
    codes=("lr-too-low", "lr-too-high"),
    advice="When you change the batch size, scale the learning rate with it (linear for SGD, "
           "square root for Adam) and re-run `nnrecipe lr`; the monitor's lr-too-low / "
           "lr-too-high findings catch a rate left behind.",
    setup="A 64-32-10 MLP on scikit-learn digits, plain SGD for 5 epochs at batch sizes 16, "
          "64, 256 and 1024; the rate kept at 0.04, scaled by sqrt(B/16), or by B/16.",
    measure=measure_scaling, conclude=conclude_scaling, draw=draw_scaling,
))
