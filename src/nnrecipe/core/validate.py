"""Validate an experiment before any check runs.

Every way it cannot run at all becomes one :class:`ExperimentError` naming the cause (the CLI
exits 2 with it), including user code that breaks the contract the checks rely on
(:class:`ContractError`): a model factory that hands out the same model (or the same
parameters) twice, a ``train_step`` that does not return the loss. What can run but is
degenerate comes back as *setup findings* the runner puts at the top of the report: a
batch size larger than the training set, a last batch of one sample that the model cannot
train on (BatchNorm), in which case shuffled training loaders drop that batch.

Validation works on fresh models from the factory, with the RNG seeded and restored.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnrecipe.core import data as data_mod
from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import declare_code
from nnrecipe.core.seeding import seeded
from nnrecipe.core.stages import ANY_STAGE
from nnrecipe.errors import ContractError, DataError, ExperimentError

BATCH_LARGER_THAN_DATA = declare_code(
    "batch-larger-than-data", ANY_STAGE, Severity.WARNING,
    "batch_size is larger than the training set: every step is full-batch, one step per epoch",
    "Use a batch size well below the training set size (32-256 is typical; the recipe's "
    "mini-batch noise helps generalisation). If full-batch training is what you want, set "
    "batch_size to the training set size so that the intent is explicit.",
    declared_by="nnrecipe.core.validate")
SINGLETON_BATCH = declare_code(
    "singleton-last-batch", ANY_STAGE, Severity.WARNING,
    "The last training batch holds one sample, and the model cannot train on one "
    "(BatchNorm in training mode)",
    "Pass drop_last=True to your training DataLoader, or choose a batch size that does not "
    "leave one sample over. nnrecipe drops that batch when it trains.",
    declared_by="nnrecipe.core.validate")


def validate_experiment(ctx: Context, *, need_model: bool = True) -> list[Finding]:
    """Raise :class:`ExperimentError` if the experiment cannot run; return the setup
    findings (degenerate but runnable set-ups)."""
    exp = ctx.experiment
    for split in exp.splits():
        try:
            ds = ctx.dataset(split)
            n = data_mod.dataset_len(ds, split)
            if n == 0:
                raise DataError(f"the {split} set is empty")
            data_mod.get_sample(ds, 0, split)
        except DataError as e:
            raise ExperimentError(str(e)) from e
    if not need_model:
        return []
    with seeded(ctx.seed):
        try:
            X, y = ctx.tensors("train", limit=min(exp.batch_size, 8))
        except DataError as e:
            raise ExperimentError(str(e)) from e
        check_factory(ctx)
        model = ctx.fresh_model()
        try:
            optimizer = ctx.make_optimizer(model)
        except Exception as e:
            raise ExperimentError(f"the optimizer factory raised {type(e).__name__}: {e}") from e
        # Any loader (a quarter-size batch in the regularize stage too) may leave one sample.
        ctx.drop_singleton_batches = not _trains_on_one_sample(ctx, model, X[:1])
        if ctx.drop_singleton_batches and len(X) == 1:
            why = ("batch_size=1" if exp.batch_size == 1 else "the training set holds one sample")
            raise ExperimentError(
                f"{why}, and the model cannot take a training step on one sample (e.g. "
                "BatchNorm: 'Expected more than 1 value per channel'); use batches of 2 or more")
        out = _forward(ctx, model, X)
        _check_loss(ctx, out, X, y)
        if exp.train_step is not None:
            check_train_step(ctx, model, optimizer, (X, y))
    return setup_findings(ctx)


def _forward(ctx: Context, model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    try:
        with torch.no_grad():
            out = model(X.to(ctx.device))
    except Exception as e:
        raise ExperimentError(
            f"model(x) failed on a batch of inputs of shape {tuple(X.shape)} "
            f"(dtype {X.dtype}): {type(e).__name__}: {e}") from e
    if not isinstance(out, torch.Tensor):
        raise ExperimentError(f"model(x) returned {type(out).__name__}; nnrecipe needs a "
                              "tensor of outputs (wrap the model to return one)")
    return out


def _check_loss(ctx: Context, out: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> None:
    try:
        with torch.no_grad():
            loss = ctx.experiment.loss(out, y.to(ctx.device))
    except Exception as e:
        raise ExperimentError(
            f"the loss failed on model output of shape {tuple(out.shape)} and targets of "
            f"shape {tuple(y.shape)} (dtype {y.dtype}): {type(e).__name__}: {e}") from e
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ExperimentError(f"the loss returned {shape}, not a scalar tensor; use "
                              "reduction='mean'")


def _tensors(model: Any) -> dict[int, str]:
    """Storage address -> name of every parameter and buffer with storage."""
    found: dict[int, str] = {}
    if not isinstance(model, nn.Module):
        return found
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.device.type == "meta" or t.numel() == 0:
            continue
        ptr = t.untyped_storage().data_ptr()
        if ptr:
            found.setdefault(ptr, name)
    return found


def check_factory(ctx: Context) -> None:
    """Two calls of the model factory must give two independent models: every check trains
    its own, and the user's objects are never to change. Called before any model is put in
    training mode or moved, so a shared model is left exactly as it was."""
    factory = ctx.experiment.model
    try:
        a, b = factory(), factory()
    except Exception as e:
        raise ExperimentError(f"the model factory raised {type(e).__name__}: {e}") from e
    if a is b and a is not None:
        raise ContractError(
            "the model factory returned the same model object twice (model() is model()); "
            "every check would train, and change, that one model. Build a new one in the "
            "factory, e.g. `model=lambda: Net()`")
    in_b = set(_tensors(b))
    names = [name for ptr, name in _tensors(a).items() if ptr in in_b]  # in the model's order
    if names:
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        raise ContractError(
            f"two calls of the model factory share {len(names)} parameter/buffer tensor(s) "
            f"({', '.join(repr(n) for n in names[:3])}{more}); the checks would train, and "
            "change, those shared weights. Copy them inside the factory, e.g. "
            "`model=lambda: Net(copy.deepcopy(pretrained))`")


def check_train_step(ctx: Context, model: nn.Module, optimizer: torch.optim.Optimizer,
                     batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    """One step of the user's ``train_step`` on a fresh model must return the loss."""
    try:
        ctx.step(model, batch, optimizer)
    except ContractError:
        raise
    except SystemExit as e:
        raise ContractError(f"train_step called sys.exit({e.code!r})") from e
    except Exception as e:
        raise ExperimentError(
            f"train_step raised {type(e).__name__}: {e} (on a batch of {len(batch[0])} "
            f"training samples, inputs of shape {tuple(batch[0].shape)})") from e


