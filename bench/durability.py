"""SQLite log durability: what synchronous=FULL costs over NORMAL for task-sized appends.

A stage task appends one or two events per transaction (StageStarted; ManifestWritten, sometimes
with a follow-up). Each append is measured as its own transaction through ``SqliteEventStore``
with ``synchronous=FULL`` (the default: the WAL is fsynced at every commit) and ``NORMAL`` (the
WAL is fsynced only at checkpoints), alternating, in the same run and directory (on the same
disk as the bench, not a tmpfs). Ratio = FULL time per append / NORMAL time per append.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import print_table
from bench.noop_run import measure_in_subprocess
from bench.store import workload
from stagebus.store import SqliteEventStore
from stagebus.store.sqlite import SYNCHRONOUS_ENV

DEFAULT_JSON = Path(__file__).parent / "results-durability.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--appends", type=int, default=None, help="transactions per trial")
    parser.add_argument("--repeats", type=int, default=None, help="trials per level (best is kept)")
    parser.add_argument("--dir", type=Path, default=None, help="where the logs go (default: beside bench/)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


def append_rate(directory: Path, level: str, appends: int, per_append: int, trial: int) -> float:
    """Appends per second of ``appends`` transactions of ``per_append`` events each."""
    store = SqliteEventStore(directory / f"log-{level}-{per_append}-{trial}.db", synchronous=level)
    batches = [workload(per_append, run=f"r{trial}-{i}") for i in range(appends)]
    store.append(workload(2, run="warm-up"))
    started = time.perf_counter()
    for batch in batches:
        store.append(batch)
    elapsed = time.perf_counter() - started
    store.close()
    return appends / elapsed


def task_cost(partitions: int, repeats: int) -> dict[str, Any]:
    """ms per no-op stage task (bench.noop_run, fresh process) under FULL and NORMAL, alternating:
    what durability costs a whole task (a task commits StageStarted unsynced, its manifest synced)."""
    best = {"FULL": float("inf"), "NORMAL": float("inf")}
    for _ in range(repeats):
        for level in best:
            previous = os.environ.get(SYNCHRONOUS_ENV)
            os.environ[SYNCHRONOUS_ENV] = level
            try:
                result = measure_in_subprocess(partitions)
            finally:
                if previous is None:
                    os.environ.pop(SYNCHRONOUS_ENV, None)
                else:
                    os.environ[SYNCHRONOUS_ENV] = previous
            best[level] = min(best[level], result["seconds"] / result["tasks"] * 1000)
    return {"partitions": partitions, "repeats": repeats, "full_ms_per_task": round(best["FULL"], 3),
            "normal_ms_per_task": round(best["NORMAL"], 3),
            "ratio_full_over_normal": round(best["FULL"] / best["NORMAL"], 2)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    appends = args.appends or (100 if args.quick else 1_000)
    repeats = args.repeats or (2 if args.quick else 5)
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="bench-durability-", dir=args.dir or Path(__file__).parent))
    rows = []
    try:
        for per_append in (1, 2):
            best = {"NORMAL": 0.0, "FULL": 0.0}
            for trial in range(repeats):  # alternate, so load changes hit both levels alike
                for level in best:
                    best[level] = max(best[level], append_rate(directory, level, appends, per_append, trial))
            rows.append({
                "events_per_append": per_append,
                "normal_appends_per_s": round(best["NORMAL"]),
                "full_appends_per_s": round(best["FULL"]),
                "normal_ms_per_append": round(1000 / best["NORMAL"], 3),
                "full_ms_per_append": round(1000 / best["FULL"], 3),
                "ratio_full_over_normal": round(best["NORMAL"] / best["FULL"], 2),  # time ratio
            })
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    tasks = task_cost(60 if args.quick else 300, repeats=2 if args.quick else 3)
    report = {"quick": args.quick, "appends": appends, "repeats": repeats,
              "seconds": round(time.monotonic() - started, 1), "appends_by_size": rows, "noop_task": tasks}
    print_table(f"SQLite append transaction, synchronous FULL vs NORMAL (best of {repeats}, {appends} appends)",
                ["events/append", "level", "NORMAL ms", "FULL ms", "FULL/NORMAL"],
                [[r["events_per_append"], "per append", r["normal_ms_per_append"], r["full_ms_per_append"],
                  f"{r['ratio_full_over_normal']:.2f}"] for r in rows])
    print_table(f"no-op pipeline, {tasks['partitions']} partitions: ms per stage task by level (best of "
                f"{tasks['repeats']}, fresh process each)", ["level", "ms/task"],
                [[level, tasks[f"{level.lower()}_ms_per_task"]] for level in ("FULL", "NORMAL")]
                + [["FULL / NORMAL", tasks["ratio_full_over_normal"]]])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json} ({report['seconds']} s)")
    return report
