"""Data, models and small loops the lab's topics share.

The data ship with scikit-learn (digits, wine, breast cancer, iris), split stratified and
standardised with the *training* statistics. Tensors are cached and shared: topics must not
modify them in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe.core.context import Context
from nnrecipe.core.fit import Callback, FitHistory, SchedulerFactory, fit
from nnrecipe.experiment import Experiment
from nnrecipe.lab.spread import Band, fmt_spread, with_sd


@dataclass(frozen=True)
class Data:
    name: str
    X: torch.Tensor  # train inputs, float32, standardised
    y: torch.Tensor  # train targets, int64 class labels
    Xv: torch.Tensor
    yv: torch.Tensor
    classes: int

    @property
    def features(self) -> int:
        return int(self.X.shape[1])

    def subset(self, n: int) -> Data:
        """The first ``n`` training samples (the split is already shuffled)."""
        return Data(f"{self.name}[:{n}]", self.X[:n], self.y[:n], self.Xv, self.yv, self.classes)


@lru_cache(maxsize=8)
def load(name: str = "digits", seed: int = 0, val_fraction: float = 0.3) -> Data:
    """A scikit-learn dataset as flat standardised tensors, split stratified."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    loaders = {"digits": datasets.load_digits, "wine": datasets.load_wine,
               "breast_cancer": datasets.load_breast_cancer, "iris": datasets.load_iris}
    X, y = loaders[name](return_X_y=True)
    X_tr, X_va, y_tr, y_va = train_test_split(X.astype(np.float64), y, test_size=val_fraction,
                                              stratify=y, random_state=seed)
    mean, std = X_tr.mean(0), X_tr.std(0)
    std[std == 0] = 1.0  # digits has pixels that are always 0
    def t(a: np.ndarray) -> torch.Tensor:
        return torch.tensor((a - mean) / std, dtype=torch.float32)
    return Data(name, t(X_tr), torch.tensor(y_tr, dtype=torch.int64), t(X_va),
                torch.tensor(y_va, dtype=torch.int64), int(len(np.unique(y))))


def mlp(d_in: int, d_out: int, hidden: int = 32, depth: int = 1,
        act: Callable[[], nn.Module] = nn.ReLU, norm: Callable[[int], nn.Module] | None = None,
        dropout: float = 0.0) -> nn.Sequential:
    """``depth`` hidden layers of ``hidden`` units: Linear [-> norm] -> act [-> dropout]."""
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers.append(nn.Linear(d, hidden))
        if norm is not None:
            layers.append(norm(hidden))
        layers.append(act())
        if dropout:
            layers.append(nn.Dropout(dropout))
        d = hidden
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


def seeded_model(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return factory()


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
             loss_fn: Callable[..., torch.Tensor] | None = None) -> dict[str, float]:
    """Loss and accuracy in eval mode (mode restored)."""
    was = model.training
    model.eval()
    try:
        out = model(X)
    finally:
        model.train(was)
    loss = (loss_fn or nn.functional.cross_entropy)(out, y)
    acc = float((out.argmax(1) == y).float().mean()) if out.ndim == 2 and out.shape[1] > 1 else math.nan
    return {"loss": float(loss), "accuracy": acc}


