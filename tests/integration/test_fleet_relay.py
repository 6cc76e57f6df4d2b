"""The relay's rules in-process: what it sends, when it sends again, when it gives a task up;
the lease that makes one relay active; the pieces a fleet worker is built from."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker

from stagebus.actors.executor import Outcome
from stagebus.actors.fleet_setup import (
    DeliverTwice,
    FleetSettings,
    StageSender,
    WorkerLookups,
    open_fleet_broker,
    stage_queues,
)
from stagebus.actors.gate import TaskRef
from stagebus.actors.lease import RedisLease
from stagebus.actors.readiness import HOST, RETRY_GRACE_S, ready_tasks
from stagebus.actors.relay import Relay
from stagebus.actors.runtime import StageActors, make_broker
from stagebus.errors import InvalidInput
from stagebus.events import PartitionIngested, PipelineStopped, RunOpened, StageFailed, StageStarted
from stagebus.pipeline.definition import PipelineRegistry
from stagebus.pipeline.registry import load_pipelines
from stagebus.projections import Projections
from stagebus.store import MemoryEventStore
from stagebus.store.keys import RedisKeys
from support import chain6

PIPELINES = PipelineRegistry([chain6.pipeline])
LONG_AGO = "2020-01-01T00:00:00.000000Z"


class Sent:
    """A relay's ``send``: records (task, attempts_before)."""

    def __init__(self) -> None:
        self.calls: list[tuple[TaskRef, int]] = []

    def __call__(self, task: TaskRef, pipeline: str, *, attempts_before: int = 0) -> None:
        self.calls.append((task, attempts_before))


@pytest.fixture
def store() -> MemoryEventStore:
    return MemoryEventStore()


@pytest.fixture
def projections(store: MemoryEventStore, tmp_path: Path) -> Iterator[Projections]:
    with Projections(store, tmp_path / "projections") as projections:
        yield projections


def open_run(store: MemoryEventStore, run_id: str = "r1", partitions: int = 2) -> list[str]:
    store.append_one(RunOpened(run_id=run_id, pipeline="chain6", pipeline_version="1", plan=chain6.pipeline.plan()))
    refs = []
    for i in range(partitions):
        store.append_one(PartitionIngested(run_id=run_id, dataset="nums", partition=f"p{i}", uri="file:///x",
                                           content_hash="c", size=1))
        refs.append(f"nums/p{i}")
    return refs


