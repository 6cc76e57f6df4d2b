"""A delete racing a submit in another API process: the pipeline's turns order them, so the
delete never removes a pipeline with a batch it did not count, and a submit the delete beat is
never accepted. Two Services over one SQLite log stand for two API processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stagebus.api.batches import BatchPipelines
from stagebus.api.errors import ApiError
from stagebus.api.processors import load_processors
from stagebus.api.service import Service
from stagebus.artifacts.local import LocalArtifactStore
from stagebus.events import PipelineDeleted
from stagebus.events.types import ApiBatchSubmitted
from stagebus.pipeline.registry import load_pipelines
from stagebus.projections import Projections
from stagebus.store import EventStore, open_store

CONFIG = {"name": "people", "config": {"source": {"type": "batch"}, "processors": [{"name": "whitespace"}],
                                       "destination": {"type": "records"}}}


def service(home: Path, name: str) -> Service:
    store = open_store(f"sqlite:///{home / 'log.db'}")
    processors = load_processors("")
    pipelines = BatchPipelines(load_pipelines(""), processors, home / "exports")
    return Service(store, Projections(store, home / f"projections-{name}"), processors, pipelines,
                   home=home, artifacts=LocalArtifactStore(home / "artifacts"))


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[Service, Service]]:
    first, second = service(tmp_path, "a"), service(tmp_path, "b")
    yield first, second
    for each in (first, second):
        each.projections.close()
        each.store.close()


def interleave(store: EventStore, before_append: object) -> None:
    """Run ``before_append()`` once, just before the next append of ``store`` (the other
    process's write landing between this one's check and its append)."""
    real = store.append
    pending = [before_append]

    def append(events):  # type: ignore[no-untyped-def]
        while pending:
            pending.pop()()  # type: ignore[operator]
        return real(events)

    store.append = append  # type: ignore[method-assign]


def submit(service: Service, pipeline_id: str, record: dict[str, object]) -> str:
    """What the submit route does: look the pipeline up, then submit."""
    service.pipeline("ACME", pipeline_id)
    return service.submit_batch("ACME", pipeline_id, [record], None)[0].batch_id


def submitted(store: EventStore) -> list[ApiBatchSubmitted]:
    return [e for r in store.read() if isinstance(e := r.event(), ApiBatchSubmitted) and e.batch_id]


def test_a_submit_landing_between_the_deletes_check_and_its_append_makes_the_delete_refuse(
        two_processes: tuple[Service, Service]) -> None:
    deleter, submitter = two_processes
    pipeline_id = deleter.create_pipeline("ACME", CONFIG).row.pipeline_id
    # Given the deleter has counted no active batch, and the other process submits one right then
    interleave(deleter.store, lambda: submit(submitter, pipeline_id, {"name": "a"}))
    # When the delete goes on
    with pytest.raises(ApiError) as refused:
        deleter.delete_pipeline("ACME", pipeline_id)
    # Then it is refused for the batch it now sees, and the pipeline and its batch stand
    assert refused.value.code == "PIPELINE_HAS_ACTIVE_BATCHES"
    assert not any(isinstance(r.event(), PipelineDeleted) for r in deleter.store.read())
    assert len(submitted(deleter.store)) == 1
    assert deleter.pipeline("ACME", pipeline_id).status == "active"


def test_a_submit_the_delete_beats_is_not_accepted_and_leaves_no_file(
        two_processes: tuple[Service, Service], tmp_path: Path) -> None:
    deleter, submitter = two_processes
    pipeline_id = deleter.create_pipeline("ACME", CONFIG).row.pipeline_id
    submitter.pipeline("ACME", pipeline_id)  # the submitter's route looked the pipeline up
    # Given the delete lands after the submitter checked the pipeline, before its append
    interleave(submitter.store, lambda: deleter.delete_pipeline("ACME", pipeline_id))
    # When the submit goes on
    with pytest.raises(ApiError) as refused:
        submitter.submit_batch("ACME", pipeline_id, [{"name": "a"}], None)
    # Then it answers not found, no batch is in the log and no batch file is left behind
    assert refused.value.code == "PIPELINE_NOT_FOUND"
    assert submitted(submitter.store) == []
    assert list((tmp_path / "api" / "batches").glob("*")) == []


def test_submits_of_two_processes_take_turns_without_losing_any(two_processes: tuple[Service, Service]) -> None:
    first, second = two_processes
    pipeline_id = first.create_pipeline("ACME", CONFIG).row.pipeline_id
    # Given each process's submit lands while the other is about to append
    for _ in range(3):
        interleave(first.store, lambda: submit(second, pipeline_id, {"n": 2}))
        submit(first, pipeline_id, {"n": 1})
    # Then all six are accepted, each with its own turn
    assert len(submitted(first.store)) == 6
    turns = [e.turn for r in first.store.read() if (e := r.event()).type_name == "api_pipeline_turn"]
    assert sorted(turns) == list(range(1, 7))
