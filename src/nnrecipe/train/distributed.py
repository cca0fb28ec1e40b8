"""The monitor under distributed data parallel (``torchrun``, Lightning DDP, the HF Trainer).

::

    # torchrun --nproc_per_node 2 train.py
    torch.distributed.init_process_group("gloo")          # or "nccl"
    model = DistributedDataParallel(net)
    with nnrecipe.watch(model, optimizer) as w:            # on every rank
        for x, y in loader:
            ...; optimizer.step()
            w.step(loss)
            if w.should_stop:                              # the same step on every rank
                break
    w.report("runs/ddp")                                   # every rank; rank 0 writes

:func:`nnrecipe.watch` returns a :class:`DistributedWatcher` when a process group with more
than one rank is initialised. Each rank records its own signals with the ordinary monitor and
**nothing in the training step talks to the other ranks**. Every ``gather_every`` steps, and
once at the end, one ``all_gather_object`` collects a small summary from every rank: its loss,
its first non-finite value, its live findings, the monitor's time, and a fingerprint of every
parameter and buffer (the L2 norm and :data:`SAMPLES` fixed coordinates per tensor). Findings
are decided and emitted on rank 0 only, which also writes the one report, with a "Ranks"
section: per-rank figures and the ``ranks-diverged`` finding.

**Replicas that drift apart** (``ranks-diverged``): DDP keeps every rank's weights identical
by averaging gradients and applying the same update everywhere. A rank that trains on its own
gradients (the all-reduce skipped or done by hand on some ranks), its own learning rate (a
scheduler stepped on one rank only), its own initialisation (a seed per rank without DDP's
broadcast), or its own BatchNorm statistics (``broadcast_buffers=False`` without
``SyncBatchNorm``) holds different weights after a step; the finding names the first tensor,
in the model's order, that differs and the ranks that differ from the majority.

**Non-finite values**: DDP averages gradients, so a NaN loss on one rank makes every rank's
gradients NaN at the same step. When the model is DDP-wrapped (its gradients are known to be
all-reduced) and on the CPU (where the monitor's NaN guard reads its check at once), that
event is identical on every rank and triggers an extra gather at once, so every rank learns
which rank's loss went bad and :attr:`DistributedWatcher.should_stop` becomes true on all of
them at the same step: no rank stops alone, nobody waits forever in a collective. Otherwise
(an accelerator, whose statistics are read every ``MonitorConfig.sync_every`` steps, or
gradients averaged by hand) it is noticed at the next regular gather.

Every rank must call ``step`` the same number of times and ``report`` (or :meth:`finish`) at
the end, as with any collective. With NCCL, set the rank's CUDA device first (as DDP needs).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Declared
from nnrecipe.core.results import (
    CheckResult,
    FigureArtifact,
    RunResult,
    StageResult,
    TableArtifact,
    figure_to_png,
)
from nnrecipe.train.detectors import Extras
from nnrecipe.train.monitor import MonitorConfig
from nnrecipe.train.watch import Watcher, report_checks

GATHER_EVERY = 100  # steps between gathers: one small all_gather_object, ~1% of 100 steps
SAMPLES = 32  # coordinates per tensor in its fingerprint (besides its norm)
# Two replicas agree on a number when it differs by less than RTOL of its scale (the larger
# magnitude, or the tensor's RMS for a coordinate near zero). Replicas run the same arithmetic
# on the same bits and agree exactly; a float32 reduction in another order moves a value by
# ~1e-7 of its scale; a rank that applied its own gradient for even one step is off by the
# update, lr * |g| ~ 1e-4..1e-2 of the weights. 1e-5 sits two decades from both (reasoning).
RTOL = 1e-5
# Per-rank batches below this many samples give BatchNorm noisy statistics: Wu & He (Group
# Normalization, 2018, Fig. 1) measured ResNet-50's ImageNet error rising steeply below 16
# images per GPU with per-GPU BatchNorm. Unsynchronised statistics are then a warning.
SMALL_BN_BATCH = 16
CURVE_POINTS = 200  # per-rank loss curve in the report: means of this many chunks at most


class RanksDiverged(Declared):
    code = "ranks-diverged"
    stage = "train"
    severity = Severity.ERROR
    title = "The ranks hold different weights (the DDP replicas drifted apart)"
    fix = ("Every rank must start from the same weights and apply the same update: wrap the "
           "model in DistributedDataParallel (it broadcasts rank 0's weights and averages the "
           "gradients) and do not bypass it (no_sync() only for accumulation, the same "
           "optimizer, learning rate and scheduler steps on every rank, no parameters added "
           "after wrapping); seed the model's initialisation identically on every rank; for "
           "BatchNorm, nn.SyncBatchNorm.convert_sync_batchnorm(model) or broadcast_buffers=True.")


# ------------------------------------------------------------------ pure decisions
@dataclass
class Divergence:
    """Which tensors differ across ranks, and which ranks are off. ``ranks``: the ranks
    outside the largest group of agreeing ranks (the one holding rank 0 on a tie)."""

    tensor: str
    kind: str  # "parameter" | "buffer"
    ranks: list[int]
    tensors: list[str]
    n_total: int
    rel_diff: float  # the first tensor's largest difference, relative to its scale
    batchnorm_only: bool  # only BatchNorm running statistics differ

    @property
    def n_diverged(self) -> int:
        return len(self.tensors)


def _rel_diff(a: np.ndarray, b: np.ndarray, numel: int) -> float:
    """Largest difference between two fingerprints ``[norm, samples...]`` relative to scale."""
    if a.shape != b.shape:
        return math.inf
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if (nan_a != nan_b).any():
        return math.inf
    ok = ~nan_a
    if not ok.any():
        return 0.0
    rms = max(abs(float(a[0])), abs(float(b[0]))) / math.sqrt(max(numel, 1))
    scale = np.maximum(np.maximum(np.abs(a[ok]), np.abs(b[ok])), rms)
    diff = np.abs(a[ok] - b[ok])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0), np.where(diff > 0, np.inf, 0.0))
    return float(rel.max())


def _groups(prints: Sequence[np.ndarray], i: int, numel: int, rtol: float) -> list[list[int]]:
    groups: list[list[int]] = []
    for r, p in enumerate(prints):
        for g in groups:
            if _rel_diff(prints[g[0]][i], p[i], numel) <= rtol:
                g.append(r)
                break
        else:
            groups.append([r])
    return groups


def divergence_verdict(names: Sequence[str], kinds: Sequence[str], numels: Sequence[int],
                       prints: Sequence[np.ndarray], *, batchnorm: Sequence[bool] | None = None,
                       rtol: float = RTOL) -> Divergence | None:
    """The decision behind ``ranks-diverged``, from each rank's fingerprints (one row per
    tensor, in the model's order; rank ``r``'s array is ``prints[r]``). None: all agree."""
    if len(prints) < 2:
        return None
    diverged: list[int] = []
    off: set[int] = set()
    first_rel = 0.0
    for i in range(len(names)):
        groups = _groups(prints, i, numels[i], rtol)
        if len(groups) == 1:
            continue
        reference = max(groups, key=lambda g: (len(g), 0 in g))
        off.update(r for g in groups if g is not reference for r in g)
        if not diverged:
            first_rel = max(_rel_diff(prints[reference[0]][i], prints[r][i], numels[i])
                            for r in range(len(prints)) if r not in reference)
        diverged.append(i)
    if not diverged:
        return None
    bn = list(batchnorm) if batchnorm is not None else [False] * len(names)
    return Divergence(tensor=names[diverged[0]], kind=kinds[diverged[0]], ranks=sorted(off),
                      tensors=[names[i] for i in diverged], n_total=len(names),
                      rel_diff=first_rel, batchnorm_only=all(bn[i] for i in diverged))


def first_nonfinite_rank(events: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Which rank saw a non-finite value first. ``events[r]``: rank r's ``{"loss_step": int |
    None, "grad_step": int | None}``. A rank whose own loss went non-finite is where it started
    (the all-reduce then spreads NaN gradients to every rank at the same step); the earliest
    such step wins, then the lowest rank. Without any non-finite loss, the earliest gradient
    event."""
    def pick(key: str) -> dict[str, Any] | None:
        seen = [(e[key], r) for r, e in enumerate(events) if e and e.get(key) is not None]
        if not seen:
            return None
        step, rank = min(seen)
        return {"rank": rank, "step": step, "where": "loss" if key == "loss_step" else "gradients",
                "ranks": sorted(r for s, r in seen if s == step)}
    return pick("loss_step") or pick("grad_step")


