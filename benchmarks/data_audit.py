"""The data stage against cleanlab's Datalab on the same planted problems, in the same run.

Synthetic data: 10 Gaussian classes in D dimensions (N training samples, N/10 validation),
with three problems planted:

- duplicates: 2% of the training rows are replaced by copies of other training rows, half
  exact, half with N(0, 0.01^2) noise per feature;
- leakage: 1% of the validation rows are replaced by copies of training rows (half exact);
- label errors: 5% of the other training labels are flipped to a random other class.

Each tool runs in a fresh child process (so peak memory is its own) with one thread for
BLAS/OpenMP/torch (a fair, quiet comparison on a shared 2-core machine), on data the child
regenerates from the seed. nnrecipe runs its loading pass and the three matching checks
(``data-duplicates``, ``split-leakage``, ``label-errors``); a second nnrecipe child runs the
whole data stage for reference. Datalab gets the same train+val features and labels and
``find_issues(issue_types={"label": {}, "near_duplicate": {}})``; its near-duplicate sets are
read as duplicates (a training partner of a training row) and leakage (a training partner of
a validation row). Precision and recall are over samples: duplicates count both members of
each planted pair.

Datalab needs ``pip install 'cleanlab[datalab]'`` (the ``datasets`` package), which nnrecipe
does not install; the figures in the README were measured with datasets 3.6.0, dill 0.3.8,
pyarrow 20.0.0 (datasets 5.x cannot load a dict on Python 3.11 with dill 0.4). Without it the
Datalab rows are skipped.

    python benchmarks/data_audit.py                        # 50,000 x 64 and 1,000,000 x 32
    python benchmarks/data_audit.py --sizes 5000x16        # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = 10
DUP_FRACTION, LEAK_FRACTION, FLIP_FRACTION = 0.02, 0.01, 0.05
NOISE = 0.01
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# ------------------------------------------------------------------------- data


def make_data(n: int, d: int, seed: int = 0) -> dict[str, Any]:
    """Planted data and the truth about it (row indices into train / val)."""
    rng = np.random.default_rng(seed)
    n_val = n // 10
    # class centres 3 units apart on average per direction: a linear model gets ~97% right
    centres = rng.normal(0, 3.0 / np.sqrt(2), size=(CLASSES, d)).astype(np.float32)
    y = rng.integers(0, CLASSES, n + n_val)
    X = np.empty((n + n_val, d), dtype=np.float32)
    for start in range(0, n + n_val, 1 << 18):
        part = slice(start, min(start + (1 << 18), n + n_val))
        X[part] = centres[y[part]] + rng.standard_normal((part.stop - part.start, d),
                                                         dtype=np.float32)
    X -= X[:n].mean(0)
    X /= X[:n].std(0)
    Xtr, ytr, Xva, yva = X[:n], y[:n].copy(), X[n:], y[n:].copy()

    m = int(DUP_FRACTION * n)
    dst = np.arange(n - m, n)  # the last m rows become copies of earlier ones
    src = rng.choice(n - m, m, replace=False)
    Xtr[dst] = Xtr[src]
    Xtr[dst[m // 2:]] += rng.normal(0, NOISE, size=(m - m // 2, d)).astype(np.float32)
    ytr[dst] = ytr[src]

    k = int(LEAK_FRACTION * n_val)
    leak = rng.choice(n_val, k, replace=False)
    leak_src = rng.choice(n - m, k, replace=False)
    Xva[leak] = Xtr[leak_src]
    Xva[leak[k // 2:]] += rng.normal(0, NOISE, size=(k - k // 2, d)).astype(np.float32)
    yva[leak] = ytr[leak_src]

    eligible = np.setdiff1d(np.arange(n - m), np.concatenate([src, leak_src]))
    flip = rng.choice(eligible, int(FLIP_FRACTION * n), replace=False)
    ytr[flip] = (ytr[flip] + rng.integers(1, CLASSES, len(flip))) % CLASSES
    return {"Xtr": Xtr, "ytr": ytr, "Xva": Xva, "yva": yva,
            "dup": np.union1d(src, dst), "leak": np.sort(leak), "flip": np.sort(flip)}


def pr(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    p, t = set(np.asarray(predicted).tolist()), set(np.asarray(truth).tolist())
    hit = len(p & t)
    return {"precision": hit / len(p) if p else 1.0, "recall": hit / len(t) if t else 1.0,
            "flagged": len(p)}


# ----------------------------------------------------------------------- tools


def run_nnrecipe(data: dict[str, Any], full: bool) -> dict[str, Any]:
    import torch
    from torch import nn

    from nnrecipe import Experiment
    from nnrecipe.core.context import Context
    from nnrecipe.core.runner import run_stages
    from nnrecipe.core.validate import validate_experiment
    from nnrecipe.data.duplicates import SplitLeakage, duplicate_groups

    torch.set_num_threads(1)
    _preload()
    exp = Experiment(model=lambda: nn.Identity(), train=(data["Xtr"], data["ytr"]),
                     val=(data["Xva"], data["yva"]), loss=nn.CrossEntropyLoss(), seed=0)
    only = None if full else ["data-duplicates", "split-leakage", "label-errors"]
    t0 = time.perf_counter()
    ctx = Context(exp)
    validate_experiment(ctx, need_model=False)
    result = run_stages(ctx, ["data"], only=only)
    seconds = time.perf_counter() - t0
    view = ctx.state["data_view"]
    dup_rows = np.concatenate(duplicate_groups(view, "train").groups or [np.zeros(0, int)])
    leaked = SplitLeakage()._leaks(view, "val", "train")[0]
    flagged = np.array([row for split, row, _ in view.cache.get("label-issues", [])
                        if split == "train"], dtype=int)
    statuses = {c.name: c.status for s in result.stages for c in s.checks}
    return {"seconds": seconds, "dup": dup_rows, "leak": leaked, "flip": flagged,
            "statuses": statuses}


def _preload() -> None:
    """Import what the checks import lazily, so that neither tool's time includes imports."""
    import cleanlab.filter  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    import nnrecipe.stages  # noqa: F401
    from nnrecipe.data import neighbors

    neighbors._faiss()