def batches(n: int, batch_size: int, gen: torch.Generator, *, replacement: bool = False,
            drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Index batches for one epoch: a fresh permutation, or ``n`` draws with replacement."""
    idx = (torch.randint(0, n, (n,), generator=gen) if replacement
           else torch.randperm(n, generator=gen))
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        yield idx[i:i + batch_size]


def sgd_steps(model: nn.Module, opt: torch.optim.Optimizer, X: torch.Tensor, y: torch.Tensor,
              *, batch_size: int, epochs: int, seed: int,
              loss_fn: Callable[..., torch.Tensor] = nn.functional.cross_entropy,
              replacement: bool = False, drop_last: bool = False, max_steps: int | None = None,
              on_step: Callable[[int, float], None] | None = None,
              on_epoch: Callable[[int], None] | None = None,
              scheduler: Any = None) -> list[float]:
    """A plain loop over tensors (no DataLoader) for topics that need exact control and many
    tiny steps; returns the step losses. Stops at the first non-finite loss or ``max_steps``."""
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    for epoch in range(epochs):
        for idx in batches(len(X), batch_size, gen, replacement=replacement,
                           drop_last=drop_last):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
            v = float(loss.detach())
            losses.append(v)
            if on_step is not None:
                on_step(len(losses) - 1, v)
            if not math.isfinite(v) or (max_steps is not None and len(losses) >= max_steps):
                return losses
        if on_epoch is not None:
            on_epoch(epoch + 1)
    return losses


def context_for(train: tuple[torch.Tensor, torch.Tensor], model: Callable[..., nn.Module], *,
                optimizer: Callable[[Any], torch.optim.Optimizer],
                val: tuple[torch.Tensor, torch.Tensor] | None = None, batch_size: int = 32,
                epochs: int = 10, seed: int = 0, loss: nn.Module | None = None,
                task: str = "classification", name: str = "lab") -> Context:
    """A Context over an Experiment so a topic can use the shared trainer."""
    exp = Experiment(model=model, train=train, val=val, loss=loss or nn.CrossEntropyLoss(),
                     optimizer=optimizer, task=task, batch_size=batch_size, epochs=epochs,
                     seed=seed, name=name)
    return Context(exp, seed=seed)


def train(data: Data, model: Callable[..., nn.Module], *,
          optimizer: Callable[[Any], torch.optim.Optimizer], epochs: int, batch_size: int = 32,
          seed: int = 0, scheduler: SchedulerFactory | None = None,
          grad_clip: float | None = None, callbacks: Sequence[Callback] = (),
          restore_best: bool = False, validate: bool = True) -> tuple[nn.Module, FitHistory]:
    """Train with nnrecipe's trainer (``core.fit.fit``) on ``data``; returns model and history."""
    ctx = context_for((data.X, data.y), model, optimizer=optimizer,
                      val=(data.Xv, data.yv) if validate else None, batch_size=batch_size,
                      epochs=epochs, seed=seed)
    net = ctx.fresh_model(seed=seed)
    history = fit(ctx, net, epochs=epochs, scheduler=scheduler, grad_clip=grad_clip,
                  callbacks=callbacks, restore_best=restore_best, description="lab")
    return net, history


@dataclass
class Watched:
    """A run of nnrecipe's trainer with the train-stage monitor on, and its diagnosis."""

    model: nn.Module
    history: FitHistory
    recording: Any  # nnrecipe.train.Recording
    diagnosis: Any  # nnrecipe.train.Diagnosis

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.diagnosis.findings]

    def findings(self) -> list[dict[str, str]]:
        """The findings as plain rows (code, severity, message) for a topic's numbers."""
        return [{"code": f.code, "severity": f.severity.value, "message": f.message}
                for f in self.diagnosis.findings]


def train_watched(data: Data, model: Callable[..., nn.Module], *,
                  optimizer: Callable[[Any], torch.optim.Optimizer], epochs: int,
                  batch_size: int = 32, seed: int = 0, scheduler: SchedulerFactory | None = None,
                  grad_clip: float | None = None, callbacks: Sequence[Callback] = (),
                  monitor: dict[str, Any] | None = None,
                  baselines: dict[str, Any] | None = None, loss: nn.Module | None = None,
                  task: str = "classification") -> Watched:
    """Train as ``nnrecipe train`` does — the shared trainer with the train stage's
    :class:`~nnrecipe.train.Monitor` and end-of-epoch probe — and run its detectors.
    ``baselines`` has the skeleton stage's shape (``{"linear": {"loss": ..}, ...}``)."""
    from nnrecipe.train import Extras, Monitor, MonitorConfig, diagnose
    from nnrecipe.train.stage import EndOfEpochProbe, has_dropout

    ctx = context_for((data.X, data.y), model, optimizer=optimizer, val=(data.Xv, data.yv),
                      batch_size=batch_size, epochs=epochs, seed=seed, loss=loss, task=task)
    net = ctx.fresh_model(seed=seed)
    mon = Monitor(MonitorConfig(**(monitor or {})))
    probe = EndOfEpochProbe(ctx, mon)
    history = fit(ctx, net, epochs=epochs, scheduler=scheduler, grad_clip=grad_clip,
                  callbacks=[mon, probe, *callbacks], restore_best=False, description="lab")
    rec = mon.recording
    last = rec.epochs[-1] if rec.epochs else {}
    extras = Extras(train_mode_end=last.get("train_mode_loss"),
                    train_eval_end=last.get("train_eval_loss"), has_dropout=has_dropout(net),
                    baselines=baselines, where="this lab run")
    return Watched(net, history, rec, diagnose(rec, extras))


