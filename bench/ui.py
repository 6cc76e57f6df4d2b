"""Page times of the web inspector (``stagebus ui``) at 10k and 100k partitions (100k: ~1M events).

The home is grown the fast honest way: the events a run appends (as :mod:`bench.history` makes
them), appended in batches of 5,000 through the store's ``append``, then the projections are
caught up once (not timed). Per 1,000-partition run: every tenth run fails its partitions in
``normalize`` (invalid rows); after the first pass, half of the partitions are processed again by
newer runs (so their partition pages have a history across runs, and the log reaches ~10
events per partition).

Timed, over HTTP against a real ``stagebus ui`` process: overview, ledger (first page), ledger
filtered by status and by text, a partition page, a run page, the log tail and the log filtered
by type. ``first`` is the first request after start-up (opening the files included); ``best``
the best of ``--repeats``. The raw baseline, in the same run: the ledger's first page as one
SQLite query on the same projections file (ratio = page / raw). With Chromium installed
(``/usr/bin/chromium``), the ledger's first contentful paint in a headless browser is measured too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import print_table
from bench.history import PARTITION_STAGES, RUN_STAGES, stage_task
from bench.runtime import noop_pipeline
from stagebus.events import Event, PartitionIngested, RunOpened, RunSealed, StageFailed, StageStarted
from stagebus.projections.reader import Projections
from stagebus.store import SqliteEventStore
from stagebus.store.keys import LEDGER_TABLE

DEFAULT_JSON = Path(__file__).parent / "results-ui.json"
RUN_SIZE = 1000
DATASET = "bulk"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="1,000 and 3,000 partitions instead of 10k and 100k")
    parser.add_argument("--sizes", type=str, default=None, help="partition counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None,
                        help="grow the homes here and keep them; homes already there are measured again, not regrown")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


def _run(run_id: str, names: list[str], *, failing: bool) -> Iterator[Event]:
    yield RunOpened(run_id=run_id, pipeline="noop", plan=noop_pipeline().plan())
    refs = [f"{DATASET}/{n}" for n in names]
    for index, name in enumerate(names):
        yield PartitionIngested(run_id=run_id, dataset=DATASET, partition=name, uri="file:///dev/null",
                                content_hash=f"{run_id}-{index}", size=1)
    yield RunSealed(run_id=run_id, partitions=tuple(refs))
    for ref in refs:
        yield from stage_task(run_id, PARTITION_STAGES[0], ref)
        if failing:
            yield StageStarted(run_id=run_id, stage=PARTITION_STAGES[1], partition=ref, attempt=1, worker="bench",
                               input_hash="a" * 64, config_hash="c" * 64)
            yield StageFailed(run_id=run_id, stage=PARTITION_STAGES[1], partition=ref, attempt=1,
                              error_type="ValueError", message=f"bad row in {ref}", final=True,
                              traceback="Traceback (most recent call last):\n  ...\nValueError: bad row\n")
            continue
        for stage in PARTITION_STAGES[1:]:
            yield from stage_task(run_id, stage, ref)
    if not failing:
        for stage in RUN_STAGES:
            yield from stage_task(run_id, stage, "*")


def grow_home(home: Path, partitions: int, batch: int = 5000) -> int:
    """A home with ``partitions`` partitions (every tenth run failing) and half of them reprocessed."""
    home.mkdir(parents=True, exist_ok=True)
    names = [f"p{i:07d}" for i in range(partitions)]
    runs: list[tuple[str, list[str], bool]] = []
    for number, start in enumerate(range(0, partitions, RUN_SIZE)):
        runs.append((f"first-{number:04d}", names[start:start + RUN_SIZE], number % 10 == 9))
    again = names[: partitions // 2]
    for number, start in enumerate(range(0, len(again), RUN_SIZE)):
        runs.append((f"again-{number:04d}", again[start:start + RUN_SIZE], False))
    appended, pending = 0, []
    with SqliteEventStore(home / "log.db", synchronous="NORMAL") as store:
        for run_id, chunk, failing in runs:
            for event in _run(run_id, chunk, failing=failing):
                pending.append(event)
                if len(pending) >= batch:
                    appended += len(store.append(pending))
                    pending = []
        if pending:
            appended += len(store.append(pending))
        with Projections(store, home / "projections") as projections:
            projections.catch_up()
    return appended


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        response.read()
        assert response.status == 200, url
    return time.perf_counter() - t0


def _pages(partitions: int) -> dict[str, str]:
    some = f"p{random.Random(7).randrange(partitions // 2):07d}"  # one with a history across runs
    failing = min(9, (partitions - 1) // RUN_SIZE)  # the first failing run (or the last run of a small home)
    return {"overview": "/", "ledger": "/ledger", "ledger_status": "/ledger?status=invalid",
            "ledger_text": f"/ledger?q={some[:-2]}", "ledger_newest": "/ledger?sort=updated_at&order=desc",
            "partition": f"/partition?dataset={DATASET}&partition={some}", "run": f"/runs/first-{failing:04d}",
            "log": "/log", "log_type": "/log?type=stage_failed"}


def _raw_ledger_page(home: Path) -> float:
    live = (home / "projections" / "CURRENT").read_text().strip()
    conn = sqlite3.connect(f"{(home / 'projections' / f'{live}.db').resolve().as_uri()}?mode=ro", uri=True)
    t0 = time.perf_counter()
    conn.execute(f"SELECT * FROM {LEDGER_TABLE} ORDER BY dataset, partition LIMIT 51").fetchall()
    conn.execute(f"SELECT count(*) FROM {LEDGER_TABLE}").fetchone()
    spent = time.perf_counter() - t0
    conn.close()
    return spent


def _first_paint(url: str) -> float | None:
    """The page's first contentful paint in headless Chromium, in seconds (None without Chromium)."""
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.browser import chromium

    with chromium() as driver:
        driver.get(url)  # type: ignore[attr-defined]
        paint = None
        for _ in range(50):  # the entry is queued once the frame is presented, maybe after load
            paint = driver.execute_script(  # type: ignore[attr-defined]
                "const e = performance.getEntriesByType('paint').find(p => p.name === 'first-contentful-paint');"
                " return e ? e.startTime : null;")
            if paint is not None:
                break
            time.sleep(0.05)
    return None if paint is None else float(paint) / 1000


