"""``dropout-before-batchnorm``: dropout whose output feeds a batch-norm layer.

Dropout changes the variance of its output between training (units dropped and the rest
scaled by 1/(1-p)) and inference (nothing dropped). A batch-norm layer downstream learns its
running variance in training and applies it at inference, where the variance it sees is
different: the "variance shift" (Li et al., 2019, "Understanding the disharmony between
dropout and batch normalization"). Validation then scores worse than the training curve
suggests. The recipe: "use dropout sparingly as it does not play nice with batch norm".

The execution order is traced on one forward pass, and a pair is reported only when the
batch-norm input actually depends on the dropout output (checked by autograd), so parallel
branches are not confused with a chain. The shift itself is measured, not derived from p:
the batch norm's input variance per channel on one batch with dropout active, over the same
with dropout off (what inference sees). It is not 1/(1-p): a layer between the two mixes
units, and dropping units of non-zero mean (after a ReLU) adds their mean to the variance.
At inference the normalised output's std is then 1/sqrt(shift) of what training saw.

The ratio is measured on a sample (often the whole training set of a small problem), so it
carries sampling noise: a warning needs the lower end of its 95% bootstrap interval (rows
resampled, the same dropout masks) above the line, not the point estimate (issue 11: 1.51x
against the 1.5x line on 142 wine samples, healthy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.skeleton._util import hooks, is_batchnorm, is_dropout

# Severity follows the measured shift. By measurement on a digits MLP (Dropout(p) -> Linear
# -> BatchNorm, 3 seeds, 20 epochs; benchmark: the validation loss with the batch norm's
# running statistics re-estimated with dropout off): shift 1.09 (p=0.05) and 1.19 (p=0.1) cost
# 2-3% of validation loss, 1.41 (p=0.2) 4%, 1.70 (p=0.3) 5%, 2.60 (p=0.5) 6%; accuracy moved
# by less than 0.2% throughout. The harm grows smoothly, so the line is a reasoned one: at a
# shift of 1.5 the normalised output at inference is 18% smaller than in training (1/sqrt
# 1.5), past the 9-13% random error of a batch's std at batch sizes 32-64 (1/sqrt(2(B-1))),
# which batch norm already trains through. Below it: an info with the numbers.
WARN_SHIFT = 1.5
SHIFT_BATCH = 256  # samples for the variance ratio: per-channel variances within ~10%
# The measurement's noise: the variance ratio of n rows has a sampling spread (an F-like
# distribution; rows are paired and channels correlated, so it is bootstrapped over rows).
# A warning needs the lower end of the two-sided 95% interval at or above WARN_SHIFT: a
# healthy model whose true shift sits at the line warns on ~2.5% of draws. The interval is
# the basic (reverse-percentile) one: the ratio is biased up (E[1/var] > 1/E[var]) and the
# bootstrap copies the bias, so with a true shift of exactly 1.5 on 142 rows x 32 channels
# the percentile interval's lower end cleared the line on 10% of 300 simulated draws, the
# basic interval's on 3.7% (and its upper end stayed below on 1.7%; measured).
SHIFT_LEVEL = 0.95
RESAMPLES = 400
# The shift is a property of the architecture, but one fresh init measures it with that
# init's luck: on the healthy wine MLP (Dropout(0.2) -> Linear -> BatchNorm) single inits
# gave 1.40-1.53 over seeds 0-9. The ratio is averaged over this many fresh inits (each with
# its own dropout masks), as the harm figures above were.
INITS = 4


@dataclass
class Layer:
    name: str
    kind: str  # "dropout" or "batchnorm"
    p: float = 0.0


def shift_severity(low: float) -> Severity:
    """Pure decision: warning when the lower end of the variance shift's interval reaches
    ``WARN_SHIFT`` (the point estimate alone does not: it carries sampling noise)."""
    return Severity.WARNING if low >= WARN_SHIFT else Severity.INFO


@dataclass
class Shift:
    """A measured variance shift with its bootstrap interval."""

    value: float
    low: float
    high: float
    rows: int

    @property
    def margin(self) -> float:
        """The interval's lower end over the warning line (>= 1: warns)."""
        return self.low / WARN_SHIFT


