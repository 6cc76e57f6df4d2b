"""Event log throughput and replay memory, SQLite and Redis, as ratios against raw baselines.

Raw baselines get the same payload bytes already encoded and store only them: for SQLite an
INSERT into a bare table (same WAL and synchronous settings), for Redis an XADD (pipelined for
batches). Ours encodes, hashes the chain, checks keys and stamps every event. Replay compares
``store.read()`` + ``RecordedEvent.event()`` with a raw ``SELECT``/``XRANGE`` + msgspec decode
of the same stored events.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sqlite3
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from bench import compare, print_table
from stagebus.events import DECODER, Event, Manifest, ManifestWritten, StageStarted, encode
from stagebus.store import EventStore, SqliteEventStore
from stagebus.store.keys import EVENTS_TABLE
from stagebus.store.redis import RedisEventStore
from stagebus.store.sqlite import synchronous_level

FILL_BATCH = 5_000
TARGETS = {"append x100": 0.5, "append x1000": 0.5, "replay": 0.3}
DEFAULT_JSON = Path(__file__).parent / "results-store.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--events", type=int, default=None, help="events per throughput run")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")
    parser.add_argument("--backends", default="sqlite,redis", help="comma-separated: sqlite,redis")


# --- the workload: what a pipeline appends, half of it keyed ----------------------------------


def workload(count: int, run: str) -> list[Event]:
    """``count`` events of run ``run``: a StageStarted then the keyed ManifestWritten of each task."""
    events: list[Event] = []
    for index in range(count):
        partition = f"airports/state={index // 2}"
        if index % 2 == 0:
            events.append(StageStarted(run_id=run, stage="normalize", partition=partition, attempt=1,
                                       worker="bench-1", input_hash="a" * 64, config_hash="c" * 64))
        else:
            manifest = Manifest(stage="normalize", run_id=run, partition=partition, input_hash="a" * 64,
                                output_hash="b" * 64, config_hash="c" * 64, status="complete",
                                started_at="2024-05-01T12:00:00.000000Z",
                                ended_at="2024-05-01T12:00:01.500000Z", worker="bench-1")
            events.append(ManifestWritten(run_id=run, stage="normalize", partition=partition,
                                          manifest=manifest))
    return events


def fill(store: EventStore, target: int) -> None:
    """Grow the log to ``target`` events in large batches (not timed)."""
    while (missing := target - store.head()) > 0:
        store.append(workload(min(FILL_BATCH, missing), run=f"fill-{store.head()}"))


def replay(store: EventStore) -> int:
    count = 0
    for record in store.read():
        record.event()
        count += 1
    return count


def replay_peak_mb(store: EventStore) -> float:
    """Peak Python memory while replaying the whole log, nothing kept."""
    tracemalloc.start()
    try:
        replay(store)
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


# --- backends: a fresh log for ours, a fresh target for raw -----------------------------------


class SqliteBench:
    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.made = 0

    def _path(self, stem: str) -> Path:
        self.made += 1
        return self.directory / f"{stem}-{self.made}.db"

    def fresh_store(self) -> EventStore:
        return SqliteEventStore(self._path("log"))

    def raw_target(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path("raw"), isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous_level()}")  # the same as the log's
        conn.execute("CREATE TABLE raw (position INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        return conn

    def raw_single(self, conn: sqlite3.Connection, payloads: list[bytes]) -> None:
        for payload in payloads:  # autocommit: one transaction per event, like append_one
            conn.execute("INSERT INTO raw (payload) VALUES (?)", (payload,))

    def raw_batches(self, conn: sqlite3.Connection, payloads: list[bytes], size: int) -> None:
        for start in range(0, len(payloads), size):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO raw (payload) VALUES (?)",
                             [(p,) for p in payloads[start : start + size]])
            conn.execute("COMMIT")

    def raw_replay(self, store: EventStore) -> int:
        conn = sqlite3.connect(store.path)  # type: ignore[attr-defined]
        count = 0
        for (payload,) in conn.execute(f"SELECT payload FROM {EVENTS_TABLE} ORDER BY position"):
            DECODER.decode(payload)
            count += 1
        conn.close()
        return count

    def close(self) -> None:
        pass


class RedisBench:
    name = "redis"

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url)
        self.made = 0

    def fresh_store(self) -> EventStore:
        self.client.flushall()  # keep the server's memory to one run's worth
        self.made += 1
        return RedisEventStore.from_url(self.url, namespace=f"bench-{self.made}")

    def raw_target(self) -> str:
        self.client.flushall()
        self.made += 1
        return f"raw-{self.made}"

    def raw_single(self, stream: str, payloads: list[bytes]) -> None:
        for payload in payloads:
            self.client.xadd(stream, {b"p": payload})

    def raw_batches(self, stream: str, payloads: list[bytes], size: int) -> None:
        for start in range(0, len(payloads), size):
            pipe = self.client.pipeline(transaction=False)
            for payload in payloads[start : start + size]:
                pipe.xadd(stream, {b"p": payload})
            pipe.execute()

    def raw_replay(self, store: EventStore) -> int:
        stream = store.names.stream  # type: ignore[attr-defined]
        count, start = 0, "-"
        while True:
            entries: Any = self.client.xrange(stream, start, "+", 1000)
            if not entries:
                return count
            for _, fields in entries:
                DECODER.decode(fields[b"p"])
            count += len(entries)
            start = "(" + entries[-1][0].decode()

    def close(self) -> None:
        self.client.close()


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str | None]:
    """A redis-server of our own on a unix socket (never a shared 6379); None if not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    socket = directory / "redis.sock"
    process = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(socket), "--dir", str(directory),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"unix://{socket}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis.from_url(url).ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- measuring ---------------------------------------------------------------------------------


