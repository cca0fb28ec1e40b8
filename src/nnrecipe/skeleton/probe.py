"""The training-step probe: a few real steps through the user's ``train_step``, observed.

Several skeleton checks need to watch a step happen rather than reason about code: what
reaches ``model(x)``, what the loss receives, whether gradients were cleared before the next
backward, whether the optimizer stepped and which parameters moved, which mode the layers
were in. One probe run observes all of it with hooks (module forward pre-hooks, tensor hooks
on parameters, optimizer step hooks, an observed copy of the loss); it is run twice from the
same seed, and the two runs also answer "is the run reproducible?".

It also records what the autograd graph used on each step (the leaves of the model's output
and of the loss, :mod:`nnrecipe.skeleton.graph`) and every optimizer whose ``step()`` ran
(a global step hook: the user's step may build or keep an optimizer of its own), for the
checks of parameters the module system or the optimizer cannot see.

``ctx.state["skeleton_probe"]`` holds ``{"a": ProbeRun, "b": ProbeRun}`` (or ``{"error": str,
"raised_in": check}`` when the user's step could not run).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from nnrecipe.core.context import Context
from nnrecipe.core.seeding import seed_everything
from nnrecipe.core.training import infinite_batches, loss_value
from nnrecipe.skeleton._util import (
    WEIGHTED_TYPES,
    LossRecorder,
    call_step_raw,
    float_tensors,
    hooks,
    is_batchnorm,
    is_dropout,
)
from nnrecipe.skeleton.graph import attribute_paths, graph_leaves, loss_graph

PROBE_STEPS = 3  # >= 2: stale gradients and a mode left behind only show on the second step
STATE_KEY = "skeleton_probe"
_VIEW_OPS = ("View", "Reshape", "Unsqueeze", "Squeeze", "Permute", "Transpose", "Clone",
             "Contiguous", "Expand", "Select", "Slice", "Unsafe", "As", "Flatten", "Index")


@dataclass
class LossCall:
    output: torch.Tensor  # what the loss received as its first argument (CPU, detached)
    target: Any  # its second argument (CPU tensor when a tensor)
    ops: list[str]  # grad_fn names from the output back through view-like ops
    # What the loss did with it: (producer, consumer, inside the loss) op pairs of the loss's
    # graph (:func:`nnrecipe.skeleton.graph.loss_graph`)
    pairs: list[tuple[str, str, bool]] = field(default_factory=list)


@dataclass(frozen=True)
class Leaf:
    """A grad-requiring leaf tensor of a step's graph."""

    id: int
    shape: tuple[int, ...]
    is_parameter: bool


@dataclass(frozen=True)
class OptimizerStep:
    """One ``optimizer.step()`` seen during a user step."""

    id: int
    kind: str  # the optimizer's class name
    params: frozenset[int]  # ids of the tensors in its param groups
    stateful: bool  # it keeps per-parameter state (momentum, Adam's moments) after the step


@dataclass
class ProbeRun:
    losses: list[float] = field(default_factory=list)
    init_params: dict[str, torch.Tensor] = field(default_factory=dict)
    final_params: dict[str, torch.Tensor] = field(default_factory=dict)
    inputs: list[torch.Tensor | None] = field(default_factory=list)  # reached model(x), per step
    first_layer: tuple[str, str] | None = None  # (name, type) of the first weighted layer run
    first_layer_inputs: list[torch.Tensor] = field(default_factory=list)
    loss_calls: list[LossCall] = field(default_factory=list)  # first call of each step
    # Per step, for every grad-enabled forward: model.training and the dropout/batch-norm
    # layers that were in eval mode.
    modes: list[list[dict[str, Any]]] = field(default_factory=list)
    # Per step: {param: (norm of p.grad found before this step's first gradient, new norm)}.
    stale: list[dict[str, tuple[float, float]]] = field(default_factory=list)
    optimizer_steps: list[int] = field(default_factory=list)
    grad_norms: dict[str, float] = field(default_factory=dict)  # max over steps
    lrs: list[float] = field(default_factory=list)
    in_optimizer: set[str] = field(default_factory=set)
    trainable: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    leaf_order: list[tuple[str, str]] = field(default_factory=list)  # first forward, executed
    warnings: list[str] = field(default_factory=list)
    custom_step: bool = False
    # Per step: the leaves of the first grad-enabled model output, of the loss's graph, and
    # the optimizers that stepped. Ids are only compared within one run (the tensors are
    # kept alive during it, so no id is reused).
    output_leaves: list[list[Leaf]] = field(default_factory=list)
    loss_leaves: list[list[Leaf]] = field(default_factory=list)
    stepped: list[list[OptimizerStep]] = field(default_factory=list)
    optimizer_id: int = 0  # the optimizer nnrecipe built and passed to the step
    start_param_ids: set[int] = field(default_factory=set)  # registered when it was built
    param_ids: dict[int, str] = field(default_factory=dict)  # registered at the end: id -> name
    attribute_paths: dict[int, str] = field(default_factory=dict)  # unregistered, by path


