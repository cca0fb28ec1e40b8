"""The data stage against cleanlab's Datalab on the same planted problems, in one interleaved
run; and the data stage's time and peak memory per check on large inputs.

Synthetic data: 10 Gaussian classes in D dimensions (N training samples, N/10 validation),
with four problems planted:

- duplicates: 2% of the training rows are replaced by copies of other training rows, half
  exact, half with N(0, 0.01^2) noise per feature;
- leakage: 1% of the validation rows are replaced by copies of training rows (half exact);
- label errors: 5% of the other training labels are flipped to a random other class;
- outliers: 0.5% of the other training rows are replaced by points drawn around the data's
  mean with OUTLIER_SCALE times its spread per feature (random labels).

The driver writes the data once (an uncompressed .npz, memory-mapped by the children) and runs
each tool in a fresh child process with one BLAS/OpenMP/torch thread, alternating the tools
(A B A B ...), and prints the load average before each child. nnrecipe runs its loading pass
and the four matching checks (data-duplicates, split-leakage, label-errors, outliers) in
nnrecipe's environment; Datalab runs ``find_issues(features=..., issue_types={"label",
"near_duplicate", "outlier"})`` on the same train+val arrays in its own environment
(``benchmarks/datalab/setup.sh`` builds it: no torch). Its near-duplicate sets are read as
duplicates (a training partner of a training row) and leakage (a training partner of a
validation row). Precision and recall are over samples; label-error and outlier flags on
validation rows (all clean) count against precision. Times: the checks alone (wall and CPU of
that region) and the whole child process (start, imports and loading included).

    benchmarks/datalab/setup.sh                                   # once
    python benchmarks/data_audit.py --sizes 50000x64 --repeats 2  # the README's comparison
    python benchmarks/data_audit.py --sizes 5000x16 --no-full     # a quick look
    python benchmarks/data_audit.py --memory 1600000x64,33000x3x32x32

``--memory``: per data check, wall and CPU time and peak RSS (the memory the previous check
freed is returned first, then the high-water mark is reset, /proc/self/clear_refs), for a
float32 tensor of the given shape with random rows and labels (0.41 GB each above), in one
child per shape; ``--npz both`` (the default) runs a second child on the same arrays written
with ``np.savez`` and read as ``nnrecipe inspect data.npz`` reads them (memory-mapped; the
mapped pages count in RSS once read). The ratio is (peak RSS - RSS before the data existed) /
the data's size, so the data itself counts as 1x.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = 10
DUP_FRACTION, LEAK_FRACTION, FLIP_FRACTION, OUTLIER_FRACTION = 0.02, 0.01, 0.05, 0.005
NOISE = 0.01
OUTLIER_SCALE = 3.0
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
HERE = Path(__file__).resolve().parent
DATALAB_PYTHON = HERE / "datalab" / ".venv" / "bin" / "python"
CHECKS = ["data-duplicates", "split-leakage", "label-errors", "outliers"]


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
    eligible = np.setdiff1d(eligible, flip)
    out = rng.choice(eligible, max(1, int(OUTLIER_FRACTION * n)), replace=False)
    Xtr[out] = OUTLIER_SCALE * rng.standard_normal((len(out), d), dtype=np.float32)
    ytr[out] = rng.integers(0, CLASSES, len(out))
    return {"Xtr": Xtr, "ytr": ytr, "Xva": Xva, "yva": yva,
            "dup": np.union1d(src, dst), "leak": np.sort(leak), "flip": np.sort(flip),
            "outlier": np.sort(out)}


def load_data(path: Path) -> dict[str, Any]:
    """The arrays written by the driver (read into memory alike for both tools)."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def pr(predicted: Any, truth: Any) -> dict[str, float]:
    def keys(v: Any) -> set[Any]:  # ints stay ints next to "val12" keys (no str upcast)
        return {x if isinstance(x, str) else int(x) for x in v}

    p, t = keys(predicted), keys(truth)
    hit = len(p & t)
    return {"precision": hit / len(p) if p else 1.0, "recall": hit / len(t) if t else 1.0,
            "flagged": len(p)}


