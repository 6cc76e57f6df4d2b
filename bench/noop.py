"""The embedded no-op stage task: ms per task at 100 to 10,000 partitions, against raw Dramatiq.

``python -m bench noop [--quick] [--sizes 100,1000,10000] [--rounds 3] [--before REV]``

Ours: ``bench.noop_run`` (the no-op six-stage pipeline, SQLite log, 2 worker threads,
``EmbeddedRunner``), each round a fresh process; wall time of publish + run until idle, per stage
task. Raw: the same DAG as plain Dramatiq actors on a ``StubBroker`` with 2 worker threads, each
sending the next (``bench.runtime.raw``), in a fresh process too. ``--before REV`` runs ours a
second time from the code of commit ``REV`` (``git archive`` into the bench's temp directory), so
before, after and raw alternate in one run on one machine state. Best of ``--rounds`` per side.
Figures in ``bench/results-noop.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import print_table
from bench.fleet import checkout
from bench.noop_run import measure_in_subprocess

REPO = Path(__file__).resolve().parents[1]
RAW = ("import json, sys; from bench.runtime import raw; n = int(sys.argv[1]); "
       "print(json.dumps({'tasks': 3 * n + 3, 'seconds': (3 * n + 3) / raw(n, 1, 0.0)['tasks_per_s']}))")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 partitions, one round")
    parser.add_argument("--sizes", default=None, help="comma-separated partition counts (default 100,1000,10000)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per side (default 3; quick 1)")
    parser.add_argument("--before", default=None, metavar="REV", help="also run ours from commit REV")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results-noop.json")


def raw_in_subprocess(partitions: int, timeout_s: float = 900) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", RAW, str(partitions)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"raw Dramatiq no-op run failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([100, 1000] if args.quick else
                                                                          [100, 1000, 10000])
    rounds = args.rounds or (1 if args.quick else 3)
    figures: dict[str, Any] = {"sizes": sizes, "rounds": rounds, "workers": 2, "before_rev": args.before,
                               "rows": []}
    with tempfile.TemporaryDirectory(prefix="sb-bench-noop-") as tmp:
        tree = checkout(args.before, Path(tmp) / "before-tree") if args.before else None
        for size in sizes:
            best: dict[str, float] = {}
            for _ in range(rounds):
                sides = ["ours", "raw", *(["before"] if tree is not None else [])]
                for name in sides:  # alternating, so load hits every side alike
                    result = (raw_in_subprocess(size) if name == "raw" else
                              measure_in_subprocess(size, tree=tree if name == "before" and tree else REPO))
                    per_task = result["seconds"] / result["tasks"] * 1000
                    best[name] = min(best.get(name, per_task), per_task)
            row = {"partitions": size, "tasks": 3 * size + 3, "ours_ms_per_task": round(best["ours"], 4),
                   "raw_ms_per_task": round(best["raw"], 4), "ours_over_raw": round(best["ours"] / best["raw"], 2)}
            if "before" in best:
                row.update(before_ms_per_task=round(best["before"], 4),
                           before_over_raw=round(best["before"] / best["raw"], 2),
                           before_over_ours=round(best["before"] / best["ours"], 2))
            figures["rows"].append(row)
    figures["cpus"] = os.cpu_count()
    headers = ["partitions", "tasks", "ours ms/task", "raw Dramatiq ms/task", "ours/raw"]
    if args.before:
        headers += [f"before ({args.before}) ms/task", "before/raw", "before/ours"]
    print_table("embedded no-op stage task (best of rounds, fresh process each)", headers, [
        [r["partitions"], r["tasks"], r["ours_ms_per_task"], r["raw_ms_per_task"], r["ours_over_raw"],
         *([r["before_ms_per_task"], r["before_over_raw"], r["before_over_ours"]] if args.before else [])]
        for r in figures["rows"]])
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