def _row_sums(x: torch.Tensor) -> np.ndarray:
    """Per row (axis 0) and channel (axis 1): sum and sum of squares over the other axes,
    shape (rows, channels, 2); a 1-d input is one channel."""
    x = x.detach().double()
    x = x.reshape(len(x), x.shape[1], -1) if x.ndim >= 2 else x.reshape(-1, 1, 1)
    return torch.stack([x.sum(2), (x * x).sum(2)], 2).numpy()


def _variance(s: np.ndarray, count: np.ndarray | float) -> np.ndarray:
    """Per-channel variance from (..., channels, 2) sums over ``count`` values."""
    mean = s[..., 0] / count
    return (s[..., 1] / count - mean ** 2) * count / np.maximum(count - 1, 1)


def measure_shift(train_in: torch.Tensor | list[torch.Tensor],
                  eval_in: torch.Tensor | list[torch.Tensor], *, resamples: int = RESAMPLES,
                  level: float = SHIFT_LEVEL, seed: int = 0) -> Shift:
    """The batch norm's input variance per channel (axis 1) with dropout active over the
    same with dropout off, averaged over channels (those without variance at inference left
    out), with a bootstrap interval over the rows. Lists hold paired passes of several fresh
    inits over the same rows (train_in[k] with eval_in[k]): their ratios are averaged, and
    each resample draws the same rows for all of them."""
    trains = train_in if isinstance(train_in, list) else [train_in]
    evals = eval_in if isinstance(eval_in, list) else [eval_in]
    tr = np.stack([_row_sums(t) for t in trains])  # (inits, rows, channels, 2)
    ev = np.stack([_row_sums(e) for e in evals])
    n = ev.shape[1]
    per_row = evals[0][0].numel() // max(1, evals[0].shape[1]) if evals[0].ndim >= 2 else 1
    total = float(n * per_row)
    ve = _variance(ev.sum(1), total)  # (inits, channels)
    live = (ve > 1e-12 * np.maximum(ve.mean(1, keepdims=True), 1e-30)).all(0)
    if not live.any() or n < 2:
        return Shift(1.0, 1.0, 1.0, n)

    def ratio(t: np.ndarray, e: np.ndarray) -> np.ndarray:  # mean over inits and channels
        return (_variance(t, total)[..., live] / _variance(e, total)[..., live]).mean((-1, -2))

    value = float(ratio(tr.sum(1), ev.sum(1)))
    if resamples <= 0:
        return Shift(value, value, value, n)
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)
    boot = ratio(np.einsum("bn,knch->bkch", weights, tr), np.einsum("bn,knch->bkch", weights, ev))
    boot = boot[np.isfinite(boot)]
    if not len(boot):
        return Shift(value, value, value, n)
    tail = (1 - level) / 2
    q_low, q_high = np.quantile(boot, [tail, 1 - tail])
    # the basic (reverse-percentile) interval: see SHIFT_LEVEL
    return Shift(value, float(2 * value - q_high), float(2 * value - q_low), n)


def variance_shift(train_in: torch.Tensor, eval_in: torch.Tensor) -> float:
    """The point estimate of :func:`measure_shift` (no interval)."""
    return measure_shift(train_in, eval_in, resamples=0).value


def dropout_bn_verdict(order: list[Layer], feeds: dict[tuple[str, str], bool]
                       ) -> list[tuple[Layer, Layer]]:
    """Pure decision: (dropout, first batch-norm it feeds) pairs, from the execution order
    and whether each batch norm's input depends on each earlier dropout's output."""
    pairs = []
    for i, d in enumerate(order):
        if d.kind != "dropout" or d.p <= 0:
            continue
        for b in order[i + 1:]:
            if b.kind == "batchnorm" and feeds.get((d.name, b.name), False):
                pairs.append((d, b))
                break
    return pairs


