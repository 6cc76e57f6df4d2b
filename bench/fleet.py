"""Fleet mode on Redis, 2 worker processes: stage-transition latency and no-op stage tasks/s,
vs raw Dramatiq on the same RedisBroker and the same worker settings.

Ours: a private ``redis-server`` (unix socket) holds both the log (Redis Streams) and the broker;
``stagebus relay`` and ``stagebus worker --processes 2`` run the no-op pipeline of
:mod:`bench.runtime` (``STAGEBUS_PIPELINES=bench.runtime:noop_pipeline``). Raw:
``dramatiq bench.dramatiq_raw --processes 2`` with the same threads and idle timeout, actors
that send the next one directly (see :mod:`bench.dramatiq_raw`).

A transition is measured from the upstream ingest manifest's ``recorded_at`` to the downstream
normalize ``StageStarted``'s ``recorded_at`` (both stamped by the appending worker, one machine
clock); the raw hop from ``normalize.send`` to the start of normalize's body. "Hot": every
partition of a run at once; "after idle": one partition published after 0.5 s of nothing.

Idle polling is chosen on purpose: ``dramatiq_worker_timeout`` = 100 ms on both sides (the
default 1000 ms makes an after-idle hop wait up to a second on either side). The relay polls
the log every 200 ms when it has nothing to send (``RelayProcess.poll_s``; no flag).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message

from bench import print_table
from bench.runtime import publish
from bench.store import redis_server
from stagebus.events import ManifestWritten, StageStarted, manifest_key
from stagebus.store.redis import RedisEventStore

DEFAULT_JSON = Path(__file__).parent / "results-fleet.json"
REPO = Path(__file__).resolve().parents[1]
PROCESSES, THREADS, WORKER_TIMEOUT_MS, IDLE_S = 2, 4, 100, 0.5
STAGEBUS = [sys.executable, "-c", "from stagebus.cli import main; main()"]
# What-if (full runs only): the same relay with a shorter idle poll, built as `stagebus relay`
# builds it; measures how much of the transition is the relay's 200 ms sleep. Changes no code.
WHAT_IF_POLL_S = 0.01
RELAY_WITH_POLL = """
import signal, sys, threading
from stagebus.actors.fleet_setup import FleetSettings
from stagebus.actors.relay_process import RelayProcess
relay = RelayProcess(FleetSettings(), reconcile_every_s=5.0, poll_s=float(sys.argv[1]))
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
try:
    relay.run(stop)
finally:
    relay.close()
