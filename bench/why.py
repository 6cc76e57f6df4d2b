"""Latency of ``stagebus why`` at 100k partitions: :func:`~stagebus.projections.explain.explain`
on a log grown by :mod:`bench.history` (100,000 partitions, ~700k events; 1,000 with ``--quick``).

The projections are caught up once, not timed. Timed: ``explain()`` of ``--samples`` random
partitions through read-only :class:`~stagebus.projections.Projections` (what the CLI does after
start-up), against the raw baseline in the same run: a direct SQLite lookup of the same
partitions' ledger rows on the same projections file. ratio = ours / raw, per partition. Rounds
alternate, best of ``--repeats``. Also printed: one ``stagebus why`` CLI call (interpreter start
and imports included).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import history, print_table
from stagebus.projections.explain import explain
from stagebus.projections.reader import Projections
from stagebus.store import SqliteEventStore
from stagebus.store.keys import LEDGER_TABLE

DEFAULT_JSON = Path(__file__).parent / "results-why.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="1,000 partitions instead of 100,000")
    parser.add_argument("--partitions", type=int, default=None, help="partitions in the log")
    parser.add_argument("--samples", type=int, default=200, help="partitions explained per round")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


def best(work: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(root: Path, partitions: int, samples: int, repeats: int, cli: bool = True) -> dict[str, Any]:
    home = root / f"home-{partitions}"
    home.mkdir(parents=True)
    with SqliteEventStore(home / "log.db") as store:
        events = history.grow(store, partitions, dataset="bulk")
        with Projections(store, home / "projections") as projections:
            projections.catch_up()
    names = [f"{row[0]}" for row in _partition_names(home)]
    chosen = random.Random(7).sample(names, min(samples, len(names)))
    with SqliteEventStore(home / "log.db", readonly=True) as store, \
            Projections(store, home / "projections", readonly=True) as projections:
        projections.catch_up()
        live = projections.generations.live()
        assert live is not None
        raw_conn = projections.generations.open(live, readonly=True)

        def ours() -> None:
            for name in chosen:
                explain(projections, "bulk", name)

        def raw() -> None:
            for name in chosen:
                raw_conn.execute(f"SELECT * FROM {LEDGER_TABLE} WHERE dataset = ? AND partition = ?",
                                 ("bulk", name)).fetchone()

        ours_s, raw_s = [], []
        for _ in range(repeats):  # alternating, so load from other processes hits both alike
            ours_s.append(best(ours, 1))
            raw_s.append(best(raw, 1))
        raw_conn.close()
        sample = explain(projections, "bulk", chosen[0])
    per_ours, per_raw = min(ours_s) / len(chosen), min(raw_s) / len(chosen)
    figures: dict[str, Any] = {"partitions": partitions, "events": events, "samples": len(chosen),
                               "why_ms": per_ours * 1000, "raw_ledger_lookup_ms": per_raw * 1000,
                               "ratio": per_ours / per_raw, "facts": len(sample.facts)}
    if cli:
        env = {**os.environ, "STAGEBUS_PIPELINES": "bench.runtime:noop_pipeline",
               "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        t0 = time.perf_counter()
        command = [str(Path(sys.executable).parent / "stagebus"), "--home", str(home), "why", f"bulk/{chosen[0]}",
                   "--format", "json"]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        figures["cli_s"] = time.perf_counter() - t0
        figures["cli_ok"] = done.returncode == 0
    return figures


def _partition_names(home: Path) -> list[tuple[str]]:
    import sqlite3

    with SqliteEventStore(home / "log.db", readonly=True) as store, \
            Projections(store, home / "projections", readonly=True) as projections:
        live = projections.generations.live()
        assert live is not None
        conn: sqlite3.Connection = projections.generations.open(live, readonly=True)
        rows = conn.execute(f"SELECT partition FROM {LEDGER_TABLE} ORDER BY partition").fetchall()
        conn.close()
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    partitions = args.partitions or (1_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(Path(tmp), partitions, args.samples, args.repeats)
    print_table(f"why latency at {partitions:,} partitions", ["measure", "ms per partition", "ratio"], [
        ["explain()", f"{figures['why_ms']:.3f}", f"{figures['ratio']:.1f}x"],
        ["raw ledger row lookup", f"{figures['raw_ledger_lookup_ms']:.4f}", "1.0x"],
        ["stagebus why (CLI, with start-up)", f"{figures.get('cli_s', 0) * 1000:.0f}", "-"],
    ])
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
