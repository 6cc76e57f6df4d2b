"""Pipeline lifecycle: define, stop, start, delete — each a fact in the log.

A stopped pipeline's ready tasks are held (the relay and the embedded runner do not enqueue
them, and an actor refuses them); starting it again releases them. A deleted pipeline takes no
new runs, and deletion is refused while any of its tasks is running.
"""

from __future__ import annotations

from typing import Any

from stagebus.actors.readiness import IN_FLIGHT
from stagebus.errors import PipelineError
from stagebus.events import PipelineDefined, PipelineDeleted, PipelineStarted, PipelineStopped
from stagebus.pipeline.definition import Pipeline
from stagebus.store import EventStore


def deleted(store: EventStore, name: str) -> bool:
    """Strongly consistent: deletion is a keyed event."""
    return store.get(PipelineDeleted(pipeline=name).key) is not None


def refuse_if_deleted(store: EventStore, name: str) -> None:
    if deleted(store, name):
        raise PipelineError(f"pipeline {name!r} was deleted; it takes no new runs")


def define(store: EventStore, pipeline: Pipeline) -> None:
    refuse_if_deleted(store, pipeline.name)
    store.append_one(PipelineDefined(pipeline=pipeline.name, version=pipeline.version, stages=pipeline.plan()))


def stop(store: EventStore, projections: Any, name: str, reason: str = "") -> None:
    refuse_if_deleted(store, name)
    projections.catch_up()
    if projections.pipeline_status(name) == "stopped":
        return
    store.append_one(PipelineStopped(pipeline=name, reason=reason))


def start(store: EventStore, projections: Any, name: str) -> None:
    refuse_if_deleted(store, name)
    projections.catch_up()
    if projections.pipeline_status(name) == "active":
        return
    store.append_one(PipelineStarted(pipeline=name))


def running_tasks(projections: Any, name: str) -> list[str]:
    projections.catch_up()
    busy = []
    for info in projections.open_runs():  # a run with a task in flight is open
        if info.pipeline != name:
            continue
        run = projections.run(info.run_id)
        for (stage, ref), state in (run.tasks.items() if run else ()):
            if state.status in IN_FLIGHT:
                busy.append(f"{info.run_id}/{stage}/{ref}")
    return busy


def delete(store: EventStore, projections: Any, name: str) -> None:
    if deleted(store, name):
        return
    busy = running_tasks(projections, name)
    if busy:
        more = f" and {len(busy) - 1} more" if len(busy) > 1 else ""
        raise PipelineError(f"pipeline {name!r} has running tasks ({busy[0]}{more}); stop it and let them finish")
    store.append_one(PipelineDeleted(pipeline=name))
