"""The training monitor: what is measured, when, and how cheaply.

:class:`Monitor` hooks a model and its optimizer and fills a :class:`Recording` with plain
CPU numbers; it decides nothing (the detectors in :mod:`nnrecipe.train.detectors` do).

* Optimizer step **pre**-hook (every ``grad_every`` steps): per-tensor gradient norms in one
  ``torch._foreach_norm`` call, moved to the CPU once; a non-finite norm is caught *before*
  the update, the update is dropped (``guard_nonfinite``) and the layer that produced it is
  traced. The hook is moved in front of other step pre-hooks (e.g. :func:`fit`'s clipping) so
  it sees the raw gradients. If ``optimizer.step(closure)`` is used (Lightning, LBFGS), the
  closure is wrapped and the measurement runs right after it computed the gradients.
* Step **post**-hook (every ``update_every`` steps): parameter norms, and update-to-parameter
  ratios estimated on a fixed random sample of coordinates per tensor (no copy of the
  weights); the same samples are the weight trajectories behind ``weights-fluctuating``.
* Forward hooks on ``nn.ReLU``/``nn.Tanh``/``nn.Sigmoid`` (and their hard variants), armed
  only for the forward of every ``activation_every``-th step: dead ReLU units (a unit that is
  zero on every sample of the last ``dead_window`` measured batches) and saturated
  tanh/sigmoid outputs. Activations applied functionally (``F.relu``) are not seen.

Per-layer series are thinned (every other point dropped, sampling stride doubled) once they
hold ``max_points`` points, so memory stays bounded on long runs.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe.core.fit import Callback, EpochRecord, FitHistory

RELU_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)
TANH_TYPES: tuple[type[nn.Module], ...] = (nn.Tanh, nn.Hardtanh)
SIGMOID_TYPES: tuple[type[nn.Module], ...] = (nn.Sigmoid, nn.Hardsigmoid)
# Saturated: the derivative is below ~2% of its maximum (tanh' = 1 - y^2 < 0.02 for |y| >
# 0.99; sigmoid' = y(1 - y) < 0.0099 for y outside [0.01, 0.99], ~4% of its 0.25 maximum).
TANH_SATURATION = 0.99
SIGMOID_SATURATION = 0.01
MAX_STRETCH = 16


@dataclass
class MonitorConfig:
    """When the monitor measures what. The defaults keep the overhead within a few percent
    (see ``benchmarks/monitor_overhead.py``)."""

    grad_every: int = 1  # gradient norms; also the non-finite guard, so keep it at 1
    update_every: int = 10  # parameter norms and update ratios
    activation_every: int = 20  # dead ReLU / saturation (a forward with hooks)
    dead_window: int = 3  # measured batches a unit must stay silent on to count as dead
    samples_per_tensor: int = 256  # coordinates per parameter tensor for update ratios
    # Share of the step time the monitor may take; beyond it every schedule above is
    # stretched (x2, x4, ...; at most x16). Then a NaN gradient on a step that is not measured
    # is caught one step later, from the loss or the next gradients. None: never stretch.
    overhead_budget: float | None = 0.03
    guard_nonfinite: bool = True  # drop an update whose gradients are NaN/inf
    stop_on_nonfinite: bool = True  # as a fit() callback: stop at the first non-finite
    max_points: int = 2000  # per-layer series are thinned beyond this


@dataclass
class Series:
    """A per-layer series: ``values[i]`` (one float per layer) measured at ``steps[i]``."""

    steps: list[int] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)
    stride: int = 1  # thinning factor applied to the monitor's schedule

    def append(self, step: int, values: Sequence[float] | np.ndarray, max_points: int) -> None:
        self.steps.append(step)
        self.values.append(values.tolist() if isinstance(values, np.ndarray)
                           else [float(v) for v in values])
        if len(self.steps) > max_points:
            self.steps, self.values = self.steps[::2], self.values[::2]
            self.stride *= 2

    def array(self) -> np.ndarray:
        """``(len(steps), n_layers)`` float array (empty ``(0, 0)`` if nothing recorded)."""
        return np.asarray(self.values, dtype=float) if self.values else np.zeros((0, 0))

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "values": self.values}


@dataclass
class Recording:
    """Everything the monitor measured, as CPU numbers. Detectors and plots read only this.

    ``layers`` are the modules that own parameters, in registration (≈ forward) order;
    ``activations`` the activation modules (name, kind in {"relu", "tanh", "sigmoid"}).
    ``grad``/``param``/``update`` are per-layer series (L2 norms; update = ||Δθ||/||θ||),
    ``grad_total`` the global gradient norm at ``grad.steps``, ``dead``/``saturated``
    per-activation fractions. ``epochs`` holds dicts with ``epoch``, ``step``, ``train_loss``
    (epoch mean), ``val_loss``, ``val_<metric>``, ``lr`` and, from the train stage,
    ``train_eval_loss`` (end-of-epoch weights, eval mode) and ``train_mode_loss`` (same
    weights, train mode, no update).
    """

    layers: list[str] = field(default_factory=list)
    layer_types: list[str] = field(default_factory=list)
    activations: list[tuple[str, str]] = field(default_factory=list)
    activation_inputs: dict[str, str] = field(default_factory=dict)  # act module -> layer before it
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad: Series = field(default_factory=Series)
    grad_total: list[float] = field(default_factory=list)
    param: Series = field(default_factory=Series)
    update: Series = field(default_factory=Series)
    weight_samples: Series = field(default_factory=Series)  # a few coordinates per layer
    weight_sample_layers: list[int] = field(default_factory=list)  # layer of each column
    dead: Series = field(default_factory=Series)
    saturated: Series = field(default_factory=Series)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    prediction_targets: list[float] = field(default_factory=list)
    nonfinite: dict[str, Any] | None = None
    optimizer_steps: int = 0
    skipped_updates: int = 0
    grad_clip: float | None = None
    schedule_stretch: int = 1  # set by the overhead governor (MonitorConfig.overhead_budget)

    def epoch_series(self, key: str) -> list[float]:
        return [float(e.get(key, math.nan)) for e in self.epochs]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the report and saved runs are redrawn from it)."""
        out: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            out[name] = value.to_dict() if isinstance(value, Series) else value
        return out


