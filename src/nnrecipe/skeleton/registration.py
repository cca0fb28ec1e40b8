"""``unregistered-parameters`` and ``params-not-in-optimizer``: parameters the module system
or the optimizer cannot see.

``model.parameters()`` only returns what was registered: sub-modules assigned as attributes
or kept in ``nn.ModuleList``/``nn.ModuleDict``, tensors wrapped in ``nn.Parameter``. Layers
kept in a Python list or dict, created inside ``forward``, or a learnable tensor stored as a
plain attribute, still take part in the forward pass and get gradients, but no optimizer
built from ``model.parameters()`` updates them, ``.to(device)`` does not move them and
``state_dict()`` does not save them. Separately, an optimizer built from another model
instance, or before layers were added or replaced, steps while the parameters the loss
depends on stay where they were. Both train "plausibly": the loss falls a little through
the parameters that are seen.

The probe (:mod:`nnrecipe.skeleton.probe`) walks the autograd graph of each step from the
model's output and from the loss to its ``AccumulateGrad`` leaves (what backward really
writes gradients into) and compares them with ``named_parameters()`` and with the param
groups of every optimizer that stepped. Frozen parameters (``requires_grad=False``) are not
leaves of the graph, weight tying is one leaf, parametrizations keep their ``original`` as a
registered parameter: none of them is reported. Grad-requiring plain tensors made inside
``forward`` (an RNN's initial state, an input that requires grad) are not parameters and are
left alone; only ``nn.Parameter`` leaves, or tensors kept as module attributes, count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check, Declared
from nnrecipe.skeleton._util import fmt_names
from nnrecipe.skeleton.probe import Leaf, OptimizerStep, ProbeRun, get_probe, probe_skip_reason

IN_FORWARD = "created inside forward (a new tensor every call)"
ATTRIBUTE = "kept where the module system cannot see it"
UNKNOWN = "not registered with the model"


@dataclass
class Unregistered:
    id: int
    shape: tuple[int, ...]
    where: str  # ATTRIBUTE, IN_FORWARD or UNKNOWN
    path: str | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def unregistered_verdict(steps: list[list[Leaf]], registered: set[int], paths: dict[int, str]
                         ) -> list[Unregistered]:
    """Pure decision: leaves of the model output's graph (per step) that are parameters, or
    tensors kept as module attributes, and are not registered with the model. A parameter
    seen on one step and gone on the next was made inside ``forward``."""
    if not steps:
        return []
    later = {leaf.id for s in steps[1:] for leaf in s}
    found = []
    for leaf in steps[0]:
        if leaf.id in registered or not (leaf.is_parameter or leaf.id in paths):
            continue
        if leaf.id in paths:
            where = ATTRIBUTE
        elif len(steps) > 1 and leaf.id not in later:
            where = IN_FORWARD
        else:
            where = UNKNOWN
        found.append(Unregistered(leaf.id, leaf.shape, where, paths.get(leaf.id)))
    return found


@dataclass
class OptimizerVerdict:
    stepped: bool  # some optimizer stepped during the user's steps
    missing: list[str] = field(default_factory=list)  # registered, used, held by none
    added_later: list[str] = field(default_factory=list)  # of missing: registered after build
    loss_only: int = 0  # parameters of the loss (not the model) that no optimizer holds
    foreign: int = 0  # tensors the stepping optimizers hold that are not this model's
    rebuilt: bool = False  # a new optimizer every step, never the one passed in
    rebuilt_stateful: bool = False
    kinds: list[str] = field(default_factory=list)


def optimizer_verdict(loss_leaves: list[list[Leaf]], stepped: list[list[OptimizerStep]],
                      passed_id: int, param_ids: dict[int, str], start_ids: set[int],
                      model_leaves: set[int]) -> OptimizerVerdict:
    """Pure decision: the registered parameters the loss depends on that no optimizer which
    stepped holds; learnable parameters of the loss itself (leaves of the loss's graph that
    the model's output does not reach) that none holds; tensors held that are not the
    model's; and an optimizer made anew every step (its state - momentum, Adam's moments -
    thrown away each time). Unregistered model parameters (``model_leaves`` that are not
    registered) are ``unregistered-parameters``' to report, not this verdict's."""
    steps = [s for s in stepped if s]
    if not steps:
        return OptimizerVerdict(stepped=False)
    held = {p for s in steps for o in s for p in o.params}
    used = {leaf.id: leaf for s in loss_leaves for leaf in s}
    v = OptimizerVerdict(stepped=True, kinds=sorted({o.kind for s in steps for o in s}))
    for i, leaf in used.items():
        if i in held:
            continue
        if i in param_ids:
            v.missing.append(param_ids[i])
            if i not in start_ids:
                v.added_later.append(param_ids[i])
        elif leaf.is_parameter and i not in model_leaves:
            v.loss_only += 1
    v.missing.sort()
    v.foreign = len(held - set(param_ids))
    ids_per_step = [{o.id for o in s} for s in steps]
    if len(steps) >= 2 and all(passed_id not in ids for ids in ids_per_step):
        v.rebuilt = all(not (a & b) for a, b in zip(ids_per_step, ids_per_step[1:],
                                                     strict=False))
        v.rebuilt_stateful = v.rebuilt and any(o.stateful for s in steps for o in s)
    return v


class UnregisteredParameters(Check):
    code = "unregistered-parameters"
    stage = "skeleton"
    severity = Severity.ERROR
    title = "Every parameter the forward pass uses is registered with the model"
    fix = ("Keep sub-layers in nn.ModuleList / nn.ModuleDict (not a Python list or dict), wrap "
           "learnable tensors in nn.Parameter, and create layers in __init__, not in forward. "
           "Unregistered parameters are not in model.parameters(): no optimizer updates them, "
           ".to(device) does not move them and state_dict() does not save them.")
    order = 33

    def applies(self, ctx: Context) -> str | None:
        return probe_skip_reason(ctx, self.name)

    def run(self, ctx: Context) -> list[Finding]:
        probe: ProbeRun = get_probe(ctx, self.name)["a"]
        found = unregistered_verdict(probe.output_leaves, set(probe.param_ids),
                                     probe.attribute_paths)
        ctx.record("graph_leaves", len(probe.output_leaves[0]) if probe.output_leaves else 0)
        ctx.record("registered", len(probe.param_ids))
        ctx.record("unregistered", len(found))
        if not found:
            return []
        rows = [[u.path or "?", list(u.shape), u.numel, u.where] for u in found[:30]]
        ctx.add_table("Parameters used by the forward pass but not registered",
                      ["where", "shape", "elements", "why unseen"], rows)
        named = [u.path for u in found if u.path]
        in_forward = [u for u in found if u.where == IN_FORWARD]
        parts = []
        if named:
            parts.append(f"{len(named)} kept outside the module registry ({fmt_names(named, 5)}: "
                         "a Python list/dict of layers or a plain tensor attribute)")
        if in_forward:
            parts.append(f"{len(in_forward)} created inside forward (new tensors on every call: "
                         "the layer restarts from a random init each step)")
        rest = len(found) - len(named) - len(in_forward)
        if rest:
            parts.append(f"{rest} of unknown origin")
        total = sum(u.numel for u in found)
        registered = sum(math.prod(p.shape) for p in probe.init_params.values())
        return [self.finding(
            f"{len(found)} parameter tensors ({total:,} elements, against {registered:,} "
            f"registered) take part in the forward pass but are not in model.parameters(): "
            + "; ".join(parts) + ". No optimizer built from model.parameters() trains them",
            {"unregistered": [{"path": u.path, "shape": list(u.shape), "where": u.where}
                              for u in found[:30]],
             "n_unregistered": len(found), "elements": total, "registered_elements": registered})]


class OptimizerRebuilt(Declared):
    code = "optimizer-rebuilt-each-step"
    stage = "skeleton"
    severity = Severity.WARNING
    title = "The optimizer persists across training steps"
    fix = ("Build the optimizer once, outside the training step, and use the one passed to "
           "train_step: a new Adam/momentum optimizer every step starts from empty state, so "
           "each update is a normalised first step (Adam: about lr * sign(gradient)) and "
           "momentum never builds up.")


class ParamsNotInOptimizer(Check):
    code = "params-not-in-optimizer"
    stage = "skeleton"
    severity = Severity.ERROR
    title = "The optimizer that steps holds every parameter the loss depends on"
    fix = ("Build the optimizer from the parameters nnrecipe passes to the factory "
           "(`optimizer=lambda params: torch.optim.Adam(params, lr=...)`), never from another "
           "model instance, and only after every layer exists: create layers in __init__ "
           "(or use nn.LazyLinear), not on the first forward; if you replace a layer, rebuild "
           "the optimizer. Parameters you mean to keep fixed: set requires_grad=False.")
    order = 34
    emits = (OptimizerRebuilt.code,)

    def applies(self, ctx: Context) -> str | None:
        return probe_skip_reason(ctx, self.name)

    def run(self, ctx: Context) -> list[Finding]:
        probe: ProbeRun = get_probe(ctx, self.name)["a"]
        model_leaves = {leaf.id for s in probe.output_leaves for leaf in s}
        v = optimizer_verdict(probe.loss_leaves, probe.stepped, probe.optimizer_id,
                              probe.param_ids, probe.start_param_ids, model_leaves)
        ctx.record("optimizer_stepped", v.stepped)
        ctx.record("missing", len(v.missing))
        ctx.record("foreign", v.foreign)
        ctx.record("rebuilt_each_step", v.rebuilt)
        findings = []
        if v.missing or v.loss_only:
            findings.append(self._missing(probe, v))
        if v.rebuilt:
            kinds = "/".join(v.kinds)
            findings.append(OptimizerRebuilt.make_finding(
                f"the training step never stepped the optimizer it was given; a new {kinds} "
                f"was created and stepped on each of {len(probe.stepped)} steps"
                + (", so its state (momentum, moment estimates) is thrown away every step"
                   if v.rebuilt_stateful else
                   " (it keeps no state, so this only costs time)"),
                {"optimizers": v.kinds, "stateful": v.rebuilt_stateful,
                 "steps": len(probe.stepped)},
                stage=self.stage,
                severity=Severity.WARNING if v.rebuilt_stateful else Severity.INFO))
        return findings

    def _missing(self, probe: ProbeRun, v: OptimizerVerdict) -> Finding:
        n_used = len({leaf.id for s in probe.loss_leaves for leaf in s
                      if leaf.id in probe.param_ids})
        why = []
        if v.added_later:
            why.append(f"{len(v.added_later)} were registered after the optimizer was built "
                       f"({fmt_names(v.added_later, 4)}: a layer added or replaced on the first "
                       "forward or in the step)")
        if v.foreign:
            why.append(f"the optimizer holds {v.foreign} tensors that are not this model's "
                       "(built from another model instance?)")
        if v.loss_only:
            why.append(f"{v.loss_only} learnable parameters of the loss are in no optimizer")
        names = fmt_names(v.missing, 6) if v.missing else "none of the model's"
        head = (f"{len(v.missing)} of the {n_used} parameter tensors the loss depends on get "
                f"gradients but no optimizer that stepped holds them ({names})")
        return self.finding(
            head + (": " + "; ".join(why) if why else "") + ". They never train",
            {"missing": v.missing[:30], "n_missing": len(v.missing), "n_used": n_used,
             "added_after_optimizer": v.added_later[:30], "foreign_tensors": v.foreign,
             "loss_parameters_missing": v.loss_only, "optimizers": v.kinds})
