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
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class Layer:
    name: str
    kind: str  # "dropout" or "batchnorm"
    p: float = 0.0


def shift_severity(shift: float) -> Severity:
    """Pure decision: warning when the measured variance shift reaches ``WARN_SHIFT``."""
    return Severity.WARNING if shift >= WARN_SHIFT else Severity.INFO


def variance_shift(train_in: torch.Tensor, eval_in: torch.Tensor) -> float:
    """Mean over channels (axis 1) of the batch-norm input's variance with dropout active over
    its variance with dropout off; channels without variance at inference are left out."""
    def per_channel(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().double()
        flat = x.movedim(1, -1).reshape(-1, x.shape[1]) if x.ndim >= 2 else x.reshape(-1, 1)
        return flat.var(0)

    vt, ve = per_channel(train_in), per_channel(eval_in)
    live = ve > 1e-12 * float(ve.mean().clamp(min=1e-30))
    return float((vt[live] / ve[live]).mean()) if bool(live.any()) else 1.0


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
        eval_inputs = self._bn_inputs_without_dropout(model, x, {b.name for _, b in pairs})
        shifts = {b.name: variance_shift(train_inputs[b.name], eval_inputs[b.name])
                  for _, b in pairs if b.name in eval_inputs and b.name in train_inputs}
        ctx.record("variance_shift", shifts)
        rows = [[d.name, d.p, b.name, round(shifts.get(b.name, float("nan")), 3),
                 round(1 / (1 - d.p), 3), round(shifts.get(b.name, 1.0) ** -0.5, 3)]
                for d, b in pairs]
        ctx.add_table("Dropout layers that feed batch norm",
                      ["dropout", "p", "feeds batch norm", "measured variance shift (train/eval)",
                       "1/(1-p)", "inference std of the normalised output (training = 1)"],
                      rows)
        worst_d, worst_b = max(pairs, key=lambda pair: shifts.get(pair[1].name, 1.0))
        worst = shifts.get(worst_b.name, 1.0)
        severity = shift_severity(worst)
        desc = ", ".join(f"`{d.name}` (p={d.p:g}) -> `{b.name}` (shift "
                         f"{shifts.get(b.name, float('nan')):.2f}x)" for d, b in pairs[:5])
        tail = ("the batch norm's running variance learns the training value and is wrong at "
                "inference, so validation suffers (the 'variance shift')"
                if severity is Severity.WARNING else
                f"a shift below {WARN_SHIFT:g}x changes the normalised scale by less than batch "
                "norm's own batch-to-batch noise; worth knowing, rarely worth changing")
        return [self.finding(
            f"dropout feeds batch norm: {desc}. Measured on one batch, the batch norm's input "
            f"variance with dropout active is {worst:.2f}x that with dropout off, so at "
            f"inference `{worst_b.name}` outputs {worst ** -0.5:.2f}x the std it was trained on; "
            + tail,
            {"pairs": [[d.name, d.p, b.name] for d, b in pairs],
             "variance_shift": shifts, "worst_shift": worst,
             "inference_std_ratio": worst ** -0.5, "warn_shift": WARN_SHIFT},
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

    def _bn_inputs_without_dropout(self, model: nn.Module, x: torch.Tensor, names: set[str]
                                   ) -> dict[str, torch.Tensor]:
        """The same forward with only the dropout layers switched off (what inference feeds
        the batch norms); the batch norms stay in training mode on this fresh copy."""
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
                m.eval()
        with hooks(*handles), torch.no_grad():
            model(x)
        return inputs