def measure(home: Path, partitions: int, repeats: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    if (home / "projections" / "CURRENT").exists():  # kept from an earlier run (--keep)
        with SqliteEventStore(home / "log.db", readonly=True) as store:
            events, grown_s = store.head(), None
    else:
        events = grow_home(home, partitions)
        grown_s = time.perf_counter() - t0
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "STAGEBUS_PIPELINES": "bench.runtime:noop_pipeline"}
    command = [sys.executable, "-c", "import sys; from stagebus.cli import main; sys.argv[0] = 'stagebus'; main()",
               "--home", str(home), "ui", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/ui"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(base + "/static/live.js")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("stagebus ui did not start") from None
                time.sleep(0.1)
        pages: dict[str, dict[str, float]] = {}
        for name, path in _pages(partitions).items():
            first = _get(base + path)
            best = min(_get(base + path) for _ in range(repeats))
            pages[name] = {"first_s": first, "best_s": best}
        raw = min(_raw_ledger_page(home) for _ in range(repeats))
        paint = _first_paint(base + "/ledger")
        paint_filtered = _first_paint(base + "/ledger?status=invalid")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"partitions": partitions, "events": events, "grow_s": grown_s, "pages": pages,
            "raw_ledger_page_s": raw, "ledger_ratio": pages["ledger"]["best_s"] / raw if raw else None,
            "ledger_first_contentful_paint_s": paint, "ledger_filtered_first_contentful_paint_s": paint_filtered}


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([1_000, 3_000] if args.quick
                                                                         else [10_000, 100_000])
    results = []
    root = args.keep or Path(tempfile.mkdtemp(prefix="stagebus-bench-ui-"))
    try:
        for size in sizes:
            home = root / f"home-{size}"
            if home.exists() and not (home / "projections" / "CURRENT").exists():
                shutil.rmtree(home)  # a grow that did not finish
            results.append(measure(home, size, args.repeats))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    rows = []
    for name in results[0]["pages"]:
        rows.append([name, *(f"{r['pages'][name]['first_s'] * 1000:.0f} / {r['pages'][name]['best_s'] * 1000:.0f}"
                             for r in results)])
    rows.append(["raw ledger page (SQLite)", *(f"{r['raw_ledger_page_s'] * 1000:.1f}" for r in results)])
    for key, label in (("ledger_first_contentful_paint_s", "ledger first paint (Chromium)"),
                       ("ledger_filtered_first_contentful_paint_s", "filtered ledger first paint (Chromium)")):
        rows.append([label, *("-" if r[key] is None else f"{r[key] * 1000:.0f}" for r in results)])
    print_table("inspector page times, ms (first request / best of repeats)",
                ["page", *(f"{r['partitions']:,} partitions, {r['events']:,} events" for r in results)], rows)
    figures = {"sizes": results}
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
