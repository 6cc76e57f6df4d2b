"""As-of ledger reads: `state inspect --as-of` / `stagebus.read(as_of=)` latency on a large log.

A synthetic log of ``--events`` events (bench/history.py: every partition valid, ~7 events each)
is caught up once; then the ledger as of the head and as of the middle of the log is read
through :meth:`Projections.ledger_as_of` (the history-table lookup), against the raw baseline of
the same run: a plain SQLite scan of the live ledger table's rows (what a read of today's ledger
cannot beat). The ratio is as-of time over raw scan time, best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import history
from stagebus.projections import Projections
from stagebus.store import SqliteEventStore
from stagebus.store.keys import LEDGER_TABLE

DEFAULT_JSON = Path(__file__).parent / "results-asof.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=100_000, help="events in the synthetic log")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many reads")
    parser.add_argument("--quick", action="store_true", help="10k events, for CI")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


def best(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def measure(root: Path, events: int, repeats: int) -> dict[str, Any]:
    store = SqliteEventStore(root / "log.db")
    history.grow(store, max(events // history.EVENTS_PER_PARTITION, 1))
    head = store.head()
    with Projections(store, root / "projections") as projections:
        projections.catch_up()
        path = root / "projections" / f"{projections.generation}.db"
        as_of_head, rows_head = best(lambda: projections.ledger_as_of(head), repeats)
        as_of_mid, rows_mid = best(lambda: projections.ledger_as_of(head // 2), repeats)
    raw_conn = sqlite3.connect(path)
    raw, raw_rows = best(lambda: raw_conn.execute(
        f"SELECT dataset, partition, status, run_id, attempts, updated_at, reason, records, rejected "
        f"FROM {LEDGER_TABLE} ORDER BY dataset, partition").fetchall(), repeats)
    raw_conn.close()
    store.close()
    assert len(rows_head) == len(raw_rows)  # type: ignore[arg-type]
    return {
        "events": head, "ledger_rows": len(raw_rows),  # type: ignore[arg-type]
        "rows_as_of_middle": len(rows_mid),  # type: ignore[arg-type]
        "as_of_head_ms": round(as_of_head * 1000, 2), "as_of_middle_ms": round(as_of_mid * 1000, 2),
        "raw_scan_ms": round(raw * 1000, 2),
        "ratio_head_vs_raw": round(as_of_head / raw, 2), "ratio_middle_vs_raw": round(as_of_mid / raw, 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    events = 10_000 if args.quick else args.events
    with tempfile.TemporaryDirectory(prefix="bench-asof-") as tmp:
        figures = measure(Path(tmp), events, args.repeats)
    print(f"as-of ledger at {figures['events']} events, {figures['ledger_rows']} rows: "
          f"head {figures['as_of_head_ms']} ms, middle {figures['as_of_middle_ms']} ms; "
          f"raw SQLite scan of the live ledger {figures['raw_scan_ms']} ms; "
          f"ratio {figures['ratio_head_vs_raw']}x (head), {figures['ratio_middle_vs_raw']}x (middle)")
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