def watch(model: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
    """The train stage's Monitor attached to a plain loop: call ``.record_loss(v)`` each step
    (``sgd_steps(on_step=lambda i, v: mon.record_loss(v))``), then :func:`diagnosed`."""
    from nnrecipe.train import Monitor

    return Monitor().attach(model, optimizer)


def diagnosed(monitor: Any) -> list[dict[str, str]]:
    """Detach the monitor and run the train stage's detectors over what it recorded."""
    from nnrecipe.train import Extras, diagnose

    monitor.detach()
    diagnosis = diagnose(monitor.recording, Extras(where="this lab run"))
    return [{"code": f.code, "severity": f.severity.value, "message": f.message}
            for f in diagnosis.findings]


def fired(findings: list[dict[str, Any]]) -> str:
    """'code, code' or 'no finding'; over several seeds 'code (2 of 3 seeds)'."""
    def one(f: dict[str, Any]) -> str:
        if "of" in f and f["seeds"] < f["of"]:
            return f"{f['code']} ({f['seeds']} of {f['of']} seeds)"
        return str(f["code"])
    return ", ".join(one(f) for f in findings) or "no finding"


def linear_baseline(data: Data) -> dict[str, dict[str, float]]:
    """The skeleton stage's linear baseline, computed directly: logistic regression's
    validation loss and accuracy, in ``ctx.state["baselines"]`` shape."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=300).fit(data.X.numpy(), data.y.numpy())
    proba = torch.tensor(clf.predict_proba(data.Xv.numpy()), dtype=torch.float32)
    logp = proba.clamp_min(1e-8).log()
    return {"linear": {"loss": float(nn.functional.nll_loss(logp, data.yv)),
                       "accuracy": float((proba.argmax(1) == data.yv).float().mean())}}


def finite(values: Sequence[float], cap: float = 1e6) -> list[float]:
    """Values with NaN/inf replaced by ``cap`` (for plotting and comparisons)."""
    return [v if math.isfinite(v) else cap for v in values]


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average (for plotting noisy step losses); a curve averaged over seeds
    stays one (its spread smoothed the same way)."""
    out, acc = [], 0.0
    buf: list[float] = []
    for v in values:
        buf.append(v)
        acc += v
        if len(buf) > window:
            acc -= buf.pop(0)
        out.append(acc / len(buf))
    if not isinstance(values, Band):
        return out
    sds = smooth([v.sd if math.isfinite(v.sd) else 0.0 for v in values], window)
    return Band(with_sd(m, sd) for m, sd in zip(out, sds, strict=True))


def fmt(v: float) -> str:
    """A number for a sentence: 3 significant digits, scientific when tiny or huge; a mean
    over seeds as ``mean ± sd``."""
    return fmt_spread(v)


def sd_of(v: Any) -> float:
    """One standard deviation over seeds (0 for a plain number), for error bars."""
    sd = getattr(v, "sd", 0.0)
    return float(sd) if math.isfinite(sd) else 0.0


def line(ax: Any, xs: Sequence[float] | None, ys: Sequence[float], *args: Any,
         band: bool = True, **kw: Any) -> Any:
    """``ax.plot(xs, ys, ...)``; when ``ys`` is a curve averaged over seeds (a ``Band``) also
    shade mean ± one standard deviation in the line's colour."""
    xs = list(range(len(ys))) if xs is None else list(xs)
    n = min(len(xs), len(ys))
    def clean(vs: Sequence[float]) -> list[float]:
        return [float(v) if math.isfinite(v) else math.nan for v in vs[:n]]

    (artist,) = ax.plot(xs[:n], clean(ys), *args, **kw)
    if band and isinstance(ys, Band) and n:
        ax.fill_between(xs[:n], clean(ys.lo), clean(ys.hi), color=artist.get_color(),
                        alpha=0.18, lw=0)
    return artist


def grid_legend(*axes: Any, fontsize: int = 8, **legend: Any) -> None:
    """The lab's axis finish: a light grid and a small legend on each of ``axes``."""
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=fontsize, **legend)


def grad_norms(model: nn.Module) -> dict[str, float]:
    """Gradient norm of each parameter that has one."""
    return {n: float(p.grad.norm()) for n, p in model.named_parameters() if p.grad is not None}


def global_grad_norm(params: Sequence[nn.Parameter] | Iterator[nn.Parameter]) -> float:
    norms = [p.grad.detach().norm() for p in params if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0
