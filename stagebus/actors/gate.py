"""The gate: a stage task may run only once its upstream facts for the same run exist in the log.

Checked by the relay before enqueueing and again by the actor before any work, with strongly
consistent key lookups in the log (never a projection, which may lag).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from stagebus.events import (
    RUN_SCOPE,
    Manifest,
    ManifestWritten,
    PartitionIngested,
    RunAbandoned,
    RunOpened,
    RunSealed,
    manifest_key,
    split_partition_ref,
)
from stagebus.pipeline.definition import Pipeline
from stagebus.store import EventStore, RecordedEvent


class TaskRef(NamedTuple):
    """One stage task: ``(run_id, stage, partition ref)``; run-level tasks use partition ``*``."""

    run_id: str
    stage: str
    partition: str

    def __str__(self) -> str:
        return f"{self.run_id}/{self.stage}/{self.partition}"


class GateVerdict(NamedTuple):
    open: bool
    reason: str = ""
    run: RunOpened | None = None
    upstream: dict[tuple[str, str], Manifest] = {}
    ingested: dict[str, PartitionIngested] = {}
    partitions: tuple[str, ...] = ()
    run_position: int | None = None  # the log position of the run's RunOpened, when looked up
    also: dict[str, RecordedEvent] | None = None  # found among check(also=...); None: not looked up


def opened_run(store: EventStore, run_id: str) -> tuple[RunOpened, int] | None:
    """The run's RunOpened and its log position (which orders runs), or None if never opened."""
    record = store.get(f"run/{run_id}")
    event = record.event() if record else None
    return (event, record.position) if isinstance(event, RunOpened) and record is not None else None


def run_of(store: EventStore, run_id: str) -> RunOpened | None:
    found = opened_run(store, run_id)
    return found[0] if found else None


def sealed_partitions(store: EventStore, run_id: str) -> tuple[str, ...] | None:
    record = store.get(f"seal/{run_id}")
    event = record.event() if record else None
    return event.partitions if isinstance(event, RunSealed) else None


def abandon_key(run_id: str) -> str:
    return RunAbandoned(run_id=run_id).key


def ingest_key(run_id: str, ref: str) -> str:
    dataset, partition = split_partition_ref(ref)
    return f"ingest/{run_id}/{dataset}/{partition}"


class Gate:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    def check(self, task: TaskRef, pipeline: Pipeline, run: RunOpened | None = None,
              also: Sequence[str] = ()) -> GateVerdict:
        """``also``: more keys to look up in the same read as the gate's own (the executor's
        duplicate check), answered in ``GateVerdict.also`` once the gate got that far."""
        position = None
        if run is None and (opened := opened_run(self.store, task.run_id)) is not None:
            run, position = opened
        if run is None:
            return GateVerdict(False, f"run {task.run_id} was never opened")
        if task.stage not in pipeline:
            return GateVerdict(False, f"pipeline {pipeline.name!r} has no stage {task.stage!r}")
        if run.stages is not None and task.stage not in run.stages:
            return GateVerdict(False, f"stage {task.stage!r} is not among run {task.run_id}'s stages")
        contract = pipeline[task.stage].contract
        if contract.scope == "run":
            if task.partition != RUN_SCOPE:
                return GateVerdict(False, f"stage {task.stage!r} is run-level; its partition is '*'")
            partitions = sealed_partitions(self.store, task.run_id)
            if partitions is None:
                return GateVerdict(False, f"run {task.run_id} is not sealed yet")
        else:
            if task.partition == RUN_SCOPE:
                return GateVerdict(False, f"stage {task.stage!r} runs per partition, not on '*'")
            partitions = (task.partition,)

        wanted: dict[str, tuple[str, str]] = {}
        for up in contract.after:
            if pipeline[up].contract.scope == "run":
                wanted[manifest_key(task.run_id, up, RUN_SCOPE)] = (up, RUN_SCOPE)
            else:
                for ref in partitions:
                    wanted[manifest_key(task.run_id, up, ref)] = (up, ref)
        ingest_keys = {ingest_key(task.run_id, ref): ref for ref in partitions}
        abandoned = abandon_key(task.run_id)
        found = self.store.get_many([*wanted, *ingest_keys, abandoned, *also])
        extra = {key: found[key] for key in also if key in found}
        if abandoned in found:
            return GateVerdict(False, f"run {task.run_id} was abandoned", also=extra)

        missing = [wanted[k] for k in wanted if k not in found]
        if missing:
            stage, ref = missing[0]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            return GateVerdict(False, f"upstream {stage!r} has no manifest for {ref} in run {task.run_id}{more}",
                               also=extra)
        absent = [ref for k, ref in ingest_keys.items() if k not in found]
        if absent:
            return GateVerdict(False, f"partition {absent[0]} was never ingested in run {task.run_id}", also=extra)

        upstream: dict[tuple[str, str], Manifest] = {}
        for key, (stage, ref) in wanted.items():
            event = found[key].event()
            assert isinstance(event, ManifestWritten)
            upstream[(stage, ref)] = event.manifest
        ingested: dict[str, PartitionIngested] = {}
        for key, ref in ingest_keys.items():
            event = found[key].event()
            assert isinstance(event, PartitionIngested)
            ingested[ref] = event
        return GateVerdict(True, "", run, upstream, ingested, partitions, position, extra)