def batchnorm_severity(per_rank_batch: int | None) -> Severity:
    """Unsynchronised BatchNorm statistics: a warning when each rank's batch is small."""
    if per_rank_batch is not None and per_rank_batch < SMALL_BN_BATCH:
        return Severity.WARNING
    return Severity.INFO


# ------------------------------------------------------------------ fingerprints
def model_tensors(model: nn.Module, *, buffers: bool = True
                  ) -> tuple[list[str], list[str], list[torch.Tensor], list[bool]]:
    """Parameters and buffers in the model's order (each module's own, modules in registration
    order): names, kinds, tensors, and whether each is a BatchNorm running statistic."""
    names: list[str] = []
    kinds: list[str] = []
    tensors: list[torch.Tensor] = []
    bn: list[bool] = []
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        own: list[tuple[str, str, torch.Tensor]] = [
            (n, "parameter", p) for n, p in module.named_parameters(recurse=False)]
        if buffers:
            own += [(n, "buffer", b) for n, b in module.named_buffers(recurse=False)
                    if b is not None]
        for n, kind, t in own:
            if id(t) in seen:
                continue
            seen.add(id(t))
            names.append(f"{mod_name}.{n}" if mod_name else n)
            kinds.append(kind)
            tensors.append(t)
            bn.append(kind == "buffer" and isinstance(module, nn.modules.batchnorm._NormBase))
    return names, kinds, tensors, bn


