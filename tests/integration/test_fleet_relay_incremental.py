"""The relay's readiness moves with the events it tails: each open run is read from the
projections once, then every event updates it, and a run is driven to its end with each task
sent once, whatever the order of seal and manifests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stagebus.actors.gate import TaskRef
from stagebus.actors.relay import Relay
from stagebus.events import (
    RUN_SCOPE,
    Manifest,
    ManifestWritten,
    PartitionIngested,
    RunOpened,
    RunSealed,
    StageFailed,
    StageStarted,
)
from stagebus.pipeline.definition import PipelineRegistry
from stagebus.projections import Projections
from stagebus.store import MemoryEventStore
from support import chain6

PIPELINES = PipelineRegistry([chain6.pipeline])
STAMP = "2026-01-01T00:00:00.000000Z"


class CountingProjections:
    """The relay's projections, counting how often a whole run is read."""

    def __init__(self, projections: Projections) -> None:
        self.projections = projections
        self.run_reads = 0

    def run(self, run_id: str) -> Any:
        self.run_reads += 1
        return self.projections.run(run_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.projections, name)


class Sent:
    def __init__(self) -> None:
        self.tasks: list[TaskRef] = []

    def __call__(self, task: TaskRef, pipeline: str, *, attempts_before: int = 0) -> None:
        self.tasks.append(task)


@pytest.fixture
def store() -> MemoryEventStore:
    return MemoryEventStore()


@pytest.fixture
def projections(store: MemoryEventStore, tmp_path: Path) -> Iterator[CountingProjections]:
    with Projections(store, tmp_path / "projections") as projections:
        yield CountingProjections(projections)


def open_run(store: MemoryEventStore, partitions: int, run_id: str = "r1") -> list[str]:
    store.append_one(RunOpened(run_id=run_id, pipeline="chain6", pipeline_version="1", plan=chain6.pipeline.plan()))
    for i in range(partitions):
        store.append_one(PartitionIngested(run_id=run_id, dataset="nums", partition=f"p{i}", uri="file:///x",
                                           content_hash="c", size=1))
    return [f"nums/p{i}" for i in range(partitions)]


def finish(store: MemoryEventStore, task: TaskRef) -> None:
    """What a worker appends for a task it ran to the end."""
    store.append_one(StageStarted(run_id=task.run_id, stage=task.stage, partition=task.partition, attempt=1,
                                  worker="elsewhere:1:1", input_hash="i", config_hash="c"))
    store.append_one(ManifestWritten(run_id=task.run_id, stage=task.stage, partition=task.partition, manifest=Manifest(
        stage=task.stage, run_id=task.run_id, partition=task.partition, input_hash="i", output_hash="o",
        config_hash="c", status="complete", started_at=STAMP, ended_at=STAMP)))


def every_task(refs: list[str], run_id: str = "r1") -> set[TaskRef]:
    partition = {TaskRef(run_id, s, r) for s in ("ingest", "normalize", "extract") for r in refs}
    return partition | {TaskRef(run_id, s, RUN_SCOPE) for s in ("link", "index", "serve")}


def drive(store: MemoryEventStore, relay: Relay, sent: Sent, *, seal_after: int, refs: list[str]) -> None:
    """Step the relay, finishing whatever it sent before the next step; seal once ``seal_after``
    tasks have finished (or once nothing else is sent). Stops when a sealed run's step sends nothing."""
    finished = 0
    sealed = idle = False
    for _ in range(100):
        if not sealed and (finished >= seal_after or idle):
            store.append_one(RunSealed(run_id="r1", partitions=tuple(refs)))
            sealed = True
        before = len(sent.tasks)
        relay.step()
        for task in sent.tasks[before:]:
            finish(store, task)
            finished += 1
        idle = len(sent.tasks) == before
        if sealed and idle:
            return
    raise AssertionError("the run never settled")


@pytest.mark.parametrize("seal_after", [0, 4, 9, 100])
def test_the_relay_drives_a_run_to_its_end_sending_each_task_once(
        store: MemoryEventStore, projections: CountingProjections, seal_after: int) -> None:
    # Given a run of three partitions, sealed at some point of its progress
    refs = open_run(store, 3)
    sent = Sent()
    # The fast path is off (redelivery 0), so the relay itself sends every task
    relay = Relay(store, projections, PIPELINES, sent, redelivery_s=0, reconcile_every_s=3600)
    # When the relay is stepped and every task it sends is finished before the next step
    drive(store, relay, sent, seal_after=seal_after, refs=refs)
    # Then every task of the run went out exactly once
    assert sorted(sent.tasks) == sorted(every_task(refs))


def test_the_relay_reads_an_open_run_from_the_projections_once(
        store: MemoryEventStore, projections: CountingProjections) -> None:
    # Given an open run the relay has loaded
    refs = open_run(store, 4)
    sent = Sent()
    relay = Relay(store, projections, PIPELINES, sent, redelivery_s=0, reconcile_every_s=3600)
    # When it routes every event of the run to its end, step after step
    drive(store, relay, sent, seal_after=0, refs=refs)
    # Then it read the run from the projections only when it loaded it, never per step
    assert projections.run_reads == 1


