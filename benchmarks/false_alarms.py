"""False alarms on the healthy-training corpus (``benchmarks/healthy/``).

Every setup there is a correct experiment; nnrecipe must raise no warning and no error on
it. This script runs each setup with several seeds, in worker processes with one torch
thread each, through:

  check  -- ``nnrecipe.run(exp, stages=["data", "skeleton"])`` (the ``check`` command),
  lr     -- ``stages=["overfit"]`` (the ``lr`` command; only when asked for),
  train  -- ``stages=["train"]`` (the ``train`` command),
  watch  -- a plain hand-written loop under ``nnrecipe.watch()`` (setups marked ``watch``),

and prints, per finding code, how many runs it fired in at warning/error (the false-alarm
count and rate over the runs of its group), then the wall time. ``--stages`` picks stages
(data, skeleton, overfit, train, watch): an engineer checks their own stage cheaply with
``--stages skeleton --quick``. Results (every warning/error with its message, the info
counts, times) go to a JSON file. Exit status 1 when anything fired at warning or above.

PNG rendering of report figures is skipped (a stub returns no bytes; the figures are still
built): findings never depend on the pixels, and rendering was half the time of ``check``.
``--figures`` renders them as the CLI would.

Run: .venv/bin/python benchmarks/false_alarms.py [--quick] [--stages train,watch]
     [--only NAME[,NAME]] [--seeds 3 | --seeds 0,4] [--jobs 2] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

STAGES = ("data", "skeleton", "overfit", "train", "watch")
DEFAULT_STAGES = ("data", "skeleton", "train", "watch")
# Which nnrecipe.run call (command) each stage belongs to: one run per group per setup/seed.
# The hand-written loop stops after this many epochs without a better validation loss.
WATCH_PATIENCE = 2
GROUPS = {"data": "check", "skeleton": "check", "overfit": "lr", "train": "train",
          "watch": "watch"}


# ------------------------------------------------------------------------ in the workers


def _init_worker(figures: bool) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    torch.set_num_threads(1)
    if not figures:
        import nnrecipe.core.context as context

        context.figure_to_png = lambda fig: b""  # type: ignore[assignment]


def run_task(task: tuple[str, int, str, tuple[str, ...], bool]) -> dict[str, Any]:
    """One setup, one seed, one group of stages; never raises (a failure is a result)."""
    name, seed, group, stages, figures = task
    from healthy import SETUPS

    t0 = time.perf_counter()
    c0 = time.process_time()
    out: dict[str, Any] = {"setup": name, "seed": seed, "group": group, "stages": list(stages),
                           "findings": [], "error": None}
    try:
        exp = SETUPS[name].build(seed)
        if group == "watch":
            out["findings"] = watch_loop(exp, seed)
        else:
            import nnrecipe

            res = nnrecipe.run(exp, stages=list(stages), seed=seed,
                               options={"train_figures": figures})
            out["findings"] = [_finding(f) for f in res.findings]
            for stage in res.stages:  # the trained model's scores: is the setup healthy?
                for check in stage.checks:
                    if check.name == "training":
                        out["val"] = check.metrics.get("val")
                        out["epochs_run"] = check.metrics.get("epochs_run")
    except Exception as e:  # noqa: BLE001 - a setup that cannot run is a result too
        out["error"] = f"{type(e).__name__}: {e}"
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["cpu_seconds"] = round(time.process_time() - c0, 2)
    return out


def _finding(f: Any) -> dict[str, Any]:
    return {"code": f.code, "severity": f.severity.value, "stage": f.stage,
            "check": f.check, "message": f.message}


def watch_loop(exp: Any, seed: int) -> list[dict[str, Any]]:
    """The experiment trained by hand, the way a careful user's own script does it, under
    ``nnrecipe.watch``: shuffled DataLoader, zero_grad/forward/backward/(clip)/step/schedule,
    an eval pass over the validation split after each epoch, and a stop once the validation
    loss has not improved for ``WATCH_PATIENCE`` epochs."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import nnrecipe
    from nnrecipe.core.training import prediction_hits
    from nnrecipe.overfit.schedules import scheduler_from_options

    torch.manual_seed(seed)
    np.random.seed(seed)
    model = exp.model()
    opt = exp.make_optimizer(model.parameters())
    X, y = (torch.as_tensor(a) for a in exp.train)
    Xv, yv = (torch.as_tensor(a) for a in exp.val)
    loader = DataLoader(TensorDataset(X, y), batch_size=exp.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    factory = scheduler_from_options(exp.options)
    sched = factory(opt, exp.epochs * len(loader)) if factory else None
    clip = exp.options.get("grad_clip")
    loss_fn = exp.loss
    classify = exp.task == "classification" or (exp.task is None and not yv.is_floating_point())
    seen: list[Any] = []
    best, waited = float("inf"), 0
    with nnrecipe.watch(model, opt, on_finding=seen.append) as w:
        for _ in range(exp.epochs):
            model.train()
            for xb, yb in loader:
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
                if sched is not None:
                    sched.step()
                w.step(loss)
            model.eval()
            with torch.no_grad():
                out = model(Xv)
                val = {"loss": float(loss_fn(out, yv))}
                if classify:
                    hits = prediction_hits(out, yv, loss_fn)
                    if not isinstance(hits, str):
                        val["accuracy"] = hits.accuracy()
            w.epoch(val=val)
            best = min(best, val["loss"])
            waited = 0 if val["loss"] <= best else waited + 1
            if waited >= WATCH_PATIENCE:
                break
        final, _ = w.final_findings()
    return [_finding(f) for f in final]


# ----------------------------------------------------------------------- in the parent


def plan(args: argparse.Namespace) -> list[tuple[str, int, str, tuple[str, ...], bool]]:
    from healthy import SETUPS

    names = list(SETUPS)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        names = [n for n in names if any(w == n or w in n for w in wanted)]
        if not names:
            raise SystemExit(f"--only {args.only!r} matches no setup; setups: {', '.join(SETUPS)}")
    elif args.quick:
        names = [n for n in names if SETUPS[n].quick]
    seeds = _seeds(args.seeds, default=[0] if args.quick else [0, 1, 2])
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise SystemExit(f"unknown stage(s) {bad}; valid: {', '.join(STAGES)}")
    by_group: dict[str, tuple[str, ...]] = {}
    for s in STAGES:  # recipe order within a group
        if s in stages:
            by_group[GROUPS[s]] = (*by_group.get(GROUPS[s], ()), s)
    tasks = []
    for seed in seeds:
        for n in names:
            for group, st in by_group.items():
                if group == "watch" and not SETUPS[n].watch:
                    continue
                tasks.append((n, seed, group, st, args.figures))
    return tasks


def _seeds(spec: str | None, default: list[int]) -> list[int]:
    if not spec:
        return default
    if "," in spec:
        return [int(s) for s in spec.split(",") if s.strip()]
    return list(range(int(spec)))


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per code: runs it fired in at warning/error, out of the runs of its group."""
    runs = Counter(r["group"] for r in results)
    fired: dict[tuple[str, str], list[str]] = defaultdict(list)
    info: Counter[str] = Counter()
    for r in results:
        label = f"{r['setup']}/s{r['seed']}"
        if r["error"]:
            fired[(r["group"], "run-failed")].append(label)
        codes = {f["code"] for f in r["findings"] if f["severity"] in ("warning", "error")}
        for c in sorted(codes):
            fired[(r["group"], c)].append(label)
        info.update({f["code"] for f in r["findings"] if f["severity"] == "info"})
    table = []
    for (group, code), where in sorted(fired.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        stages = sorted({f["stage"] for r in results if r["group"] == group
                         for f in r["findings"] if f["code"] == code}) or ["-"]
        table.append({"code": code, "group": group, "stage": ",".join(stages),
                      "count": len(where), "runs": runs[group],
                      "rate": round(len(where) / runs[group], 4), "where": where})
    return {"runs": dict(runs), "false_alarms": table, "info_counts": dict(info)}


def print_report(summary: dict[str, Any], results: list[dict[str, Any]], wall: float,
                 jobs: int) -> None:
    runs = summary["runs"]
    total = sum(runs.values())
    print(f"\n{total} runs ({', '.join(f'{g}: {n}' for g, n in runs.items())}) "
          f"in {wall:.0f} s wall with {jobs} worker(s)")
    table = summary["false_alarms"]
    if not table:
        print("No warnings or errors: zero false alarms.")
    else:
        print(f"\n{'code':28s} {'command':7s} {'stage':10s} {'fired':>5s} {'runs':>5s} "
              f"{'rate':>6s}  where")
        for row in table:
            where = ", ".join(row["where"][:6]) + (" ..." if len(row["where"]) > 6 else "")
            print(f"{row['code']:28s} {row['group']:7s} {row['stage']:10s} {row['count']:5d} "
                  f"{row['runs']:5d} {row['rate']:6.1%}  {where}")
    per_group: dict[str, list[float]] = defaultdict(list)
    for r in results:
        per_group[r["group"]].append(r["seconds"])
    print("\nseconds per run: " + "; ".join(
        f"{g} median {sorted(v)[len(v) // 2]:.1f}, max {max(v):.1f}, total {sum(v):.0f}"
        for g, v in per_group.items()))
    slow = sorted(results, key=lambda r: -r["seconds"])[:5]
    print("slowest: " + ", ".join(f"{r['setup']}/s{r['seed']} {r['group']} {r['seconds']:.1f}s"
                                  for r in slow))
    failed = [r for r in results if r["error"]]
    for r in failed[:10]:
        print(f"FAILED {r['setup']}/s{r['seed']} {r['group']}: {r['error']}")


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # leaves the Pool's with-block, which terminates it


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stages", default=",".join(DEFAULT_STAGES),
                   help=f"comma list of {', '.join(STAGES)} (default: %(default)s)")
    p.add_argument("--only", help="comma list of setup names (or parts of names)")
    p.add_argument("--seeds", help="a count (3: seeds 0-2) or a comma list (default 3; 1 "
                                   "with --quick)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--quick", action="store_true", help="seed 0 and the quick subset")
    p.add_argument("--figures", action="store_true", help="render figures as the CLI does")
    p.add_argument("--out", default="runs/false_alarms.json", help="JSON results")
    p.add_argument("--list", action="store_true", help="list the setups and exit")
    args = p.parse_args(argv)
    if args.list:
        from healthy import SETUPS

        for s in SETUPS.values():
            flags = "".join(("W" if s.watch else "-", "Q" if s.quick else "-"))
            print(f"{s.name:32s} {flags}  {s.note}")
        return 0
    tasks = plan(args)
    signal.signal(signal.SIGTERM, _stop)  # `kill PID` ends the workers too
    seeds_run = sorted({t[1] for t in tasks})  # `--seeds 1` is a count: seed 0, not seed 1
    print(f"{len(tasks)} runs on {args.jobs} worker(s), seeds {seeds_run} ...", flush=True)
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.jobs, initializer=_init_worker, initargs=(args.figures,),
                  maxtasksperchild=20) as pool:
        for r in pool.imap_unordered(run_task, tasks):
            results.append(r)
            bad = sorted({f["code"] for f in r["findings"]
                          if f["severity"] in ("warning", "error")})
            mark = (" FAILED " + r["error"][:80] if r["error"] else
                    "  " + ", ".join(bad) if bad else "")
            print(f"[{len(results):3d}/{len(tasks)}] {r['setup']}/s{r['seed']} {r['group']} "
                  f"{r['seconds']:.1f}s{mark}", flush=True)
    wall = time.perf_counter() - t0
    results.sort(key=lambda r: (r["setup"], r["seed"], r["group"]))
    summary = summarise(results)
    print_report(summary, results, wall, args.jobs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "wall_s": round(wall, 1), **summary,
                               "results": results}, indent=1))
    print(f"\nresults: {out}")
    return 1 if summary["false_alarms"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