def sample_indices(tensors: Sequence[torch.Tensor], k: int = SAMPLES) -> list[torch.Tensor]:
    """Fixed coordinates per tensor (the same on every rank: seeded, shapes are equal)."""
    g = torch.Generator().manual_seed(1234)
    out = []
    for t in tensors:
        n = t.numel()
        idx = torch.arange(n) if n <= k else torch.randperm(n, generator=g)[:k].sort().values
        out.append(idx.to(t.device))
    return out


def fingerprints(tensors: Sequence[torch.Tensor], indices: Sequence[torch.Tensor]) -> np.ndarray:
    """``(n_tensors, 1 + SAMPLES)`` float64: each tensor's L2 norm, then its values at the
    fixed coordinates (NaN-padded). One copy to the host."""
    if not tensors:
        return np.zeros((0, 1 + SAMPLES))
    dev = tensors[0].device
    rows = []
    with torch.no_grad():
        for t, idx in zip(tensors, indices, strict=True):
            flat = t.detach().reshape(-1)
            if not flat.is_floating_point():
                flat = flat.double()
            row = torch.full((1 + SAMPLES,), math.nan, dtype=torch.float64, device=dev)
            if flat.numel():
                row[0] = torch.linalg.vector_norm(flat.double() if flat.dtype != torch.float64
                                                  else flat).to(dev)
                row[1:1 + len(idx)] = flat[idx].double().to(dev)
            rows.append(row)
        return torch.stack(rows).cpu().numpy()


