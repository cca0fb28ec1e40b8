"""Never pass silently, never lose work (issue 12), through the real command line in a
subprocess: exit status, the one line printed, and what is on disk afterwards."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

EXP = Path(__file__).with_name("never_silent_exp.py")
ROOT = Path(__file__).parents[2]
NNRECIPE = str(Path(sys.executable).parent / "nnrecipe")
HANG_GUARD_S = 300  # only against a hang; nothing here asserts on time


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "NNRECIPE_THREADS": "1", **extra}


def _run(*args: str, env: dict[str, str] | None = None, **kw: object
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NNRECIPE, *args], capture_output=True, text=True,
                          env=env or _env(), timeout=HANG_GUARD_S, **kw)  # type: ignore[call-overload]


def _one_error_line(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("nnrecipe: error:")]
    assert len(lines) == 1, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in r.stderr + r.stdout


def _leftovers(out: Path) -> list[str]:
    """Lock and temporary files that must never survive a run."""
    return sorted(p.name for p in out.iterdir()
                  if p.name == ".nnrecipe.lock" or p.name.startswith(".nnrecipe-tmp-"))


# ------------------------------------------------------------------ contract (exit 2)

@pytest.mark.parametrize(("code", "shown"), [("3", "sys.exit(3)"),
                                             ("'no GPU here'", "sys.exit('no GPU here')")])
def test_sys_exit_at_import_is_exit_2_with_one_line(tmp_path: Path, code: str, shown: str
                                                    ) -> None:
    exp = tmp_path / "exits.py"
    exp.write_text(f"import sys\nsys.exit({code})\n")
    r = _run("check", str(exp), "--out", str(tmp_path / "out"))
    _one_error_line(r, "importing", shown)
    assert not (tmp_path / "out").exists()  # created for the check, removed: nothing written


@pytest.mark.parametrize(("code", "shown"), [("3", "sys.exit(3)"),
                                             ("'no GPU here'", "sys.exit('no GPU here')")])
def test_sys_exit_in_experiment_is_exit_2_with_one_line(tmp_path: Path, code: str, shown: str
                                                        ) -> None:
    exp = tmp_path / "exits.py"
    exp.write_text(f"import sys\n\ndef experiment():\n    sys.exit({code})\n")
    r = _run("train", str(exp), "--out", str(tmp_path / "out"))
    _one_error_line(r, "experiment() called", shown)


def test_a_train_step_without_a_loss_is_exit_2_before_any_check(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = _run("train", f"{EXP}:returns_none", "--out", str(out))
    _one_error_line(r, "train_step returned None", "scalar tensor or a number")
    assert not out.exists()


@pytest.mark.parametrize(("function", "needles"), [
    ("same_model", ("returned the same model object twice",)),
    ("shared_layer", ("share 6 parameter/buffer tensor(s)", "'0.0.weight'", "deepcopy")),
])
def test_a_factory_that_shares_its_model_is_exit_2_and_changes_nothing(
        tmp_path: Path, function: str, needles: tuple[str, ...]) -> None:
    # In-process (the CLI's own code path, without another torch start-up).
    from typer.testing import CliRunner

    from nnrecipe import ExperimentError, run
    from nnrecipe.cli import app
    from tests.core import never_silent_exp as exps

    r = CliRunner().invoke(app, ["train", f"{exps.__file__}:{function}", "--out",
                                 str(tmp_path / "out"), "--quiet"])
    assert r.exit_code == 2, r.output
    (line,) = [ln for ln in r.output.splitlines() if ln.startswith("nnrecipe: error:")]
    assert all(n in line for n in needles), line
    # The shared model comes out exactly as it went in, training flag included.
    exps.SHARED.eval()
    before = {k: v.clone() for k, v in exps.SHARED.state_dict().items()}
    with pytest.raises(ExperimentError, match=needles[0].replace("(", r"\(").replace(")", r"\)")):
        run(getattr(exps, function)(), ["train"])
    after = exps.SHARED.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not exps.SHARED.training


def test_out_is_checked_before_the_experiment_is_even_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    exp = tmp_path / "exp.py"
    exp.write_text(f"open({str(marker)!r}, 'w').close()\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    r = _run("train", str(exp), "--out", str(a_file / "sub"))
    _one_error_line(r, "cannot create the output folder", str(a_file / "sub"))
    assert not marker.exists()


# --------------------------------------------------------------- a crash is never a pass

def test_primary_crash_is_an_error_and_a_reused_folder_is_clean(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "train-old-figure.png").write_bytes(b"old")
    (out / "study.journal").write_text("resumable")  # e.g. the tune stage's Optuna journal
    (out / ".nnrecipe.lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": os.uname()[1],
                                                    "command": "train"}))  # a dead run's lock
    r = _run("train", f"{EXP}:crash_in_training", "--out", str(out), "--quiet")
    assert r.returncode == 1, (r.stdout, r.stderr)
    summary = [ln for ln in r.stdout.splitlines() if "error(s)" in ln]
    assert len(summary) == 1 and "1 error(s)" in summary[0], r.stdout
    assert "1 check(s) crashed" in summary[0]
    saved = json.loads((out / "findings.json").read_text())
    (crash,) = [f for f in saved["findings"] if f["code"] == "check-crashed"]
    assert crash["severity"] == "error" and crash["check"] == "training"
    assert "the data server went away" in crash["message"] and saved["crashed"] == 1
    assert not (out / "plots" / "train-old-figure.png").exists()  # old plots never mix in
    assert (out / "study.journal").read_text() == "resumable"
    assert _leftovers(out) == []


# ------------------------------------------------------------------------ interrupts

def _start_slow(out: Path, marker: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([NNRECIPE, "train", f"{EXP}:slow", "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(NNRECIPE_TEST_MARKER=str(marker)))


def _wait_for(marker: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before training: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the run never reached the marker step")
        time.sleep(0.05)


@pytest.mark.parametrize(("sig", "status", "name"), [(signal.SIGINT, 130, "Ctrl-C (SIGINT)"),
                                                     (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_keeps_the_work_done(tmp_path: Path, sig: int, status: int, name: str) -> None:
    out, marker = tmp_path / "out", tmp_path / "marker"
    proc = _start_slow(out, marker)
    try:
        _wait_for(marker, proc)
        if sig == signal.SIGTERM:  # meanwhile, a second run on the same folder is refused
            busy = _run("train", f"{EXP}:slow", "--out", str(out))
            _one_error_line(busy, f"the output folder {out} is in use by another nnrecipe run",
                            f"pid {proc.pid}")
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, (stdout, stderr)
    assert "Traceback" not in stderr
    summary = [ln for ln in stdout.splitlines() if "error(s)" in ln]
    assert len(summary) == 1 and f"interrupted by {name} at epoch" in summary[0], stdout
    saved = json.loads((out / "findings.json").read_text())
    assert saved["interrupted"] is True and saved["interruption"]["signal"] == signal.Signals(sig).name
    train = saved["stages"]["train"]
    assert f"interrupted by {name} at epoch" in train["note"] and " of 300 " in train["note"]
    training = train["checks"]["training"]
    assert training["status"] != "crashed" and training["metrics"]["epochs_run"] >= 2
    assert training["metrics"]["stopped_reason"].startswith(f"interrupted by {name} at epoch")
    assert train["checks"]["gradients"]["status"] == "not run"
    assert "interrupted by" in (out / "report.html").read_text()
    assert any(p.name.startswith("train-training-") for p in (out / "plots").iterdir())
    best = torch.load(out / "checkpoints" / "train-best.pt", weights_only=True)
    assert best["best_epoch"] >= 1 and best["state_dict"]
    assert _leftovers(out) == []


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    out, marker = tmp_path / "out", tmp_path / "marker"
    proc = _start_slow(out, marker)
    try:
        _wait_for(marker, proc)
        marker.with_suffix(".slow").write_text("")  # what follows the first Ctrl-C is slow
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (stdout, stderr)
    assert "SIGINT again: stopped at once" in stderr
    assert not (out / "findings.json").exists()
    assert _leftovers(out) == []


# ---------------------------------------------------------------------- a full disk

def _file_size_limit(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_leaves_the_old_outputs_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "findings.json").write_text('{"old": true}')
    (out / "report.html").write_text("old report")
    # No figures: the checkpoint (8.7 kB) and findings.json (~5 kB) fit in 11 kB, the
    # report (~15 kB) does not: the disk "fills up" on the last file.
    r = subprocess.run([NNRECIPE, "train", f"{EXP}:no_figures", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, env=_env(), timeout=HANG_GUARD_S,
                       preexec_fn=lambda: _file_size_limit(11_000))
    _one_error_line(r, f"cannot write outputs to {out}", "nothing half-written")
    assert json.loads((out / "findings.json").read_text()) == {"old": True}
    assert (out / "report.html").read_text() == "old report"
    assert (out / "checkpoints" / "train-best.pt").exists()  # it fitted
    assert _leftovers(out) == []


# ------------------------------------------------------------------- degenerate data

@pytest.mark.parametrize(("command", "function", "status", "codes"), [
    ("train", "huge_batch", 0, {"batch-larger-than-data"}),      # batch_size=10**12
    ("train", "batchnorm_singleton", 0, {"singleton-last-batch"}),  # BatchNorm, last batch of 1
    ("check", "one_sample", 1, {"class-imbalance"}),              # 1 sample (so 1 class)
    ("inspect", "nan_rows", 1, {"corrupt-samples"}),              # NaN rows among good ones
])
def test_degenerate_data_gets_findings_or_reasons_never_a_crash(
        tmp_path: Path, command: str, function: str, status: int, codes: set[str]) -> None:
    out = tmp_path / "out"
    r = _run(command, f"{EXP}:{function}", "--out", str(out), "--quiet")
    assert r.returncode == status, (r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    saved = json.loads((out / "findings.json").read_text())
    found = {f["code"] for f in saved["findings"]}
    assert codes <= found, found
    assert "check-crashed" not in found and saved["crashed"] == 0
    assert (out / "report.html").exists() and _leftovers(out) == []
    if function == "one_sample":  # what cannot run on one sample says why
        skipped = {name: c["reason"] for stage in saved["stages"].values()
                   for name, c in stage["checks"].items() if c["status"] == "skipped"}
        assert "needs at least 2 training samples" in skipped["input-independent"]
        assert "1 usable training sample" in skipped["outliers"]


def test_a_garbage_npz_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "data.npz"
    bad.write_bytes(b"\x95\xf8\xe2\x00" * 64)
    r = _run("inspect", str(bad), "--out", str(tmp_path / "out"))
    _one_error_line(r, str(bad), "is not an .npz archive")