def output_ops(t: torch.Tensor) -> list[str]:
    """grad_fn names from ``t`` back through view-like ops: the last is the op that made it."""
    names: list[str] = []
    fn = t.grad_fn
    for _ in range(8):
        if fn is None:
            break
        name = type(fn).__name__
        names.append(name)
        if name.startswith(_VIEW_OPS) and fn.next_functions and fn.next_functions[0][0] is not None:
            fn = fn.next_functions[0][0]
            continue
        break
    return names


def _cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    return None


class _Observer:
    """All the hooks of one probe run; ``step`` is the index of the current user step."""

    def __init__(self, run: ProbeRun, model: nn.Module) -> None:
        self.run, self.model, self.step = run, model, -1
        self.keep: list[Any] = []  # leaves and optimizers seen: alive, so ids stay unique
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.seen_grad: set[str] = set()
        self.first_weighted_seen = False
        self.mode_layers = [(n, m) for n, m in model.named_modules()
                            if is_dropout(m) or is_batchnorm(m)]

    def begin_step(self, k: int) -> None:
        self.step = k
        self.seen_grad = set()
        self.first_weighted_seen = False
        self.run.modes.append([])
        self.run.stale.append({})
        self.run.optimizer_steps.append(0)
        self.run.inputs.append(None)
        self.run.output_leaves.append([])
        self.run.loss_leaves.append([])
        self.run.stepped.append([])

    def leaves(self, tensors: list[Any]) -> list[Leaf]:
        found = graph_leaves(t for t in tensors if isinstance(t, torch.Tensor))
        self.keep.extend(found)
        return [Leaf(id(t), tuple(t.shape), isinstance(t, nn.Parameter)) for t in found]

    # -- module hooks
    def model_pre(self, module: nn.Module, args: tuple) -> None:
        if not torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            return
        eval_layers = [n for n, m in self.mode_layers if not m.training]
        self.run.modes[-1].append({"model_training": module.training, "eval_layers": eval_layers})
        if self.run.inputs[-1] is None and args:
            self.run.inputs[-1] = _cpu(args[0])

    def model_post(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self.step < 0 or self.run.output_leaves[-1] or not torch.is_grad_enabled():
            return
        self.run.output_leaves[-1] = self.leaves(float_tensors(output))

    def weighted_pre(self, name: str) -> Any:
        def hook(module: nn.Module, args: tuple) -> None:
            if self.first_weighted_seen or not torch.is_grad_enabled():
                return
            self.first_weighted_seen = True
            if self.run.first_layer is None:
                self.run.first_layer = (name, type(module).__name__)
            if self.run.first_layer[0] == name and args and isinstance(args[0], torch.Tensor):
                self.run.first_layer_inputs.append(_cpu(args[0]))
        return hook

    def leaf_post(self, name: str) -> Any:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if self.step == 0 and torch.is_grad_enabled():
                self.run.leaf_order.append((name, type(module).__name__))
        return hook

    # -- gradient hooks
    def param_grad(self, name: str, p: torch.Tensor) -> Any:
        def hook(grad: torch.Tensor) -> None:
            if name in self.seen_grad:
                return
            self.seen_grad.add(name)
            old = 0.0 if p.grad is None else float(p.grad.detach().float().norm())
            self.run.stale[-1][name] = (old, float(grad.detach().float().norm()))
        return hook

    # -- optimizer hooks
    def opt_pre(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.run.optimizer_steps[-1] += 1
        self.run.lrs.append(max((float(g.get("lr", 0.0)) for g in opt.param_groups), default=0.0))
        for g in opt.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    name = self.names.get(id(p), "?")
                    norm = float(p.grad.detach().float().norm())
                    self.run.grad_norms[name] = max(self.run.grad_norms.get(name, 0.0), norm)

    def any_opt_post(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """Global hook: every optimizer that steps during a user step, whoever built it."""
        if self.step < 0:
            return
        self.keep.append(opt)
        params = frozenset(id(p) for g in opt.param_groups for p in g["params"])
        stateful = any(bool(s) for s in opt.state.values())
        self.run.stepped[-1].append(OptimizerStep(id(opt), type(opt).__name__, params, stateful))


def probe_run(ctx: Context, steps: int = PROBE_STEPS) -> ProbeRun:
    """``steps`` observed training steps from the run's seed, through the user's step."""
    seed_everything(ctx.seed)
    model = ctx.fresh_model(seed=ctx.seed)
    optimizer = ctx.make_optimizer(model)
    run = ProbeRun(custom_step=ctx.uses_custom_step)
    obs = _Observer(run, model)
    for n, p in model.named_parameters():
        (run.trainable if p.requires_grad else run.frozen).append(n)
    run.in_optimizer = {obs.names[id(p)] for g in optimizer.param_groups for p in g["params"]
                        if id(p) in obs.names}
    run.init_params = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()}
    run.optimizer_id = id(optimizer)
    run.start_param_ids = set(obs.names)
    recorder = LossRecorder(ctx.experiment.loss)
    handles = [model.register_forward_pre_hook(obs.model_pre),
               model.register_forward_hook(obs.model_post),
               optimizer.register_step_pre_hook(obs.opt_pre),
               register_optimizer_step_post_hook(obs.any_opt_post)]
    for name, m in model.named_modules():
        if isinstance(m, WEIGHTED_TYPES):
            handles.append(m.register_forward_pre_hook(obs.weighted_pre(name)))
        if name and not list(m.children()):
            handles.append(m.register_forward_hook(obs.leaf_post(name)))
    for n, p in model.named_parameters():
        if p.requires_grad:
            handles.append(p.register_hook(obs.param_grad(n, p)))
    batches = infinite_batches(ctx.loader("train", seed=ctx.seed))
    with hooks(*handles), ctx.task("probing the training step", steps) as task:
        for k in range(steps):
            obs.begin_step(k)
            n_calls = len(recorder.calls)
            batch = next(batches)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                raw = call_step_raw(ctx, model, batch, optimizer, recorder.fn)
                run.losses.append(loss_value(raw))
            for w in caught:
                text = f"{w.category.__name__}: {w.message}"
                if text not in run.warnings:
                    run.warnings.append(text)
            if len(recorder.calls) > n_calls:
                out, target = recorder.calls[n_calls]
                result = recorder.results[n_calls]
                run.loss_calls.append(LossCall(_cpu(out), _cpu(target), output_ops(out),
                                               loss_graph(result, out)))
                run.loss_leaves[-1] = obs.leaves(float_tensors(result))
            else:  # the step computed its own loss: follow what it returned
                run.loss_leaves[-1] = obs.leaves(float_tensors(raw))
            recorder.calls.clear()
            recorder.results.clear()
            if run.optimizer_steps[-1] == 0:  # no optimizer.step(): look at the grads anyway
                for n, p in model.named_parameters():
                    if p.grad is not None:
                        run.grad_norms[n] = max(run.grad_norms.get(n, 0.0),
                                                float(p.grad.detach().float().norm()))
            task.advance()
    run.final_params = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()}
    run.param_ids = {id(p): n for n, p in model.named_parameters()}
    run.attribute_paths = attribute_paths(model)
    return run


def get_probe(ctx: Context, check: str) -> dict[str, Any]:
    """The two probe runs, computed once per run and shared by the checks that read them.

    Raises the user's error in the first check that asks; later ones get ``{"error": ...}``.
    """
    if STATE_KEY not in ctx.state:
        try:
            ctx.state[STATE_KEY] = {"a": probe_run(ctx), "b": probe_run(ctx)}
        except Exception as e:
            ctx.state[STATE_KEY] = {"error": f"{type(e).__name__}: {e}", "raised_in": check}
            raise
    return ctx.state[STATE_KEY]


def probe_skip_reason(ctx: Context, check: str) -> str | None:
    """For ``applies``: a reason to skip when an earlier check saw the probe fail."""
    state = ctx.state.get(STATE_KEY)
    if state and "error" in state:
        return (f"the training step could not be run ({state['error']}); see the "
                f"'{state['raised_in']}' check")
    return None