def _layer_params(model: nn.Module, optimizer: torch.optim.Optimizer | None
                  ) -> tuple[list[str], list[str], list[nn.Parameter], list[int]]:
    """Layers (modules owning parameters the optimizer updates) and, per parameter, its layer."""
    wanted: set[int] | None = None
    if optimizer is not None:
        wanted = {id(p) for g in optimizer.param_groups for p in g["params"]}
    names: list[str] = []
    types: list[str] = []
    params: list[nn.Parameter] = []
    owner: list[int] = []
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False)
               if id(p) not in seen and p.requires_grad and (wanted is None or id(p) in wanted)]
        if not own:
            continue
        names.append(mod_name or type(module).__name__)
        types.append(type(module).__name__)
        for p in own:
            seen.add(id(p))
            params.append(p)
            owner.append(len(names) - 1)
    return names, types, params, owner


def _activation_kind(module: nn.Module) -> str | None:
    if isinstance(module, RELU_TYPES):
        return "relu"
    if isinstance(module, TANH_TYPES):
        return "tanh"
    if isinstance(module, SIGMOID_TYPES):
        return "sigmoid"
    return None


def _segment_norm(per_tensor: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Per-layer L2 norms from per-tensor norms (sqrt of the summed squares)."""
    return np.sqrt(np.bincount(owner, weights=np.square(per_tensor), minlength=n))


class Monitor(Callback):
    """Records per-layer training statistics through hooks; a :class:`fit` callback too.

    Standalone::

        mon = Monitor(config=MonitorConfig()).attach(model, optimizer)
        for batch in loader:
            loss = train_step(...)
            mon.record_loss(loss)
        mon.record_epoch(train_loss=..., val={"loss": ...})
        mon.detach()  # removes every hook

    With :func:`nnrecipe.core.fit.fit`, pass it in ``callbacks``: it attaches at the start,
    records losses, epochs and predictions on ``fixed_batch``, stops on a non-finite value,
    and detaches at the end. ``monitor.recording`` holds the numbers.
    """

    def __init__(self, config: MonitorConfig | None = None, *,
                 fixed_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                 task: str | None = None) -> None:
        self.config = config or MonitorConfig()
        self.recording = Recording()
        self.fixed_batch = fixed_batch
        self.task = task
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._handles: list[Any] = []
        self._act_handles: list[Any] = []
        self._params: list[nn.Parameter] = []
        self._owner = np.zeros(0, dtype=int)
        self._owner_list: list[int] = []
        self._sample_idx: list[torch.Tensor] = []
        self._sample_owner = np.zeros(0, dtype=int)
        self._kept = np.zeros(0, dtype=int)
        self._pre_samples: torch.Tensor | None = None
        self._act_modules: list[tuple[str, str, nn.Module]] = []
        self._act_values: dict[tuple[str, int], torch.Tensor] = {}
        self._act_calls: dict[str, int] = {}
        self._act_keys: list[tuple[str, int]] = []
        self._dead_masks: dict[tuple[str, int], deque[torch.Tensor]] = {}
        self._last_input: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self._stop_reason: str | None = None
        self._stretch = 1
        self._own = 0.0
        self.seconds_spent = 0.0  # wall time in the hooks and live checks, all told
        self._window_start: float | None = None
        self._window_steps = 0

    # ------------------------------------------------------------------ attaching
    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> Monitor:
        """Register the hooks on ``model`` and ``optimizer`` (idempotent)."""
        if self.attached:
            return self
        self.model, self.optimizer = model, optimizer
        names, types, params, owner = _layer_params(model, optimizer)
        rec = self.recording
        if not rec.layers:
            rec.layers, rec.layer_types = names, types
        same = [id(p) for p in params] == [id(p) for p in self._params]
        self._params, self._owner = params, np.asarray(owner, dtype=int)
        self._owner_list = list(owner)
        if not same or not self._sample_idx:  # re-attaching to the same model keeps them
            self._choose_samples()
        self._act_modules = []
        last_layer = None
        for n, m in model.named_modules():
            if n in names and any(True for _ in m.parameters(recurse=False)):
                last_layer = n
            kind = _activation_kind(m)
            if kind is not None:
                self._act_modules.append((n or type(m).__name__, kind, m))
                if last_layer is not None:
                    rec.activation_inputs[n] = last_layer
        pre = optimizer.register_step_pre_hook(self._pre_step)
        _move_to_front(optimizer, pre)
        self._handles = [pre, optimizer.register_step_post_hook(self._post_step),
                         model.register_forward_pre_hook(self._remember_input, with_kwargs=True)]
        if self._act_modules and rec.optimizer_steps % self.config.activation_every == 0:
            self._arm_activations()
        return self

    def detach(self) -> None:
        """Remove every hook this monitor placed; the model and optimizer are left as found."""
        for h in self._handles + self._act_handles:
            h.remove()
        self._handles, self._act_handles = [], []
        self._last_input = None
        self._pre_samples = None
        self._dead_masks.clear()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def _choose_samples(self) -> None:
        g = torch.Generator().manual_seed(0)
        k = self.config.samples_per_tensor
        self._sample_idx, owners = [], []
        for p, layer in zip(self._params, self._owner, strict=True):
            n = p.numel()
            idx = torch.arange(n) if n <= k else torch.randperm(n, generator=g)[:k].sort().values
            self._sample_idx.append(idx.to(p.device))
            owners.extend([layer] * len(idx))
        self._sample_owner = np.asarray(owners, dtype=int)
        keep: list[int] = []  # up to 16 coordinates per layer are kept as trajectories
        for layer in range(len(self.recording.layers)):
            keep.extend(np.nonzero(self._sample_owner == layer)[0][:16].tolist())
        self._kept = np.asarray(keep, dtype=int)
        self.recording.weight_sample_layers = self._sample_owner[self._kept].tolist()

    # --------------------------------------------------------------- step hooks
    def _pre_step(self, opt: torch.optim.Optimizer, args: tuple[Any, ...], kwargs: dict[str, Any]
                  ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            self._before_update()
            return None
        done = False

        def wrapped() -> Any:  # measure once the closure has produced the gradients
            nonlocal done
            out = closure()
            if not done:
                done = True
                self._before_update()
            return out

        if "closure" in kwargs:
            return args, {**kwargs, "closure": wrapped}
        return (args[0], wrapped, *args[2:]), kwargs

    def _before_update(self) -> None:
        t0 = time.perf_counter()
        self._govern(t0)
        step = self.recording.optimizer_steps
        cfg, k = self.config, self._stretch
        if step % (cfg.grad_every * k) == 0:
            self._measure_grads(step)
        if step % (cfg.update_every * max(k, self.recording.update.stride)) == 0:
            self._pre_samples = self._gather_samples()
        self._spend(time.perf_counter() - t0)

    def _post_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        t0 = time.perf_counter()
        rec = self.recording
        step = rec.optimizer_steps
        if self._pre_samples is not None:
            self._measure_update(step, self._pre_samples)
            self._pre_samples = None
        if self._act_handles:
            self._collect_activations(step)
        rec.optimizer_steps += 1
        if self._act_modules and rec.optimizer_steps % (
                self.config.activation_every * max(self._stretch, rec.dead.stride)) == 0:
            self._arm_activations()
        self._spend(time.perf_counter() - t0)

    def add_overhead(self, seconds: float) -> None:
        """Count time spent on the monitor's behalf outside its hooks (live detectors)."""
        self._spend(seconds)

    def _spend(self, seconds: float) -> None:
        self._own += seconds
        self.seconds_spent += seconds

    def _govern(self, now: float) -> None:
        """Keep the monitor within ``overhead_budget`` of the step time: every 64 steps,
        stretch every schedule by 2 when over budget, back when well under it. On tiny models
        a fixed Python cost per step is a large share of the step."""
        if self._window_start is None:
            self._window_start, self._own = now, 0.0
            return
        self._window_steps += 1
        if self._window_steps < 64:
            return
        share = self._own / max(now - self._window_start, 1e-9)
        budget = self.config.overhead_budget
        if not budget:
            pass
        elif share > budget and self._stretch < MAX_STRETCH:
            self._stretch *= 2
        elif share < budget / 4 and self._stretch > 1:
            self._stretch //= 2
        self.recording.schedule_stretch = self._stretch
        self._window_start, self._window_steps, self._own = now, 0, 0.0

    def _measure_grads(self, step: int) -> None:
        # The hot path (every step): one fused norm, one copy to the CPU, a few Python floats.
        grads = [p.grad for p in self._params]
        if any(g is None for g in grads):
            with_grad = [i for i, g in enumerate(grads) if g is not None]
            if not with_grad:
                return
            owners = [self._owner_list[i] for i in with_grad]
            norms = _tensor_norms([grads[i] for i in with_grad])  # type: ignore[misc]
        else:
            owners = self._owner_list
            norms = _tensor_norms(grads)  # type: ignore[arg-type]
        rec = self.recording
        sq = [v * v for v in norms]
        total = math.sqrt(sum(sq))
        if not math.isfinite(total):  # NaN/inf anywhere propagates into the total
            bad = sorted({o for o, v in zip(owners, norms, strict=True) if not math.isfinite(v)})
            self._on_nonfinite_grads(step, bad)
        if step % (self.config.grad_every * rec.grad.stride) != 0:
            return
        layer = [0.0] * len(rec.layers)
        for o, v in zip(owners, sq, strict=True):
            layer[o] += v
        seen = set(owners) if len(owners) != len(self._owner_list) else None
        layer = [math.sqrt(v) if seen is None or i in seen else math.nan
                 for i, v in enumerate(layer)]
        stride = rec.grad.stride
        rec.grad_total.append(total)
        rec.grad.append(step, layer, self.config.max_points)
        if rec.grad.stride != stride:
            rec.grad_total = rec.grad_total[::2]

    def _gather_samples(self) -> torch.Tensor | None:
        if not self._params:
            return None
        with torch.no_grad():
            parts = [p.detach().reshape(-1)[idx].float().to(self._params[0].device)
                     for p, idx in zip(self._params, self._sample_idx, strict=True)]
            return torch.cat(parts)

    def _measure_update(self, step: int, before: torch.Tensor) -> None:
        after = self._gather_samples()
        if after is None:
            return
        with torch.no_grad():
            pnorms = torch.stack(torch._foreach_norm([p.detach() for p in self._params]))
            packed = torch.cat([before, after, pnorms.float().to(before.device)]).cpu().numpy()
        m = len(before)
        b, a, pn = packed[:m], packed[m:2 * m], packed[2 * m:]
        rec, n = self.recording, len(self.recording.layers)
        dn = _segment_norm(a - b, self._sample_owner, n)
        sn = _segment_norm(a, self._sample_owner, n)
        ratio = np.where(sn > 0, dn / np.where(sn > 0, sn, 1.0), np.nan)
        mp = self.config.max_points
        rec.update.append(step, ratio, mp)
        rec.param.append(step, _segment_norm(pn, self._owner, n), mp)
        rec.weight_samples.append(step, a[self._kept], mp)

    # -------------------------------------------------------------- activations
    def _arm_activations(self) -> None:
        if self._act_handles:
            return
        self._act_values.clear()
        self._act_calls.clear()
        for name, kind, module in self._act_modules:
            self._act_handles.append(module.register_forward_hook(self._act_hook(name, kind)))

    def _act_hook(self, name: str, kind: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            # training forwards only: eval passes and no-grad probes are not what trains
            if not module.training or not torch.is_grad_enabled() \
                    or not isinstance(output, torch.Tensor):
                return
            call = self._act_calls.get(name, 0)
            self._act_calls[name] = call + 1
            with torch.no_grad():
                self._act_values[(name, call)] = _activation_stats(output.detach(), kind)
        return hook

    def _collect_activations(self, step: int) -> None:
        for h in self._act_handles:
            h.remove()
        self._act_handles = []
        if not self._act_values:
            return
        rec = self.recording
        keys = sorted(self._act_values, key=lambda k: (self._act_order(k[0]), k[1]))
        if keys != self._act_keys:  # first measurement (or the set of calls changed)
            self._act_keys = keys
            kinds = {n: k for n, k, _ in self._act_modules}
            rec.activations = [(n if c == 0 else f"{n}#{c + 1}", kinds[n]) for n, c in keys]
            rec.dead, rec.saturated = Series(), Series()
            self._dead_masks.clear()
        values = []
        for key, (_, kind) in zip(keys, rec.activations, strict=True):
            stat = self._act_values[key]
            if kind != "relu":  # tanh/sigmoid: saturated fraction
                values.append(stat.reshape(()).float())
                continue
            window = self._dead_masks.setdefault(key, deque(maxlen=self.config.dead_window))
            if window and window[-1].shape != stat.shape:
                window.clear()
            window.append(stat)
            alive = torch.stack(list(window)).any(dim=0)
            values.append(1.0 - alive.float().mean())
        packed = torch.stack([v.to(values[0].device) for v in values]).cpu().numpy()
        dead = [float(v) if k == "relu" else math.nan for v, (_, k) in zip(packed, rec.activations, strict=True)]
        sat = [float(v) if k != "relu" else math.nan for v, (_, k) in zip(packed, rec.activations, strict=True)]
        mp = self.config.max_points
        rec.dead.append(step, dead, mp)
        rec.saturated.append(step, sat, mp)
        self._act_values.clear()
        self._act_calls.clear()

    def _act_order(self, name: str) -> int:
        for i, (n, _, _) in enumerate(self._act_modules):
            if n == name:
                return i
        return len(self._act_modules)

    # ------------------------------------------------------------- non-finite
    def _remember_input(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
                        ) -> None:
        if module.training and torch.is_grad_enabled():
            self._last_input = (args, kwargs)

    def _on_nonfinite_grads(self, step: int, bad_layers: list[int]) -> None:
        rec = self.recording
        guarded = False
        if self.config.guard_nonfinite:
            for p in self._params:
                p.grad = None  # optimizers skip parameters without a gradient
            guarded = True
            rec.skipped_updates += 1
        if rec.nonfinite is None:
            rec.nonfinite = {
                "step": step, "where": "gradients",
                "grad_layers": [rec.layers[i] for i in bad_layers],
                # backward runs output -> input, so the layer nearest the output with a
                # non-finite gradient is where it appeared
                "backward_origin": rec.layers[bad_layers[-1]] if bad_layers else None,
                "update_skipped": guarded,
                **self.trace_forward(),
            }
        self._stop_reason = f"non-finite gradients at optimizer step {step}"

    def trace_forward(self) -> dict[str, Any]:
        """Re-run the last training forward (no grad, RNG and buffers restored) and name the
        first module whose output is non-finite; also the layers whose weights are."""
        model, rec = self.model, self.recording
        out: dict[str, Any] = {"forward_origin": None, "input_nonfinite": False,
                               "nonfinite_weights": []}
        if model is None:
            return out
        with torch.no_grad():
            norms = _tensor_norms([p.detach() for p in self._params]) if self._params else []
        out["nonfinite_weights"] = sorted({rec.layers[self._owner[i]]
                                           for i, v in enumerate(norms) if not math.isfinite(v)})
        if self._last_input is None:
            return out
        args, kwargs = self._last_input
        out["input_nonfinite"] = any(isinstance(a, torch.Tensor) and a.is_floating_point()
                                     and not bool(torch.isfinite(a).all()) for a in args)
        out["forward_origin"] = _first_nonfinite_module(model, args, kwargs)
        return out

    # ------------------------------------------------------ what a loop reports
    def record_loss(self, loss: float | torch.Tensor) -> None:
        """The loss of the step just taken (a float or a tensor)."""
        value = float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else float(loss)
        rec = self.recording
        rec.loss.append(value)
        if self.optimizer is not None:
            rec.lr.append(float(self.optimizer.param_groups[0]["lr"]))
        if not math.isfinite(value) and rec.nonfinite is None:
            rec.nonfinite = {"step": len(rec.loss) - 1, "where": "loss", "value": str(value),
                             "grad_layers": [], "backward_origin": None, "update_skipped": False,
                             **self.trace_forward()}
            self._stop_reason = f"non-finite loss at step {len(rec.loss) - 1}"
        elif rec.nonfinite is not None and "loss" not in rec.nonfinite:
            rec.nonfinite["loss"] = str(value)  # the loss of the step whose update was caught

    def record_epoch(self, *, epoch: int | None = None, train_loss: float | None = None,
                     val: dict[str, float] | None = None, lr: float | None = None,
                     **extra: float) -> None:
        """Close an epoch: its mean training loss (default: the mean of the losses recorded
        since the last epoch) and validation metrics (``{"loss": ..., "accuracy": ...}``)."""
        rec = self.recording
        start = rec.epochs[-1]["step"] if rec.epochs else 0
        if train_loss is None:
            chunk = [v for v in rec.loss[start:] if math.isfinite(v)]
            train_loss = float(np.mean(chunk)) if chunk else math.nan
        entry: dict[str, Any] = {"epoch": epoch if epoch is not None else len(rec.epochs) + 1,
                                 "step": len(rec.loss), "train_loss": float(train_loss)}
        for k, v in (val or {}).items():
            entry["val_loss" if k == "loss" else f"val_{k}"] = float(v)
        if lr is not None:
            entry["lr"] = float(lr)
        elif self.optimizer is not None:
            entry["lr"] = float(self.optimizer.param_groups[0]["lr"])
        entry.update({k: float(v) for k, v in extra.items()})
        rec.epochs.append(entry)
        self.record_predictions(entry["epoch"])

    def record_predictions(self, epoch: int) -> None:
        """Outputs on ``fixed_batch`` (eval mode, mode restored): p(true class) for
        classification, the first output for regression."""
        if self.fixed_batch is None or self.model is None:
            return
        x, y = self.fixed_batch
        model = self.model
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model(x)
        finally:
            model.train(was)
        if not isinstance(out, torch.Tensor) or len(out) != len(y):
            self.fixed_batch = None  # outputs we cannot read as predictions: stop trying
            return
        out = out.detach().float().cpu()
        rec = self.recording
        classify = self.task == "classification" or (
            self.task is None and out.ndim == 2 and out.shape[1] > 1 and not y.is_floating_point())
        if classify and out.ndim == 2 and out.shape[1] > 1:
            probs = torch.softmax(out, 1)
            yy = y.cpu().long().reshape(-1)
            rec.predictions.append({"epoch": epoch, "p_true": probs[torch.arange(len(yy)), yy].tolist(),
                                    "predicted": probs.argmax(1).tolist()})
            rec.prediction_targets = yy.tolist()
        else:
            rec.predictions.append({"epoch": epoch, "output": out.reshape(len(out), -1)[:, 0].tolist()})
            rec.prediction_targets = y.float().reshape(len(y), -1)[:, 0].cpu().tolist()

    def pop_stop_reason(self) -> str | None:
        reason, self._stop_reason = self._stop_reason, None
        return reason

    # ------------------------------------------------------ fit() callback API
    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.attach(model, optimizer)

    def on_step_end(self, step: int, loss: float, model: nn.Module,
                    optimizer: torch.optim.Optimizer) -> str | None:
        self.record_loss(loss)
        reason = self.pop_stop_reason()
        return reason if self.config.stop_on_nonfinite else None

    def on_epoch_end(self, record: EpochRecord, history: FitHistory, model: nn.Module
                     ) -> str | None:
        self.record_epoch(epoch=record.epoch, train_loss=record.train_loss, val=record.val,
                          lr=record.lr)
        return None

    def on_fit_end(self, history: FitHistory, model: nn.Module) -> None:
        self.detach()


def _move_to_front(optimizer: torch.optim.Optimizer, handle: Any) -> None:
    """Run our pre-hook before hooks registered earlier (e.g. clipping), to see raw grads."""
    hooks = getattr(optimizer, "_optimizer_step_pre_hooks", None)
    if hooks is not None and hasattr(hooks, "move_to_end") and handle.id in hooks:
        hooks.move_to_end(handle.id, last=False)


def _tensor_norms(tensors: list[torch.Tensor]) -> list[float]:
    """L2 norm of each tensor: one fused reduction, one copy to the CPU (grouped by device and
    dtype only when one call cannot take them all)."""
    with torch.no_grad():
        try:
            return torch.stack(torch._foreach_norm(tensors)).tolist()
        except (RuntimeError, TypeError, NotImplementedError):
            pass
        if any(t.is_sparse for t in tensors):  # sparse gradients (nn.Embedding(sparse=True))
            return [float(t.coalesce().values().norm()) if t.is_sparse else float(t.norm())
                    for t in tensors]
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, t in enumerate(tensors):
            groups.setdefault((t.device, t.dtype), []).append(i)
        parts = [(idx, torch.stack(torch._foreach_norm([tensors[i] for i in idx])).float())
                 for idx in groups.values()]
        dev = parts[0][1].device
        flat = torch.cat([v.to(dev) for _, v in parts]).cpu().numpy()
    out = np.empty(len(tensors))
    pos = 0
    for idx, v in parts:
        out[idx] = flat[pos:pos + len(v)]
        pos += len(v)
    return out.tolist()


def _unit_dim(x: torch.Tensor) -> int:
    # (N, C, H, W) / (N, C, D, H, W): channels; (N, D): features; (N, T, D): the last dim.
    if x.ndim <= 1:
        return 0
    return x.ndim - 1 if x.ndim == 3 else 1


def _activation_stats(out: torch.Tensor, kind: str) -> torch.Tensor:
    """ReLU: per-unit "was active on this batch" mask; tanh/sigmoid: saturated fraction."""
    if kind == "relu":
        d = _unit_dim(out)
        dims = [i for i in range(out.ndim) if i != d]
        return (out > 0).any(dim=dims) if dims else out > 0
    if kind == "tanh":
        return (out.abs() > TANH_SATURATION).float().mean()
    return ((out < SIGMOID_SATURATION) | (out > 1 - SIGMOID_SATURATION)).float().mean()


def _first_nonfinite_module(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
                            ) -> str | None:
    order: list[str] = []
    handles = []

    def make(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.is_floating_point() \
                    and not bool(torch.isfinite(output).all()):
                order.append(name)
        return hook

    for name, module in model.named_modules():
        if name and not list(module.children()):  # leaves: the layer that did it
            handles.append(module.register_forward_hook(make(name)))
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    devices = [a.device for a in args if isinstance(a, torch.Tensor) and a.is_cuda]
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model(*args, **kwargs)
    except Exception:  # noqa: BLE001 - diagnosis only; the real error surfaced already
        return order[0] if order else None
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for k, v in model.named_buffers():
                if k in buffers:
                    v.copy_(buffers[k])
    return order[0] if order else None
