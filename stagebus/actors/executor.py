"""The stage task: gate, dedupe, reuse, run, validate, publish artifacts, manifest last."""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Protocol

from stagebus.actors.failures import DATA_ERRORS, classify, describe
from stagebus.actors.gate import Gate, GateVerdict, TaskRef
from stagebus.actors.heartbeat import HeldAttempts
from stagebus.actors.telemetry import Telemetry
from stagebus.artifacts.store import ArtifactStore
from stagebus.errors import QualityPolicyViolated
from stagebus.events import (
    Manifest,
    ManifestWritten,
    StageFailed,
    StageMetrics,
    StageStarted,
    manifest_key,
)
from stagebus.events.types import TRACEBACK_BYTES
from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import QualityPolicy
from stagebus.pipeline.definition import Pipeline, PipelineRegistry, canonical_hash
from stagebus.pipeline.journal import JOURNAL
from stagebus.store import EventStore

STATUS_TTL_S = 1.0
PERMANENT_ERRORS = DATA_ERRORS  # never retried by Dramatiq (see stagebus.actors.failures)


class Outcome(Enum):
    COMPLETE = "complete"
    REUSED = "reused"
    DUPLICATE = "duplicate"  # a manifest already exists: at-least-once delivery absorbed
    REFUSED = "refused"  # gate closed or pipeline held: nothing done
    WAITING = "waiting"  # an infrastructure fault stopped it: it runs again once that clears
    LOST = "lost"  # ran, but a concurrent duplicate wrote the manifest first


class ProjectionLookups(Protocol):
    def find_reusable(self, stage: str, partition: str, input_hash: str, config_hash: str) -> Manifest | None: ...
    def pipeline_status(self, pipeline: str) -> str: ...


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def input_hash(task: TaskRef, verdict: GateVerdict) -> str:
    """Hash of what the task reads: upstream output hashes, or the raw partitions' content hashes."""
    if verdict.upstream:
        parts = sorted(f"{s}/{p}:{m.output_hash}" for (s, p), m in verdict.upstream.items())
    else:
        parts = sorted(f"{ref}:{verdict.ingested[ref].content_hash}" for ref in verdict.partitions)
    return canonical_hash(parts)


def output_hash(manifest_artifacts: tuple) -> str:  # type: ignore[type-arg]
    return canonical_hash(sorted(f"{a.name}:{a.sha256}" for a in manifest_artifacts))


def check_quality(policy: QualityPolicy, ctx: StageContext) -> None:
    """Raise :class:`QualityPolicyViolated` (a data error: final, outputs discarded) when the
    task's rejects break its stage's policy; its rejects are set aside to show why."""
    problem = policy.violation(ctx.records_total(), ctx.records_rejected)
    if problem is not None:
        ctx.set_aside_rejects()
        raise QualityPolicyViolated(problem)


def bounded_traceback(exc: BaseException) -> str:
    """The exception's traceback, its last TRACEBACK_BYTES of UTF-8 (the innermost frames)."""
    text = "".join(traceback.format_exception(exc)).encode("utf-8", "replace")
    return text[-TRACEBACK_BYTES:].decode("utf-8", "ignore")


