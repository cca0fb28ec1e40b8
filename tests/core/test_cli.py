"""The command line contract: exit statuses, one-line errors, outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from nnrecipe.cli import app

FIX = Path(__file__).parent.parent / "fixtures"
runner = CliRunner()


def test_missing_experiment_function_exits_2_with_one_line(tmp_path: Path) -> None:
    r = runner.invoke(app, ["check", str(FIX / "no_experiment.py"), "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert "has no function experiment()" in r.output
    assert "Traceback" not in r.output


def test_bad_bias_reports_init_loss_mismatch(tmp_path: Path) -> None:
    r = runner.invoke(app, ["check", str(FIX / "bad_bias.py"), "--out", str(tmp_path),
                            "--fail-on", "warning"])
    assert r.exit_code == 1, r.output
    codes = {f["code"] for f in json.loads((tmp_path / "findings.json").read_text())["findings"]}
    assert "init-loss-mismatch" in codes
    assert (tmp_path / "report.html").exists()


def test_fail_on_never_exits_0(tmp_path: Path) -> None:
    r = runner.invoke(app, ["check", str(FIX / "bad_bias.py"), "--out", str(tmp_path),
                            "--fail-on", "never", "--quiet"])
    assert r.exit_code == 0, r.output


def test_codes_lists_the_catalogue() -> None:
    r = runner.invoke(app, ["codes", "--json"])
    assert r.exit_code == 0
    codes = {c["code"] for c in json.loads(r.output)}
    assert {"init-loss-mismatch", "cannot-overfit-batch", "loss-nonfinite", "check-crashed"} <= codes


def test_console_script_runs_in_a_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    exe = Path(sys.executable).parent / "nnrecipe"
    r = subprocess.run([str(exe), "check", f"{FIX / 'healthy.py'}:raises", "--out", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert "raised RuntimeError: dataset server unreachable" in r.stderr
    assert "Traceback" not in r.stderr


def test_train_command_keeps_the_best_checkpoint_in_the_run_folder(tmp_path: Path) -> None:
    r = runner.invoke(app, ["train", str(FIX / "healthy.py"), "--out", str(tmp_path), "--quiet"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "checkpoints" / "train-best.pt").exists()
    saved = json.loads((tmp_path / "findings.json").read_text())
    assert saved["stages"]["train"]["status"] in ("passed", "info")
