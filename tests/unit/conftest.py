"""Fixtures for projection, replay and producer unit tests: a log, a way to write events into it,
and projections over it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from stagebus.events import (
    Manifest,
    ManifestWritten,
    PartitionIngested,
    PlannedStage,
    RunOpened,
    RunSealed,
    StageFailed,
    StageMetrics,
    StageStarted,
)
from stagebus.projections import Projections
from stagebus.store import EventStore, MemoryEventStore

PLAN = (
    PlannedStage(name="ingest"),
    PlannedStage(name="normalize", after=("ingest",)),
    PlannedStage(name="extract", after=("normalize",)),
    PlannedStage(name="link", after=("extract",), scope="run"),
    PlannedStage(name="index", after=("link",), scope="run"),
    PlannedStage(name="serve", after=("index",), scope="run"),
)
PARTITION_STAGES = ("ingest", "normalize", "extract")
RUN_STAGES = ("link", "index", "serve")


def ticking_clock() -> object:
    """recorded_at stamps that increase by one microsecond per append: readable and deterministic."""
    ticks = itertools.count(1)
    return lambda: f"2026-01-01T00:00:00.{next(ticks):06d}Z"


class LogWriter:
    """Appends the events a producer and the executor would, in the order a test says."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def open(self, run_id: str, *, plan: tuple[PlannedStage, ...] = PLAN, stages: tuple[str, ...] | None = None,
             parent_run_id: str | None = None, resume_from: str | None = None) -> None:
        self.store.append_one(RunOpened(run_id=run_id, pipeline="reference", pipeline_version="1", plan=plan,
                                        stages=stages, parent_run_id=parent_run_id, resume_from=resume_from))

    def ingest(self, run_id: str, ref: str, *, content_hash: str = "c0ffee") -> None:
        dataset, partition = ref.split("/", 1)
        self.store.append_one(PartitionIngested(run_id=run_id, dataset=dataset, partition=partition,
                                                uri=f"file:///data/{dataset}/{partition}.csv",
                                                content_hash=content_hash, size=10, metadata={"source": "test"}))

    def seal(self, run_id: str, refs: tuple[str, ...]) -> None:
        self.store.append_one(RunSealed(run_id=run_id, partitions=refs))

    def started(self, run_id: str, stage: str, ref: str, *, attempt: int = 1, worker: str = "w1") -> None:
        self.store.append_one(StageStarted(run_id=run_id, stage=stage, partition=ref, attempt=attempt,
                                           worker=worker, input_hash="in", config_hash="cfg"))

    def manifest(self, run_id: str, stage: str, ref: str, *, status: str = "complete", input_hash: str = "in",
                 config_hash: str = "cfg", attempt: int = 1, reused_from: str | None = None,
                 records_in: int = 10, records_rejected: int = 1, duration_s: float = 0.25) -> Manifest:
        manifest = Manifest(
            stage=stage, run_id=run_id, partition=ref, input_hash=input_hash, output_hash=f"out-{stage}",
            config_hash=config_hash, status=status,  # type: ignore[arg-type]
            started_at="2026-01-01T00:00:00Z", ended_at="2026-01-01T00:00:01Z", attempt=attempt, worker="w1",
            pipeline_version="1", reused_from=reused_from,
            metrics=StageMetrics(records_in=records_in, records_out=records_in - records_rejected,
                                 records_rejected=records_rejected, duration_s=duration_s),
        )
        self.store.append_one(ManifestWritten(run_id=run_id, stage=stage, partition=ref, manifest=manifest))
        return manifest

    def failed(self, run_id: str, stage: str, ref: str, *, final: bool = True, attempt: int = 1,
               error_type: str = "ValueError", message: str = "bad row") -> None:
        self.store.append_one(StageFailed(run_id=run_id, stage=stage, partition=ref, attempt=attempt,
                                          error_type=error_type, message=message, final=final))

    def partition_stages(self, run_id: str, ref: str, *, status: str = "complete") -> None:
        for stage in PARTITION_STAGES:
            self.manifest(run_id, stage, ref, status=status)

    def run_stages(self, run_id: str, *, status: str = "complete") -> None:
        for stage in RUN_STAGES:
            self.manifest(run_id, stage, "*", status=status)

    def full_run(self, run_id: str, refs: tuple[str, ...], **open_args: object) -> None:
        """A run that opens, ingests, seals and completes every stage for every ref."""
        self.open(run_id, **open_args)  # type: ignore[arg-type]
        for ref in refs:
            self.ingest(run_id, ref)
        self.seal(run_id, refs)
        for ref in refs:
            self.partition_stages(run_id, ref)
        self.run_stages(run_id)


@pytest.fixture
def store() -> MemoryEventStore:
    return MemoryEventStore(clock=ticking_clock())  # type: ignore[arg-type]


@pytest.fixture
def log(store: MemoryEventStore) -> LogWriter:
    return LogWriter(store)


@pytest.fixture
def projections(store: MemoryEventStore, tmp_path: Path) -> Iterator[Projections]:
    with Projections(store, tmp_path / "projections") as projections:
        yield projections


@pytest.fixture
def caught_up(projections: Projections) -> object:
    """Call to catch the projections up and get them back: ``caught_up().ledger()``."""

    def catch_up() -> Projections:
        projections.catch_up()
        return projections

    return catch_up