# ------------------------------------------------------------------ the watcher
def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` without one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def watcher_class() -> type[Watcher]:
    """:class:`DistributedWatcher` under a process group of several ranks, else Watcher."""
    return DistributedWatcher if world()[1] > 1 else Watcher


def watcher_factory(wrapper: nn.Module | None = None) -> Callable[..., Watcher]:
    """What a framework's callback builds its watcher with: :class:`Watcher` in one process;
    under several ranks a :class:`DistributedWatcher` told about ``wrapper`` (the framework's
    wrapped model: Lightning's ``trainer.strategy.model``). A wrapper other than DDP (FSDP,
    DeepSpeed) shards the weights, so the ranks' tensors are not copies and are not compared."""
    from torch.nn.parallel import DistributedDataParallel

    if world()[1] <= 1:
        return Watcher
    if wrapper is None or isinstance(wrapper, DistributedDataParallel):
        return functools.partial(DistributedWatcher, ddp=wrapper)
    return functools.partial(DistributedWatcher, compare=False)


def _unwrap(model: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel):
        return model.module, model
    return model, None


class DistributedWatcher(Watcher):
    """:class:`~nnrecipe.train.watch.Watcher` for one rank of a DDP job; see the module
    docstring. ``ddp``: the ``DistributedDataParallel`` wrapper when ``model`` is the inner
    module (Lightning, Hugging Face); ``gather_every``: steps between gathers; ``compare``:
    compare the ranks' weights (off for sharded models); ``broadcast_buffers`` and
    ``grads_synced``: what the DDP wrapper does, when it cannot be passed (default: read from
    ``ddp``; without one, buffers are compared and gradients are not assumed all-reduced)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 on_finding: Any = None, config: MonitorConfig | None = None,
                 gather_every: int = GATHER_EVERY, group: Any = None,
                 ddp: nn.Module | None = None, compare: bool = True,
                 broadcast_buffers: bool | None = None, grads_synced: bool | None = None,
                 **kwargs: Any) -> None:
        dist = torch.distributed
        inner, wrapper = _unwrap(model)
        self.ddp = wrapper if wrapper is not None else ddp
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        super().__init__(inner, optimizer, on_finding=on_finding,
                         config=replace(config) if config is not None else None, **kwargs)
        self.user_on_finding = self.on_finding
        if self.rank != 0:
            self.on_finding = _ignore  # decided and shown once, on rank 0
        self.gather_every = max(1, int(gather_every))
        # with broadcast_buffers, DDP overwrites every rank's buffers with rank 0's at each
        # forward: differences right after a step are by design, so buffers are not compared
        synced = _syncs_buffers(self.ddp) if broadcast_buffers is None else broadcast_buffers
        self.compare = compare
        self.compare_buffers = compare and not synced
        self.grads_synced = self.ddp is not None if grads_synced is None else grads_synced
        names, kinds, tensors, bn = model_tensors(inner, buffers=self.compare_buffers)
        if not compare:
            names, kinds, tensors, bn = [], [], [], []
        self._names, self._kinds, self._tensors, self._bn = names, kinds, tensors, bn
        self._numels = [t.numel() for t in tensors]
        self._indices = sample_indices(tensors)
        self.should_stop = False
        self.gathers = 0
        self.divergence: Divergence | None = None
        self.divergence_step: int | None = None
        self.nonfinite_rank: dict[str, Any] | None = None
        self.ranks: list[dict[str, Any]] = []
        self._grad_events = 0
        self._grad_events_seen = 0
        self._emergency_done = False
        self._last_gather_step = 0
        self._dist_t0 = time.perf_counter()
        self._finished: dict[str, Any] | None = None
        self._batch: int | None = None  # this rank's batch size, from the last training forward
        self._wrap_monitor()

    def _wrap_monitor(self) -> None:
        mon = self.monitor
        on_grads = getattr(mon, "_on_nonfinite_grads", None)
        if on_grads is not None:
            def counted(*args: Any, **kw: Any) -> Any:
                self._grad_events += 1
                return on_grads(*args, **kw)
            mon._on_nonfinite_grads = counted  # type: ignore[method-assign]
        trace = mon.trace_forward
        model = mon.model

        def trace_locally() -> dict[str, Any]:
            # the trace re-runs a forward on this rank alone: SyncBatchNorm would wait in an
            # all-reduce for ranks that are not tracing. In eval mode it uses its running
            # statistics and talks to nobody.
            syncs = [m for m in (model.modules() if model is not None else [])
                     if isinstance(m, nn.SyncBatchNorm) and m.training]
            for m in syncs:
                m.eval()
            try:
                return trace()
            finally:
                for m in syncs:
                    m.train()
        mon.trace_forward = trace_locally  # type: ignore[method-assign]

    # ------------------------------------------------------------- per step
    def step(self, loss: float | torch.Tensor) -> list[Finding]:
        found = super().step(loss)
        n = self.monitor.steps_recorded()
        new_event = self._grad_events > self._grad_events_seen
        self._grad_events_seen = self._grad_events
        # only where every rank reads its gradient check at once (the CPU); on an accelerator
        # the monitor reads it with its buffered statistics, at moments that can differ by
        # rank, and the next regular gather (a step count, the same everywhere) tells instead
        urgent = (new_event and self.grads_synced and not self._emergency_done
                  and self.monitor.device.type == "cpu")
        if urgent or n - self._last_gather_step >= self.gather_every:
            self._emergency_done = self._emergency_done or urgent
            found += self._gather_and_decide(final=False)
        return found

    # ------------------------------------------------------------- gathering
    def _payload(self, final: bool) -> dict[str, Any]:
        rec = self.monitor.recording  # flushed
        loss = np.asarray(rec.loss, dtype=float)
        since = loss[self._last_gather_step:]
        finite = since[np.isfinite(since)]
        nonfinite = rec.nonfinite or {}
        # steps a GradScaler skipped on purpose (an overflow while it searches its scale) are
        # not failures
        skipped = set(getattr(rec, "scaler_skipped", []) or [])
        bad = [i for i in np.nonzero(~np.isfinite(loss))[0].tolist() if i not in skipped]
        last_input = getattr(self.monitor, "_last_input", None)  # (args, kwargs) of a forward
        if last_input is not None:
            first = next((a for a in last_input[0] if isinstance(a, torch.Tensor) and a.ndim), None)
            self._batch = int(first.shape[0]) if first is not None else self._batch
        out: dict[str, Any] = {
            "rank": self.rank, "steps": len(loss),
            "loss_mean": float(finite.mean()) if len(finite) else math.nan,
            "loss_last": float(loss[-1]) if len(loss) else math.nan,
            "loss_step": bad[0] if bad else None,
            "grad_step": nonfinite.get("step") if nonfinite.get("where") == "gradients" else None,
            "nonfinite": {k: nonfinite.get(k) for k in ("step", "where", "value", "loss",
                                                        "forward_origin")} if nonfinite else None,
            "skipped": int(rec.skipped_updates),
            "monitor_s": float(self.monitor.seconds_spent),
            "wall_s": time.perf_counter() - self._dist_t0,
            "batch": self._batch,
            "fingerprint": fingerprints(self._tensors, self._indices),
            "findings": [f.to_dict() for f in self.findings],
        }
        if final:
            out["curve"] = _chunk_means(loss, CURVE_POINTS)
            out["final"] = [f.to_dict() for f in (self._finished or {}).get("findings", [])]
        return out

    def _gather(self, final: bool) -> list[dict[str, Any]]:
        payload = self._payload(final)
        gathered: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, payload, group=self.group)
        self.gathers += 1
        self._last_gather_step = payload["steps"]
        return gathered

    def _gather_and_decide(self, final: bool) -> list[Finding]:
        t0 = time.perf_counter()
        ranks = self._gather(final)
        self.ranks = ranks
        events = [{"loss_step": r["loss_step"], "grad_step": r["grad_step"]} for r in ranks]
        first = first_nonfinite_rank(events)
        if first is not None:
            self.nonfinite_rank = self.nonfinite_rank or first
            if self.monitor.config.stop_on_nonfinite:
                self.should_stop = True  # every rank decides this from the same numbers
        verdict = divergence_verdict(self._names, self._kinds, self._numels,
                                     [r["fingerprint"] for r in ranks], batchnorm=self._bn)
        if verdict is not None and (self.divergence is None
                                    or verdict.n_diverged >= self.divergence.n_diverged):
            if self.divergence is None:
                self.divergence_step = ranks[0]["steps"]
            self.divergence = verdict
        new: list[Finding] = []
        if self.rank == 0 and not final:
            if verdict is not None:
                f = self.divergence_finding()
                if self._announce(f):
                    new.append(f)
            new += self._merge_live(ranks)
        self.monitor.add_overhead(time.perf_counter() - t0)
        return new

    def _announce(self, f: Finding) -> bool:
        """Emit a finding decided from the gathered numbers (not this rank's own recording,
        so it stays out of ``self.findings``); once per code unless its severity rises."""
        prev = self._emitted.get(f.code)
        if prev is not None and f.severity <= prev:
            return False
        self._emitted[f.code] = f.severity
        f.check = f.check or _section(f.code)
        self.on_finding(f)
        return True

    def _merge_live(self, ranks: list[dict[str, Any]]) -> list[Finding]:
        """Rank 0 passes on other ranks' live findings it has not emitted itself."""
        new = []
        for r in ranks[1:]:
            for d in r["findings"]:
                f = Finding.from_dict(d)
                f.message = f"rank {r['rank']}: {f.message}"
                f.evidence = {**f.evidence, "rank": r["rank"]}
                if self._announce(f):
                    new.append(f)
        return new

    # ------------------------------------------------------------- findings
    def divergence_finding(self) -> Finding:
        v = self.divergence
        assert v is not None
        names = ", ".join(str(r) for r in v.ranks)
        if self.world_size == 2:
            where = f"rank {names} differs from rank 0"
        elif len(v.ranks) == 1:
            where = f"rank {names} differs from the others"
        else:
            where = f"ranks {names} differ from the majority"
        evidence = {"tensor": v.tensor, "kind": v.kind, "ranks": v.ranks,
                    "diverged_tensors": v.tensors[:20], "n_diverged": v.n_diverged,
                    "n_compared": v.n_total, "relative_difference": v.rel_diff,
                    "step": self.divergence_step, "world_size": self.world_size,
                    "buffers_compared": self.compare_buffers}
        if v.batchnorm_only:
            batch = next((r.get("batch") for r in self.ranks if r.get("batch")), None)
            evidence["per_rank_batch"] = batch
            return RanksDiverged.make_finding(
                f"BatchNorm running statistics differ across ranks by step "
                f"{self.divergence_step}: {where}, first in {v.tensor} (relative difference "
                f"{v.rel_diff:.2g}; {v.n_diverged} of {v.n_total} tensors); each rank "
                f"normalises with statistics of its own"
                + (f" {batch}-sample batches (below {SMALL_BN_BATCH}: noisy)" if batch else "")
                + " and keeps its own running averages, so a checkpoint or an evaluation "
                "depends on the rank", evidence, severity=batchnorm_severity(batch),
                fix="Convert the model with nn.SyncBatchNorm.convert_sync_batchnorm(model) "
                    "before wrapping it in DistributedDataParallel (one set of statistics "
                    "over all ranks), or keep DDP's broadcast_buffers=True.")
        return RanksDiverged.make_finding(
            f"the ranks' weights differ by step {self.divergence_step}: {where}, first in "
            f"{v.kind} {v.tensor} (relative difference {v.rel_diff:.2g}; {v.n_diverged} of "
            f"{v.n_total} tensors differ): the replicas no longer train one model", evidence)

    def nonfinite_note(self, f: Finding) -> Finding:
        """``loss-nonfinite`` with the rank that saw it first."""
        first = self.nonfinite_rank
        if first is None:
            return f
        where = ("its loss" if first["where"] == "loss" else
                 "the all-reduced gradients (on every rank at once)")
        f.message = (f"rank {first['rank']} saw it first, in {where} at step {first['step']}"
                     + (f" (also ranks {', '.join(map(str, first['ranks'][1:]))})"
                        if len(first["ranks"]) > 1 else "") + f"; {f.message}")
        f.evidence = {**f.evidence, "first_rank": first["rank"], "first_step": first["step"],
                      "first_where": first["where"], "ranks_at_that_step": first["ranks"]}
        return f

    # ------------------------------------------------------------- the end
    def finish(self, extras: Extras | None = None) -> dict[str, Any]:
        """The final gather (every rank must call it, or :meth:`report`): returns, on every
        rank, ``{"findings": [...], "ranks": [...]}``; the findings are the merged ones on
        rank 0 and this rank's own elsewhere. Safe to call twice."""
        if self._finished is not None and "ranks" in self._finished:
            return self._finished
        findings, diag = self.final_findings(extras)
        self._finished = {"findings": findings, "diag": diag}
        self._gather_and_decide(final=True)
        merged = self._merge_final(self.ranks) if self.rank == 0 else findings
        self._finished.update({"findings": merged, "ranks": self.ranks})
        return self._finished

    def _merge_final(self, ranks: list[dict[str, Any]]) -> list[Finding]:
        by_code: dict[str, Finding] = {}
        seen_on: dict[str, list[int]] = {}
        for r in ranks:
            for d in r["final"]:
                f = Finding.from_dict(d)
                if f.code == RanksDiverged.code:
                    continue
                seen_on.setdefault(f.code, []).append(r["rank"])
                old = by_code.get(f.code)
                if old is None or f.severity > old.severity:
                    if r["rank"] != 0 and not f.message.startswith("rank "):
                        f.message = f"rank {r['rank']}: {f.message}"
                    by_code[f.code] = f
        first = self.nonfinite_rank
        if first is not None:  # the rank where it started knows the cause (e.g. its input)
            own = next((Finding.from_dict(d) for d in ranks[first["rank"]]["final"]
                        if d["code"] == "loss-nonfinite"), None)
            if own is not None:
                by_code["loss-nonfinite"] = own
        merged = []
        for code, f in by_code.items():
            f.evidence = {**f.evidence, "ranks": seen_on[code]}
            if code == "loss-nonfinite":
                f = self.nonfinite_note(f)
            merged.append(f)
        if self.divergence is not None:
            merged.append(self.divergence_finding())
        for f in merged:
            f.check = f.check or _section(f.code)
            self._announce(f)
        return merged

    def report(self, out_dir: str | Path, extras: Extras | None = None) -> dict[str, Path]:
        """The final gather, then (rank 0) ``findings.json`` and ``report.html`` for the whole
        job. Call it on every rank; the others write nothing and return ``{}``."""
        done = self.finish(extras)
        if self.rank != 0:
            return {}
        from nnrecipe.report import write_outputs

        findings: list[Finding] = done["findings"]
        rank_codes = {RanksDiverged.code}
        result = RunResult(experiment=self.name, command="watch",
                           started=getattr(self, "started", ""),
                           duration_s=time.perf_counter() - self._dist_t0,
                           device=str(self.monitor.device))
        checks = report_checks(self.recording, done["diag"],
                               [f for f in findings if f.code not in rank_codes])
        checks.append(self.ranks_check([f for f in findings if f.code in rank_codes]))
        stage = StageResult("train", checks=checks)
        stage.settle_status()
        result.stages.append(stage)
        return write_outputs(result, Path(out_dir))

    def ranks_check(self, findings: list[Finding]) -> CheckResult:
        """The report's "Ranks" section: a row per rank, each rank's loss curve."""
        ranks = self.ranks
        rows = []
        for r in ranks:
            nf = r.get("nonfinite") or {}
            share = r["monitor_s"] / r["wall_s"] if r["wall_s"] > 0 else math.nan
            rows.append([r["rank"], r["steps"], _fmt(r["loss_mean"]), _fmt(r["loss_last"]),
                         f"step {nf['step']} ({nf['where']})" if nf else "—", r["skipped"],
                         r["batch"] if r["batch"] is not None else "—", f"{share:.1%}"])
        check = CheckResult(
            name="ranks", stage="train", title="Ranks (distributed data parallel)",
            findings=findings,
            tables=[TableArtifact("Per rank", ["rank", "steps", "loss (since last gather)",
                                               "last loss", "first non-finite",
                                               "skipped updates", "batch", "monitor time"],
                                  rows, caption=f"{self.world_size} ranks, gathered every "
                                                f"{self.gather_every} steps ({self.gathers} "
                                                "gathers)")])
        if self.divergence is not None:
            v = self.divergence
            check.tables.append(TableArtifact(
                "Tensors that differ across ranks", ["tensor", "kind"],
                [[n, self._kinds[self._names.index(n)]] for n in v.tensors[:30]],
                caption=f"{v.n_diverged} of {v.n_total} compared, in the model's order"))
        curves = {f"rank {r['rank']}": r["curve"][1] for r in ranks if r.get("curve")}
        if curves and any(len(c) > 1 for c in curves.values()):
            from nnrecipe.report.plots import line_plot

            x = next(r["curve"][0] for r in ranks if r.get("curve"))
            fig = line_plot(curves, title="training loss per rank (chunk means)", x=x)
            check.figures.append(FigureArtifact("Loss per rank", figure_to_png(fig)))
        check.metrics = {
            "world_size": self.world_size, "gather_every": self.gather_every,
            "gathers": self.gathers, "buffers_compared": self.compare_buffers,
            "nonfinite_first": self.nonfinite_rank,
            "per_rank": [{k: v for k, v in r.items()
                          if k not in ("fingerprint", "findings", "final", "curve")}
                         for r in ranks]}
        check.settle_status()
        return check


def _syncs_buffers(ddp: nn.Module | None) -> bool:
    """Whether DDP copies rank 0's buffers to every rank at each forward (``broadcast_buffers``,
    renamed ``forward_sync_buffers`` in recent PyTorch)."""
    if ddp is None:
        return False
    value = getattr(ddp, "forward_sync_buffers", None)
    if value is None:
        value = getattr(ddp, "broadcast_buffers", False)
    return bool(value)


def _section(code: str) -> str:
    """The report check a finding is filed under: ``ranks`` for this module's code."""
    if code == RanksDiverged.code:
        return "ranks"
    from nnrecipe.train import watch

    check_for = getattr(watch, "check_for", None)
    return check_for(code) if check_for is not None else "training"


def _ignore(finding: Finding) -> None:
    return None


def _fmt(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else str(v)


def _chunk_means(loss: np.ndarray, points: int) -> tuple[list[float], list[float]]:
    """``(steps, means)``: the loss averaged over at most ``points`` equal chunks (non-finite
    values left out), at each chunk's middle step."""
    n = len(loss)
    if n == 0:
        return [], []
    edges = np.linspace(0, n, min(points, n) + 1).astype(int)
    xs, ys = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        chunk = loss[a:b]
        chunk = chunk[np.isfinite(chunk)]
        xs.append(float((a + b - 1) / 2))
        ys.append(float(chunk.mean()) if len(chunk) else math.nan)
    return xs, ys
