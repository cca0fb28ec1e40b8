"""The training monitor: what is measured, when, and how cheaply.

:class:`Monitor` hooks a model and its optimizer and fills a :class:`Recording` with plain
CPU numbers; it decides nothing (the detectors in :mod:`nnrecipe.train.detectors`,
:mod:`nnrecipe.train.grad_accumulation` and :mod:`nnrecipe.train.precision` do).

* Optimizer step **pre**-hook, **every** step: per-tensor gradient norms in one
  ``torch._foreach_norm`` call, written into a small buffer of per-step statistics that stays
  on the model's device and is copied to the host in one transfer every ``sync_every`` steps
  (or when someone reads ``monitor.recording``). The NaN/inf guard is one fused reduction over
  those norms: on the CPU it is read at once and a non-finite update is dropped
  (``guard_nonfinite``) and traced; on an accelerator (where reading it would stall the
  device) it is read with the rest of the buffer, and the finding names the exact first step.
  The hook is moved in front of other step pre-hooks (e.g. :func:`fit`'s clipping) so it sees
  the raw gradients; a GradScaler has unscaled them by then. If ``optimizer.step(closure)``
  is used (Lightning, LBFGS), the closure is wrapped and the measurement runs right after it.
* A gradient hook on one parameter (``Recording.grad_probe``): each backward pass that reaches
  it counts as an arrival, and an arrival that finds ``.grad`` None or all zeros as cleared.
  A step none of whose arrivals found it cleared applied the sum of earlier gradients
  (``grads-not-zeroed``); with declared accumulation, more than one cleared arrival per step
  means micro-batches were thrown away. One small device reduction per backward, no sync.
* Step **post**-hook (every ``update_every`` steps): parameter norms, and update-to-parameter
  ratios estimated on a fixed random sample of coordinates per tensor (no copy of the
  weights); the same samples are the weight trajectories behind ``weights-fluctuating``.
* Forward hooks on ``nn.ReLU``/``nn.Tanh``/``nn.Sigmoid`` (and their hard variants), armed
  only for the forward of every ``activation_every``-th step: dead ReLU units (a unit that is
  zero on every sample of the last ``dead_window`` measured batches) and saturated
  tanh/sigmoid outputs. Activations applied functionally (``F.relu``) are not seen.
* A forward pre-hook on the model keeps the last training input (to trace a non-finite value
  to its layer) and notes the autocast dtype (``Recording.precision``).

The overhead governor stretches only the optional schedules (update ratios, activations),
never the gradient norms or the guard. Per-layer series are thinned (every other point
dropped, sampling stride doubled) once they hold ``max_points`` points.

For code driving the monitor from elsewhere (``watch``, Lightning, Hugging Face, DDP): a step
is recorded by the optimizer hooks plus :meth:`Monitor.record_loss`; :meth:`Monitor.flush`
brings every pending statistic to the host and ``monitor.recording`` always returns flushed
numbers; :meth:`Monitor.steps_recorded` counts recorded steps without a flush.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe.core.fit import Callback, EpochRecord, FitHistory
from nnrecipe.train.nonfinite import first_nonfinite_module
from nnrecipe.train.recording import Recording, Series

__all__ = ["Monitor", "MonitorConfig", "Recording", "Series"]

RELU_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)
TANH_TYPES: tuple[type[nn.Module], ...] = (nn.Tanh, nn.Hardtanh)
SIGMOID_TYPES: tuple[type[nn.Module], ...] = (nn.Sigmoid, nn.Hardsigmoid)
# Saturated: the derivative is below ~2% of its maximum (tanh' = 1 - y^2 < 0.02 for |y| >
# 0.99; sigmoid' = y(1 - y) < 0.0099 for y outside [0.01, 0.99], ~4% of its 0.25 maximum).
TANH_SATURATION = 0.99
SIGMOID_SATURATION = 0.01
MAX_STRETCH = 16
GOVERNOR_WINDOW = 64  # steps per overhead measurement
# A step interval longer than this many times the window's median is a pause (validation,
# a checkpoint, the user's own logging, time detached): it is counted at the median, so the
# monitor's share is measured against the training steps themselves.
PAUSE_FACTOR = 4.0
# Training forwards the first layer's autocast hook looks at before it removes itself (a loop
# that autocasts does so from its first step; the model-level hook keeps looking every step).
PRECISION_LOOKS = 32


@dataclass
class MonitorConfig:
    """When the monitor measures what. The defaults keep the overhead within a few percent
    (see ``benchmarks/monitor_overhead.py``)."""

    grad_every: int = 1  # per-layer gradient norms kept every N steps (the guard runs every step)
    update_every: int = 10  # parameter norms and update ratios
    activation_every: int = 20  # dead ReLU / saturation (a forward with hooks)
    dead_window: int = 3  # measured batches a unit must stay silent on to count as dead
    samples_per_tensor: int = 256  # coordinates per parameter tensor for update ratios
    # Share of the step time the optional measurements (update ratios, activations) may take;
    # beyond it their schedules are stretched (x2, x4, ...; at most x16). The gradient norms
    # and the NaN/inf guard always run on every step. None: never stretch.
    overhead_budget: float | None = 0.03
    guard_nonfinite: bool = True  # drop an update whose gradients are NaN/inf (CPU: at once)
    stop_on_nonfinite: bool = True  # as a fit() callback: stop at the first non-finite
    max_points: int = 2000  # per-layer series are thinned beyond this
    # Steps of per-step statistics kept on the device between two copies to the host. On an
    # accelerator this is also how late (in steps) a non-finite gradient is noticed.
    sync_every: int = 32
    # When the NaN/inf guard and the losses are read on the host: "auto" (at once on the CPU,
    # where nothing waits; with the rest of the statistics on an accelerator), "every-step"
    # (at once everywhere: the bad update is dropped, at the cost of one device sync per
    # step), "deferred" (as on an accelerator, wherever the model is: how the accelerator path
    # is tested on a CPU-only machine).
    guard_sync: str = "auto"

    def __post_init__(self) -> None:
        if self.guard_sync not in ("auto", "every-step", "deferred"):
            raise ValueError(f"MonitorConfig.guard_sync must be 'auto', 'every-step' or "
                             f"'deferred', got {self.guard_sync!r}")
        if int(self.sync_every) < 1:
            raise ValueError(f"MonitorConfig.sync_every must be >= 1, got {self.sync_every!r}")


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

    ``accumulate=N`` declares gradient accumulation over N micro-batches per optimizer step:
    losses recorded between two optimizer steps become one entry (their mean), and the
    accumulation is checked (:mod:`nnrecipe.train.grad_accumulation`). ``scaler`` is the
    ``torch.amp.GradScaler`` of a mixed-precision loop: steps it skips on purpose are told
    apart from real failures and its scale is recorded (:mod:`nnrecipe.train.precision`).
    """

    def __init__(self, config: MonitorConfig | None = None, *,
                 fixed_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                 task: str | None = None, accumulate: int = 1, scaler: Any = None) -> None:
        self.config = config or MonitorConfig()
        if int(accumulate) < 1:
            raise ValueError(f"accumulate must be a whole number >= 1, got {accumulate!r}")
        self._rec = Recording(accumulate=int(accumulate))
        self._rec.coverage = {"steps": 0, "nonfinite_guard": 0, "grad_norms": 0,
                              "update_ratios": 0, "activations": 0}
        self.fixed_batch = fixed_batch
        self.task = task
        self.scaler = scaler
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.device = torch.device("cpu")
        self._autocast_device = True
        self._immediate = True
        self._handles: list[Any] = []
        self._act_handles: list[Any] = []
        self._params: list[nn.Parameter] = []
        self._owner = np.zeros(0, dtype=int)
        self._onehot = np.zeros((0, 0))
        self._sample_idx: list[torch.Tensor] = []
        self._sample_owner = np.zeros(0, dtype=int)
        self._kept = np.zeros(0, dtype=int)
        self._pre_samples: torch.Tensor | None = None
        self._act_modules: list[tuple[str, str, nn.Module]] = []
        self._act_hook_fns: list[tuple[nn.Module, Callable[..., None]]] = []
        self._act_rank: dict[str, int] = {}  # activation name -> its place in the model
        self._act_values: dict[tuple[str, int], torch.Tensor] = {}
        self._act_calls: dict[str, int] = {}
        self._act_keys: list[tuple[str, int]] = []
        self._dead_masks: dict[tuple[str, int], deque[torch.Tensor]] = {}
        self._last_input: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self._precision_looks = 0
        self._precision_handle: Any = None
        self._stop_reason: str | None = None
        # per-step statistics on the device: row i of ``_row_buf`` holds the per-tensor
        # gradient norms of the i-th step since the last flush (written in place: no tensor
        # made per step, one copy to the host per ``sync_every`` steps); ``_row_meta`` its
        # (step, probe arrivals, arrivals found cleared, tensors with a gradient or None=all)
        self._row_buf = torch.zeros(0, 0)
        self._row_views: list[torch.Tensor] = []
        self._norm_dtype: torch.dtype | None = None  # float32 for half-precision gradients
        self._row_meta: list[tuple[int, int, int, tuple[int, ...] | None]] = []
        self._cleared_dev: list[tuple[int, torch.Tensor]] = []  # (row, cleared?) on the device
        self._arrivals = 0
        self._cleared_host = 0
        self._stale_steps = 0
        # losses (and the scaler's scale) recorded since the last flush
        self._pending_loss: list[tuple[int, float | torch.Tensor, float]] = []
        self._pending_scale: list[float | torch.Tensor] = []
        self._pending_stats: list[tuple[str, int, torch.Tensor]] = []
        self._loss_groups = 0
        self._last_loss_step: int | None = None
        self._prev_scale: float | None = None
        self._open_group: int | None = None
        self._group_sum = 0.0
        self._group_n = 0
        # overhead governor
        self._stretch = 1
        self.seconds_spent = 0.0  # wall time in the hooks and live checks, all told
        self.check_seconds = 0.0  # of which in the live checks (``add_overhead``)
        self.step_seconds: float | None = None  # typical wall time of one step (pauses capped)
        self._optional = 0.0  # time in the optional measurements since the last step hook
        self._last_hook: float | None = None
        self._intervals: list[float] = []
        self._optional_window: list[float] = []

    # ------------------------------------------------------------------ attaching
    @property
    def attached(self) -> bool:
        return bool(self._handles)

    @property
    def recording(self) -> Recording:
        """Everything measured so far, with every pending statistic brought to the host."""
        self.flush()
        return self._rec

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> Monitor:
        """Register the hooks on ``model`` and ``optimizer`` (idempotent)."""
        if self.attached:
            return self
        self.model, self.optimizer = model, optimizer
        names, types, params, owner = _layer_params(model, optimizer)
        rec = self._rec
        if not rec.layers:
            rec.layers, rec.layer_types = names, types
        same = [id(p) for p in params] == [id(p) for p in self._params]
        self.flush()
        self._params, self._owner = params, np.asarray(owner, dtype=int)
        self.device = params[0].device if params else torch.device("cpu")
        self._autocast_device = torch.amp.is_autocast_available(self.device.type)
        mode = self.config.guard_sync
        self._immediate = mode == "every-step" or (mode == "auto" and self.device.type == "cpu")
        self._onehot = np.zeros((len(params), max(len(rec.layers), 1)))
        self._onehot[np.arange(len(params)), np.minimum(self._owner, len(rec.layers) - 1)] = 1.0
        self._row_buf = torch.zeros(int(self.config.sync_every), len(params), device=self.device)
        self._row_views = list(self._row_buf.unbind(0))
        self._norm_dtype = _wide(params[0].dtype) if params else None
        # re-attaching to the same model keeps the sampled coordinates
        if not same or not self._sample_idx or self._sample_idx[0].device != self.device:
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
        self._act_hook_fns = [(m, self._act_hook(n, k)) for n, k, m in self._act_modules]
        self._act_rank = {n: i for i, (n, _, _) in reversed(list(enumerate(self._act_modules)))}
        pre = optimizer.register_step_pre_hook(self._pre_step)
        _move_to_front(optimizer, pre)
        self._handles = [pre, optimizer.register_step_post_hook(self._post_step),
                         model.register_forward_pre_hook(self._remember_input, with_kwargs=True)]
        first = _owner_module(model, params[0]) if params else None
        if first is not None and first is not model:  # autocast is seen where the layers run
            self._precision_looks = 0
            self._precision_handle = first.register_forward_pre_hook(self._first_layer_precision)
            self._handles.append(self._precision_handle)
        if params:  # the gradient probe: the last parameter the optimizer updates
            probe = params[-1]
            self._handles.append(probe.register_hook(self._make_arrival_hook(probe)))
            rec.grad_probe = f"{rec.layers[self._owner[-1]]}[{len(params) - 1}]"
        if self._act_modules and rec.optimizer_steps % self.config.activation_every == 0:
            self._arm_activations()
        self._last_hook = None  # time spent detached is not a step
        self._arrivals = self._cleared_host = 0
        return self

    def detach(self) -> None:
        """Remove every hook this monitor placed; the model and optimizer are left as found."""
        for h in self._handles + self._act_handles:
            h.remove()
        self._handles, self._act_handles = [], []
        self._last_input = None
        self._pre_samples = None
        self._dead_masks.clear()
        self._last_hook = None
        self.flush()

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
        for layer in range(len(self._rec.layers)):
            keep.extend(np.nonzero(self._sample_owner == layer)[0][:16].tolist())
        self._kept = np.asarray(keep, dtype=int)
        self._rec.weight_sample_layers = self._sample_owner[self._kept].tolist()

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
        step = self._rec.optimizer_steps
        self._measure_grads(step)
        if step % (self.config.update_every * max(self._stretch, self._rec.update.stride)) == 0:
            t1 = time.perf_counter()
            self._pre_samples = self._gather_samples()
            self._optional += time.perf_counter() - t1
        self.seconds_spent += time.perf_counter() - t0

    def _post_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        t0 = time.perf_counter()
        rec = self._rec
        step = rec.optimizer_steps
        if self._pre_samples is not None:
            self._measure_update(step, self._pre_samples)
            self._pre_samples = None
        if self._act_handles:
            self._collect_activations(step)
        rec.optimizer_steps += 1
        rec.coverage["steps"] = rec.optimizer_steps
        if self._act_modules and rec.optimizer_steps % (
                self.config.activation_every * max(self._stretch, rec.dead.stride)) == 0:
            self._arm_activations()
        self._optional += time.perf_counter() - t0
        if len(self._row_meta) >= len(self._row_views):
            self._flush_grads()
        if len(self._pending_stats) >= self.config.sync_every:
            self._flush_pending_stats()
        self.seconds_spent += time.perf_counter() - t0

    def add_overhead(self, seconds: float) -> None:
        """Count time spent on the monitor's behalf outside its hooks (live detectors)."""
        self.check_seconds += seconds
        self._spend(seconds)

    def _spend(self, seconds: float) -> None:
        self.seconds_spent += seconds

    def _govern(self, now: float) -> None:
        """Keep the optional measurements within ``overhead_budget`` of the step time.

        Every ``GOVERNOR_WINDOW`` steps the time of the optional measurements (update ratios,
        activations: the only work the governor can stretch; the gradient norms, the guard and
        the live checks have their own rules) is compared with the time of those steps, each measured from one step hook to the next while attached (attach()
        starts afresh, so time detached or spent by other code between blocks is never a
        step) and capped at ``PAUSE_FACTOR`` x the window's median (a validation pass or a
        checkpoint is not a training step). Over budget: the update-ratio and activation
        schedules are stretched x2; well under: shrunk back."""
        last, self._last_hook = self._last_hook, now
        if last is None:
            self._optional = 0.0
            return
        x = now - last
        self._intervals.append(x)
        ema = self.step_seconds
        self.step_seconds = x if ema is None else 0.9 * ema + 0.1 * min(x, PAUSE_FACTOR * ema)
        self._optional_window.append(self._optional)
        self._optional = 0.0
        if len(self._intervals) < GOVERNOR_WINDOW:
            return
        cap = PAUSE_FACTOR * float(np.median(self._intervals))
        step_time = sum(min(x, cap) for x in self._intervals)
        share = sum(self._optional_window) / max(step_time, 1e-9)
        self._intervals, self._optional_window = [], []
        budget = self.config.overhead_budget
        if not budget:
            return
        if share > budget and self._stretch < MAX_STRETCH:
            self._stretch *= 2
        elif share < budget / 4 and self._stretch > 1:
            self._stretch //= 2
        self._rec.schedule_stretch = self._stretch

    # ------------------------------------------------------- gradients (hot path)
    def _make_arrival_hook(self, probe: nn.Parameter) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            # runs before autograd adds ``grad`` into ``probe.grad``: what is there now is
            # what the previous steps left (None / zeros when the loop cleared it). The
            # default zero_grad(set_to_none=True) costs nothing here; a tensor left in place
            # costs one reduction (read at once on the CPU, queued on an accelerator).
            self._arrivals += 1
            old = probe.grad
            if old is None:
                self._cleared_host += 1
                return
            with torch.no_grad():
                if self._immediate:
                    self._cleared_host += not bool(old.any())
                else:
                    self._cleared_dev.append((len(self._row_meta), torch.logical_not(old.any())))
        return hook

    def _measure_grads(self, step: int) -> None:
        """The hot path (every step): one fused norm written in place into the next row of the
        device buffer; on the CPU the finite check is read at once (there is no device to
        stall). No tensor is created per step beyond the norms themselves, no Python loop
        over the parameters beyond collecting their gradients."""
        params = self._params
        if not params:
            return
        meta = self._row_meta
        if len(meta) >= len(self._row_views):
            self._flush_grads()
        row = self._row_views[len(meta)]
        grads = [p.grad for p in params]
        present: tuple[int, ...] | None = None
        try:  # the usual case: every tensor has a dense gradient on one device and dtype
            torch.stack(torch._foreach_norm(grads, 2, self._norm_dtype), out=row)
        except (RuntimeError, TypeError, NotImplementedError):  # None, sparse, mixed devices
            have = [i for i, g in enumerate(grads) if g is not None]
            present = tuple(have)
            row.zero_()
            if have:
                row[torch.as_tensor(have, device=row.device)] = _norm_vector(
                    [grads[i] for i in have]).to(row.device)  # type: ignore[misc]
        meta.append((step, self._arrivals, self._cleared_host, present))
        self._arrivals = self._cleared_host = 0
        if present == ():
            return
        cov = self._rec.coverage
        cov["nonfinite_guard"] += 1
        cov["grad_norms"] += 1
        if self._immediate and not math.isfinite(sum(values := row.tolist())):
            bad = sorted({int(self._owner[i]) for i, v in enumerate(values)
                          if not math.isfinite(v) and (present is None or i in present)})
            self._on_nonfinite_grads(step, bad, drop=self.config.guard_nonfinite)

    def _flush_grads(self) -> None:
        """Copy the filled rows to the host in one transfer and append them to the series."""
        meta, cleared_dev = self._row_meta, self._cleared_dev
        n = len(meta)
        if not n:
            return
        # arrivals after the last closed row belong to the next one: keep them for it
        self._row_meta = []
        self._cleared_dev = [(r - n, c) for r, c in cleared_dev if r >= n]
        cleared_dev = [(r, c) for r, c in cleared_dev if r < n]
        p = len(self._params)
        block = self._row_buf[:n].reshape(-1)
        if cleared_dev:
            block = torch.cat([block, *[c.reshape(1).to(block) for _, c in cleared_dev]])
        flat = block.to("cpu", torch.float64).numpy()
        norms = flat[:n * p].reshape(n, p)
        steps = [m[0] for m in meta]
        arrivals = [m[1] for m in meta]
        cleared = [m[2] for m in meta]
        for (row, _), v in zip(cleared_dev, flat[n * p:], strict=True):
            cleared[row] += int(v)
        if all(m[3] is None for m in meta):  # the usual case: every tensor had a gradient
            missing = None
            sq = np.square(norms)
        else:  # tensors without a gradient (not NaN ones) are missing, not zero
            missing = np.zeros((n, p), dtype=bool)
            for i, m in enumerate(meta):
                if m[3] is not None:
                    missing[i] = True
                    missing[i, list(m[3])] = False
            sq = np.where(missing, 0.0, np.square(norms))
        rec, cfg = self._rec, self.config
        finite = bool(np.isfinite(norms).all())
        if finite:
            layer, total = np.sqrt(sq @ self._onehot), np.sqrt(sq.sum(axis=1))
        else:  # inf/NaN norms stay inf/NaN (the non-finite rules read them); numpy's warning
            # about them reached the user's terminal
            with np.errstate(invalid="ignore", over="ignore"):
                layer, total = np.sqrt(sq @ self._onehot), np.sqrt(sq.sum(axis=1))
        if missing is not None:
            layer = np.where((~missing).astype(float) @ self._onehot > 0, layer, np.nan)
        rec.grad_arrivals.extend(arrivals)
        rec.grad_cleared.extend(cleared)
        self._stale_steps += sum(1 for a, c in zip(arrivals, cleared, strict=True) if a and not c)
        if not finite and rec.nonfinite is None:
            bad_mask = ~np.isfinite(norms) if missing is None else ~np.isfinite(norms) & ~missing
            bad_rows = np.nonzero(bad_mask.any(axis=1))[0]
            if len(bad_rows):
                i = int(bad_rows[0])
                bad = sorted({int(self._owner[j]) for j in np.nonzero(bad_mask[i])[0]})
                self._on_nonfinite_grads(steps[i], bad, drop=False)  # too late to drop it
        every = cfg.grad_every
        totals = total.tolist()
        for i, step in enumerate(steps):
            stride = rec.grad.stride
            if step % (every * stride) != 0 or (meta[i][3] == ()):
                continue
            rec.grad_total.append(totals[i])
            rec.grad.append(step, layer[i], cfg.max_points)
            if rec.grad.stride != stride:
                rec.grad_total = rec.grad_total[::2]

    def flush(self) -> None:
        """Bring every statistic still on the device to the host (one transfer each for the
        gradient rows, the losses and the update/activation measurements)."""
        self._flush_grads()
        self._flush_losses()
        self._flush_pending_stats()

    def _flush_pending_stats(self) -> None:
        if self._pending_stats:
            tensors = [t for _, _, t in self._pending_stats]
            flat = torch.cat([t.to(tensors[0].device) for t in tensors]).to(
                "cpu", torch.float64).numpy()
            sizes = np.cumsum([len(t) for t in tensors])[:-1]
            self._flush_stats(np.split(flat, sizes))

    def alarms(self) -> dict[str, Any]:
        """What is already known on the host, without a flush: a non-finite value seen
        (``nonfinite``) and the number of optimizer steps whose gradient was never cleared
        (``stale_steps``, as of the last flush), a float16 overflow the scaler skipped."""
        return {"nonfinite": self._rec.nonfinite is not None, "stale_steps": self._stale_steps,
                "overflow": self._rec.overflow is not None}

    def steps_recorded(self) -> int:
        """Loss entries recorded so far (one per optimizer step with ``accumulate``), without
        a flush."""
        return self._loss_groups

    # ------------------------------------------------------------ update ratios
    def _gather_samples(self) -> torch.Tensor | None:
        """The sampled coordinates of every tensor as one vector on the model's device: one
        ``take`` per tensor and one ``cat`` (no copy of the weights)."""
        if not self._params:
            return None
        with torch.no_grad():
            parts = [torch.take(p, idx) for p, idx in zip(self._params, self._sample_idx,
                                                          strict=True)]
            try:
                return torch.cat(parts)
            except RuntimeError:  # tensors on several devices
                return torch.cat([t.to(self.device) for t in parts])

    def _measure_update(self, step: int, before: torch.Tensor) -> None:
        """Queue the sampled coordinates before and after the update and the parameter norms
        (one fused norm) for the next flush, where the update ratios, the per-layer parameter
        norms and the kept weight coordinates are computed on the host for every queued
        measurement at once (a handful of device ops per measurement, no host copy here)."""
        after = self._gather_samples()
        if after is None:
            return
        with torch.no_grad():
            pnorms = _norm_vector(self._params).to(after.device)
            self._pending_stats.append(("update", step, torch.cat([before, after, pnorms])))
        self._rec.coverage["update_ratios"] += 1

    def _flush_stats(self, packed: list[np.ndarray]) -> None:
        rec, n, mp = self._rec, len(self._rec.layers), self.config.max_points
        owner, sample_owner = self._owner, self._sample_owner
        s = len(sample_owner)
        for (kind, step, _), values in zip(self._pending_stats, packed, strict=True):
            if kind == "update":
                before, after, pnorms = values[:s], values[s:2 * s], values[2 * s:]
                with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                    # ||delta|| / ||after|| per layer over the sampled coordinates
                    dn = np.sqrt(np.bincount(sample_owner, np.square(after - before), n))
                    sn = np.sqrt(np.bincount(sample_owner, np.square(after), n))
                    ratio = np.where(sn > 0, dn / np.where(sn > 0, sn, 1.0), np.nan)
                    layer_norms = np.sqrt(np.bincount(owner, np.square(pnorms), n))
                rec.update.append(step, ratio, mp)
                rec.param.append(step, layer_norms, mp)
                rec.weight_samples.append(step, after[self._kept], mp)
            else:
                is_relu = [k == "relu" for _, k in rec.activations]
                rec.dead.append(step, [float(v) if r else math.nan
                                       for v, r in zip(values, is_relu, strict=True)], mp)
                rec.saturated.append(step, [float(v) if not r else math.nan
                                            for v, r in zip(values, is_relu, strict=True)], mp)
        self._pending_stats = []

    # -------------------------------------------------------------- activations
    def _arm_activations(self) -> None:
        if self._act_handles:
            return
        self._act_values.clear()
        self._act_calls.clear()
        self._act_handles = [module.register_forward_hook(hook)
                             for module, hook in self._act_hook_fns]

    def _act_hook(self, name: str, kind: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            # training forwards only: eval passes and no-grad probes are not what trains
            if not module.training or not torch.is_grad_enabled() \
                    or not isinstance(output, torch.Tensor):
                return
            t0 = time.perf_counter()
            call = self._act_calls.get(name, 0)
            self._act_calls[name] = call + 1
            with torch.no_grad():
                self._act_values[(name, call)] = _activation_stats(output.detach(), kind)
            spent = time.perf_counter() - t0
            self._optional += spent
            self._spend(spent)
        return hook

    def _collect_activations(self, step: int) -> None:
        for h in self._act_handles:
            h.remove()
        self._act_handles = []
        if not self._act_values:
            return
        rec = self._rec
        order = self._act_rank
        keys = sorted(self._act_values, key=lambda k: (order.get(k[0], len(order)), k[1]))
        if keys != self._act_keys:  # first measurement (or the set of calls changed)
            if any(kind == "activations" for kind, _, _ in self._pending_stats):
                self.flush()  # what was measured under the old set of activations goes first
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
        with torch.no_grad():
            try:  # 0-d float32 tensors already
                stacked = torch.stack(values)
            except RuntimeError:  # activations on several devices
                stacked = torch.stack([v.float().reshape(()).to(self.device) for v in values])
        self._pending_stats.append(("activations", step, stacked))
        rec.coverage["activations"] += 1
        self._act_values.clear()
        self._act_calls.clear()

    # ------------------------------------------------------------- non-finite
    def _remember_input(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
                        ) -> None:
        if module.training and torch.is_grad_enabled():
            self._last_input = (args, kwargs)
            if self._rec.precision is None:
                self._note_precision(module, args)

    def _first_layer_precision(self, module: nn.Module, args: Any) -> None:
        """Autocast where the layers run (a loop that autocasts inside ``training_step`` and never
        calls the model itself). Once the dtype is known, or after ``PRECISION_LOOKS`` training
        forwards without autocast (a loop autocasts from its first step or never), the hook
        removes itself: a hook on a module takes it off PyTorch's fast call path."""
        if not module.training or not torch.is_grad_enabled():
            return
        self._note_precision(module, args)
        self._precision_looks += 1
        if self._precision_handle is not None and (
                self._rec.precision is not None or self._precision_looks >= PRECISION_LOOKS):
            self._precision_handle.remove()
            self._precision_handle = None

    def _note_precision(self, module: nn.Module, args: Any) -> None:
        if self._rec.precision is None and module.training and self._autocast_device and \
                torch.is_autocast_enabled(self.device.type):
            dtype = torch.get_autocast_dtype(self.device.type)
            self._rec.precision = str(dtype).removeprefix("torch.")

    def _on_nonfinite_grads(self, step: int, bad_layers: list[int], *, drop: bool) -> None:
        rec = self._rec
        if drop:
            for p in self._params:
                p.grad = None  # optimizers skip parameters without a gradient
            rec.skipped_updates += 1
        if rec.nonfinite is None:
            rec.nonfinite = {
                "step": step, "where": "gradients",
                "grad_layers": [rec.layers[i] for i in bad_layers],
                # backward runs output -> input, so the layer nearest the output with a
                # non-finite gradient is where it appeared
                "backward_origin": rec.layers[bad_layers[-1]] if bad_layers else None,
                "update_skipped": drop,
                **({} if drop or self._immediate else
                   {"noticed_at_step": rec.optimizer_steps,
                    "note": "read with the per-step statistics (no per-step device sync); the "
                            "update of that step was applied"}),
                **self.trace_forward(),
            }
        self._stop_reason = f"non-finite gradients at optimizer step {step}"

    def trace_forward(self) -> dict[str, Any]:
        """Re-run the last training forward (no grad, RNG and buffers restored) and name the
        first module whose output is non-finite (under the same autocast as in training);
        also the layers whose weights are non-finite, and, under float16 autocast, whether
        the same forward is finite in float32 (then float16 overflowed)."""
        model, rec = self.model, self._rec
        out: dict[str, Any] = {"forward_origin": None, "input_nonfinite": False,
                               "nonfinite_weights": []}
        if model is None:
            return out
        with torch.no_grad():
            norms = _norm_vector([p.detach() for p in self._params]).cpu().tolist() \
                if self._params else []
        out["nonfinite_weights"] = sorted({rec.layers[self._owner[i]]
                                           for i, v in enumerate(norms) if not math.isfinite(v)})
        if self._last_input is None:
            return out
        args, kwargs = self._last_input
        out["input_nonfinite"] = any(isinstance(a, torch.Tensor) and a.is_floating_point()
                                     and not bool(torch.isfinite(a).all()) for a in args)
        dtype = getattr(torch, rec.precision) if rec.precision else None
        origin, _ = first_nonfinite_module(model, args, kwargs, self.device.type, dtype)
        out["forward_origin"] = origin
        if dtype is not None:
            out["autocast"] = rec.precision
            fp32_origin, fp32_ok = first_nonfinite_module(model, args, kwargs, self.device.type, None)
            out["finite_in_float32"] = fp32_ok and fp32_origin is None
        return out

    # ------------------------------------------------------ what a loop reports
    def record_loss(self, loss: float | torch.Tensor) -> None:
        """The loss of the step just taken (a float or a tensor; a tensor on an accelerator is
        kept there until the next flush). With ``accumulate``, the micro-batch losses between
        two optimizer steps become one entry."""
        t0 = time.perf_counter()
        rec = self._rec
        step = rec.optimizer_steps
        if isinstance(loss, torch.Tensor):
            v = loss.detach()
            if v.numel() != 1:
                v = v.float().mean()
            value: float | torch.Tensor = (float(v) if v.device.type == "cpu" and self._immediate
                                           else v.reshape(()).float())
        else:
            value = float(loss)
        # the optimizer step this loss's backward pass fed: the coming one if a backward pass
        # has reached the probe since the last step, else the one just taken (the last
        # micro-batch of a group is often reported after its step)
        fed = step if self._arrivals > 0 else step - 1
        if rec.accumulate == 1 or fed != self._last_loss_step or not self._loss_groups:
            self._loss_groups += 1
        self._last_loss_step = fed
        lr = float(self.optimizer.param_groups[0]["lr"]) if self.optimizer is not None else math.nan
        self._pending_loss.append((self._loss_groups, value, lr))
        if self.scaler is not None:
            scale = getattr(self.scaler, "_scale", None)
            if scale is None:
                scale = float(self.scaler.get_scale())
            elif scale.device.type == "cpu" and self._immediate:
                scale = float(scale)
            else:
                scale = scale.detach().clone().reshape(())
            self._pending_scale.append(scale)
        # host numbers are filed with the rest every ``sync_every`` steps (``recording``
        # flushes first), except a non-finite loss: that one is acted on at once
        if len(self._pending_loss) >= self.config.sync_every or (
                isinstance(value, float) and not math.isfinite(value)):
            self._flush_losses()
        self.seconds_spent += time.perf_counter() - t0

    def _flush_losses(self) -> None:
        pending, scales = self._pending_loss, self._pending_scale
        if not pending:
            return
        self._pending_loss, self._pending_scale = [], []
        values = [v for _, v, _ in pending]
        if not all(type(v) is float for v in values):
            values = _to_host(values)
        scale_values = _to_host(scales) if scales else [None] * len(values)
        rec = self._rec
        for (group, _, lr), value, scale in zip(pending, values, scale_values, strict=True):
            if rec.loss and group == self._open_group:
                self._group_sum += value
                self._group_n += 1
                rec.loss[-1] = self._group_sum / self._group_n
            else:
                self._open_group, self._group_sum, self._group_n = group, value, 1
                rec.loss.append(value)
                rec.lr.append(lr)
                if scale is not None:
                    rec.loss_scale.append(scale)
            index = len(rec.loss) - 1
            skipped = False
            if scale is not None:
                rec.loss_scale[-1] = scale
                prev = self._prev_scale if self._prev_scale is not None else float(
                    getattr(self.scaler, "_init_scale", scale))
                skipped = scale < prev  # GradScaler backs off exactly when it skipped a step
                self._prev_scale = scale
                if skipped and (not rec.scaler_skipped or rec.scaler_skipped[-1] != index):
                    rec.scaler_skipped.append(index)
            if not math.isfinite(value):
                self._on_nonfinite_loss(index, value, skipped)
            elif rec.nonfinite is not None and "loss" not in rec.nonfinite:
                rec.nonfinite["loss"] = str(value)  # the loss of the step whose update was caught

    def _on_nonfinite_loss(self, index: int, value: float, skipped: bool) -> None:
        rec = self._rec
        if skipped:  # the GradScaler dropped this step on purpose: an overflow, not a failure
            if rec.overflow is None:
                rec.overflow = {"step": index, "value": str(value), **self.trace_forward()}
            return
        if rec.nonfinite is None:
            rec.nonfinite = {"step": index, "where": "loss", "value": str(value),
                             "grad_layers": [], "backward_origin": None, "update_skipped": False,
                             **self.trace_forward()}
            self._stop_reason = f"non-finite loss at step {index}"

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
        rec = self._rec
        classify = self.task == "classification" or (
            self.task is None and out.ndim == 2 and out.shape[1] > 1 and not y.is_floating_point())
        if classify and out.ndim == 2 and out.shape[1] > 1 and y.ndim == 1 \
                and not y.is_floating_point():  # class ids (multi-hot targets: first output)
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


def _owner_module(model: nn.Module, param: nn.Parameter) -> nn.Module | None:
    for module in model.modules():
        if any(p is param for p in module.parameters(recurse=False)):
            return module
    return None


def _to_host(values: Sequence[float | torch.Tensor | None]) -> list[float]:
    """Floats from a mix of floats and 0-d device tensors, with one transfer for the tensors."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    if not tensors:
        return [float(v) if v is not None else math.nan for v in values]
    host = iter(torch.stack([t.to(tensors[0].device) for t in tensors]).cpu().tolist())
    return [next(host) if isinstance(v, torch.Tensor) else float(v) if v is not None else math.nan
            for v in values]


def _wide(dtype: torch.dtype) -> torch.dtype | None:
    """The dtype to accumulate a norm of ``dtype`` values in: float32 for the half types (a
    float16 norm overflows to inf above 65504 while every element is finite), else their own."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else None


def _norm_vector(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of each tensor as one float32 vector on the first tensor's device: one fused
    reduction, no copy to the host (grouped by device and dtype only when one call cannot take
    them all; sparse gradients one by one)."""
    with torch.no_grad():
        try:
            out = torch.stack(torch._foreach_norm(list(tensors), 2, _wide(tensors[0].dtype)))
            return out if out.dtype == torch.float32 else out.float()
        except (RuntimeError, TypeError, NotImplementedError):
            pass
        dev = tensors[0].device
        out: list[torch.Tensor | None] = [None] * len(tensors)
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, t in enumerate(tensors):
            if t.is_sparse:
                out[i] = t.coalesce().values().float().norm().to(dev)
            else:
                groups.setdefault((t.device, t.dtype), []).append(i)
        for (_, dtype), idx in groups.items():
            for i, v in zip(idx, torch._foreach_norm([tensors[i] for i in idx], 2, _wide(dtype)),
                            strict=True):
                out[i] = v.float().to(dev)
        return torch.stack(out)  # type: ignore[arg-type]


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