"""


# Redis keys the raw actors (bench.dramatiq_raw) write for the bench to read.
def hops_key(run: str) -> str:
    return f"bench:hops:{run}"


def done_key(run: str) -> str:
    return f"bench:extracted:{run}"


def served_key(run: str) -> str:
    return f"bench:served:{run}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="100 partitions, 5 after-idle hops")
    parser.add_argument("--partitions", type=int, default=None, help="partitions per throughput run")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


@contextlib.contextmanager
def processes(*commands: tuple[list[str], dict[str, str]], logs: Path) -> Iterator[None]:
    """Start each command in its own session; SIGTERM them all on the way out, SIGKILL stragglers."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for index, (argv, env) in enumerate(commands):
            with (logs / f"process-{index}.log").open("wb") as out:
                started.append(subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                                start_new_session=True))
        yield
    finally:
        for proc in started:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def wait_for(done: Any, timeout_s: float, what: str, logs: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            tail = "\n".join(p.read_text(errors="replace")[-1500:] for p in sorted(logs.glob("*.log")))
            raise TimeoutError(f"{what} did not finish in {timeout_s}s\n{tail}")
        time.sleep(0.005)


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def transitions(store: RedisEventStore, run_id: str) -> list[float]:
    """Seconds from each partition's ingest manifest to its normalize StageStarted, from the log."""
    upstream: dict[str, float] = {}
    started: dict[str, float] = {}
    for record in store.read():
        event = record.event()
        if isinstance(event, ManifestWritten) and event.run_id == run_id and event.stage == "ingest":
            upstream[event.partition] = _stamp(record.recorded_at)
        elif isinstance(event, StageStarted) and event.run_id == run_id and event.stage == "normalize":
            started.setdefault(event.partition, _stamp(record.recorded_at))
    return [started[p] - upstream[p] for p in started if p in upstream]


def ours(url: str, home: Path, partitions: int, idle_hops: int, relay_poll_s: float | None = None) -> dict[str, Any]:
    env = {**os.environ, "STAGEBUS_HOME": str(home), "STAGEBUS_STORE": url, "STAGEBUS_BROKER": url,
           "STAGEBUS_PIPELINES": "bench.runtime:noop_pipeline", "STAGEBUS_LOG_LEVEL": "WARNING",
           "STAGEBUS_WORKER_PROJECTIONS": str(home / "worker-projections"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    relay = [*STAGEBUS, "relay", "--reconcile-every", "5"]
    if relay_poll_s is not None:
        relay = [sys.executable, "-c", RELAY_WITH_POLL, str(relay_poll_s)]
    worker = [*STAGEBUS, "worker", "--processes", str(PROCESSES), "--threads", str(THREADS),
              "--worker-timeout", str(WORKER_TIMEOUT_MS)]
    (home / "data").write_text("x")
    store = RedisEventStore.from_url(url)

    def run_once(run_id: str, count: int) -> float:
        begin = time.perf_counter()
        publish(store, run_id, count, home / "data")  # type: ignore[arg-type]
        key = manifest_key(run_id, "serve", "*")
        wait_for(lambda: store.get(key) is not None, 120 + count, f"fleet run {run_id}", home)
        return time.perf_counter() - begin

    try:
        with processes((relay, env), (worker, env), logs=home):
            run_once("warm", 2)  # imports, connections, caches
            wall = run_once("hot", partitions)
            hot = transitions(store, "hot")
            idle: list[float] = []
            for hop in range(idle_hops):
                time.sleep(IDLE_S)
                run_once(f"idle{hop}", 1)
                idle += transitions(store, f"idle{hop}")
    finally:
        store.close()
    return {"tasks_per_s": (3 * partitions + 3) / wall, "hot": hot, "idle": idle}


def raw(url: str, logs: Path, partitions: int, idle_hops: int) -> dict[str, Any]:
    env = {**os.environ, "STAGEBUS_BENCH_REDIS": url, "dramatiq_worker_timeout": str(WORKER_TIMEOUT_MS),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, "-m", "dramatiq", "bench.dramatiq_raw", "--processes", str(PROCESSES),
            "--threads", str(THREADS)]
    broker = RedisBroker(url=url)
    client = redis.Redis.from_url(url)

    def send(queue: str, *args: Any) -> None:
        broker.enqueue(Message(queue_name=queue, actor_name=queue, args=args, kwargs={}, options={}))

    def run_once(run: str, count: int) -> float:
        begin = time.perf_counter()
        for index in range(count):
            send("ingest", run, index)
        wait_for(lambda: int(client.get(done_key(run)) or 0) >= count, 120 + count, run, logs)
        send("link", run)
        wait_for(lambda: client.exists(served_key(run)), 60, run, logs)
        return time.perf_counter() - begin

    def hops(run: str) -> list[float]:
        return [float(v) for v in client.lrange(hops_key(run), 0, -1)]

    try:
        with processes((argv, env), logs=logs):
            run_once("warm", 2)
            wall = run_once("hot", partitions)
            idle: list[float] = []
            for hop in range(idle_hops):
                time.sleep(IDLE_S)
                run_once(f"idle{hop}", 1)
                idle += hops(f"idle{hop}")
            return {"tasks_per_s": (3 * partitions + 3) / wall, "hot": hops("hot"), "idle": idle}
    finally:
        client.close()
        broker.close()


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def run(args: argparse.Namespace) -> dict[str, Any]:
    partitions = args.partitions or (100 if args.quick else 300)
    idle_hops = 5 if args.quick else 20
    figures: dict[str, Any] = {"partitions": partitions, "worker_processes": PROCESSES, "threads": THREADS,
                               "dramatiq_worker_timeout_ms": WORKER_TIMEOUT_MS, "idle_s": IDLE_S}
    with tempfile.TemporaryDirectory(prefix="sb-bench-fleet-") as tmp, redis_server(Path(tmp)) as url:
        if url is None:
            figures["skipped"] = "fleet not measured: redis-server is not installed"
            print(figures["skipped"])
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
            return figures
        (Path(tmp) / "ours").mkdir()
        (Path(tmp) / "raw").mkdir()
        o = ours(url, Path(tmp) / "ours", partitions, idle_hops)
        redis.Redis.from_url(url).flushall()
        r = raw(url, Path(tmp) / "raw", partitions, idle_hops)
        if not args.quick:
            redis.Redis.from_url(url).flushall()
            (Path(tmp) / "what-if").mkdir()
            w = ours(url, Path(tmp) / "what-if", partitions, idle_hops, relay_poll_s=WHAT_IF_POLL_S)
            figures["what-if relay poll 10 ms"] = {
                "tasks_per_s": w["tasks_per_s"], "hot_p50_ms": statistics.median(w["hot"]) * 1000,
                "idle_p50_ms": statistics.median(w["idle"]) * 1000,
                "idle_p50_ratio_to_raw": statistics.median(w["idle"]) / statistics.median(r["idle"])}
    rows = []
    for label in ("hot", "idle"):
        name = "hot" if label == "hot" else f"after {IDLE_S} s idle"
        p50o, p50r = statistics.median(o[label]) * 1000, statistics.median(r[label]) * 1000
        p99o, p99r = _ms(o[label], 0.99), _ms(r[label], 0.99)
        figures[f"transition {name}"] = {"ours_p50_ms": p50o, "raw_p50_ms": p50r, "ours_p99_ms": p99o,
                                         "raw_p99_ms": p99r, "ratio_p50": p50o / p50r, "ratio_p99": p99o / p99r,
                                         "samples": len(o[label])}
        rows.append([f"transition p50 ({name})", "ms", f"{p50o:.1f}", f"{p50r:.1f}", f"{p50o / p50r:.1f}x"])
        rows.append([f"transition p99 ({name})", "ms", f"{p99o:.1f}", f"{p99r:.1f}", f"{p99o / p99r:.1f}x"])
    ratio = o["tasks_per_s"] / r["tasks_per_s"]
    figures["noop throughput"] = {"ours_tasks_per_s": o["tasks_per_s"], "raw_tasks_per_s": r["tasks_per_s"],
                                  "ratio": ratio}
    rows.append(["no-op stage tasks/s", "tasks/s", f"{o['tasks_per_s']:.0f}", f"{r['tasks_per_s']:.0f}",
                 f"{ratio:.2f}x"])
    if "what-if relay poll 10 ms" in figures:
        w = figures["what-if relay poll 10 ms"]
        rows.append(["what-if: relay idle poll 10 ms, p50 after idle", "ms", f"{w['idle_p50_ms']:.1f}",
                     f"{statistics.median(r['idle']) * 1000:.1f}", f"{w['idle_p50_ratio_to_raw']:.1f}x"])
        rows.append(["what-if: relay idle poll 10 ms, tasks/s", "tasks/s", f"{w['tasks_per_s']:.0f}",
                     f"{r['tasks_per_s']:.0f}", f"{w['tasks_per_s'] / r['tasks_per_s']:.2f}x"])
    print_table(f"fleet on Redis: relay + {PROCESSES} worker processes x {THREADS} threads, {partitions} partitions, "
                f"idle poll {WORKER_TIMEOUT_MS} ms", ["figure", "unit", "stagebus", "raw dramatiq", "ours/raw"], rows)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