def setup_findings(ctx: Context) -> list[Finding]:
    """Degenerate but runnable set-ups, as findings (after the model was validated)."""
    exp = ctx.experiment
    n = data_mod.dataset_len(ctx.dataset("train"), "train")
    findings: list[Finding] = []
    if exp.batch_size > n:
        findings.append(_finding(
            BATCH_LARGER_THAN_DATA,
            f"batch_size={exp.batch_size} is larger than the training set ({n} samples): "
            f"every step sees all {n} samples (full-batch gradient descent), so the "
            f"{exp.epochs} epochs make only {exp.epochs} optimizer steps, and advice scaled "
            "by the batch size does not apply",
            {"batch_size": exp.batch_size, "train_samples": n, "epochs": exp.epochs}))
    if n > 1 and n % min(exp.batch_size, n) == 1 and ctx.drop_singleton_batches:
        findings.append(_finding(
            SINGLETON_BATCH,
            f"{n} training samples at batch_size={exp.batch_size} leave a last batch of 1 "
            "sample, and the model cannot take a training step on one sample (e.g. "
            "BatchNorm: 'Expected more than 1 value per channel'); nnrecipe drops that batch "
            "when training (drop_last), once per epoch",
            {"train_samples": n, "batch_size": exp.batch_size}))
    return findings


def _trains_on_one_sample(ctx: Context, model: nn.Module, x: torch.Tensor) -> bool:
    """Does a forward pass in training mode work on a batch of one sample? (On the
    validation's own throw-away model: its batch-norm statistics may change.)"""
    try:
        with torch.no_grad():
            model.train()(x.to(ctx.device))
    except Exception:  # noqa: BLE001 - any failure on one sample is the answer
        return False
    return True


def _finding(info: Any, message: str, evidence: dict[str, Any]) -> Finding:
    return Finding(code=info.code, severity=info.severity, stage=ANY_STAGE, message=message,
                   evidence=evidence, fix=info.fix, check="setup")


__all__ = ["validate_experiment", "check_factory", "check_train_step", "setup_findings"]
