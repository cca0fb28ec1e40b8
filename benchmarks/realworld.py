"""Score nnrecipe on the real-world corpus (``benchmarks/realworld/``, issue 13).

Every case is a real bug reported by a real user (its source and the symptom they reported
are in the registry) or a real healthy program (a canonical example), ported offline. Each
runs in a worker process with one torch thread, either through ``nnrecipe.run`` with the
stages it names (mode ``run``) or through its own hand-written loop under ``nnrecipe.watch``
(mode ``watch``), and is scored:

  detected    -- a bug fired some finding at warning or error;
  right cause -- one of the codes declared for the bug (decided before running) fired;
  false alarm -- a healthy program fired anything at warning or error.

Per case it prints the fired codes, detected / right cause, seconds; then the totals and the
wall time. PNG rendering of report figures is skipped as in ``benchmarks/false_alarms.py``
(findings never depend on pixels). Exit status 1 when a healthy program got a warning or an
error, or a case could not run.

Run: .venv/bin/python benchmarks/realworld.py [--only NAME[,NAME]] [--seeds 0,1,2 | --seeds 3]
     [--jobs 2] [--out FILE.json] [--list]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from false_alarms import _finding, _init_worker, _seeds, _stop  # noqa: E402

BAD = ("warning", "error")


# ------------------------------------------------------------------------ in the workers


def run_case(name: str, seed: int) -> dict[str, Any]:
    """One case, one seed: its findings (every severity), scored; never raises."""
    from realworld import CASES

    case = CASES[name]
    t0 = time.perf_counter()
    out: dict[str, Any] = {"case": name, "kind": case.kind, "mode": case.mode, "seed": seed,
                           "source": case.source, "cause": sorted(case.cause),
                           "findings": [], "error": None}
    try:
        with warnings.catch_warnings():  # the ported bugs' own torch warnings: not findings
            warnings.simplefilter("ignore")
            out["findings"] = (_watch_findings(case, seed) if case.mode == "watch"
                               else _run_findings(case, seed))
    except Exception as e:  # noqa: BLE001 - a case that cannot run is a result too
        out["error"] = f"{type(e).__name__}: {e}"
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out.update(score(out))
    return out


def _run_findings(case: Any, seed: int) -> list[dict[str, Any]]:
    import nnrecipe

    exp = case.build(seed)
    res = nnrecipe.run(exp, stages=list(case.stages), seed=seed,
                       options={"train_figures": False})
    return [_finding(f) for f in res.findings]


def _watch_findings(case: Any, seed: int) -> list[dict[str, Any]]:
    """The case's own loop under ``nnrecipe.watch(..., **watch_kwargs)``. A case that returns
    its Watcher is scored on the whole-run diagnosis (``final_findings``, which includes the
    rules that judge a whole run) plus everything it saw live; one that returns None on the
    findings seen live."""
    import torch

    torch.manual_seed(seed)
    seen: list[Any] = []
    w = case.build(seed, {"on_finding": seen.append})
    found = list(seen)
    if w is not None and hasattr(w, "final_findings"):
        final, _ = w.final_findings()
        codes = {(f.code, f.severity) for f in final}
        found = list(final) + [f for f in seen if (f.code, f.severity) not in codes]
    return [_finding(f) for f in found]


def score(result: dict[str, Any]) -> dict[str, Any]:
    """detected / right_cause (bugs) or false_alarm (healthy) from a result's findings."""
    fired = sorted({f["code"] for f in result["findings"] if f["severity"] in BAD})
    failed = result.get("error") is not None
    if result["kind"] == "healthy":
        return {"fired": fired, "false_alarm": bool(fired) or failed}
    cause = set(result["cause"])
    return {"fired": fired, "detected": bool(fired) and not failed,
            "right_cause": bool(cause & set(fired)) and not failed}


def _task(task: tuple[str, int]) -> dict[str, Any]:
    return run_case(*task)


