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
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import peer_venv, print_table
from bench.noop_run import WORKERS, measure_in_subprocess

DEFAULT_JSON = Path(__file__).parent / "results-peers.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="20 partitions, one round, only if the peer venv exists")
    parser.add_argument("--partitions", type=int, default=None, help="partitions (default 100)")
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
    print_table(f"no-op six-stage pipeline, {partitions} partitions (wall time per stage task; "
                "x ours = their time / ours)",
                ["orchestrator", "version", "tasks", "seconds", "ms/task", "x ours", "import s"], table)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
