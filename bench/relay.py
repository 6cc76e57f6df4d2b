"""Relay work per stage task at 1k, 10k and 100k partitions, in-process, vs reading the same events.

One run of N partitions of the no-op pipeline (:mod:`bench.runtime`) is driven to its end by a
:class:`~stagebus.actors.relay.Relay` on an in-memory log, the way a fleet drives it: a simulated
worker takes up to ``--chunk`` sent tasks per relay step, appends their ``StageStarted`` and
``ManifestWritten`` and sends each partition's next stage itself (the fast path), so the relay
sends the ingest tasks and the run-level stages and tails every event. Only ``Relay.step`` is
timed (the worker's appends are not), split into the projections' catch-up (SQLite) and the
routing itself. The raw baseline of the same run: reading and decoding every event of the log
once (``store.read`` + ``record.event()``), per task. Flat means the per-task figures stay put
as N grows; the ratio is relay per task / raw per task.

``--before REV`` measures the relay of commit ``REV`` in the same run (its code unpacked into a
temp directory, this file run there in a subprocess), at the sizes up to ``--before-max``: the
relay that reloaded the run per step is quadratic, 100k partitions would take hours.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from bench import print_table
from bench.runtime import noop_pipeline
from stagebus.actors.gate import TaskRef
from stagebus.actors.readiness import chained_downstream
from stagebus.actors.relay import Relay
from stagebus.events import (
    Event,
    Manifest,
    ManifestWritten,
    PartitionIngested,
    RunOpened,
    RunSealed,
    StageStarted,
)
from stagebus.pipeline.definition import PipelineRegistry
from stagebus.projections import Projections
from stagebus.store import MemoryEventStore

DEFAULT_JSON = Path(__file__).parent / "results-relay.json"
STAMP = "2026-01-01T00:00:00.000000Z"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 partitions")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000], help="partitions per run")
    parser.add_argument("--chunk", type=int, default=50, help="tasks the simulated workers finish per relay step")
    parser.add_argument("--before", default=None, metavar="REV", help="also measure the relay of git commit REV")
    parser.add_argument("--before-max", type=int, default=10_000, help="largest size measured with --before")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


class TimedProjections:
    """The relay's projections, with the time spent catching up added up."""

    def __init__(self, projections: Projections) -> None:
        self.projections = projections
        self.catch_up_s = 0.0

    def catch_up(self) -> int:
        started = time.perf_counter()
        try:
            return self.projections.catch_up()
        finally:
            self.catch_up_s += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self.projections, name)


def finished(task: TaskRef) -> list[Event]:
    manifest = Manifest(stage=task.stage, run_id=task.run_id, partition=task.partition, input_hash="i",
                        output_hash="o", config_hash="c", status="complete", started_at=STAMP, ended_at=STAMP)
    return [StageStarted(run_id=task.run_id, stage=task.stage, partition=task.partition, attempt=1,
                         worker="bench:1:1", input_hash="i", config_hash="c"),
            ManifestWritten(run_id=task.run_id, stage=task.stage, partition=task.partition, manifest=manifest)]


def measure(root: Path, partitions: int, chunk: int) -> dict[str, Any]:
    pipeline = noop_pipeline()
    store = MemoryEventStore()
    run_id = "r"
    refs = [f"d/p{i}" for i in range(partitions)]
    store.append([RunOpened(run_id=run_id, pipeline="noop", plan=pipeline.plan()),
                  *(PartitionIngested(run_id=run_id, dataset="d", partition=f"p{i}", uri="file:///x",
                                      content_hash=str(i), size=1) for i in range(partitions)),
                  RunSealed(run_id=run_id, partitions=tuple(refs))])
    queue: deque[TaskRef] = deque()
    projections = TimedProjections(Projections(store, root / f"projections-{partitions}"))
    relay = Relay(store, projections, PipelineRegistry([pipeline]),
                  lambda task, _pipeline, attempts_before=0: queue.append(task),
                  redelivery_s=3600, reconcile_every_s=3600)
    tasks = 3 * partitions + 3
    done = steps = 0
    relay_s = 0.0
    while done < tasks:
        started = time.perf_counter()
        relay.step()
        relay_s += time.perf_counter() - started
        steps += 1
        if not queue:
            raise RuntimeError(f"the relay stalled after {done} of {tasks} tasks")
        for _ in range(min(chunk, len(queue))):
            task = queue.popleft()
            store.append(finished(task))
            queue.extend(chained_downstream(task, pipeline))  # the worker's fast path
            done += 1
    started = time.perf_counter()
    events = sum(1 for record in store.read() if record.event() is not None)
    raw_s = time.perf_counter() - started
    projections.projections.close()
    routing_s = relay_s - projections.catch_up_s
    return {
        "partitions": partitions, "tasks": tasks, "events": events, "steps": steps,
        "relay_us_per_task": round(relay_s / tasks * 1e6, 2),
        "routing_us_per_task": round(routing_s / tasks * 1e6, 2),
        "catch_up_us_per_task": round(projections.catch_up_s / tasks * 1e6, 2),
        "raw_read_decode_us_per_task": round(raw_s / tasks * 1e6, 2),
        "routing_ms_per_step": round(routing_s / steps * 1e3, 3),
        "ratio_relay_to_raw": round(relay_s / raw_s, 2),
        "ratio_routing_to_raw": round(routing_s / raw_s, 2),
    }


BEFORE = """
import json, sys, tempfile
from pathlib import Path
from bench.relay import measure
with tempfile.TemporaryDirectory() as tmp:
    print(json.dumps([measure(Path(tmp), int(n), int(sys.argv[1])) for n in sys.argv[2:]]))
"""


def measure_before(rev: str, sizes: list[int], chunk: int, root: Path) -> list[dict[str, Any]]:
    """:func:`measure` run on the code of commit ``rev``."""
    from bench.fleet import checkout

    tree = checkout(rev, root / "before-tree")
    shutil.copy(__file__, tree / "bench" / "relay.py")
    out = subprocess.run([sys.executable, "-c", BEFORE, str(chunk), *map(str, sizes)], cwd=tree, check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)}).stdout
    rows: list[dict[str, Any]] = json.loads(out.strip().splitlines()[-1])
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [100, 1_000] if args.quick else args.sizes
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        rows = [measure(Path(tmp), size, args.chunk) for size in sizes]
        before = [] if not args.before else measure_before(
            args.before, [n for n in sizes if n <= args.before_max], args.chunk, Path(tmp))
    figures: dict[str, Any] = {"chunk": args.chunk, "sizes": rows}
    if args.before:
        figures["before"] = {"rev": args.before, "sizes": before}
        for row in before:
            print(f"before ({args.before}) at {row['partitions']} partitions: relay {row['relay_us_per_task']} µs/task,"
                  f" routing {row['routing_us_per_task']} µs/task ({row['ratio_routing_to_raw']}x raw read+decode)")
    print_table(f"relay work per stage task, {args.chunk} tasks finished per step",
                ["partitions", "steps", "relay µs/task", "of which routing", "catch-up", "raw read+decode",
                 "relay/raw", "routing/raw"],
                [[r["partitions"], r["steps"], r["relay_us_per_task"], r["routing_us_per_task"],
                  r["catch_up_us_per_task"], r["raw_read_decode_us_per_task"], f"{r['ratio_relay_to_raw']}x",
                  f"{r['ratio_routing_to_raw']}x"] for r in rows])
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
