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

Round trips and stale appends are counted in every process the bench starts, on both sides, by
:mod:`bench.counting` (a ``sitecustomize`` that wraps redis-py's send and the log's append script),
over the hot run only, and divided by its stage tasks. ``--before REV`` runs our side a second
time, in the same run, on the code of commit ``REV`` (``git archive`` into a temp directory, first
on ``PYTHONPATH``), so the before/after ratios share one machine state.

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
    parser.add_argument("--before", default=None, metavar="REV",
                        help="also run our side on the code of git commit REV, in the same run")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


@contextlib.contextmanager
def processes(*commands: tuple[list[str], dict[str, str]], logs: Path, cwd: Path = REPO) -> Iterator[None]:
    """Start each command in its own session; SIGTERM them all on the way out, SIGKILL stragglers."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for index, (argv, env) in enumerate(commands):
            with (logs / f"process-{index}.log").open("wb") as out:
                started.append(subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
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


COUNTING = Path(__file__).parent / "counting"


def counted(directory: Path) -> dict[str, int]:
    """The counters of every process started with ``STAGEBUS_BENCH_COUNTS=directory``, summed."""
    totals = {"round_trips": 0, "appends": 0, "stale": 0}
    for path in directory.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            for name, value in json.loads(path.read_text()).items():
                totals[name] = totals.get(name, 0) + int(value)
    return totals


def settled_counts(directory: Path) -> dict[str, int]:
    time.sleep(0.2)  # every process rewrites its counters each 50 ms
    return counted(directory)


def child_env(tree: Path, counts: Path, **extra: str) -> dict[str, str]:
    """The environment of a benched process: ``tree``'s code first, the counting hook before it."""
    path = [str(COUNTING), str(tree), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, **extra, "STAGEBUS_BENCH_COUNTS": str(counts),
            "PYTHONPATH": os.pathsep.join(filter(None, path))}


def per_task(before: dict[str, int], after: dict[str, int], tasks: int) -> dict[str, Any]:
    appends = after["appends"] - before["appends"]
    stale = after["stale"] - before["stale"]
    figures: dict[str, Any] = {"round_trips_per_task": (after["round_trips"] - before["round_trips"]) / tasks,
                               "append_attempts_per_task": appends / tasks,
                               "stale_append_rate": stale / max(1, appends - stale)}
    commands = {name[4:]: round((n - before.get(name, 0)) / tasks, 2) for name, n in after.items()
                if name.startswith("cmd ") and n > before.get(name, 0)}
    if commands:  # STAGEBUS_BENCH_COUNT_COMMANDS=1: round trips per task by command
        figures["round_trips_by_command"] = dict(sorted(commands.items(), key=lambda kv: -kv[1]))
    return figures


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


def ours(url: str, home: Path, partitions: int, idle_hops: int, relay_poll_s: float | None = None,
         tree: Path = REPO) -> dict[str, Any]:
    counts = home / "counts"
    counts.mkdir()
    env = child_env(tree, counts, STAGEBUS_HOME=str(home), STAGEBUS_STORE=url, STAGEBUS_BROKER=url,
                    STAGEBUS_PIPELINES="bench.runtime:noop_pipeline", STAGEBUS_LOG_LEVEL="WARNING",
                    STAGEBUS_WORKER_PROJECTIONS=str(home / "worker-projections"))
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
        with processes((relay, env), (worker, env), logs=home, cwd=tree):
            run_once("warm", 2)  # imports, connections, caches
            begin = settled_counts(counts)
            wall = run_once("hot", partitions)
            work = per_task(begin, settled_counts(counts), 3 * partitions + 3)
            hot = transitions(store, "hot")
            idle: list[float] = []
            for hop in range(idle_hops):
                time.sleep(IDLE_S)
                run_once(f"idle{hop}", 1)
                idle += transitions(store, f"idle{hop}")
    finally:
        store.close()
    return {"tasks_per_s": (3 * partitions + 3) / wall, "hot": hot, "idle": idle, **work}


def raw(url: str, logs: Path, partitions: int, idle_hops: int) -> dict[str, Any]:
    counts = logs / "counts"
    counts.mkdir()
    env = child_env(REPO, counts, STAGEBUS_BENCH_REDIS=url, dramatiq_worker_timeout=str(WORKER_TIMEOUT_MS))
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
            begin = settled_counts(counts)
            wall = run_once("hot", partitions)
            work = per_task(begin, settled_counts(counts), 3 * partitions + 3)
            idle: list[float] = []
            for hop in range(idle_hops):
                time.sleep(IDLE_S)
                run_once(f"idle{hop}", 1)
                idle += hops(f"idle{hop}")
            return {"tasks_per_s": (3 * partitions + 3) / wall, "hot": hops("hot"), "idle": idle, **work}
    finally:
        client.close()
        broker.close()


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def checkout(rev: str, into: Path) -> Path:
    """The code of commit ``rev``, unpacked into ``into`` (the bench's own temp directory)."""
    into.mkdir()
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def summary(side: dict[str, Any], raw_side: dict[str, Any]) -> dict[str, Any]:
    """One side's figures, each beside the raw Dramatiq figure of the same run."""
    figures: dict[str, Any] = {"tasks_per_s": side["tasks_per_s"],
                               "throughput_ratio": side["tasks_per_s"] / raw_side["tasks_per_s"]}
    for label in ("hot", "idle"):
        p50, p50r = statistics.median(side[label]) * 1000, statistics.median(raw_side[label]) * 1000
        p99, p99r = _ms(side[label], 0.99), _ms(raw_side[label], 0.99)
        figures[label] = {"p50_ms": p50, "p99_ms": p99, "raw_p50_ms": p50r, "raw_p99_ms": p99r,
                          "ratio_p50": p50 / p50r, "ratio_p99": p99 / p99r, "samples": len(side[label])}
    for name in ("round_trips_per_task", "append_attempts_per_task", "stale_append_rate", "round_trips_by_command"):
        if name in side:
            figures[name] = side[name]
    return figures