# ----------------------------------------------------------------------- in the parent


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    bugs = [r for r in results if r["kind"] == "bug"]
    healthy = [r for r in results if r["kind"] == "healthy"]
    n = max(len(bugs), 1)
    return {
        "bugs": len(bugs), "healthy": len(healthy),
        "detected": sum(r["detected"] for r in bugs),
        "right_cause": sum(r["right_cause"] for r in bugs),
        "detected_pct": round(100 * sum(r["detected"] for r in bugs) / n, 1),
        "right_cause_pct": round(100 * sum(r["right_cause"] for r in bugs) / n, 1),
        "false_alarms": sum(r["false_alarm"] for r in healthy),
        "failed": [f"{r['case']}/s{r['seed']}" for r in results if r["error"]],
        "case_seconds": round(sum(r["seconds"] for r in results), 1),
    }


def print_table(results: list[dict[str, Any]], summary: dict[str, Any], wall: float,
                jobs: int) -> None:
    print(f"\n{'case':34s} {'seed':>4s} {'kind':7s} {'det':>3s} {'cause':>5s} {'s':>6s}  fired")
    for r in results:
        if r["kind"] == "bug":
            det, cause = ("yes" if r["detected"] else "NO"), ("yes" if r["right_cause"] else "NO")
        else:
            det, cause = ("FA" if r["false_alarm"] else "ok"), "-"
        fired = ", ".join(r["fired"]) or "-"
        if r["error"]:
            fired = "FAILED " + r["error"][:90]
        print(f"{r['case']:34s} {r['seed']:4d} {r['kind']:7s} {det:>3s} {cause:>5s} "
              f"{r['seconds']:6.1f}  {fired}")
    s = summary
    print(f"\nbugs: {s['detected']}/{s['bugs']} detected ({s['detected_pct']}%), "
          f"{s['right_cause']}/{s['bugs']} right cause ({s['right_cause_pct']}%); "
          f"healthy: {s['false_alarms']}/{s['healthy']} with a false alarm")
    print(f"{len(results)} runs in {wall:.0f} s wall with {jobs} worker(s) "
          f"({s['case_seconds']:.0f} s summed over runs); load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for f in s["failed"]:
        print(f"FAILED {f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma list of case names (or parts of names)")
    p.add_argument("--seeds", help="a count (3: seeds 0-2) or a comma list (default: seed 0)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--out", default="runs/realworld.json", help="JSON results")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    args = p.parse_args(argv)
    from realworld import CASES

    if args.list:
        for c in CASES.values():
            print(f"{c.name:34s} {c.kind:7s} {c.mode:5s} {','.join(sorted(c.cause)) or '-':28s} "
                  f"{c.source}")
        return 0
    names = list(CASES)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        names = [n for n in names if any(w == n or w in n for w in wanted)]
        if not names:
            raise SystemExit(f"--only {args.only!r} matches no case")
    tasks = [(n, s) for s in _seeds(args.seeds, default=[0]) for n in names]
    signal.signal(signal.SIGTERM, _stop)
    seeds_run = sorted({t[1] for t in tasks})  # `--seeds 1` is a count: seed 0, not seed 1
    print(f"{len(tasks)} runs on {args.jobs} worker(s), seeds {seeds_run} ...", flush=True)
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.jobs, initializer=_init_worker, initargs=(False,),
                  maxtasksperchild=10) as pool:
        for r in pool.imap_unordered(_task, tasks):
            results.append(r)
            print(f"[{len(results):3d}/{len(tasks)}] {r['case']}/s{r['seed']} "
                  f"{r['seconds']:.1f}s  {', '.join(r['fired']) or '-'}"
                  f"{'  FAILED ' + r['error'][:80] if r['error'] else ''}", flush=True)
    wall = time.perf_counter() - t0
    order = {n: i for i, n in enumerate(CASES)}
    results.sort(key=lambda r: (r["kind"] != "bug", order[r["case"]], r["seed"]))
    summary = summarise(results)
    print_table(results, summary, wall, args.jobs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "wall_s": round(wall, 1), **summary,
                               "results": results}, indent=1))
    print(f"\nresults: {out}")
    return 1 if summary["false_alarms"] or summary["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
