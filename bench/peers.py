"""The no-op six-stage pipeline over N partitions (default 100): stagebus vs Dagster and Luigi.

The same DAG everywhere: ingest -> normalize -> extract per partition, then link -> index ->
serve once over all of them, 3N + 3 stage tasks that do nothing, so what is measured is each
orchestrator's own cost per stage task. Ours: embedded, SQLite log, 2 worker threads
(:mod:`bench.noop_run`). Peers, pinned in ``bench/peers_env/requirements.txt`` and run in the
peer virtualenv (:mod:`bench.peer_venv`): Dagster, one run with a dynamic fan-out, in-process
executor, SQLite-backed instance (``bench/peers_env/dagster_noop.py`` says why that shape);
Luigi, one ``luigi.build`` with the local scheduler (``bench/peers_env/luigi_noop.py``).

Each side runs in a fresh process of its own; wall time is the pipeline's run after the imports
(import time is reported apart). Rounds alternate ours, Luigi, Dagster; best of each: 3 rounds,
Dagster in 2 of them (1 with ``--quick``). ``--quick`` measures only when the peer venv already
exists (creating it takes ~40 s), on 20 partitions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import peer_venv, print_table
from bench.noop_run import WORKERS, measure_in_subprocess

DEFAULT_JSON = Path(__file__).parent / "results-peers.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="20 partitions, one round, only if the peer venv exists")
    parser.add_argument("--partitions", type=int, default=None, help="partitions (default 100)")
    parser.add_argument("--no-larger", action="store_true", help="skip the 1,000 and 10,000 partition sizes")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


def measure(partitions: int, rounds: int, dagster_rounds: int, per_partition_runs: bool) -> dict[str, Any]:
    best: dict[str, dict[str, Any]] = {}

    def keep(name: str, result: dict[str, Any]) -> None:
        if name not in best or result["seconds"] < best[name]["seconds"]:
            best[name] = result

    for round_ in range(rounds):
        keep("stagebus", {**measure_in_subprocess(partitions), "version": version("stagebus"),
                          "shape": f"embedded, SQLite log, {WORKERS} worker threads"})
        keep("luigi", peer_venv.run_script("luigi_noop.py", str(partitions)))
        if round_ < dagster_rounds:  # ~35 s a round at 100 partitions
            keep("dagster", peer_venv.run_script("dagster_noop.py", str(partitions)))
    if per_partition_runs:
        keep("dagster, a run per partition", peer_venv.run_script("dagster_noop.py", str(partitions),
                                                                  "--runs-per-partition"))
    return best


# Seconds a peer gets at a larger size before it is reported as not finished, not waited for.
LARGER_BUDGET_S = {1000: 900.0, 10000: 600.0}
# Dagster at 10,000 partitions: 30,003 tasks at its 59-250 ms each is 30 min to 2 h; not run.
SKIPPED_AT = {("dagster", 10000): "not run: 30,003 tasks at its measured 59-250 ms per task is 30 min to 2 h"}


def larger_sizes() -> list[dict[str, Any]]:
    """One round each at 1,000 and 10,000 partitions (3,003 and 30,003 tasks). A peer that does
    not finish within the budget is recorded as such, with its time per task at the size below
    (what the budget would have needed is then a lower bound)."""
    rows: list[dict[str, Any]] = []
    for size, budget in LARGER_BUDGET_S.items():
        ours = measure_in_subprocess(size, timeout_s=budget)
        rows.append({"partitions": size, "orchestrator": "stagebus", "tasks": ours["tasks"],
                     "seconds": round(ours["seconds"], 2),
                     "ms_per_task": round(ours["seconds"] / ours["tasks"] * 1000, 3)})
        for name, script in (("luigi", "luigi_noop.py"), ("dagster", "dagster_noop.py")):
            if (name, size) in SKIPPED_AT:
                rows.append({"partitions": size, "orchestrator": name, "tasks": 3 * size + 3,
                             "skipped": SKIPPED_AT[(name, size)]})
                continue
            try:
                theirs = peer_venv.run_script(script, str(size), timeout_s=budget)
            except subprocess.TimeoutExpired:
                rows.append({"partitions": size, "orchestrator": name, "tasks": 3 * size + 3,
                             "not_finished_within_s": budget})
                continue
            rows.append({"partitions": size, "orchestrator": name, "tasks": theirs["tasks"],
                         "seconds": round(theirs["seconds"], 2),
                         "ms_per_task": round(theirs["seconds"] / theirs["tasks"] * 1000, 3),
                         "times_ours": round(theirs["seconds"] / ours["seconds"], 1)})
    print_table("no-op pipeline at larger sizes (one round each; ms per stage task)",
                ["partitions", "orchestrator", "tasks", "seconds", "ms/task"],
                [[r["partitions"], r["orchestrator"], r["tasks"],
                  r.get("seconds", r.get("skipped") or f"> {r.get('not_finished_within_s')}"),
                  r.get("ms_per_task", "-")] for r in rows])
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    partitions = args.partitions or (20 if args.quick else 100)
    figures: dict[str, Any] = {"partitions": partitions, "pins": peer_venv.pins()}
    skipped = peer_venv.unavailable(args.quick, "Dagster and Luigi", "peers")
    if skipped is not None:
        return peer_venv.record_skip(figures, skipped, args.json)
    best = measure(partitions, 3, dagster_rounds=1 if args.quick else 2, per_partition_runs=not args.quick)
    ours_per_task = best["stagebus"]["seconds"] / best["stagebus"]["tasks"]
    rows, table = [], []
    for name, result in best.items():
        per_task = result["seconds"] / result["tasks"]
        rows.append({"orchestrator": name, "version": result.get("version", ""), "shape": result["shape"],
                     "tasks": result["tasks"], "seconds": round(result["seconds"], 4),
                     "ms_per_task": round(per_task * 1000, 3), "import_s": round(result.get("import_s", 0), 2),
                     "times_ours": round(per_task / ours_per_task, 1)})
        table.append([name, result.get("version", ""), str(result["tasks"]), f"{result['seconds']:.2f}",
                      f"{per_task * 1000:.2f}", f"{per_task / ours_per_task:.1f}x", f"{result.get('import_s', 0):.2f}"])
    figures["rows"] = rows
    if not args.quick and not args.no_larger and args.partitions is None:
        figures["larger"] = larger_sizes()
    print_table(f"no-op six-stage pipeline, {partitions} partitions (wall time per stage task; "
                "x ours = their time / ours)",
                ["orchestrator", "version", "tasks", "seconds", "ms/task", "x ours", "import s"], table)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