def score(data: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Precision/recall per problem. Flags on validation rows are keyed ("val", i): they count
    in precision (all validation labels are clean and no outlier was planted there)."""
    n = len(data["ytr"])
    as_keys = [int(i) for i in out["flip"]] + [f"val{int(i)}" for i in out.get("flip_val", [])]
    outs = [int(i) for i in out["outlier"]] + [f"val{int(i)}" for i in out.get("outlier_val", [])]
    # label flags among clean rows, per split: validation flags must be no less precise
    flip_tr = {int(i) for i in out["flip"]}
    clean_tr = n - len(data["flip"])
    false_tr = len(flip_tr - {int(i) for i in data["flip"]})
    n_val = len(data["yva"])
    return {"duplicates": pr(out["dup"], data["dup"]), "leakage": pr(out["leak"], data["leak"]),
            "label_errors": pr(as_keys, data["flip"]),
            "label_errors_train": pr(out["flip"], data["flip"]),
            "label_false_rate": {"train": false_tr / max(1, clean_tr),
                                 "val": len(out.get("flip_val", [])) / max(1, n_val)},
            "label_errors_val_flags": len(out.get("flip_val", [])),
            "outliers": pr(outs, data["outlier"]), "n": n}


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
    _preload_nnrecipe()
    exp = Experiment(model=lambda: nn.Identity(), train=(data["Xtr"], data["ytr"]),
                     val=(data["Xva"], data["yva"]), loss=nn.CrossEntropyLoss(), seed=0)
    t0, c0 = time.perf_counter(), time.process_time()
    ctx = Context(exp)
    validate_experiment(ctx, need_model=False)
    result = run_stages(ctx, ["data"], only=None if full else CHECKS)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    view = ctx.state["data_view"]
    dup_rows = np.concatenate(duplicate_groups(view, "train").groups or [np.zeros(0, int)])
    leaked = SplitLeakage()._leaks(view, "val", "train")[0]
    issues = view.cache.get("label-issues", {})  # split -> (rows, suggested classes)
    outliers = view.cache.get("outlier-set", [])
    statuses = {c.name: c.status for s in result.stages for c in s.checks}
    none = (np.zeros(0, int), None)
    return {"seconds": seconds, "cpu": cpu, "dup": dup_rows, "leak": leaked,
            "flip": issues.get("train", none)[0], "flip_val": issues.get("val", none)[0],
            "outlier": [r for s, r in outliers if s == "train"],
            "outlier_val": [r for s, r in outliers if s == "val"], "statuses": statuses}


def _preload_nnrecipe() -> None:
    """Import what the checks import lazily, so that the timed region holds no imports."""
    import cleanlab.filter  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    import nnrecipe.stages  # noqa: F401
    from nnrecipe.data import neighbors

    neighbors._faiss()


def run_datalab(data: dict[str, Any]) -> dict[str, Any]:
    from cleanlab import Datalab

    n = len(data["Xtr"])
    X = np.concatenate([data["Xtr"], data["Xva"]])
    y = np.concatenate([data["ytr"], data["yva"]])
    t0, c0 = time.perf_counter(), time.process_time()
    lab = Datalab(data={"y": y}, label_name="y", verbosity=0)
    lab.find_issues(features=X, issue_types={"label": {}, "near_duplicate": {}, "outlier": {}})
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    issues = lab.get_issues()
    sets = lab.get_info("near_duplicate")["near_duplicate_sets"]
    dup = [i for i in range(n) if any(j < n for j in sets[i])]
    leak = [i - n for i in range(n, len(X)) if any(j < n for j in sets[i])]
    label = np.flatnonzero(issues["is_label_issue"].to_numpy())
    outlier = np.flatnonzero(issues["is_outlier_issue"].to_numpy())
    return {"seconds": seconds, "cpu": cpu, "dup": np.array(dup, int), "leak": np.array(leak, int),
            "flip": label[label < n], "flip_val": label[label >= n] - n,
            "outlier": outlier[outlier < n], "outlier_val": outlier[outlier >= n] - n}


def child(tool: str, path: Path) -> None:
    data = load_data(path)
    out = run_datalab(data) if tool == "datalab" else run_nnrecipe(data, tool == "nnrecipe-full")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {"tool": tool, "seconds": out["seconds"], "cpu": out["cpu"],
              "process_cpu": usage.ru_utime + usage.ru_stime,
              "peak_rss_mb": _status_kb("VmHWM") / 1024, **score(data, out)}
    if "statuses" in out:
        report["statuses"] = out["statuses"]
    print("RESULT " + json.dumps(report))


def _status_kb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return float("nan")


# ------------------------------------------------------------------- memory mode


def memory_child(shape: tuple[int, ...], seed: int, npz: Path | None = None) -> None:
    """Per data check: seconds, CPU seconds, peak RSS, on one float32 tensor of ``shape``
    (random rows and labels) or, with ``npz``, on that file read as ``nnrecipe inspect``
    reads it (memory-mapped; the mapped pages count in RSS once the checks touch them)."""
    import torch
    from torch import nn

    from nnrecipe import Experiment
    from nnrecipe.core.context import Context
    from nnrecipe.core.registry import checks_for_stage
    from nnrecipe.core.runner import run_stages
    from nnrecipe.data.base import release_memory
    from nnrecipe.data.sources import from_npz

    torch.set_num_threads(1)
    _preload_nnrecipe()
    release_memory()
    base = _status_kb("VmRSS")
    if npz is not None:
        exp, _ = from_npz(npz)
        data_mb = sum(split[0].numel() * 4 for split in (exp.train, exp.val)) / 2**20
    else:
        rng = np.random.default_rng(seed)
        n, n_val = shape[0], shape[0] // 10
        X = torch.from_numpy(rng.standard_normal((n + n_val, *shape[1:]), dtype=np.float32))
        y = torch.from_numpy(rng.integers(0, CLASSES, n + n_val))
        data_mb = X.numel() * 4 / 2**20
        exp = Experiment(model=lambda: nn.Identity(), train=(X[:n], y[:n]), val=(X[n:], y[n:]),
                         loss=nn.CrossEntropyLoss(), seed=0)
    ctx = Context(exp)
    rows = []
    for cls in checks_for_stage("data"):
        # what the previous check freed goes back first (as each data check does on entry),
        # so the peak is this check's own high-water mark
        release_memory()
        _reset_peak()
        t0, c0 = time.perf_counter(), time.process_time()
        res = run_stages(ctx, ["data"], only=[cls.name])
        status = res.stages[0].checks[0].status if res.stages[0].checks else "?"
        peak = _status_kb("VmHWM")
        rows.append({"check": cls.name, "status": status, "seconds": time.perf_counter() - t0,
                     "cpu": time.process_time() - c0, "peak_rss_mb": peak / 1024,
                     "ratio": (peak - base) / 1024 / data_mb})
        print(f"  {cls.name:22s} {status:8s} {rows[-1]['seconds']:8.1f} s wall "
              f"{rows[-1]['cpu']:8.1f} s CPU  peak RSS {peak / 1024:7.0f} MB = "
              f"{rows[-1]['ratio']:.2f}x the data", file=sys.stderr, flush=True)
    print("RESULT " + json.dumps({"shape": list(shape), "data_mb": data_mb,
                                  "npz": npz is not None, "base_rss_mb": base / 1024,
                                  "checks": rows}))


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


# ---------------------------------------------------------------------- driver


def spawn(cmd: list[str], timeout: float) -> dict[str, Any]:
    env = {**os.environ, **{v: "1" for v in THREAD_VARS}, "NNRECIPE_THREADS": "1"}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"timeout": timeout, "wall_process": time.perf_counter() - t0, "load": load}
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return {**json.loads(line[7:]), "wall_process": wall, "load": load,
                    "load_after": os.getloadavg()[0]}
    return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-3:], "load": load}


def fmt(r: dict[str, Any]) -> str:
    tool = r.get("tool", "?")
    if "timeout" in r:
        return f"{tool:14s} did not finish within {r['timeout']:.0f} s (stopped)"
    if "error" in r:
        return f"{tool:14s} failed: {' | '.join(r['error'])}"
    parts = [f"{tool:14s} load {r['load']:4.1f}  checks {r['seconds']:7.1f} s wall "
             f"{r['cpu']:7.1f} s CPU  process {r['wall_process']:7.1f} s wall "
             f"{r['process_cpu']:7.1f} s CPU  peak RSS {r['peak_rss_mb']:6.0f} MB"]
    for key in ("duplicates", "leakage", "label_errors", "outliers"):
        m = r[key]
        parts.append(f"{key} P={m['precision']:.3f} R={m['recall']:.3f} ({m['flagged']})")
    if "label_errors_val_flags" in r:
        parts.append(f"label flags on (clean) validation rows: {r['label_errors_val_flags']}")
    if "label_false_rate" in r:
        fr = r["label_false_rate"]
        parts.append(f"false label flags among clean rows: train {fr['train']:.2%}, "
                     f"val {fr['val']:.2%}")
    return "  ".join(parts)


def _median(rs: list[dict[str, Any]], key: str) -> float:
    return float(np.median([r[key] for r in rs]))


def compare(args: argparse.Namespace, sizes: list[tuple[int, ...]]) -> list[dict[str, Any]]:
    have_datalab = DATALAB_PYTHON.exists()
    if not have_datalab:
        print(f"no Datalab environment at {DATALAB_PYTHON}: run benchmarks/datalab/setup.sh; "
              "its rows are skipped")
    results = []
    for n, d in sizes:
        print(f"\n== N={n:,} x D={d} (+{n // 10:,} validation), one thread per process, "
              f"{os.cpu_count()} cores ==", flush=True)
        runs: dict[str, list[dict[str, Any]]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "data.npz"
            np.savez(path, **make_data(n, d, args.seed))
            tools = ["nnrecipe"] + (["datalab"] if have_datalab else [])
            for _ in range(args.repeats):
                for tool in tools:
                    python = str(DATALAB_PYTHON) if tool == "datalab" else sys.executable
                    cmd = [python, __file__, "--child", tool, "--data", str(path)]
                    timeout = args.datalab_timeout if tool == "datalab" else 3600.0
                    r = {"tool": tool, **spawn(cmd, timeout)}
                    print(fmt(r), flush=True)
                    runs.setdefault(tool, []).append(r)
            if not args.no_full:
                cmd = [sys.executable, __file__, "--child", "nnrecipe-full", "--data", str(path)]
                r = {"tool": "nnrecipe-full", **spawn(cmd, 3600.0)}
                print(fmt(r) + "  (the whole data stage)", flush=True)
                runs["nnrecipe-full"] = [r]
        summary: dict[str, Any] = {"n": n, "d": d, "runs": runs}
        ok = [r for r in runs.get("nnrecipe", []) if "seconds" in r]
        dl = [r for r in runs.get("datalab", []) if "seconds" in r]
        loads = [r["load"] for rs in runs.values() for r in rs] + \
            [r["load_after"] for rs in runs.values() for r in rs if "load_after" in r]
        print(f"load average during the run: {min(loads):.1f}-{max(loads):.1f} "
              f"(mean {np.mean(loads):.1f}) on {os.cpu_count()} cores")
        summary["load"] = [min(loads), max(loads), float(np.mean(loads))]
        if ok and dl:
            for key, what in (("seconds", "checks, wall"), ("cpu", "checks, CPU"),
                              ("wall_process", "whole process, wall"),
                              ("process_cpu", "whole process, CPU")):
                ratio = _median(dl, key) / _median(ok, key)
                summary[f"ratio_{key}"] = ratio
                print(f"Datalab / nnrecipe ({what}, medians): {ratio:.1f}x")
        results.append(summary)
    return results


def memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for spec in args.memory.split(","):
        shape = tuple(int(v) for v in spec.split("x"))
        for npz in ([False, True] if args.npz == "both" else [args.npz == "only"]):
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, __file__, "--memory-child", spec, "--seed", str(args.seed)]
                what = "in-memory tensor"
                if npz:  # the same rows and labels, written as np.savez writes them
                    path = Path(tmp) / "data.npz"
                    rng = np.random.default_rng(args.seed)
                    n, n_val = shape[0], shape[0] // 10
                    X = rng.standard_normal((n + n_val, *shape[1:]), dtype=np.float32)
                    y = rng.integers(0, CLASSES, n + n_val)
                    np.savez(path, X=X[:n], y=y[:n], X_val=X[n:], y_val=y[n:])
                    del X, y
                    cmd += ["--data", str(path)]
                    what = "uncompressed .npz, memory-mapped"
                print(f"\n== memory: float32 {shape} (+10% validation), {what}, load "
                      f"{os.getloadavg()[0]:.1f} ==", flush=True)
                env = {**os.environ, **{v: "1" for v in THREAD_VARS}, "NNRECIPE_THREADS": "1"}
                proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
            for line in proc.stdout.splitlines():
                if line.startswith("RESULT "):
                    r = json.loads(line[7:])
                    worst = max(r["checks"], key=lambda c: c["ratio"])
                    total = sum(c["seconds"] for c in r["checks"])
                    r["load_after"] = os.getloadavg()[0]
                    print(f"data {r['data_mb']:.0f} MB; all checks {total:.0f} s wall, "
                          f"{sum(c['cpu'] for c in r['checks']):.0f} s CPU; worst peak "
                          f"{worst['ratio']:.2f}x the data ({worst['check']}); load "
                          f"{r['load_after']:.1f} at the end")
                    out.append(r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="50000x64")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved A/B repeats (median)")
    ap.add_argument("--datalab-timeout", type=float, default=900.0)
    ap.add_argument("--no-full", action="store_true", help="skip the whole-data-stage run")
    ap.add_argument("--memory", default=None, help="shapes for the per-check memory table")
    ap.add_argument("--npz", choices=["no", "only", "both"], default="both",
                    help="--memory: the data as an in-memory tensor, as a memory-mapped .npz, "
                         "or both (one child each)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.data)
        return
    if args.memory_child:
        memory_child(tuple(int(v) for v in args.memory_child.split("x")), args.seed, args.data)
        return
    if args.memory:
        results: list[dict[str, Any]] = memory(args)
    else:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
        results = compare(args, sizes)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