def run_datalab(data: dict[str, Any]) -> dict[str, Any]:
    from cleanlab import Datalab

    _preload()

    n = len(data["Xtr"])
    X = np.concatenate([data["Xtr"], data["Xva"]])
    y = np.concatenate([data["ytr"], data["yva"]])
    t0 = time.perf_counter()
    lab = Datalab(data={"y": y}, label_name="y", verbosity=0)
    lab.find_issues(features=X, issue_types={"label": {}, "near_duplicate": {}})
    seconds = time.perf_counter() - t0
    issues = lab.get_issues()
    sets = lab.get_info("near_duplicate")["near_duplicate_sets"]
    dup = [i for i in range(n) if any(j < n for j in sets[i])]
    leak = [i - n for i in range(n, len(X)) if any(j < n for j in sets[i])]
    flagged = np.flatnonzero(issues["is_label_issue"].to_numpy()[:n])
    return {"seconds": seconds, "dup": np.array(dup, int), "leak": np.array(leak, int),
            "flip": flagged}


def child(tool: str, n: int, d: int, seed: int) -> None:
    data = make_data(n, d, seed)
    base_rss = _status_kb("VmRSS")
    if tool == "datalab":
        out = run_datalab(data)
    else:
        out = run_nnrecipe(data, full=tool == "nnrecipe-full")
    report = {"tool": tool, "seconds": out["seconds"], "peak_rss_mb": _status_kb("VmHWM") / 1024,
              "data_rss_mb": base_rss / 1024,
              "duplicates": pr(out["dup"], data["dup"]), "leakage": pr(out["leak"], data["leak"]),
              "label_errors": pr(out["flip"], data["flip"])}
    if "statuses" in out:
        report["statuses"] = out["statuses"]
    print("RESULT " + json.dumps(report))


def _status_kb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return float("nan")


# ---------------------------------------------------------------------- driver


def spawn(tool: str, n: int, d: int, seed: int, timeout: float) -> dict[str, Any]:
    env = {**os.environ, **{v: "1" for v in THREAD_VARS}}
    cmd = [sys.executable, __file__, "--child", tool, "--sizes", f"{n}x{d}", "--seed", str(seed)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"tool": tool, "timeout": timeout, "seconds": time.perf_counter() - t0}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"tool": tool, "error": (proc.stderr or proc.stdout).strip().splitlines()[-3:]}


def datalab_available() -> bool:
    try:
        import datasets  # noqa: F401
        from cleanlab import Datalab  # noqa: F401
    except ImportError:
        return False
    return True


def fmt(r: dict[str, Any]) -> str:
    if "timeout" in r:
        return f"{r['tool']:14s} did not finish within {r['timeout']:.0f} s (stopped)"
    if "error" in r:
        return f"{r['tool']:14s} failed: {' | '.join(r['error'])}"
    parts = [f"{r['tool']:14s} {r['seconds']:8.1f} s  peak RSS {r['peak_rss_mb']:7.0f} MB"]
    for key in ("duplicates", "leakage", "label_errors"):
        m = r[key]
        parts.append(f"{key} P={m['precision']:.3f} R={m['recall']:.3f}")
    return "  ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="50000x64,1000000x32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="interleaved A/B repeats (median)")
    ap.add_argument("--datalab-timeout", type=float, default=600.0)
    ap.add_argument("--no-full", action="store_true", help="skip the whole-data-stage run")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    if args.child:
        n, d = sizes[0]
        child(args.child, n, d, args.seed)
        return
    have_datalab = datalab_available()
    if not have_datalab:
        print("cleanlab's Datalab is not installed (pip install 'cleanlab[datalab]'): "
              "its rows are skipped")
    results: list[dict[str, Any]] = []
    for n, d in sizes:
        print(f"\n== N={n:,} x D={d} (+{n // 10:,} validation), one thread per process ==")
        runs: dict[str, list[dict[str, Any]]] = {}
        tools = ["nnrecipe"] + (["datalab"] if have_datalab else [])
        for _ in range(args.repeats):
            for tool in tools:
                timeout = args.datalab_timeout if tool == "datalab" else 3600.0
                r = spawn(tool, n, d, args.seed, timeout)
                print(fmt(r), flush=True)
                runs.setdefault(tool, []).append(r)
        if not args.no_full:
            r = spawn("nnrecipe-full", n, d, args.seed, 3600.0)
            print(fmt(r) + "  (all 12 data checks)", flush=True)
            runs["nnrecipe-full"] = [r]
        summary = {"n": n, "d": d, "runs": runs}
        ok = [r for r in runs.get("nnrecipe", []) if "seconds" in r and "error" not in r]
        dl = [r for r in runs.get("datalab", []) if "peak_rss_mb" in r]
        if ok and dl:
            ratio = float(np.median([r["seconds"] for r in dl]) /
                          np.median([r["seconds"] for r in ok]))
            summary["speedup"] = ratio
            print(f"nnrecipe is {ratio:.1f}x faster than Datalab (median wall time)")
        results.append(summary)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
