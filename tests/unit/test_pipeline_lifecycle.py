"""Pipeline lifecycle: stop holds ready tasks, start releases them, delete refuses new runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stagebus.actors import lifecycle
from stagebus.actors.embedded import EmbeddedRunner
from stagebus.actors.executor import worker_id
from stagebus.errors import PipelineError
from stagebus.events import StageStarted
from stagebus.producer import Producer
from stagebus.projections import Projections
from stagebus.store import SqliteEventStore
from support import toy


@pytest.fixture
def home(tmp_path: Path) -> Iterator[tuple[SqliteEventStore, Projections]]:
    toy.CALLS.clear()
    store = SqliteEventStore(tmp_path / "log.db")
    projections = Projections(store, tmp_path / "projections")
    yield store, projections
    projections.close()
    store.close()


def test_stopped_pipeline_holds_its_tasks_until_started(home, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, projections = home
    # Given a published run of a stopped pipeline
    toy.publish(store, tmp_path, "r1", {"a": [{"n": 1}]})
    lifecycle.stop(store, projections, "toy", reason="maintenance")
    with EmbeddedRunner(store, projections, tmp_path / "art", toy.registry()) as runner:
        # When the runner runs, Then nothing is enqueued or started
        assert runner.run().outcomes == {}
        assert not [r for r in store.read() if r.type == "stage_started"]
        assert projections.pipeline("toy").reason == "maintenance"
        # When the pipeline starts again, Then the held tasks run
        lifecycle.start(store, projections, "toy")
        assert runner.run().outcomes["complete"] == 3
    assert projections.partition("nums", "a").status == "valid"


def test_delete_is_refused_while_a_task_runs(home, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, projections = home
    # Given a task started by a live worker (this process)
    (ref,) = toy.publish(store, tmp_path, "r1", {"a": [{"n": 1}]})
    store.append_one(StageStarted(run_id="r1", stage="load", partition=ref, attempt=1, worker=worker_id(),
                                  input_hash="i", config_hash="c"))
    # When the pipeline is deleted, Then it is refused, naming the task, and nothing is stored
    head = store.head()
    with pytest.raises(PipelineError, match="r1/load/nums/a"):
        lifecycle.delete(store, projections, "toy")
    assert store.head() == head


def test_deleted_pipeline_takes_no_new_runs(home, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, projections = home
    # Given a deleted pipeline
    lifecycle.delete(store, projections, "toy")
    data = tmp_path / "a.jsonl"
    data.write_text('{"n": 1}\n')
    producer = Producer(store, "toy", toy.toy_pipeline().plan(), "1")
    head = store.head()
    # When a producer opens a run for it, Then it is refused and nothing is stored
    with pytest.raises(PipelineError, match="deleted"):
        producer.publish("nums", "a", data, run_id="r9")
    with pytest.raises(PipelineError):
        lifecycle.start(store, projections, "toy")
    assert store.head() == head