def test_a_run_opened_after_the_relay_started_is_never_read_from_the_projections(
        store: MemoryEventStore, projections: CountingProjections) -> None:
    # Given a relay that has stepped on an empty log
    sent = Sent()
    relay = Relay(store, projections, PIPELINES, sent, redelivery_s=0, reconcile_every_s=3600)
    relay.step()
    # When a run is opened, ingested, sealed and driven to its end
    refs = open_run(store, 2)
    drive(store, relay, sent, seal_after=0, refs=refs)
    # Then the relay built it from the events alone
    assert sorted(sent.tasks) == sorted(every_task(refs)) and projections.run_reads == 0


def test_a_final_failure_holds_its_downstream_and_the_other_partitions_go_on(
        store: MemoryEventStore, projections: CountingProjections) -> None:
    # Given a run of two partitions whose first ingest fails for good
    refs = open_run(store, 2)
    store.append_one(RunSealed(run_id="r1", partitions=tuple(refs)))
    sent = Sent()
    relay = Relay(store, projections, PIPELINES, sent, redelivery_s=0, reconcile_every_s=3600)
    relay.step()
    store.append_one(StageFailed(run_id="r1", stage="ingest", partition=refs[0], attempt=1, error_type="E",
                                 message="bad", final=True))
    finish(store, TaskRef("r1", "ingest", refs[1]))
    # When the relay routes that and then steps on
    relay.step()
    relay.step()
    # Then the healthy partition moved on; nothing after the failed one, nor any run-level stage, went out
    assert sent.tasks[2:] == [TaskRef("r1", "normalize", refs[1])]


def test_a_task_of_a_finished_run_that_fails_again_late_is_seen(
        store: MemoryEventStore, projections: CountingProjections) -> None:
    # Given a run driven to its end, and a full pass that forgot it as finished
    refs = open_run(store, 1)
    sent = Sent()
    relay = Relay(store, projections, PIPELINES, sent, redelivery_s=0, reconcile_every_s=3600)
    drive(store, relay, sent, seal_after=0, refs=refs)
    relay.reconcile_every_s = 0
    relay.step()
    # When another run opens meanwhile, then the relay steps again
    more = open_run(store, 1, run_id="r2")
    relay.step()
    # Then it sends the new run's work, and the finished run sent nothing more
    assert sent.tasks[-1] == TaskRef("r2", "ingest", more[0])
    assert sum(1 for t in sent.tasks if t.run_id == "r1") == len(every_task(refs))


def test_heartbeats_are_read_only_when_a_running_attempt_is_judged(
        store: MemoryEventStore, projections: CountingProjections) -> None:
    reads: list[int] = []

    def heartbeats() -> Any:
        reads.append(1)
        return lambda worker, task, started_at: True

    # Given a relay over a run with nothing started yet
    refs = open_run(store, 2)
    sent = Sent()
    relay = Relay(store, projections, PIPELINES, sent, redelivery_s=0, reconcile_every_s=3600,
                  heartbeats=heartbeats)
    # When it sends the first tasks, then routes one of them starting
    relay.step()
    quiet = len(reads)
    store.append_one(StageStarted(run_id="r1", stage="ingest", partition=refs[0], attempt=1, worker="w:1:1",
                                  input_hash="i", config_hash="c"))
    relay.step()
    # Then only the step that judged a running attempt asked the workers' heartbeats, once
    assert (quiet, len(reads)) == (0, 1)


def test_an_idle_step_reads_nothing_from_the_log(projections: CountingProjections, tmp_path: Path) -> None:
    class CountingStore(MemoryEventStore):
        reads = 0

        def read(self, after: int = 0, limit: int | None = None) -> Any:
            CountingStore.reads += 1
            return super().read(after, limit)

    # Given a relay that has routed a run's events
    store = CountingStore()
    open_run(store, 1)
    with Projections(store, tmp_path / "counted") as counted:
        relay = Relay(store, counted, PIPELINES, Sent(), redelivery_s=0, reconcile_every_s=3600)
        relay.step()
        relay.step()
        reads = CountingStore.reads
        # When it steps with nothing new in the log
        relay.step()
    # Then it read no events (the projections saw the head had not moved, and so did the relay)
    assert CountingStore.reads == reads


def test_a_run_of_an_unknown_pipeline_is_read_once_and_warned_about_once(
        store: MemoryEventStore, projections: CountingProjections, caplog: pytest.LogCaptureFixture) -> None:
    # Given a sealed run of a pipeline this relay does not know, whose tasks other relays drive
    store.append_one(RunOpened(run_id="x", pipeline="elsewhere", plan=chain6.pipeline.plan()))
    store.append_one(RunSealed(run_id="x", partitions=()))
    sent = Sent()
    relay = Relay(store, projections, PIPELINES, sent, redelivery_s=0, reconcile_every_s=0)
    relay.step()
    # When events of it keep coming, with full passes between them
    for attempt in range(1, 4):
        store.append_one(StageFailed(run_id="x", stage="link", partition=RUN_SCOPE, attempt=attempt,
                                     error_type="E", message="m"))
        relay.step()
    # Then the relay read it from the projections once, warned once, and sent nothing
    warnings = [r for r in caplog.records if "does not know" in r.getMessage()]
    assert (projections.run_reads, len(warnings), sent.tasks) == (1, 1, [])
