"""Where `label-errors` should warn: healthy data whose classes overlap vs labels flipped on
purpose, measured through the real data stage.

For each dataset, labels are flipped to a *different* class at a known rate (0, 2, 5, 10%)
in both splits, the data stage's `label-errors` check runs, and its recorded numbers are
printed: the estimated noise rate (cleanlab's confident joint), the share of rows flagged
with a confident suggestion (the baseline gives the suggested class >= 0.8), the mean
suggestion confidence, Cohen's kappa of the baseline, the severity, and the precision of the
flags against the flips that were planted. The thresholds of `nnrecipe/data/label_errors.py`
come from this table: healthy data must stay below them with a margin, flipped labels that
the baseline can see must clear them.

Datasets: scikit-learn's digits, iris, wine, breast cancer; Gaussian blobs; moons with noise
0.3 (overlapping); make_classification with overlapping clusters (class_sep 0.5 and 1.0, the
healthy corpus's `hard_classes`) and a well separated binary one (class_sep 2.5).

Run: .venv/bin/python benchmarks/label_errors_margin.py [--seeds 3] [--rates 0,0.02,0.05,0.1]
     [--only NAME[,NAME]]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn import datasets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.data.helpers import LOADERS, blobs, experiment, run_data, split_standardised  # noqa: E402


def _hard(n: int, d: int, k: int, sep: float, informative: int = 8
          ) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    def make(seed: int) -> tuple[np.ndarray, np.ndarray]:
        return datasets.make_classification(
            n_samples=n, n_features=d, n_informative=informative, n_redundant=2, n_classes=k,
            n_clusters_per_class=2, class_sep=sep, flip_y=0.0, random_state=seed)
    return make


DATASETS: dict[str, Callable[[int], tuple[np.ndarray, np.ndarray]]] = {
    **{name: (lambda seed, f=f: f(return_X_y=True)) for name, f in LOADERS.items()},
    "blobs": lambda seed: blobs(seed=seed),
    "moons-0.3": lambda seed: datasets.make_moons(1000, noise=0.3, random_state=seed),
    "hard3-sep1-1k": _hard(1002, 20, 3, 1.0),
    "hard5-sep1-10k": _hard(10_000, 12, 5, 1.0),
    "hard4-sep0.5-2k": _hard(2000, 20, 4, 0.5),
    "hard2-sep2.5-3k": _hard(3000, 10, 2, 2.5, informative=5),
}


def flip(y: np.ndarray, rate: float, k: int, rng: np.random.Generator
         ) -> tuple[np.ndarray, np.ndarray]:
    """Each label moved to a different class with probability ``rate``."""
    y = y.copy()
    m = rng.random(len(y)) < rate
    y[m] = (y[m] + rng.integers(1, k, m.sum())) % k
    return y, m


def one(name: str, rate: float, seed: int) -> dict[str, object]:
    X, y = DATASETS[name](seed)
    k = len(np.unique(y))
    rng = np.random.default_rng(seed)
    Xtr, Xva, ytr, yva = split_standardised(X, y, seed)
    ytr, mtr = flip(ytr, rate, k, rng)
    yva, mva = flip(yva, rate, k, rng)
    res = run_data(experiment((Xtr, ytr), (Xva, yva), name=name), "label-errors")
    check = next(c for s in res.stages for c in s.checks if c.name == "label-errors")
    m = check.metrics
    sev = max((f.severity.value for f in check.findings), default="-")
    planted = {"train": mtr, "val": mva}
    hits = total = 0
    for t in check.tables:
        for row in t.rows:
            split, pos = re.fullmatch(r"(\w+)\[(\d+)\]", str(row[1])).groups()  # type: ignore[union-attr]
            hits += bool(planted[split][int(pos)])
            total += 1
    return {"name": name, "rate": rate, "seed": seed, "severity": sev,
            "noise": m.get("estimated_noise_rate", 0.0),
            "confident": m.get("confident_flag_share", float("nan")),
            "mean_conf": m.get("mean_suggestion_confidence", 0.0),
            "kappa": m.get("baseline_kappa", float("nan")),
            "precision": hits / total if total else float("nan")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--rates", default="0,0.02,0.05,0.1", help="flip rates, comma list")
    p.add_argument("--only", help="comma list of dataset names")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    names = [n for n in DATASETS if not args.only or n in args.only.split(",")]
    rates = [float(r) for r in args.rates.split(",")]
    print(f"{'dataset':16s} {'flipped':>7s} {'seed':>4s} {'severity':8s} {'noise':>6s} "
          f"{'confident':>9s} {'mean p':>6s} {'kappa':>5s} {'precision':>9s}", flush=True)
    warned: dict[tuple[str, float], list[int]] = defaultdict(list)
    for name in names:
        for rate in rates:
            for seed in range(args.seeds):
                r = one(name, rate, seed)
                warned[(name, rate)].append(r["severity"] in ("warning", "error"))
                print(f"{name:16s} {rate:7.0%} {seed:4d} {r['severity']:8s} {r['noise']:6.1%} "
                      f"{r['confident']:9.2%} {r['mean_conf']:6.2f} {r['kappa']:5.2f} "
                      f"{r['precision']:9.2f}", flush=True)
    print("\nwarned / seeds:")
    for (name, rate), w in warned.items():
        print(f"  {name:16s} {rate:4.0%} flipped: {sum(w)}/{len(w)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
