"""Opening reruns: ``--resume-from`` opens a new run that reuses its parent's early stages,
and ``--stages`` is checked so a subset never runs past a gate that cannot open."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from stagebus.actors.readiness import DONE, RunView
from stagebus.errors import InvalidInput
from stagebus.events import PartitionIngested, RunOpened, RunSealed
from stagebus.pipeline.definition import Pipeline
from stagebus.store import EventStore


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def resume_run(store: EventStore, parent: RunView, pipeline: Pipeline, resume_from: str,
               run_id: str | None = None) -> str:
    """Open a new run with the parent's partitions; stages before ``resume_from`` will reuse
    the parent's manifests, ``resume_from`` and everything after it will execute again."""
    if resume_from not in pipeline:
        raise InvalidInput(f"--resume-from: pipeline {pipeline.name!r} has no stage {resume_from!r}")
    if not parent.partitions:
        raise InvalidInput(f"run {parent.run_id} has no partitions to resume")
    run_id = run_id or new_run_id()
    ingested = []
    for ref in parent.partitions:
        dataset, _, name = ref.partition("/")
        record = store.get(f"ingest/{parent.run_id}/{dataset}/{name}")
        event = record.event() if record else None
        if not isinstance(event, PartitionIngested):
            raise InvalidInput(f"run {parent.run_id}: partition {ref} is not in the log")
        ingested.append(PartitionIngested(
            run_id=run_id, dataset=event.dataset, partition=event.partition, uri=event.uri,
            content_hash=event.content_hash, size=event.size, metadata=event.metadata,
            schema_version=event.schema_version,
        ))
    opened = RunOpened(run_id=run_id, pipeline=pipeline.name, pipeline_version=pipeline.version,
                       plan=pipeline.plan(), parent_run_id=parent.run_id, resume_from=resume_from)
    batch = [opened, *ingested]
    if parent.sealed_partitions is not None:
        batch.append(RunSealed(run_id=run_id, partitions=parent.sealed_partitions))
    if not store.append(batch)[0].stored:
        raise InvalidInput(f"run {run_id} exists already")
    return run_id


def check_subset(run: RunView, pipeline: Pipeline, stages: Collection[str]) -> None:
    """Refuse a ``--stages`` subset whose stages need an upstream outside it that is not done."""
    for stage in stages:
        if stage not in pipeline:
            raise InvalidInput(f"--stages: pipeline {pipeline.name!r} has no stage {stage!r}")
    for stage in stages:
        for up in pipeline[stage].contract.after:
            if up in stages:
                continue
            tasks = [s for (name, _), s in run.tasks.items() if name == up]
            expected = 1 if pipeline[up].contract.scope == "run" else len(run.partitions)
            done = sum(1 for s in tasks if s.status in DONE)
            if done < expected or expected == 0:
                raise InvalidInput(
                    f"--stages: {stage!r} needs {up!r}, which is outside the subset and has "
                    f"{done}/{expected} task(s) done in run {run.run_id}"
                )