def measure_appends(bench: Any, count: int, single_count: int, repeats: int) -> list[dict[str, Any]]:
    events = workload(count, run="append")
    payloads = [encode(e) for e in events]
    singles, single_payloads = events[:single_count], payloads[:single_count]

    def ours_single(store: EventStore) -> None:
        for event in singles:
            store.append_one(event)

    ours, raw = compare(single_count, (bench.fresh_store, ours_single),
                        (bench.raw_target, lambda t: bench.raw_single(t, single_payloads)), repeats)
    rows = [row(bench.name, "append x1", single_count, ours, raw)]
    for size in (100, 1000):
        batches = [events[i : i + size] for i in range(0, count, size)]

        def ours_batched(store: EventStore, batches: list[list[Event]] = batches) -> None:
            for batch in batches:
                store.append(batch)

        def raw_batched(target: Any, size: int = size) -> None:
            bench.raw_batches(target, payloads, size)

        ours, raw = compare(count, (bench.fresh_store, ours_batched), (bench.raw_target, raw_batched), repeats)
        rows.append(row(bench.name, f"append x{size}", count, ours, raw))
    return rows


def measure_replay(bench: Any, count: int, repeats: int) -> tuple[dict[str, Any], EventStore]:
    store = bench.fresh_store()
    fill(store, count)
    ours, raw = compare(count, (lambda: store, replay), (lambda: store, bench.raw_replay), repeats)
    return row(bench.name, "replay", count, ours, raw), store


def measure_memory(bench: Any, store: EventStore, sizes: list[int]) -> dict[str, Any]:
    peaks = {}
    for size in sizes:
        fill(store, size)
        peaks[size] = round(replay_peak_mb(store), 2)
    growth = peaks[sizes[-1]] / peaks[sizes[0]] if len(sizes) > 1 else None
    return {"backend": bench.name, "peak_mb": peaks, "growth": growth and round(growth, 2)}


def row(backend: str, measure: str, events: int, ours: float, raw: float) -> dict[str, Any]:
    return {"backend": backend, "measure": measure, "events": events, "ours_per_s": round(ours),
            "raw_per_s": round(raw), "ratio": round(ours / raw, 3), "target": TARGETS.get(measure)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    count = args.events or (20_000 if args.quick else 100_000)
    single_count = min(count, 2_000 if args.quick else 10_000)
    repeats = 2 if args.quick else 5
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    wanted = set(args.backends.split(","))
    rows: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    skipped: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp, redis_server(Path(tmp)) as url:
        benches: list[Any] = []
        if "sqlite" in wanted:
            benches.append(SqliteBench(Path(tmp)))
        if "redis" in wanted:
            if url is None:
                skipped.append("redis: redis-server is not installed")
            else:
                benches.append(RedisBench(url))
        for bench in benches:
            rows += measure_appends(bench, count, single_count, repeats)
            replay_row, store = measure_replay(bench, count, repeats)
            rows.append(replay_row)
            memory.append(measure_memory(bench, store, sizes))
            store.close()
            bench.close()
    report = {"quick": args.quick, "events": count, "repeats": repeats, "seconds": round(time.monotonic() - started, 1),
              "throughput": rows, "replay_memory": memory, "skipped": skipped}
    show(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json} ({report['seconds']} s)")
    return report


def show(report: dict[str, Any]) -> None:
    print_table(
        "event log throughput (events/s; ratio = ours / raw, best of "
        f"{report['repeats']})",
        ["backend", "measure", "ours", "raw", "ratio", "target"],
        [[r["backend"], r["measure"], f"{r['ours_per_s']:,}", f"{r['raw_per_s']:,}", f"{r['ratio']:.2f}",
          f">= {r['target']}" if r["target"] else "-"] for r in report["throughput"]],
    )
    memory = report["replay_memory"]
    if memory:
        sizes = [f"{int(size):,} events" for size in memory[0]["peak_mb"]]
        print_table("replay peak memory (MB, tracemalloc; growth = largest / smallest)",
                    ["backend", *sizes, "growth"],
                    [[m["backend"], *m["peak_mb"].values(), m["growth"] or "-"] for m in memory])
    for note in report["skipped"]:
        print(f"skipped {note}")
