"""The gate: a stage task may run only once its upstream facts for the same run exist in the log.

Checked by the relay before enqueueing and again by the actor before any work, with strongly
consistent key lookups in the log (never a projection, which may lag).

A keyed event, once in the log, never changes and never goes away (the log holds at most one
event per key and has no update or delete), so :class:`Gate` keeps every keyed fact it found
and asks the log only for keys it has not seen: only an *absence* can change.
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

FACTS_KEPT = 200_000  # keyed facts a gate keeps before it starts over (a few hundred bytes each)


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
    existing: RecordedEvent | None = None  # the task's own manifest, when the caller asked for it


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
        self._facts: dict[str, RecordedEvent] = {}

    def facts(self, keys: Sequence[str]) -> dict[str, RecordedEvent]:
        """The keyed events among ``keys`` in the log: those seen before from memory, the rest in
        one lookup."""
        found = {k: self._facts[k] for k in keys if k in self._facts}
        unknown = [k for k in keys if k not in found]
        if unknown:
            fresh = self.store.get_many(unknown)
            if len(self._facts) + len(fresh) > FACTS_KEPT:
                self._facts.clear()
            self._facts.update(fresh)
            found.update(fresh)
        return found

    def check(self, task: TaskRef, pipeline: Pipeline, run: RunOpened | None = None, *,
              own_manifest: bool = False) -> GateVerdict:
        """Whether ``task`` may run. ``own_manifest``: also look up the task's own manifest (in the
        same lookup when the gate gets that far) and return it as ``existing``; a caller that finds
        one has a duplicate delivery, whatever the gate says."""
        own = manifest_key(*task) if own_manifest else None
        verdict = self._check(task, pipeline, run, own)
        if own is not None and verdict.existing is None and not verdict.open:
            # Closed, maybe before the lookup that carries the task's own key: ask for it alone.
            existing = self.facts([own]).get(own)
            if existing is not None:
                return verdict._replace(existing=existing)
        return verdict

    def _check(self, task: TaskRef, pipeline: Pipeline, run: RunOpened | None, own: str | None) -> GateVerdict:
        position = None
        run_key = f"run/{task.run_id}"
        if run is None:
            record = self.facts([run_key]).get(run_key)
            event = record.event() if record else None
            if isinstance(event, RunOpened) and record is not None:
                run, position = event, record.position
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
            seal_key = f"seal/{task.run_id}"
            record = self.facts([seal_key]).get(seal_key)
            sealed = record.event() if record else None
            if not isinstance(sealed, RunSealed):
                return GateVerdict(False, f"run {task.run_id} is not sealed yet")
            partitions = sealed.partitions
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
        found = self.facts([*wanted, *ingest_keys, abandoned, *([own] if own else [])])
        existing = found.get(own) if own else None
        if abandoned in found:
            return GateVerdict(False, f"run {task.run_id} was abandoned", existing=existing)

        missing = [wanted[k] for k in wanted if k not in found]
        if missing:
            stage, ref = missing[0]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            return GateVerdict(False, f"upstream {stage!r} has no manifest for {ref} in run {task.run_id}{more}",
                               existing=existing)
        absent = [ref for k, ref in ingest_keys.items() if k not in found]
        if absent:
            return GateVerdict(False, f"partition {absent[0]} was never ingested in run {task.run_id}",
                               existing=existing)

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
        return GateVerdict(True, "", run, upstream, ingested, partitions, position, existing)
