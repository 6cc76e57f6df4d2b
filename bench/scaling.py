"""How cost grows: no-op runs of 10, 100, 1,000 partitions; ``state inspect`` at 10k and 100k
ledger rows; replay at 100k and 1M events. Each figure comes with its slope between sizes.

- Runs: each size in a fresh process (:mod:`bench.noop_run`: embedded, SQLite log, 2 worker
  threads); end-to-end seconds and peak RSS (``ru_maxrss``, with the RSS before the run).
  Linear scaling means a flat time per stage task.
- Inspect: logs grown fast by appending a synthetic history in batches (:mod:`bench.history`,
  every row valid), projections caught up once (not timed). Timed: ``stagebus state inspect
  --format json`` as a subprocess (whole ledger, and ``--dataset probe``, 100 rows, for a
  query whose answer does not grow), and in-process ``Projections(readonly=True).ledger()``
  against a bare ``SELECT`` of the same rows from the same file (the baseline).
- Replay: ``Projections.replay()`` (rebuild every projection from position 0 and swap it in)
  against reading and decoding the same log (``store.read()`` + ``event()``), the floor a
  replay cannot go below.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import print_table
from bench.history import EVENTS_PER_PARTITION, grow
from bench.noop_run import REPO, measure_in_subprocess
from bench.store import replay as read_and_decode
from stagebus.projections.generations import FileGenerations
from stagebus.projections.reader import Projections
from stagebus.store import SqliteEventStore
from stagebus.store.keys import LEDGER_TABLE, LOG_FILE, PROJECTIONS_DIR

DEFAULT_JSON = Path(__file__).parent / "results-scaling.json"
PROBE_ROWS = 100
STAGEBUS = [sys.executable, "-c", "from stagebus.cli import main; main()"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="ledger 1k/10k rows, replay 10k/100k events")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


def best_seconds(repeats: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


# --- runs ---------------------------------------------------------------------------------


def runs(sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        result = measure_in_subprocess(size)
        rows.append({"partitions": size, "tasks": result["tasks"], "seconds": round(result["seconds"], 4),
                     "ms_per_task": round(result["seconds"] / result["tasks"] * 1000, 3),
                     "peak_rss_mb": round(result["peak_rss_mb"], 1),
                     "run_rss_mb": round(result["peak_rss_mb"] - result["base_rss_mb"], 1)})
    return rows


# --- state inspect ------------------------------------------------------------------------


def inspect_once(home: Path, *extra: str) -> None:
    env = {**os.environ, "STAGEBUS_HOME": str(home), "STAGEBUS_STORE": "", "STAGEBUS_LOG_LEVEL": "WARNING"}
    done = subprocess.run([*STAGEBUS, "state", "inspect", "--format", "json", *extra], env=env, cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"stagebus state inspect failed: {done.stderr.decode()[-1000:]}")


def inspect_at(home: Path, store: SqliteEventStore, rows: int, repeats: int) -> dict[str, Any]:
    grow(store, rows - store_rows(home), dataset="bulk", prefix=f"i{rows}-")
    with Projections(store, home / PROJECTIONS_DIR) as projections:
        projections.catch_up()
        live = FileGenerations(home / PROJECTIONS_DIR).path(projections.generation or "")
    conn = sqlite3.connect(f"{live.resolve().as_uri()}?mode=ro", uri=True)
    with Projections(store, home / PROJECTIONS_DIR, readonly=True) as reader:
        reader.catch_up()
        count = len(reader.ledger())
        ours = raw = float("inf")
        for _ in range(repeats):  # alternating, so load from elsewhere hits both alike
            ours = min(ours, best_seconds(1, reader.ledger))
            raw = min(raw, best_seconds(1, lambda: conn.execute(
                f"SELECT * FROM {LEDGER_TABLE} ORDER BY dataset, partition").fetchall()))
    conn.close()
    return {"ledger_rows": count, "cli_s": best_seconds(repeats, lambda: inspect_once(home)),
            "cli_probe_s": best_seconds(repeats, lambda: inspect_once(home, "--dataset", "probe")),
            "ledger_query_s": ours, "raw_select_s": raw, "ratio_query_to_raw": ours / raw}


def store_rows(home: Path) -> int:
    marker = home / "rows"
    return int(marker.read_text()) if marker.exists() else 0


def inspect_scaling(directory: Path, sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    home = directory / "inspect-home"
    home.mkdir()
    store = SqliteEventStore(home / LOG_FILE)
    grow(store, PROBE_ROWS, dataset="probe", prefix="probe-")
    (home / "rows").write_text(str(PROBE_ROWS))
    results = []
    try:
        for rows in sizes:
            result = inspect_at(home, store, rows, repeats)
            (home / "rows").write_text(str(rows))
            results.append(result)
    finally:
        store.close()
    return results


# --- replay -------------------------------------------------------------------------------


def replay_scaling(directory: Path, sizes: list[int]) -> list[dict[str, Any]]:
    store = SqliteEventStore(directory / "replay-log.db")
    results = []
    try:
        with Projections(store, directory / "replay-projections") as projections:
            for events in sizes:
                grow(store, (events - store.head()) // EVENTS_PER_PARTITION + 1, prefix=f"r{events}-")
                head = store.head()
                started = time.perf_counter()
                projections.replay()
                rebuild = time.perf_counter() - started
                started = time.perf_counter()
                read_and_decode(store)
                floor = time.perf_counter() - started
                results.append({"events": head, "replay_s": round(rebuild, 3), "read_decode_s": round(floor, 3),
                                "replay_events_per_s": round(head / rebuild), "ratio_to_read_decode": rebuild / floor})
    finally:
        store.close()
    return results


# --- report -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_sizes = [10, 100, 1000] if args.quick else [10, 100, 1000, 10_000]
    ledger_sizes = [1_000, 10_000] if args.quick else [10_000, 100_000]
    replay_sizes = [10_000, 100_000] if args.quick else [100_000, 1_000_000]
    repeats = 3
    figures: dict[str, Any] = {"runs": runs(run_sizes)}
    with tempfile.TemporaryDirectory(prefix="sb-bench-scaling-") as tmp:
        figures["inspect"] = inspect_scaling(Path(tmp), ledger_sizes, repeats)
        figures["replay"] = replay_scaling(Path(tmp), replay_sizes)
    first, last = figures["runs"][0], figures["runs"][-1]
    small, large = figures["inspect"]
    figures["slopes"] = {
        "ms_per_task_largest_over_smallest": last["ms_per_task"] / first["ms_per_task"],
        "run_rss_mb_per_1000_partitions": (last["run_rss_mb"] - first["run_rss_mb"])
        / (last["partitions"] - first["partitions"]) * 1000,
        "inspect_cli_large_over_small": large["cli_s"] / small["cli_s"],
        "inspect_cli_probe_large_over_small": large["cli_probe_s"] / small["cli_probe_s"],
        "ledger_query_large_over_small": large["ledger_query_s"] / small["ledger_query_s"],
        "rows_large_over_small": large["ledger_rows"] / small["ledger_rows"],
        "replay_s_per_event_large_over_small": (figures["replay"][1]["replay_s"] / figures["replay"][1]["events"])
        / (figures["replay"][0]["replay_s"] / figures["replay"][0]["events"]),
    }
    show(figures)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def show(figures: dict[str, Any]) -> None:
    print_table("no-op runs by size (fresh process each; embedded, 2 worker threads)",
                ["partitions", "tasks", "seconds", "ms/task", "peak RSS MB", "run RSS MB"],
                [[r["partitions"], r["tasks"], f"{r['seconds']:.2f}", f"{r['ms_per_task']:.2f}", r["peak_rss_mb"],
                  r["run_rss_mb"]] for r in figures["runs"]])
    print_table("state inspect by ledger size (best of runs; seconds)",
                ["rows", "cli json", "cli --dataset probe", "ledger()", "raw SELECT", "ledger()/raw"],
                [[f"{r['ledger_rows']:,}", f"{r['cli_s']:.3f}", f"{r['cli_probe_s']:.3f}",
                  f"{r['ledger_query_s']:.4f}", f"{r['raw_select_s']:.4f}", f"{r['ratio_query_to_raw']:.1f}x"]
                 for r in figures["inspect"]])
    print_table("replay by log size (seconds)", ["events", "replay()", "read+decode", "events/s", "replay/read"],
                [[f"{r['events']:,}", f"{r['replay_s']:.2f}", f"{r['read_decode_s']:.2f}",
                  f"{r['replay_events_per_s']:,}", f"{r['ratio_to_read_decode']:.1f}x"] for r in figures["replay"]])
    print_table("slopes (1.0 = linear per unit; for inspect, compare with the row ratio)", ["slope", "value"],
                [[name, f"{value:.2f}"] for name, value in figures["slopes"].items()])