def dead_worker() -> str:
    """A worker id on this host whose process has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return f"{HOST}:{proc.pid}:1"


def started(store: MemoryEventStore, ref: str, attempt: int, worker: str, stage: str = "ingest") -> None:
    store.append_one(StageStarted(run_id="r1", stage=stage, partition=ref, attempt=attempt, worker=worker,
                                  input_hash="i", config_hash="c"))


def test_relay_sends_each_ready_task_once_within_the_redelivery_window(
        store: MemoryEventStore, projections: Projections) -> None:
    # Given a run of two partitions and a relay with a long redelivery window
    refs = open_run(store)
    sent = Sent()
    relay = Relay(store, projections, PIPELINES, sent, redelivery_s=60)
    # When it steps twice
    relay.step()
    relay.step()
    # Then each partition's first stage went out once, as a first attempt
    assert sent.calls == [(TaskRef("r1", "ingest", ref), 0) for ref in refs]


def test_relay_holds_a_redelivery_while_the_stage_queue_has_a_backlog(
        store: MemoryEventStore, projections: Projections) -> None:
    # Given a relay that sends again after 0 s, and an ingest queue with messages waiting
    open_run(store, partitions=1)
    sent = Sent()
    waiting = {"ingest": 5}
    relay = Relay(store, projections, PIPELINES, sent, redelivery_s=0, reconcile_every_s=0,
                  backlog=lambda stage: waiting[stage])
    relay.step()
    # When it steps while the backlog lasts, then after it drained
    relay.step()
    held = len(sent.calls)
    waiting["ingest"] = 0
    relay.step()
    # Then the task went out again only once its queue was empty
    assert (held, len(sent.calls)) == (1, 2)


def test_a_task_whose_worker_died_is_sent_again_numbered_after_its_dead_attempts(
        store: MemoryEventStore, projections: Projections) -> None:
    # Given a task started twice by workers that died without a word
    refs = open_run(store, partitions=1)
    started(store, refs[0], 1, dead_worker())
    started(store, refs[0], 2, dead_worker())
    sent = Sent()
    # When the relay reconciles
    Relay(store, projections, PIPELINES, sent).step()
    # Then the next attempt is the third
    assert sent.calls == [(TaskRef("r1", "ingest", refs[0]), 2)]


def test_a_task_that_keeps_killing_its_worker_is_given_up(store: MemoryEventStore, projections: Projections) -> None:
    # Given a task whose every allowed attempt died (max_retries + 1 of them)
    refs = open_run(store, partitions=1)
    allowed = chain6.RETRY.max_retries + 1
    started(store, refs[0], allowed, dead_worker())
    sent = Sent()
    # When the relay reconciles
    Relay(store, projections, PIPELINES, sent).step()
    # Then it records a final failure instead of sending it again
    failures = [r.event() for r in store.read() if r.type == "stage_failed"]
    assert sent.calls == []
    assert len(failures) == 1 and isinstance(failures[0], StageFailed) and failures[0].final
    assert failures[0].error_type == "AttemptsExhausted"


class FlakyLease:
    """Held for the first ``held`` calls to acquire, then lost to another relay."""

    def __init__(self, held: int) -> None:
        self.calls, self.limit, self.fence = 0, held, 1

    @property
    def held(self) -> bool:
        return self.calls <= self.limit

    def acquire(self) -> bool:
        self.calls += 1
        return self.held

    def release(self) -> None:
        pass


def test_a_relay_that_lost_its_lease_mid_step_records_nothing(
        store: MemoryEventStore, projections: Projections) -> None:
    # Given a task to give up, and a relay whose lease is taken over during its step
    refs = open_run(store, partitions=1)
    started(store, refs[0], chain6.RETRY.max_retries + 1, dead_worker())
    head = store.head()
    # When it steps
    Relay(store, projections, PIPELINES, Sent(), lease=FlakyLease(held=1)).step()
    # Then it appended nothing: the new leader judges the task
    assert store.head() == head


def test_the_relay_forgets_tasks_that_are_no_longer_ready(store: MemoryEventStore, projections: Projections) -> None:
    # Given a relay that sent both partitions' first stage
    refs = open_run(store)
    relay = Relay(store, projections, PIPELINES, Sent(), reconcile_every_s=0)
    relay.step()
    # When one of them starts (alive: this very process) and the relay reconciles again
    started(store, refs[0], 1, f"{HOST}:{os.getpid()}:1")
    relay.step()
    # Then only the one still waiting is remembered
    assert set(relay._sent) == {TaskRef("r1", "ingest", refs[1])}


def test_a_retrying_task_of_a_live_worker_waits_out_its_backoff_then_counts_as_lost() -> None:
    # Given a task that failed (non-final) in a live process on this host
    store = MemoryEventStore(clock=lambda: LONG_AGO)
    refs = open_run(store, partitions=1)
    worker = f"{HOST}:{os.getpid()}:1"
    started(store, refs[0], 1, worker)
    store.append_one(StageFailed(run_id="r1", stage="ingest", partition=refs[0], attempt=1,
                                 error_type="ConnectionError", message="x", final=False))
    with Projections(store, None) as projections:
        projections.catch_up()
        run = projections.run("r1")
    assert run is not None
    # When the relay judges it long after its backoff and grace
    readiness = ready_tasks(run, chain6.pipeline, local_idle=False)
    # Then its retry message is presumed lost with the broker: ready again
    assert readiness.ready == [TaskRef("r1", "ingest", refs[0])]
    assert chain6.RETRY.max_backoff_ms / 1000 + RETRY_GRACE_S < 3600


def test_a_running_task_of_a_live_process_is_presumed_dead_after_twice_its_time_limit() -> None:
    # Given a task started long ago by a process that is still alive (its attempt ended unseen)
    store = MemoryEventStore(clock=lambda: LONG_AGO)
    refs = open_run(store, partitions=1)
    started(store, refs[0], 1, f"{HOST}:{os.getpid()}:1")
    with Projections(store, None) as projections:
        projections.catch_up()
        run = projections.run("r1")
    assert run is not None
    # Then the relay counts it as ready again
    assert ready_tasks(run, chain6.pipeline, local_idle=False).ready == [TaskRef("r1", "ingest", refs[0])]


# --- the lease ---------------------------------------------------------------------------------

@pytest.mark.redis
def test_one_relay_holds_the_lease_and_a_takeover_moves_the_fence(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    first, second = RedisLease(client, RedisKeys(), ttl_ms=200), RedisLease(client, RedisKeys(), ttl_ms=200)
    # Given one relay holding the lease
    assert first.acquire() and not second.acquire()
    assert (first.held, second.held, first.fence) == (True, False, 1)
    # When it stops renewing (paused or dead) past the TTL
    client.pexpire(RedisKeys().relay_lease, 1)
    time.sleep(0.01)
    # Then the standby takes over with a higher fence, and the old leader finds it lost
    assert second.acquire() and second.fence == 2
    assert not first.acquire() and not first.held
    # and a graceful release hands it over at once
    second.release()
    assert first.acquire() and first.fence == 3
    client.close()


# --- the pieces of a fleet worker --------------------------------------------------------------

def test_pipelines_are_the_reference_one_plus_those_named() -> None:
    registry = load_pipelines("support.chain6:pipeline")
    assert {p.name for p in registry} == {"reference", "chain6"}
    assert stage_queues(registry) == ["ingest", "normalize", "extract", "link", "index", "serve"]
    with pytest.raises(InvalidInput):
        load_pipelines("support.chain6:nothing_here")


def test_fleet_mode_refuses_the_in_process_broker() -> None:
    with pytest.raises(InvalidInput, match="STAGEBUS_BROKER"):
        open_fleet_broker(FleetSettings(broker="memory"))


class RecordingExecutor:
    def __init__(self) -> None:
        self.calls: list[tuple[TaskRef, int, bool]] = []

    def execute(self, task: TaskRef, pipeline: str, *, attempt: int = 1, final: bool = True) -> Outcome:
        self.calls.append((task, attempt, final))
        return Outcome.COMPLETE


def run_on_stub(middleware: list[Any], send: Any) -> RecordingExecutor:
    broker: StubBroker = make_broker("memory")  # type: ignore[assignment]
    for m in middleware:
        broker.add_middleware(m)
    executor = RecordingExecutor()
    actors = StageActors(broker, executor, PIPELINES)  # type: ignore[arg-type]
    send(broker, actors)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        for queue in actors.queues:
            broker.join(queue, fail_fast=True)
        worker.join()
    finally:
        worker.stop()
    return executor


def test_the_relays_messages_run_on_the_workers_stage_actors() -> None:
    # Given a task sent the relay's way (no actors declared) after two dead attempts
    task = TaskRef("r1", "extract", "nums/p0")
    executor = run_on_stub([], lambda broker, _: StageSender(broker, PIPELINES).send(task, "chain6",
                                                                                      attempts_before=2))
    # Then the worker's actor runs it as attempt 3, not yet the final one
    assert chain6.RETRY.max_retries == 3
    assert executor.calls == [(task, 3, False)]


def test_deliver_twice_hands_every_message_to_the_actor_twice() -> None:
    task = TaskRef("r1", "ingest", "nums/p0")
    executor = run_on_stub([DeliverTwice()], lambda _, actors: actors.send(task, "chain6"))
    assert [call[0] for call in executor.calls] == [task, task]


def test_worker_lookups_catch_up_lazily_and_see_a_stopped_pipeline(tmp_path: Path) -> None:
    store = MemoryEventStore()
    lookups = WorkerLookups(store, tmp_path / "cache", max_lag_s=0)
    assert lookups.pipeline_status("chain6") == "active"
    store.append_one(PipelineStopped(pipeline="chain6", reason="maintenance"))
    assert lookups.pipeline_status("chain6") == "stopped"
    lookups.close()


def test_worker_lookups_rebuild_a_cache_that_is_ahead_of_the_log(tmp_path: Path) -> None:
    # Given a cache built from a log of 3 events
    longer = MemoryEventStore()
    open_run(longer)
    WorkerLookups(longer, tmp_path / "cache", max_lag_s=0).pipeline_status("chain6")
    # When the log comes back shorter (a Redis that lost its last writes)
    shorter = MemoryEventStore()
    shorter.append_one(PipelineStopped(pipeline="chain6", reason="x"))
    lookups = WorkerLookups(shorter, tmp_path / "cache", max_lag_s=0)
    # Then the cache is rebuilt from the log as it is
    assert lookups.pipeline_status("chain6") == "stopped"
    assert lookups.projections.checkpoint() == 1
    lookups.close()


def test_worker_lookups_rebuild_a_cache_built_from_another_log(tmp_path: Path) -> None:
    # Given a cache built from one log
    first = MemoryEventStore()
    open_run(first)
    WorkerLookups(first, tmp_path / "cache", max_lag_s=0).pipeline_status("chain6")
    # When the workers are pointed at another, longer log (say, the same URL after a wipe)
    other = MemoryEventStore()
    open_run(other, run_id="r2", partitions=3)
    other.append_one(PipelineStopped(pipeline="chain6", reason="x"))
    lookups = WorkerLookups(other, tmp_path / "cache", max_lag_s=0)
    # Then the cache follows the log it is asked about, rather than failing every task
    assert lookups.pipeline_status("chain6") == "stopped"
    assert [run.run_id for run in lookups.projections.runs()] == ["r2"]
    lookups.close()


# --- the relay process --------------------------------------------------------------------------

@pytest.mark.redis
def test_the_relay_process_rebuilds_projections_when_the_log_comes_back_shorter(
        redis_url: str, tmp_path: Path) -> None:
    from stagebus.actors.relay_process import RelayProcess
    from stagebus.store.redis import RedisEventStore

    # Given a relay whose projections have seen a run of two partitions
    settings = FleetSettings(home=tmp_path, store=redis_url, broker=f"{redis_url}?db=1",
                             pipelines="support.chain6:pipeline")
    log = RedisEventStore.from_url(redis_url)
    open_run(log)  # type: ignore[arg-type]
    process = RelayProcess(settings)
    assert process._step()[0] == 2 and process.projections.checkpoint() == 3
    # When the log's Redis loses its data and the log starts again with one event
    log.client.flushdb()
    log._head_hint = None
    log.append_one(PipelineStopped(pipeline="chain6", reason="x"))
    process._step()
    # Then the relay's projections were rebuilt from the log as it is now
    assert process.projections.checkpoint() == 1 and process.projections.runs() == []
    healthy, details = process.health()
    assert healthy and details["role"] == "leader"
    process.close()
    log.close()


@pytest.mark.redis
def test_after_a_failed_step_the_relay_reads_its_open_runs_again(redis_url: str, tmp_path: Path) -> None:
    from stagebus.actors.relay_process import RelayProcess
    from stagebus.store.redis import RedisEventStore

    # Given a relay process that has routed an open run
    settings = FleetSettings(home=tmp_path, store=redis_url, broker=f"{redis_url}?db=1",
                             pipelines="support.chain6:pipeline")
    log = RedisEventStore.from_url(redis_url)
    open_run(log)  # type: ignore[arg-type]
    process = RelayProcess(settings)
    process._step()
    reads: list[str] = []
    read_run = process.projections.run
    process.projections.run = lambda run_id: reads.append(run_id) or read_run(run_id)  # type: ignore[method-assign]
    # When a step fails on the log's server (it may come back without its last writes), then works
    next_step = process.step_log.next_step

    def unreachable() -> None:
        raise redis.ConnectionError("connection refused")

    process.step_log.next_step = unreachable  # type: ignore[method-assign]
    assert process._step()[1] > 0
    process.step_log.next_step = next_step  # type: ignore[method-assign]
    process._step()
    # Then the relay read the open run from its projections again instead of trusting its memory
    assert reads == ["r1"]
    process.close()
    log.close()


def test_a_relay_on_a_sqlite_log_takes_a_file_lease(tmp_path: Path) -> None:
    from stagebus.actors.fleet_setup import relay_lease
    from stagebus.actors.lease import FileLease
    from stagebus.store import open_store

    settings = FleetSettings(home=tmp_path)
    store = open_store(settings.store_url)
    first, second = relay_lease(store, settings, 5), relay_lease(store, settings, 5)
    assert isinstance(first, FileLease) and first.acquire() and not second.acquire()
    first.release()
    assert second.acquire() and second.fence == 2
    second.release()
    store.close()
