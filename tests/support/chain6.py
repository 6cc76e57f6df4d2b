"""A cheap pipeline of the reference pipeline's shape, for fleet tests: ``ingest → normalize →
extract`` per partition, then ``link → index → serve`` once per sealed run.

Workers load it with ``STAGEBUS_PIPELINES=support.chain6:pipeline`` (``tests`` on the path).
Source files are JSON lines ``{"n": int}``; a record with ``"act": "fail"`` makes ``ingest``
raise a transient error on every attempt (retried, then dead-lettered), ``"act": "poison"`` a
permanent one. ``CHAIN6_RECORD_SLEEP_S`` makes the partition stages take that long per record,
so that a fault test's kills find tasks mid-way.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from pydantic import BaseModel

from stagebus.errors import PermanentStageError
from stagebus.events import PartitionIngested, RunOpened, RunSealed
from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import RetryPolicy, stage
from stagebus.pipeline.definition import Pipeline
from stagebus.store import EventStore

NAME = "chain6"
RECORDS = 4
# Enough retries that a task whose worker is SIGKILLed a few times still finishes; short backoff.
RETRY = RetryPolicy(max_retries=3, min_backoff_ms=20, max_backoff_ms=200)
TIME_LIMIT_S = 60.0


def _dawdle() -> None:
    pause = float(os.environ.get("CHAIN6_RECORD_SLEEP_S", "0"))
    if pause:
        time.sleep(pause)


class Number(BaseModel):
    n: int


class PartitionSum(BaseModel):
    partition: str
    total: int


class Total(BaseModel):
    total: int
    partitions: int


@stage("ingest", outputs={"numbers": Number}, retry=RETRY, time_limit_s=TIME_LIMIT_S)
def ingest(ctx: StageContext) -> None:
    with ctx.source_path().open() as fh:
        for line in fh:
            record = json.loads(line)
            ctx.count_in()
            if record.get("act") == "fail":
                raise ConnectionError(f"upstream refused record {record['n']}")
            if record.get("act") == "poison":
                raise PermanentStageError(f"record {record['n']} is poisoned")
            ctx.emit("numbers", {"n": record["n"]})
            _dawdle()


@stage("normalize", after=["ingest"], outputs={"numbers": Number}, retry=RETRY, time_limit_s=TIME_LIMIT_S)
def normalize(ctx: StageContext) -> None:
    for record in ctx.read("ingest", "numbers"):
        ctx.emit("numbers", {"n": record["n"] + 1})
        _dawdle()


@stage("extract", after=["normalize"], outputs={"numbers": Number}, retry=RETRY, time_limit_s=TIME_LIMIT_S)
def extract(ctx: StageContext) -> None:
    for record in ctx.read("normalize", "numbers"):
        ctx.emit("numbers", {"n": record["n"] * 2})
        _dawdle()


@stage("link", after=["extract"], scope="run", outputs={"sums": PartitionSum}, retry=RETRY,
       time_limit_s=TIME_LIMIT_S)
def link(ctx: StageContext) -> None:
    for ref in ctx.partitions:
        total = sum(r["n"] for r in ctx.read("extract", "numbers", partition=ref))
        ctx.emit("sums", {"partition": ref, "total": total})


@stage("index", after=["link"], scope="run", outputs={"total": Total}, retry=RETRY, time_limit_s=TIME_LIMIT_S)
def index(ctx: StageContext) -> None:
    sums = list(ctx.read("link", "sums"))
    ctx.emit("total", {"total": sum(s["total"] for s in sums), "partitions": len(sums)})


@stage("serve", after=["index"], scope="run", outputs={"total": Total}, retry=RETRY, time_limit_s=TIME_LIMIT_S)
def serve(ctx: StageContext) -> None:
    for record in ctx.read("index", "total"):
        ctx.emit("total", record)


pipeline = Pipeline(NAME, [ingest, normalize, extract, link, index, serve], version="1")
PARTITION_STAGES = ("ingest", "normalize", "extract")
RUN_STAGES = ("link", "index", "serve")


def numbers(index: int) -> list[int]:
    return [index * RECORDS + j for j in range(RECORDS)]


def expected_total(indices: list[int]) -> int:
    return sum((n + 1) * 2 for i in indices for n in numbers(i))


def publish(store: EventStore, data_dir: Path, run_id: str, indices: list[int], *,
            act: dict[int, str] | None = None, dataset: str = "nums") -> list[str]:
    """Write one file per partition index, then open, ingest and seal the run in one batch."""
    data_dir.mkdir(parents=True, exist_ok=True)
    events: list[object] = [RunOpened(run_id=run_id, pipeline=NAME, pipeline_version="1", plan=pipeline.plan())]
    refs = []
    for i in indices:
        name = f"p{i:04d}"
        records: list[dict[str, object]] = [{"n": n} for n in numbers(i)]
        if act and i in act:
            records[-1] = {**records[-1], "act": act[i]}
        path = data_dir / f"{dataset}-{run_id}-{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        data = path.read_bytes()
        events.append(PartitionIngested(run_id=run_id, dataset=dataset, partition=name, uri=path.as_uri(),
                                        content_hash=hashlib.sha256(data).hexdigest(), size=len(data)))
        refs.append(f"{dataset}/{name}")
    events.append(RunSealed(run_id=run_id, partitions=tuple(refs)))
    store.append(events)  # type: ignore[arg-type]
    return refs
