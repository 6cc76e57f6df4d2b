"""Stage runtime overhead: transition latency and no-op stage tasks/s, embedded, vs raw Dramatiq.

Transition latency is measured from the moment an upstream ``ManifestWritten`` is stored in
the log to the moment the downstream stage's body starts. The raw baseline is Dramatiq's own
hop on the same in-process broker and worker settings: actor A sends actor B, measured from
the send to B's body. Throughput runs a no-op pipeline of the reference shape (three partition
stages, three run-level stages) over N partitions, against raw no-op actors chained the same
way. Both sides run in this process, on this machine, in the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

from bench import print_table
from stagebus.actors.embedded import EmbeddedRunner
from stagebus.events import Event, ManifestWritten, PartitionIngested, RunOpened, RunSealed
from stagebus.pipeline.contract import stage
from stagebus.pipeline.definition import Pipeline, PipelineRegistry
from stagebus.projections.reader import Projections
from stagebus.store import Appended, SqliteEventStore

DEFAULT_JSON = Path(__file__).parent / "results-runtime.json"
WORKERS = 2
MARKS: dict[str, float] = {}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes, well under a minute")
    parser.add_argument("--partitions", type=int, default=None, help="partitions per throughput run")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


# --- a no-op pipeline of the reference shape ------------------------------------------------


def _noop(name: str, after: Sequence[str] = (), scope: str = "partition", mark: bool = False) -> Any:
    def body(ctx: Any) -> None:
        if mark:
            MARKS[f"{ctx.run_id}/{ctx.partition}"] = time.perf_counter()

    return stage(name, after=list(after), scope=scope)(body)  # type: ignore[arg-type]


def noop_pipeline() -> Pipeline:
    return Pipeline("noop", [
        _noop("ingest"), _noop("normalize", ["ingest"], mark=True), _noop("extract", ["normalize"]),
        _noop("link", ["extract"], "run"), _noop("index", ["link"], "run"), _noop("serve", ["index"], "run"),
    ])


class MarkingStore(SqliteEventStore):
    """Notes when each ingest manifest is stored: the start of a transition."""

    def append(self, events: Sequence[Event]) -> list[Appended]:
        result = super().append(events)
        for event, appended in zip(events, result, strict=True):
            if appended.stored and isinstance(event, ManifestWritten) and event.stage == "ingest":
                MARKS[f"up:{event.run_id}/{event.partition}"] = time.perf_counter()
        return result


def publish(store: SqliteEventStore, run_id: str, partitions: int, data: Path) -> None:
    pipeline = noop_pipeline()
    events: list[Event] = [RunOpened(run_id=run_id, pipeline="noop", plan=pipeline.plan())]
    refs = []
    for index in range(partitions):
        events.append(PartitionIngested(run_id=run_id, dataset="d", partition=f"{run_id}-p{index}",
                                        uri=data.as_uri(), content_hash=f"{run_id}-{index}", size=1))
        refs.append(f"d/{run_id}-p{index}")
    events.append(RunSealed(run_id=run_id, partitions=tuple(refs)))
    store.append(events)


def ours(partitions: int, runs: int, idle_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").write_text("x")
        store = MarkingStore(root / "log.db")
        projections = Projections(store, root / "projections")
        with EmbeddedRunner(store, projections, root / "art", PipelineRegistry([noop_pipeline()]),
                            workers=WORKERS) as runner:
            walls = []
            for run in range(runs):
                publish(store, f"r{run}", partitions, root / "data")
                if idle_s:
                    time.sleep(idle_s)
                started = time.perf_counter()
                report = runner.run([f"r{run}"])
                walls.append(time.perf_counter() - started)
                assert report.outcomes["complete"] + report.outcomes["reused"] == partitions * 3 + 3, report
        latencies = [MARKS[key] - MARKS[f"up:{key}"] for key in MARKS if not key.startswith("up:")]
        MARKS.clear()
        projections.close()
        store.close()
    return {"tasks_per_s": (partitions * 3 + 3) / min(walls), "latency": latencies}


# --- the raw Dramatiq baseline ----------------------------------------------------------------


def raw(partitions: int, runs: int, idle_s: float) -> dict[str, Any]:
    broker = StubBroker()
    broker.emit_after("process_boot")
    sent: dict[int, float] = {}
    started: dict[int, float] = {}
    counter = threading.Semaphore(0)

    @dramatiq.actor(broker=broker, queue_name="ingest")
    def ingest(i: int) -> None:
        sent[i] = time.perf_counter()
        normalize.send(i)

    @dramatiq.actor(broker=broker, queue_name="normalize")
    def normalize(i: int) -> None:
        started[i] = time.perf_counter()
        extract.send(i)

    @dramatiq.actor(broker=broker, queue_name="extract")
    def extract(i: int) -> None:
        counter.release()

    @dramatiq.actor(broker=broker, queue_name="link")
    def run_level(step: int) -> None:
        if step < 3:
            run_level.send(step + 1)

    worker = dramatiq.Worker(broker, worker_threads=WORKERS, worker_timeout=20)
    worker.start()
    walls = []
    try:
        for run in range(runs):
            if idle_s:
                time.sleep(idle_s)
            begin = time.perf_counter()
            for i in range(partitions):
                ingest.send(run * partitions + i)
            for _ in range(partitions):
                counter.acquire()
            run_level.send(1)
            for queue in ("ingest", "normalize", "extract", "link"):
                broker.join(queue)
            worker.join()
            walls.append(time.perf_counter() - begin)
    finally:
        worker.stop()
    return {"tasks_per_s": (partitions * 3 + 3) / min(walls),
            "latency": [started[i] - sent[i] for i in started]}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def run(args: argparse.Namespace) -> dict[str, Any]:
    logging.getLogger("dramatiq").setLevel(logging.CRITICAL)
    partitions = args.partitions or (100 if args.quick else 300)
    runs = 2 if args.quick else 3
    figures: dict[str, Any] = {"workers": WORKERS, "partitions": partitions}
    rows = []
    # "hot": every partition at once, so a transition also waits behind queued tasks;
    # "single hop": one partition at a time after the workers went idle, the bare hop.
    idle_runs = 5 if args.quick else 20
    for label, idle in (("hot", 0.0), ("single hop after 0.5 s idle", 0.5)):
        count, repeat = (partitions, runs) if idle == 0 else (1, idle_runs)
        o, r = ours(count, repeat, idle), raw(count, repeat, idle)
        p50o, p50r = statistics.median(o["latency"]) * 1000, statistics.median(r["latency"]) * 1000
        p99o, p99r = _pct(o["latency"], 0.99), _pct(r["latency"], 0.99)
        figures[f"transition {label}"] = {"ours_p50_ms": p50o, "raw_p50_ms": p50r, "ours_p99_ms": p99o,
                                          "raw_p99_ms": p99r, "ratio_p50": p50o / p50r}
        rows.append([f"transition p50 ({label})", "ms", f"{p50o:.2f}", f"{p50r:.2f}", f"{p50o / p50r:.1f}x"])
        rows.append([f"transition p99 ({label})", "ms", f"{p99o:.2f}", f"{p99r:.2f}", f"{p99o / p99r:.1f}x"])
        if idle == 0:
            figures["noop throughput"] = {"ours_tasks_per_s": o["tasks_per_s"], "raw_tasks_per_s": r["tasks_per_s"],
                                          "ratio": o["tasks_per_s"] / r["tasks_per_s"]}
            rows.append(["no-op stage tasks/s", "tasks/s", f"{o['tasks_per_s']:.0f}", f"{r['tasks_per_s']:.0f}",
                         f"{o['tasks_per_s'] / r['tasks_per_s']:.2f}x"])
    print_table(f"stage runtime, embedded, {WORKERS} worker threads, {partitions} partitions",
                ["figure", "unit", "stagebus", "raw dramatiq", "ours/raw"], rows)
    args.json.write_text(json.dumps(figures, indent=2))
    return figures
