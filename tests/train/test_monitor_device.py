"""Device handling without a GPU (issue 14, section 5; issue 16, item 4).

* On the ``meta`` device nothing can be copied to the host: a monitored loop running there for
  a whole ``sync_every`` window, with every schedule firing, proves that the hot path makes no
  host transfer (no ``.item()``/``.cpu()`` per parameter or per step) and that every tensor the
  monitor creates lives on the model's device.
* ``MonitorConfig(guard_sync="deferred")`` runs the accelerator path on the CPU (statistics
  read once per ``sync_every`` steps): it records the same numbers as the CPU path, names the
  exact first non-finite step, and carries through the whole CLI.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from nnrecipe.cli import app
from nnrecipe.train.monitor import Monitor, MonitorConfig
from tests.toys import blobs


class LateInfGradient(nn.Module):
    """Identity forward; from the ``at``-th training forward on, an infinite gradient."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            self.calls += 1
            if self.calls > self.at:  # sqrt'(0) = inf in the backward pass only
                return torch.sqrt(x - x.detach()) + x.detach()
        return x


def test_on_the_meta_device_the_hot_path_never_touches_the_host() -> None:
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(),
                          nn.Linear(16, 3)).to("meta")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    config = MonitorConfig(sync_every=64, update_every=5, activation_every=5, overhead_budget=None)
    mon = Monitor(config).attach(model, opt)
    x = torch.empty(8, 10, device="meta")
    y = torch.empty(8, dtype=torch.long, device="meta")
    for _ in range(40):  # 40 steps: 8 update-ratio and 8 activation measurements, no flush
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        mon.record_loss(loss)  # a device tensor: kept on the device until the flush
    assert mon._rec.coverage == {"steps": 40, "nonfinite_guard": 40, "grad_norms": 40,
                                 "update_ratios": 8, "activations": 8}
    made = [mon._row_buf, *[c for _, c in mon._cleared_dev], *mon._sample_idx,
            *[t for _, _, t in mon._pending_stats], *[v for _, v, _ in mon._pending_loss],
            *[m for w in mon._dead_masks.values() for m in w]]
    assert made and all(t.device.type == "meta" for t in made)  # type: ignore[union-attr]
    with pytest.raises(NotImplementedError, match="meta"):  # the flush is the only transfer
        mon.flush()
    for h in mon._handles + mon._act_handles:
        h.remove()


def run_loop(guard_sync: str, *, bad_at: int | None = None, steps: int = 30,
             zero: str = "none") -> tuple[Monitor, list[str]]:
    torch.manual_seed(0)
    Xn, yn = blobs(n=256)
    X, y = torch.from_numpy(Xn), torch.from_numpy(yn)
    model = nn.Sequential(nn.Linear(10, 16), LateInfGradient(bad_at if bad_at is not None else 10**9),
                          nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    mon = Monitor(MonitorConfig(guard_sync=guard_sync, sync_every=8, overhead_budget=None))
    mon.attach(model, opt)
    stops = []
    for i in range(steps):
        if zero != "never":
            opt.zero_grad(set_to_none=zero == "none")
        loss = nn.functional.cross_entropy(model(X[i * 8:i * 8 + 8]), y[i * 8:i * 8 + 8])
        loss.backward()
        opt.step()
        mon.record_loss(loss)
        reason = mon.pop_stop_reason()
        if reason:
            stops.append(f"{i}: {reason}")
    mon.detach()
    return mon, stops


def test_the_deferred_path_records_what_the_cpu_path_records() -> None:
    now, _ = run_loop("auto")
    later, _ = run_loop("deferred")
    a, b = now.recording, later.recording
    assert a.loss == b.loss and a.grad.steps == b.grad.steps == list(range(30))
    assert a.grad.values == b.grad.values and a.grad_total == b.grad_total
    assert a.update.values == b.update.values and a.dead.values == b.dead.values
    assert a.grad_cleared == b.grad_cleared == [1] * 30


@pytest.mark.parametrize("zero, cleared", [("zeros", [1] * 30), ("never", [1] + [0] * 29)])
def test_the_deferred_path_reads_cleared_gradients_like_the_cpu_path(zero: str, cleared: list[int]
                                                                     ) -> None:
    for mode in ("auto", "deferred"):
        mon, _ = run_loop(mode, zero=zero)
        assert mon.recording.grad_cleared == cleared, mode


def test_a_deferred_guard_names_the_exact_first_bad_step() -> None:
    now, stops_now = run_loop("auto", bad_at=13)
    later, stops_later = run_loop("deferred", bad_at=13)
    ev_now, ev_later = now.recording.nonfinite, later.recording.nonfinite
    assert ev_now is not None and ev_later is not None
    assert ev_now["step"] == ev_later["step"] == 13 and ev_now["where"] == "gradients"
    assert ev_now["update_skipped"] and not ev_later["update_skipped"]  # too late to drop it
    assert stops_now[0].startswith("13:")  # at once
    first = int(stops_later[0].split(":")[0])
    assert 13 <= first <= 13 + 8 and ev_later["noticed_at_step"] == first + 1  # within sync_every


EXPERIMENT = """
import torch
from torch import nn
from tests.toys import classification_experiment
from tests.train.test_monitor_device import LateInfGradient


def experiment(bad_at=None):
    def model():
        return nn.Sequential(nn.Linear(10, 32), LateInfGradient(bad_at or 10**9), nn.ReLU(),
                             nn.Linear(32, 3))
    return classification_experiment(
        model=model, epochs=2,
        options={"monitor": {"guard_sync": "deferred", "sync_every": 4}})


def broken():
    return experiment(bad_at=12)
"""


def test_the_cli_runs_the_deferred_device_path(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    exp.write_text(textwrap.dedent(EXPERIMENT))
    runner = CliRunner()  # (the healthy twin of this run is the in-process test above)
    r = runner.invoke(app, ["train", f"{exp}:broken", "--out", str(tmp_path / "bad"), "--quiet"])
    assert r.exit_code == 1, r.output
    report = json.loads((tmp_path / "bad" / "findings.json").read_text())
    f = next(f for f in report["findings"] if f["code"] == "loss-nonfinite")
    assert f["evidence"]["step"] == 12 and f["evidence"]["where"] == "gradients"
    assert f["evidence"]["update_skipped"] is False and "no per-step device sync" in f["evidence"]["note"]


def test_bad_guard_sync_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="guard_sync must be 'auto', 'every-step' or 'deferred'"):
        MonitorConfig(guard_sync="sometimes")
