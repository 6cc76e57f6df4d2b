"""A synthetic history of the no-op pipeline, to grow logs fast: events as a real run appends
them, made directly and appended in large batches instead of being produced by stage tasks.

Per run of ``run_size`` partitions: ``RunOpened`` (the no-op plan), a ``PartitionIngested`` per
partition, ``RunSealed``, then a ``StageStarted`` + ``ManifestWritten`` per stage task (3 per
partition, 3 run-level). Every partition completes every stage, so each one is a *valid*
ledger row: ~7 events per partition.
"""

from __future__ import annotations

from collections.abc import Iterator

from bench.runtime import noop_pipeline
from stagebus.events import (
    RUN_SCOPE,
    Event,
    Manifest,
    ManifestWritten,
    PartitionIngested,
    RunOpened,
    RunSealed,
    StageStarted,
)
from stagebus.store import EventStore

PARTITION_STAGES = ("ingest", "normalize", "extract")
RUN_STAGES = ("link", "index", "serve")
EVENTS_PER_PARTITION = 1 + 2 * len(PARTITION_STAGES)
STAMP = "2024-05-01T12:00:00.000000Z"


def stage_task(run_id: str, stage: str, partition: str) -> list[Event]:
    manifest = Manifest(stage=stage, run_id=run_id, partition=partition, input_hash="a" * 64, output_hash="b" * 64,
                        config_hash="c" * 64, status="complete", started_at=STAMP, ended_at=STAMP, worker="bench")
    return [StageStarted(run_id=run_id, stage=stage, partition=partition, attempt=1, worker="bench",
                         input_hash="a" * 64, config_hash="c" * 64),
            ManifestWritten(run_id=run_id, stage=stage, partition=partition, manifest=manifest)]


def run_events(run_id: str, dataset: str, partitions: int) -> Iterator[Event]:
    yield RunOpened(run_id=run_id, pipeline="noop", plan=noop_pipeline().plan())
    refs = []
    for index in range(partitions):
        name = f"{run_id}-p{index}"
        refs.append(f"{dataset}/{name}")
        yield PartitionIngested(run_id=run_id, dataset=dataset, partition=name, uri="file:///dev/null",
                                content_hash=f"{run_id}-{index}", size=1)
    yield RunSealed(run_id=run_id, partitions=tuple(refs))
    for ref in refs:
        for stage in PARTITION_STAGES:
            yield from stage_task(run_id, stage, ref)
    for stage in RUN_STAGES:
        yield from stage_task(run_id, stage, RUN_SCOPE)


def grow(store: EventStore, partitions: int, *, dataset: str = "bulk", run_size: int = 1000,
         batch: int = 5000, prefix: str = "h") -> int:
    """Append runs of ``run_size`` until ``partitions`` more partitions are in the log; returns events."""
    appended, pending = 0, []
    done = 0
    while done < partitions:
        size = min(run_size, partitions - done)
        for event in run_events(f"{prefix}{store.head()}x{done}", dataset, size):
            pending.append(event)
            if len(pending) >= batch:
                appended += len(store.append(pending))
                pending = []
        done += size
    if pending:
        appended += len(store.append(pending))
    return appended
