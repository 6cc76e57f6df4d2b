"""A small pipeline for runtime tests: load (partition) → double (partition) → total (run).

Source files are JSON lines ``{"n": int}``; a record may carry ``"act"`` to misbehave on
purpose (``STAGEBUS_TEST_KILL_AT_CHUNK`` + ``STAGEBUS_TEST_KILL_CHUNK_FLAG`` kill
``double`` after a chunk): ``"fail"`` raises a transient error, ``"poison"`` a permanent one, ``"kill"`` SIGKILLs
the process (only when ``STAGEBUS_TEST_KILL`` names a file that exists), ``"slow"`` sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from pydantic import BaseModel

from stagebus.errors import PermanentStageError
from stagebus.events import PartitionIngested, RunOpened, RunSealed
from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import RetryPolicy, stage
from stagebus.pipeline.definition import Pipeline, PipelineRegistry
from stagebus.store import EventStore

CALLS: dict[str, int] = {}
FAIL_BUDGET: dict[str, int] = {}


class Number(BaseModel):
    n: int


class Total(BaseModel):
    total: int
    partitions: int


class DoubleConfig(BaseModel):
    factor: int = 2


def _act(record: dict, ctx: StageContext) -> None:  # type: ignore[type-arg]
    act = record.get("act")
    if act == "fail":
        key = f"{ctx.run_id}/{ctx.stage}/{ctx.partition}"
        if FAIL_BUDGET.get(key, 10**9) > 0:
            FAIL_BUDGET[key] = FAIL_BUDGET.get(key, 10**9) - 1
            raise ConnectionError("flaky upstream")
    elif act == "poison":
        raise PermanentStageError("poisoned record")
    elif act == "kill":
        flag = os.environ.get("STAGEBUS_TEST_KILL")
        if flag and Path(flag).exists():
            Path(flag).unlink()
            os.kill(os.getpid(), signal.SIGKILL)
    elif act == "kill-always" and os.environ.get("STAGEBUS_TEST_KILL_ALWAYS"):
        os.kill(os.getpid(), signal.SIGKILL)
    elif act == "slow":
        time.sleep(0.05)


@stage("load", outputs={"numbers": Number}, retry=RetryPolicy(max_retries=2, min_backoff_ms=10, max_backoff_ms=50))
def load(ctx: StageContext) -> None:
    CALLS["load"] = CALLS.get("load", 0) + 1
    with ctx.source_path().open() as fh:
        for index, line in enumerate(fh):
            record = json.loads(line)
            ctx.count_in()
            _act(record, ctx)
            if not isinstance(record.get("n"), int):
                ctx.reject(record, "n is not an integer", index)
                continue
            ctx.emit("numbers", {"n": record["n"]})


@stage("double", after=["load"], outputs={"numbers": Number}, config=DoubleConfig,
       retry=RetryPolicy(max_retries=2, min_backoff_ms=10, max_backoff_ms=50))
def double(ctx: StageContext) -> None:
    CALLS["double"] = CALLS.get("double", 0) + 1
    records = list(ctx.read("load", "numbers"))
    chunks = [records[i : i + 2] for i in range(0, len(records), 2)]
    for number, chunk in ctx.items(list(enumerate(chunks)), key=lambda item: str(item[0])):
        for record in chunk:
            ctx.emit("numbers", {"n": record["n"] * ctx.config.factor})  # type: ignore[attr-defined]
        CALLS[f"double-chunk-{number}"] = CALLS.get(f"double-chunk-{number}", 0) + 1
        if os.environ.get("STAGEBUS_TEST_KILL_AT_CHUNK") == str(number):
            flag = os.environ.get("STAGEBUS_TEST_KILL_CHUNK_FLAG")
            if flag and Path(flag).exists():
                Path(flag).unlink()
                os.kill(os.getpid(), signal.SIGKILL)


@stage("total", after=["double"], scope="run", outputs={"total": Total})
def total(ctx: StageContext) -> None:
    CALLS["total"] = CALLS.get("total", 0) + 1
    value = sum(r["n"] for ref in ctx.partitions for r in ctx.read("double", "numbers", partition=ref))
    ctx.emit("total", {"total": value, "partitions": len(ctx.partitions)})


def toy_pipeline(factor: int = 2) -> Pipeline:
    return Pipeline("toy", [load, double, total], version="1", config={"double": {"factor": factor}})


def registry(factor: int = 2) -> PipelineRegistry:
    return PipelineRegistry([toy_pipeline(factor)])


def publish(store: EventStore, tmp: Path, run_id: str, partitions: dict[str, list[dict]],  # type: ignore[type-arg]
            *, seal: bool = True, factor: int = 2, dataset: str = "nums") -> list[str]:
    """Write the partitions as files and append RunOpened, PartitionIngested and RunSealed."""
    import hashlib

    pipeline = toy_pipeline(factor)
    store.append_one(RunOpened(run_id=run_id, pipeline="toy", pipeline_version="1", plan=pipeline.plan()))
    refs = []
    for name, records in partitions.items():
        path = tmp / f"{dataset}-{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        data = path.read_bytes()
        store.append_one(PartitionIngested(run_id=run_id, dataset=dataset, partition=name, uri=path.as_uri(),
                                           content_hash=hashlib.sha256(data).hexdigest(), size=len(data)))
        refs.append(f"{dataset}/{name}")
    if seal:
        store.append_one(RunSealed(run_id=run_id, partitions=tuple(refs)))
    return refs