class DropoutBeforeBatchnorm(Check):
    code = "dropout-before-batchnorm"
    stage = "skeleton"
    severity = Severity.WARNING
    title = "No dropout feeds a batch-norm layer"
    fix = ("Put dropout after the last batch-norm layer (e.g. only before the final "
           "classifier), or drop one of the two: batch norm already regularises. If you keep "
           "both, a lower dropout rate shrinks the variance shift.")
    order = 25

    def applies(self, ctx: Context) -> str | None:
        model = ctx.fresh_model(seed=ctx.seed)
        mods = list(model.modules())
        if not any(is_dropout(m) for m in mods) or not any(is_batchnorm(m) for m in mods):
            return "the model does not have both dropout (p > 0) and batch-norm layers"
        return None

    def run(self, ctx: Context) -> list[Finding]:
        model = ctx.fresh_model(seed=ctx.seed)
        x, _ = ctx.batch("train", n=min(SHIFT_BATCH, len(ctx.dataset("train"))))
        order, feeds, train_inputs = self._trace(model, x)
        pairs = dropout_bn_verdict(order, feeds)
        ctx.record("execution_order", [[o.name, o.kind, o.p] for o in order])
        ctx.record("pairs", [[d.name, b.name] for d, b in pairs])
        if not pairs:
            return []
        names = {b.name for _, b in pairs}
        models = [model] + [ctx.fresh_model(seed=ctx.seed + k) for k in range(1, INITS)]
        train_passes = [train_inputs] + [self._bn_inputs(m, x, names, dropout=True)
                                         for m in models[1:]]
        eval_passes = [self._bn_inputs(m, x, names, dropout=False) for m in models]
        shifts = {b.name: measure_shift([p[b.name] for p in train_passes],
                                        [p[b.name] for p in eval_passes], seed=ctx.seed)
                  for _, b in pairs
                  if all(b.name in p for p in train_passes + eval_passes)}
        ctx.record("variance_shift", {k: v.value for k, v in shifts.items()})
        ctx.record("variance_shift_interval", {k: [v.low, v.high] for k, v in shifts.items()})
        none = Shift(float("nan"), float("nan"), float("nan"), 0)
        rows = [[d.name, d.p, b.name, round(shifts.get(b.name, none).value, 3),
                 f"{shifts.get(b.name, none).low:.2f}-{shifts.get(b.name, none).high:.2f}",
                 round(1 / (1 - d.p), 3), round(shifts.get(b.name, none).value ** -0.5, 3)]
                for d, b in pairs]
        ctx.add_table("Dropout layers that feed batch norm",
                      ["dropout", "p", "feeds batch norm", "measured variance shift (train/eval)",
                       f"{SHIFT_LEVEL:.0%} interval", "1/(1-p)",
                       "inference std of the normalised output (training = 1)"],
                      rows, caption=f"Measured on {len(x)} training samples, averaged over "
                                    f"{INITS} fresh inits; interval: bootstrap over the samples ({RESAMPLES} "
                                    f"resamples). Warning when its lower end is >= {WARN_SHIFT:g}.")
        worst_b = max((b for _, b in pairs if b.name in shifts),
                      key=lambda b: shifts[b.name].low, default=None)
        if worst_b is None:
            return []
        worst = shifts[worst_b.name]
        severity = shift_severity(worst.low)
        desc = ", ".join(f"`{d.name}` (p={d.p:g}) -> `{b.name}` (shift "
                         f"{shifts.get(b.name, none).value:.2f}x)" for d, b in pairs[:5])
        interval = (f"{worst.value:.2f}x that with dropout off (mean of {INITS} fresh inits; "
                    f"{SHIFT_LEVEL:.0%} interval {worst.low:.2f}-{worst.high:.2f}x over "
                    f"{worst.rows} samples)")
        if severity is Severity.WARNING:
            tail = (f"even the interval's lower end is {worst.margin:.2f}x the {WARN_SHIFT:g}x "
                    "line: the batch norm's running variance learns the training value and is "
                    "wrong at inference, so validation suffers (the 'variance shift')")
        elif worst.value >= WARN_SHIFT:
            tail = (f"that is above the {WARN_SHIFT:g}x line, but within the measurement's "
                    f"noise (the interval reaches {worst.low:.2f}x), so not a warning; a shift "
                    "this size costs a few percent of validation loss at most")
        else:
            tail = (f"a shift below {WARN_SHIFT:g}x changes the normalised scale by less than "
                    "batch norm's own batch-to-batch noise; worth knowing, rarely worth changing")
        return [self.finding(
            f"dropout feeds batch norm: {desc}. The batch norm's input variance with dropout "
            f"active is {interval}, so at inference `{worst_b.name}` outputs "
            f"{worst.value ** -0.5:.2f}x the std it was trained on; " + tail,
            {"pairs": [[d.name, d.p, b.name] for d, b in pairs],
             "variance_shift": {k: v.value for k, v in shifts.items()},
             "worst_shift": worst.value, "worst_shift_interval": [worst.low, worst.high],
             "samples": worst.rows, "inits": INITS, "level": SHIFT_LEVEL,
             "margin": worst.margin, "inference_std_ratio": worst.value ** -0.5,
             "warn_shift": WARN_SHIFT},
            severity=severity)]

    def _trace(self, model: nn.Module, x: torch.Tensor
               ) -> tuple[list[Layer], dict[tuple[str, str], bool], dict[str, torch.Tensor]]:
        """One train-mode forward: the execution order of dropout and batch-norm layers,
        which batch norm depends on which dropout (autograd), and each batch norm's input."""
        order: list[Layer] = []
        outputs: dict[str, torch.Tensor] = {}
        inputs: dict[str, torch.Tensor] = {}

        def pre(name: str, m: nn.Module):  # noqa: ANN202
            def hook(module: nn.Module, args: tuple) -> None:
                if is_batchnorm(m) and args and isinstance(args[0], torch.Tensor):
                    inputs.setdefault(name, args[0])
                    if all(o.name != name for o in order):
                        order.append(Layer(name, "batchnorm"))
            return hook

        def post(name: str, m: nn.Module):  # noqa: ANN202
            def hook(module: nn.Module, args: tuple, out: object) -> None:
                if is_dropout(m) and isinstance(out, torch.Tensor):
                    outputs.setdefault(name, out)
                    if all(o.name != name for o in order):
                        order.append(Layer(name, "dropout", float(m.p)))
            return hook

        handles = []
        for name, m in model.named_modules():
            if is_batchnorm(m) or is_dropout(m):
                handles += [m.register_forward_pre_hook(pre(name, m)),
                            m.register_forward_hook(post(name, m))]
        if x.is_floating_point():
            x = x.clone().requires_grad_(True)
        with hooks(*handles):
            model(x)
        feeds = {}
        for d in (o for o in order if o.kind == "dropout"):
            for b in (o for o in order if o.kind == "batchnorm"):
                out, inp = outputs.get(d.name), inputs.get(b.name)
                if out is None or inp is None or not inp.requires_grad or not out.requires_grad:
                    continue
                (g,) = torch.autograd.grad(inp.sum(), [out], retain_graph=True,
                                           allow_unused=True)
                feeds[(d.name, b.name)] = g is not None
        return order, feeds, {k: v.detach() for k, v in inputs.items()}

    def _bn_inputs(self, model: nn.Module, x: torch.Tensor, names: set[str], *,
                   dropout: bool) -> dict[str, torch.Tensor]:
        """The batch norms' inputs on one more forward, with the dropout layers on (fresh
        masks) or off (what inference feeds them); the batch norms stay in training mode on
        this fresh copy."""
        inputs: dict[str, torch.Tensor] = {}

        def pre(name: str):  # noqa: ANN202
            def hook(module: nn.Module, args: tuple) -> None:
                if args and isinstance(args[0], torch.Tensor):
                    inputs.setdefault(name, args[0].detach())
            return hook

        handles = [m.register_forward_pre_hook(pre(n)) for n, m in model.named_modules()
                   if n in names]
        for m in model.modules():
            if is_dropout(m):
                m.train(dropout)
        with hooks(*handles), torch.no_grad():
            model(x)
        return inputs