def run(args: argparse.Namespace) -> dict[str, Any]:
    partitions = args.partitions or (100 if args.quick else 300)
    idle_hops = 5 if args.quick else 20
    figures: dict[str, Any] = {"partitions": partitions, "worker_processes": PROCESSES, "threads": THREADS,
                               "dramatiq_worker_timeout_ms": WORKER_TIMEOUT_MS, "idle_s": IDLE_S}
    before: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="sb-bench-fleet-") as tmp, redis_server(Path(tmp)) as url:
        if url is None:
            figures["skipped"] = "fleet not measured: redis-server is not installed"
            print(figures["skipped"])
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
            return figures
        root = Path(tmp)
        for name in ("ours", "raw", "before"):
            (root / name).mkdir()
        o = ours(url, root / "ours", partitions, idle_hops)
        redis.Redis.from_url(url).flushall()
        r = raw(url, root / "raw", partitions, idle_hops)
        if args.before:
            redis.Redis.from_url(url).flushall()
            tree = checkout(args.before, root / "before-tree")
            before = ours(url, root / "before", partitions, idle_hops, tree=tree)
        if not args.quick:
            redis.Redis.from_url(url).flushall()
            (root / "what-if").mkdir()
            w = ours(url, root / "what-if", partitions, idle_hops, relay_poll_s=WHAT_IF_POLL_S)
            figures["what-if relay poll 10 ms"] = {
                "tasks_per_s": w["tasks_per_s"], "hot_p50_ms": statistics.median(w["hot"]) * 1000,
                "idle_p50_ms": statistics.median(w["idle"]) * 1000,
                "idle_p50_ratio_to_raw": statistics.median(w["idle"]) / statistics.median(r["idle"])}
    figures["raw"] = {name: r[name] for name in ("tasks_per_s", "round_trips_per_task", "round_trips_by_command")
                      if name in r}
    figures["ours"] = summary(o, r)
    sides = [("stagebus", figures["ours"])]
    if before is not None:
        figures["before"] = {"rev": args.before, **summary(before, r)}
        sides.insert(0, (f"before ({args.before})", figures["before"]))
    rows = []
    for label, name in (("hot", "hot"), ("idle", f"after {IDLE_S} s idle")):
        for q in ("p50", "p99"):
            row = [f"transition {q} ({name})", "ms", f"{figures['ours'][label]['raw_' + q + '_ms']:.1f}"]
            for _, side in sides:
                row += [f"{side[label][q + '_ms']:.1f}", f"{side[label]['ratio_' + q]:.2f}x"]
            rows.append(row)
    row = ["no-op stage tasks/s", "tasks/s", f"{r['tasks_per_s']:.0f}"]
    for _, side in sides:
        row += [f"{side['tasks_per_s']:.0f}", f"{side['throughput_ratio']:.2f}x"]
    rows.append(row)
    row = ["redis round trips per task", "count", f"{r['round_trips_per_task']:.1f}"]
    for _, side in sides:
        trips = side["round_trips_per_task"]
        row += [f"{trips:.1f}", f"{trips / r['round_trips_per_task']:.2f}x"]
    rows.append(row)
    row = ["log appends retried on a stale head", "%", "-"]
    for _, side in sides:
        row += [f"{100 * side['stale_append_rate']:.1f}", "-"]
    rows.append(row)
    if "what-if relay poll 10 ms" in figures:
        w = figures["what-if relay poll 10 ms"]
        pad = ["", ""] * (len(sides) - 1)  # measured on this tree only: the last pair of columns
        rows.append(["what-if: relay idle poll 10 ms, p50 after idle", "ms",
                     f"{statistics.median(r['idle']) * 1000:.1f}", *pad,
                     f"{w['idle_p50_ms']:.1f}", f"{w['idle_p50_ratio_to_raw']:.2f}x"])
        rows.append(["what-if: relay idle poll 10 ms, tasks/s", "tasks/s", f"{r['tasks_per_s']:.0f}", *pad,
                     f"{w['tasks_per_s']:.0f}", f"{w['tasks_per_s'] / r['tasks_per_s']:.2f}x"])
    columns = ["figure", "unit", "raw dramatiq"]
    for label, _ in sides:
        columns += [label, "/raw"]
    print_table(f"fleet on Redis: relay + {PROCESSES} worker processes x {THREADS} threads, {partitions} partitions, "
                f"idle poll {WORKER_TIMEOUT_MS} ms", columns, rows)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
