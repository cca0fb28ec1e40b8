"""`nnrecipe check` (data + skeleton) imports only the stages it runs: the others (optuna, the
tune/ensemble/regularize/overfit machinery) cost start-up time and are not needed. Asserted on
the modules imported, never on timings (benchmarks/check_cost.py measures those)."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = """
import sys
from nnrecipe.api import run
from tests.toys import classification_experiment
res = run(classification_experiment(), ["data", "skeleton"], only=["class-imbalance",
          "init-loss-mismatch"], command="check")
assert {c.name for s in res.stages for c in s.checks} == {"class-imbalance",
                                                          "init-loss-mismatch"}
print("MODS", " ".join(sys.modules))
"""


def test_check_imports_only_its_stages() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    mods = set(next(line for line in out.stdout.splitlines()
                    if line.startswith("MODS ")).split()[1:])
    assert {"nnrecipe.data", "nnrecipe.skeleton"} <= mods
    for unneeded in ("nnrecipe.tune", "nnrecipe.ensemble", "nnrecipe.regularize",
                     "nnrecipe.overfit", "optuna"):
        assert unneeded not in mods, f"nnrecipe check imported {unneeded}"
