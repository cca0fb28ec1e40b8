"""One voice (issue 11 #4): does ``nnrecipe lr`` (the range test) contradict the train stage's
``lr-too-high`` / ``lr-too-low`` on the demo and the healthy corpus (``benchmarks/healthy/``)?

Each setup runs the range test (the ``lr-suggestion`` check of the overfit stage, exactly as
``nnrecipe lr`` runs it) and then the train stage in one ``nnrecipe.run`` (the train stage
reads the range test's state, as in ``nnrecipe run``), one torch thread per worker. Printed
per setup: the experiment's rate, the suggestion and plausible range for its horizon, where
the rate sits (inside / below / above), the train stage's learning-rate findings, and the
contradictions :func:`nnrecipe.overfit.agreement.lr_disagreements` finds. Exit status 1 when
there is any.

Run: nice -n 10 .venv/bin/python benchmarks/lr_agreement.py [--quick] [--only NAME,...]
     [--seed 0] [--jobs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

ONLY = ["lr-suggestion", "training", "gradients", "activations"]


def one(task: tuple[str, int]) -> dict[str, Any]:
    name, seed = task
    import torch

    torch.set_num_threads(1)
    import nnrecipe
    from nnrecipe.overfit.agreement import lr_disagreements

    if name == "demo":
        from nnrecipe.examples.digits import experiment

        exp = experiment()
    else:
        from healthy import SETUPS

        exp = SETUPS[name].build(seed)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"setup": name, "error": None}
    try:
        res = nnrecipe.run(exp, stages=["overfit", "train"], only=ONLY, seed=seed,
                           options={"train_figures": False})
        sug = next((f.evidence for f in res.findings if f.code == "lr-suggestion"), {})
        out.update(suggested=sug.get("suggested"), low=sug.get("low"), high=sug.get("high"),
                   user=sug.get("user_lr"),
                   lr_findings=[f"{f.code} ({f.severity.value})" for f in res.findings
                                if f.code in ("lr-too-high", "lr-too-low", "update-ratio")],
                   contradictions=lr_disagreements(sug, res.findings))
    except Exception as e:  # noqa: BLE001 - a setup that cannot run is a result too
        out["error"] = f"{type(e).__name__}: {e}"
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _row(r: dict[str, Any]) -> int:
    """Print one setup's row; return its number of problems."""
    if r["error"]:
        print(f"| {r['setup']} | error: {r['error']} | | | | |", flush=True)
        return 1
    user, low, high, s = r["user"], r["low"], r["high"], r["suggested"]
    where = ("?" if None in (user, low, high) else "inside" if low <= user <= high
             else f"{low / user:.1f}x below" if user < low else f"{user / high:.1f}x above")
    print(f"| {r['setup']} | {user:.3g} | {s:.3g} ({low:.2g}-{high:.2g}) | {where} | "
          f"{', '.join(r['lr_findings']) or '-'} | {'; '.join(r['contradictions']) or '-'} |",
          flush=True)
    return len(r["contradictions"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the corpus's --quick subset")
    ap.add_argument("--skip-quick", action="store_true", help="all but the --quick subset")
    ap.add_argument("--only", help="comma-separated setup names (demo: the bundled demo)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    from healthy import SETUPS

    names = (args.only.split(",") if args.only else
             ["demo"] + [n for n, s in SETUPS.items() if s.quick or not args.quick])
    if args.skip_quick:
        names = [n for n in names if n != "demo" and not SETUPS[n].quick]
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    print("| setup | rate | suggested (range) | the rate is | train's lr findings | "
          "contradictions |")
    print("|---|---|---|---|---|---|", flush=True)
    bad = 0
    rows = []
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for r in pool.imap(one, [(n, args.seed) for n in names]):  # printed as they come
            rows.append(r)
            bad += _row(r)
    print(f"\n{len(rows)} setups, {bad} contradictions; wall {time.perf_counter() - t0:.0f} s, "
          f"{args.jobs} processes, load average {load0:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
