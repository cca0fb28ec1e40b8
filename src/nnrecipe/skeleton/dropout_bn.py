"""``dropout-before-batchnorm``: dropout whose output feeds a batch-norm layer.

Dropout changes the variance of its output between training (units dropped and the rest
scaled by 1/(1-p)) and inference (nothing dropped). A batch-norm layer downstream learns its
running variance in training and applies it at inference, where the variance it sees is
different: the "variance shift" (Li et al., 2019, "Understanding the disharmony between
dropout and batch normalization"). Validation then scores worse than the training curve
suggests. The recipe: "use dropout sparingly as it does not play nice with batch norm".

The execution order is traced on one forward pass, and a pair is reported only when the
batch-norm input actually depends on the dropout output (checked by autograd), so parallel
branches are not confused with a chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.skeleton._util import hooks, is_batchnorm, is_dropout

# Below p = 0.1 the train/inference variance ratio 1/(1-p) is < 1.11 (std within 5%): worth
# knowing, rarely worth changing.
WARN_P = 0.1


@dataclass
class Layer:
    name: str
    kind: str  # "dropout" or "batchnorm"
    p: float = 0.0


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
        order: list[Layer] = []
        outputs: dict[str, torch.Tensor] = {}
        inputs: dict[str, torch.Tensor] = {}

        def pre(name: str, m: nn.Module):  # noqa: ANN202
            def hook(module: nn.Module, args: tuple) -> None:
                if is_batchnorm(m) and args and isinstance(args[0], torch.Tensor):
                    inputs.setdefault(name, args[0])
                    if all(x.name != name for x in order):
                        order.append(Layer(name, "batchnorm"))
            return hook

        def post(name: str, m: nn.Module):  # noqa: ANN202
            def hook(module: nn.Module, args: tuple, out: object) -> None:
                if is_dropout(m) and isinstance(out, torch.Tensor):
                    outputs.setdefault(name, out)
                    if all(x.name != name for x in order):
                        order.append(Layer(name, "dropout", float(m.p)))
            return hook

        handles = []
        for name, m in model.named_modules():
            if is_batchnorm(m) or is_dropout(m):
                handles += [m.register_forward_pre_hook(pre(name, m)),
                            m.register_forward_hook(post(name, m))]
        x, _ = ctx.batch("train", n=min(8, len(ctx.dataset("train"))))
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
        pairs = dropout_bn_verdict(order, feeds)
        ctx.record("execution_order", [[o.name, o.kind, o.p] for o in order])
        ctx.record("pairs", [[d.name, b.name] for d, b in pairs])
        if not pairs:
            return []
        ctx.add_table("Dropout layers that feed batch norm", ["dropout", "p", "feeds batch norm",
                                                             "variance ratio train/eval"],
                      [[d.name, d.p, b.name, round(1 / (1 - d.p), 3)] for d, b in pairs])
        worst = max(d.p for d, _ in pairs)
        desc = ", ".join(f"`{d.name}` (p={d.p:g}) -> `{b.name}`" for d, b in pairs[:5])
        return [self.finding(
            f"dropout feeds batch norm: {desc}. In training, dropout scales the kept units by "
            f"1/(1-p) (variance up to {1 / (1 - worst):.2f}x that at inference); the batch "
            "norm's running variance learns the training value and is wrong at inference, "
            "so validation suffers (the 'variance shift')",
            {"pairs": [[d.name, d.p, b.name] for d, b in pairs]},
            severity=Severity.WARNING if worst >= WARN_P else Severity.INFO)]