class Executor:
    """Runs one stage task. Safe under duplicate and concurrent delivery of the same task."""

    def __init__(
        self,
        store: EventStore,
        artifacts: ArtifactStore,
        pipelines: PipelineRegistry,
        *,
        lookups: ProjectionLookups | None = None,
        telemetry: Telemetry | None = None,
        on_complete: Callable[[TaskRef, Pipeline], None] | None = None,
        on_progress: Callable[[TaskRef, int], None] | None = None,
        held: HeldAttempts | None = None,
    ) -> None:
        self.store = store
        self.held = held or HeldAttempts()
        self.artifacts = artifacts
        self.pipelines = pipelines
        self.gate = Gate(store)
        self.lookups = lookups
        self.telemetry = telemetry or Telemetry()
        self.on_complete = on_complete
        self.on_progress = on_progress
        self._status: dict[str, tuple[str, float]] = {}

    def execute(self, task: TaskRef, pipeline_name: str, *, attempt: int = 1, final: bool = True) -> Outcome:
        """Run ``task``. Raises the stage's error after recording a ``StageFailed``."""
        pipeline = self.pipelines.get(pipeline_name)
        if not self._pipeline_active(pipeline.name):
            self.telemetry.emit("refused", task=str(task), reason=f"pipeline {pipeline.name} is not active")
            return Outcome.REFUSED
        # One log lookup for the duplicate check and the gate (keyed facts seen before are kept).
        verdict = self.gate.check(task, pipeline, own_manifest=True)
        if verdict.existing is not None:
            self.telemetry.emit("duplicate", task=str(task))
            return Outcome.DUPLICATE
        if not verdict.open:
            self.telemetry.emit("refused", task=str(task), reason=verdict.reason)
            return Outcome.REFUSED
        assert verdict.run is not None
        in_hash = input_hash(task, verdict)
        cfg_hash = pipeline.config_hash(task.stage)

        source = self._reusable(task, pipeline, verdict, in_hash, cfg_hash)
        if source is not None and self._intact(task, source):
            return self._append_reused(task, pipeline, source)

        # Held from before StageStarted to the end: the worker's heartbeat lists it meanwhile.
        with self.held.holding(str(task)):
            return self._attempt(task, pipeline, verdict, attempt=attempt, final=final,
                                 in_hash=in_hash, cfg_hash=cfg_hash)

    def _attempt(self, task: TaskRef, pipeline: Pipeline, verdict: GateVerdict, *, attempt: int, final: bool,
                 in_hash: str, cfg_hash: str) -> Outcome:
        worker = worker_id()
        self.store.append_one(StageStarted(run_id=task.run_id, stage=task.stage, partition=task.partition,
                                           attempt=attempt, worker=worker, input_hash=in_hash,
                                           config_hash=cfg_hash))
        self.telemetry.emit("start", task=str(task), attempt=attempt, worker=worker)
        started_at, t0 = now(), time.perf_counter()
        definition = pipeline[task.stage]
        progress = (lambda n: self.on_progress(task, n)) if self.on_progress else None  # type: ignore[misc]
        ctx: StageContext | None = None
        try:
            ctx = StageContext(  # opens its output files: a full disk may fail it already
                contract=definition.contract, config=pipeline.configs[task.stage], run_id=task.run_id,
                partition=task.partition, attempt=attempt, artifacts=self.artifacts,
                upstream=verdict.upstream, ingested=verdict.ingested, partitions=verdict.partitions,
                on_progress=progress, run_position=verdict.run_position,
            )
            definition(ctx)
            check_quality(pipeline.quality[task.stage], ctx)
            artifacts, metrics = ctx.publish()
        except BaseException as exc:
            if ctx is not None:
                ctx.discard()
            self._record_failure(task, attempt, final, exc)
            raise
        duration = time.perf_counter() - t0
        manifest = Manifest(
            stage=task.stage, run_id=task.run_id, partition=task.partition, input_hash=in_hash,
            output_hash=output_hash(artifacts), config_hash=cfg_hash, status="complete",
            started_at=started_at, ended_at=now(), attempt=attempt, worker=worker,
            pipeline_version=pipeline.version, artifacts=artifacts,
            metrics=StageMetrics(records_in=metrics.records_in, records_out=metrics.records_out,
                                 records_rejected=metrics.records_rejected, duration_s=round(duration, 6)),
        )
        return self._append_manifest(task, pipeline, manifest, journaled=ctx.journaled)

    # --- helpers --------------------------------------------------------------------------

    def _pipeline_active(self, name: str) -> bool:
        # Asked once per task: a short cache keeps it off the hot path. A stop takes effect
        # within STATUS_TTL_S; tasks that slip through in that window run normally.
        if self.lookups is None:
            return True
        cached = self._status.get(name)
        now_s = time.monotonic()
        if cached is None or now_s - cached[1] > STATUS_TTL_S:
            cached = (self.lookups.pipeline_status(name), now_s)
            self._status[name] = cached
        return cached[0] == "active"

    def _reusable(self, task: TaskRef, pipeline: Pipeline, verdict: GateVerdict,
                  in_hash: str, cfg_hash: str) -> Manifest | None:
        run = verdict.run
        assert run is not None
        if not pipeline[task.stage].contract.reusable:
            return None  # its effect is outside the artifacts (e.g. serve moves a pointer)
        if run.resume_from is not None:
            if task.stage in pipeline.closure(run.resume_from):
                return None  # at or after the resume point: always execute again
            if run.parent_run_id is not None:
                parent = self.store.get(manifest_key(run.parent_run_id, task.stage, task.partition))
                if parent is not None:
                    event = parent.event()
                    assert isinstance(event, ManifestWritten)
                    return event.manifest
        if self.lookups is None:
            return None
        return self.lookups.find_reusable(task.stage, task.partition, in_hash, cfg_hash)

    def _append_reused(self, task: TaskRef, pipeline: Pipeline, source: Manifest) -> Outcome:
        stamp = now()
        manifest = Manifest(
            stage=task.stage, run_id=task.run_id, partition=task.partition, input_hash=source.input_hash,
            output_hash=source.output_hash, config_hash=source.config_hash, status="reused",
            started_at=stamp, ended_at=stamp, attempt=1, worker=worker_id(),
            pipeline_version=pipeline.version, artifacts=source.artifacts,
            metrics=StageMetrics(records_in=source.metrics.records_in, records_out=source.metrics.records_out,
                                 records_rejected=source.metrics.records_rejected),
            reused_from=source.reused_from or source.run_id,
        )
        outcome = self._append_manifest(task, pipeline, manifest)
        return Outcome.REUSED if outcome is Outcome.COMPLETE else outcome

    def _append_manifest(self, task: TaskRef, pipeline: Pipeline, manifest: Manifest, *,
                         journaled: bool = False) -> Outcome:
        event = ManifestWritten(run_id=task.run_id, stage=task.stage, partition=task.partition, manifest=manifest)
        if not self.store.append_one(event).stored:
            # A concurrent duplicate won the key. Our objects are content-addressed: anything
            # the winner does not reference is left for an explicit ``gc``, never deleted here,
            # since identical content may be shared with other tasks.
            self.telemetry.emit("lost", task=str(task))
            return Outcome.LOST
        if self.on_complete is not None:
            self.on_complete(task, pipeline)  # first: downstream waits on nothing below
        # No manifest.json view here: views are a browsable copy of the log, written on demand
        # (`stagebus artifacts views`); a directory, a file and a rename per task had cost a no-op
        # task ~0.1 ms of ~0.75 (`python -m bench noop --before`), up to half of it under load.
        if manifest.status == "complete" and journaled:
            work = self.artifacts.work_dir(task.run_id, task.stage, task.partition)
            (work / JOURNAL).unlink(missing_ok=True)
        self.telemetry.emit(
            "end", task=str(task), status=manifest.status, duration_s=manifest.metrics.duration_s,
            records_in=manifest.metrics.records_in, records_out=manifest.metrics.records_out,
            records_rejected=manifest.metrics.records_rejected,
        )
        return Outcome.COMPLETE

    def _record_failure(self, task: TaskRef, attempt: int, final: bool, exc: BaseException) -> None:
        kind = classify(exc)
        infrastructure = kind == "infrastructure"
        final = (final or kind == "data") and not infrastructure
        message = describe(exc).partition(": ")[2]
        trace = bounded_traceback(exc) if final else ""
        self.store.append_one(StageFailed(
            run_id=task.run_id, stage=task.stage, partition=task.partition, attempt=attempt,
            error_type=type(exc).__name__, message=message, final=final, infrastructure=infrastructure,
            traceback=trace,
        ))
        self.telemetry.emit("failed", task=str(task), attempt=attempt, error_type=type(exc).__name__,
                            error=message, final=final, infrastructure=infrastructure,
                            **({"traceback": trace} if final else {}))

    def _intact(self, task: TaskRef, source: Manifest) -> bool:
        """Whether every object of a manifest to reuse is there with its recorded size and sha256.
        If not, the task runs again, and publishing its outputs repairs the damaged objects."""
        for artifact in source.artifacts:
            problem = self.artifacts.problem(artifact)
            if problem is not None:
                self.telemetry.emit("reuse-refused", task=str(task), source_run=source.run_id,
                                    artifact=artifact.name, path=artifact.path, reason=problem)
                return False
        return True
