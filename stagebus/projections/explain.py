"""Why a partition is in the state it is: a chain of facts from the log, each naming the log
positions it rests on. Read-only; every lookup is keyed or indexed, so its cost does not grow
with the number of partitions (see ``bench/why.py``)."""

from __future__ import annotations

from typing import Any

import msgspec

from stagebus.errors import InvalidInput
from stagebus.events import (
    RUN_SCOPE,
    Manifest,
    ManifestWritten,
    PartitionIngested,
    PlannedStage,
    StageFailed,
    failure_key,
    manifest_key,
    partition_ref,
)
from stagebus.projections.reader import Projections
from stagebus.projections.runs import RunHeader


class Fact(msgspec.Struct, frozen=True, kw_only=True):
    kind: str  # ingested | reused | executed | failed | blocked | waiting | running | abandoned | stopped | skipped
    stage: str | None
    text: str
    positions: tuple[int, ...]
    details: dict[str, Any] = {}


class Explanation(msgspec.Struct, frozen=True, kw_only=True):
    dataset: str
    partition: str
    run_id: str
    status: str  # the ledger's
    ledger_run_id: str | None
    reason: str | None
    facts: tuple[Fact, ...]


def explain(projections: Projections, dataset: str, partition: str, *, run_id: str | None = None,
            stage: str | None = None) -> Explanation:
    """Raises :class:`InvalidInput` for a partition no run ingested, an unknown run, or a stage
    not in the run's plan."""
    ref = partition_ref(dataset, partition)
    entry = projections.partition(dataset, partition)
    runs = projections.partition_runs(ref)
    if run_id is not None and projections.run_header(run_id) is None:
        raise InvalidInput(f"unknown run {run_id!r}")
    if not runs:
        raise InvalidInput(f"unknown partition {ref!r}: no run ingested it")
    ids = [r for r, _ in runs]
    if run_id is not None and run_id not in ids:
        raise InvalidInput(f"run {run_id} did not ingest partition {ref!r}")
    target = run_id or (entry.run_id if entry.run_id in ids else ids[-1])
    run = projections.run_header(target)
    assert run is not None
    if stage is not None and stage not in {s.name for s in run.plan}:
        raise InvalidInput(f"run {target} has no stage {stage!r} (its stages: {', '.join(s.name for s in run.plan)})")
    earlier = ids[: ids.index(target)]
    previous = run.parent_run_id if run.parent_run_id in earlier else (earlier[-1] if earlier else None)
    facts = _Chain(projections, run, ref, previous, dict(runs)).facts(stage)
    return Explanation(dataset=dataset, partition=partition, run_id=target, status=entry.status,
                       ledger_run_id=entry.run_id, reason=entry.reason, facts=tuple(facts))


class _Chain:
    def __init__(self, projections: Projections, run: RunHeader, ref: str, previous: str | None,
                 ingested_at: dict[str, int]) -> None:
        self.p, self.store, self.run, self.ref, self.previous = projections, projections.store, run, ref, previous
        self.ingested_at = ingested_at
        self.state: dict[str, tuple[str, Fact]] = {}  # stage -> (done | failed | blocked | open, its fact)

    def facts(self, only: str | None) -> list[Fact]:
        run = self.run
        lineage = f", resumed from run {run.parent_run_id} at stage {run.resume_from}" if run.resume_from else ""
        out = [Fact(kind="ingested", stage=None, positions=(run.position, self.ingested_at[run.run_id]),
                    text=f"ingested into run {run.run_id} of pipeline {run.pipeline}{lineage}")]
        abandoned = self.store.get(f"abandon/{run.run_id}")
        if abandoned is not None:
            reason = getattr(abandoned.event(), "reason", "")
            out.append(Fact(kind="abandoned", stage=None, positions=(abandoned.position,),
                            text=f"run {run.run_id} was abandoned" + (f": {reason}" if reason else "")))
        pipeline = self.p.pipeline(run.pipeline)
        if pipeline.status != "active":
            out.append(Fact(kind="stopped", stage=None, positions=(pipeline.position,) if pipeline.position else (),
                            text=f"pipeline {run.pipeline} is {pipeline.status}"
                                 + (f": {pipeline.reason}" if pipeline.reason else "")
                                 + " (its tasks wait until it is started)"))
        for planned in run.plan:
            fact = self._stage(planned, abandoned is not None, pipeline.status)
            if only is None or planned.name == only:
                out.append(fact)
        return out

    # --- one stage -----------------------------------------------------------------------

    def _task_ref(self, planned: PlannedStage) -> str:
        return RUN_SCOPE if planned.scope == "run" else self.ref

    def _stage(self, planned: PlannedStage, abandoned: bool, pipeline_status: str) -> Fact:
        name, task_ref, run = planned.name, self._task_ref(planned), self.run
        record = self.store.get(manifest_key(run.run_id, name, task_ref))
        if record is not None:
            event = record.event()
            assert isinstance(event, ManifestWritten)
            fact = self._done(planned, event.manifest, record.position)
            self.state[name] = ("done", fact)
            return fact
        failed = self.store.get(failure_key(run.run_id, name, task_ref))
        if failed is not None:
            event = failed.event()
            assert isinstance(event, StageFailed)
            fact = Fact(kind="failed", stage=name, positions=(failed.position,),
                        text=f"{name} failed for good at attempt {event.attempt}: {event.error_type}: {event.message}",
                        details={"error_type": event.error_type, "message": event.message,
                                 "traceback": event.traceback})
            self.state[name] = ("failed", fact)
            return fact
        fact = self._not_done(planned, abandoned, pipeline_status)
        self.state[name] = ("blocked" if fact.kind == "blocked" else "open", fact)
        return fact

    def _done(self, planned: PlannedStage, m: Manifest, position: int) -> Fact:
        name, run = planned.name, self.run
        if m.status == "reused":
            source = m.reused_from or ""
            origin = self.store.get(manifest_key(source, name, self._task_ref(planned)))
            sources = (position,) if origin is None else (position, origin.position)
            resumed = run.resume_from is not None and name not in _closure(run.plan, run.resume_from)
            why = f"before the resume point {run.resume_from}" if resumed else "same input and config hash"
            return Fact(kind="reused", stage=name, positions=sources,
                        text=f"{name} reused the outputs of run {source} ({why})",
                        details={"reused_from": source, "input_hash": m.input_hash, "config_hash": m.config_hash})
        if run.resume_from is not None and name in _closure(run.plan, run.resume_from):
            return Fact(kind="executed", stage=name, positions=(position,),
                        text=f"{name} executed again: it is at or after the resume point {run.resume_from}")
        before = self._previous_manifest(planned)
        if before is None:
            return Fact(kind="executed", stage=name, positions=(position,),
                        text=f"{name} executed: no earlier run has its outputs for this partition")
        old, old_position = before
        reasons: list[str] = []
        details: dict[str, Any] = {}
        positions: list[int] = [position, old_position]
        if old.config_hash != m.config_hash:
            changed = self._config_changes(planned)
            shown = ", ".join(f"{k}: {v[0]!r} -> {v[1]!r}" for k, v in changed.items()) or "fields not recorded"
            reasons.append(f"its config hash changed since run {old.run_id} ({shown})")
            details["config_changes"] = {k: {"old": v[0], "new": v[1]} for k, v in changed.items()}
        if old.input_hash != m.input_hash:
            text, upstream, more = self._input_changes(planned, old.run_id)
            reasons.append(text)
            details["upstream_changes"] = upstream
            positions.extend(more)
        if not reasons:
            reasons.append(f"input and config hash equal run {old.run_id}'s, but the stage is not reusable or "
                           "those outputs were not intact")
        return Fact(kind="executed", stage=name, positions=tuple(positions),
                    text=f"{name} executed again: " + "; ".join(reasons), details=details)

    def _previous_manifest(self, planned: PlannedStage) -> tuple[Manifest, int] | None:
        if self.previous is None:
            return None
        record = self.store.get(manifest_key(self.previous, planned.name, self._task_ref(planned)))
        if record is None:
            return None
        event = record.event()
        assert isinstance(event, ManifestWritten)
        return event.manifest, record.position

    def _config_changes(self, planned: PlannedStage) -> dict[str, tuple[Any, Any]]:
        old_run = self.p.run_header(self.previous) if self.previous else None
        old = next((s.config for s in (old_run.plan if old_run else ()) if s.name == planned.name), {})
        new = planned.config
        return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}

    def _input_changes(self, planned: PlannedStage, old_run: str) -> tuple[str, list[dict[str, Any]], list[int]]:
        changes: list[dict[str, Any]] = []
        positions: list[int] = []
        if not planned.after:
            new = self._ingested(self.run.run_id)
            old = self._ingested(old_run)
            if new and old:
                positions.extend((new[1], old[1]))
                changes.append({"stage": None, "old": old[0], "new": new[0]})
            return (f"the partition's content changed since run {old_run} "
                    f"({_short(old[0] if old else '')} -> {_short(new[0] if new else '')})", changes, positions)
        scope_ref = self._task_ref(planned)
        for up in planned.after:
            ref = scope_ref if scope_ref != RUN_SCOPE else None
            if ref is None:
                continue  # a run-level stage reads every partition: a per-stage hash does not say which
            now = self.store.get(manifest_key(self.run.run_id, up, ref))
            then = self.store.get(manifest_key(old_run, up, ref))
            if now is None or then is None:
                continue
            a, b = now.event(), then.event()
            assert isinstance(a, ManifestWritten) and isinstance(b, ManifestWritten)
            if a.manifest.output_hash != b.manifest.output_hash:
                positions.extend((now.position, then.position))
                changes.append({"stage": up, "old": b.manifest.output_hash, "new": a.manifest.output_hash})
        if not changes:
            return f"its input changed since run {old_run}", changes, positions
        shown = ", ".join(f"{c['stage']} {_short(str(c['old']))} -> {_short(str(c['new']))}" for c in changes)
        return f"an upstream output changed since run {old_run} ({shown})", changes, positions

    def _ingested(self, run_id: str) -> tuple[str, int] | None:
        dataset, _, partition = self.ref.partition("/")
        record = self.store.get(f"ingest/{run_id}/{dataset}/{partition}")
        if record is None:
            return None
        event = record.event()
        assert isinstance(event, PartitionIngested)
        return event.content_hash, record.position

    def _not_done(self, planned: PlannedStage, abandoned: bool, pipeline_status: str) -> Fact:
        name, run = planned.name, self.run
        for up in planned.after:
            kind, fact = self.state.get(up, ("open", None))
            if kind in ("failed", "blocked") and fact is not None:
                root = fact.details.get("root", up) if kind == "blocked" else up
                error = fact.details.get("error", fact.text) if kind == "blocked" else \
                    f"{fact.details['error_type']}: {fact.details['message']}"
                return Fact(kind="blocked", stage=name, positions=fact.positions,
                            details={"root": root, "error": error},
                            text=f"{name} is blocked: upstream stage {root} failed ({error})")
            if planned.scope == "run" and kind != "done":
                failures = self.p.failed_tasks(run.run_id, up, limit=1)
                if failures:
                    failed = self.store.get(failure_key(run.run_id, up, failures[0].partition))
                    error = failures[0].last_error or ""
                    return Fact(kind="blocked", stage=name, positions=(failed.position,) if failed else (),
                                details={"root": up, "error": error},
                                text=f"{name} is blocked: upstream stage {up} failed for {failures[0].partition} "
                                     f"({error})")
        if abandoned:
            return Fact(kind="abandoned", stage=name, positions=(), text=f"{name} will not run: the run is abandoned")
        if run.stages is not None and name not in run.stages:
            return Fact(kind="skipped", stage=name, positions=(run.position,),
                        text=f"{name} is not among the stages run {run.run_id} runs ({', '.join(run.stages)})")
        if planned.scope == "run" and not run.sealed:
            return Fact(kind="waiting", stage=name, positions=(run.position,),
                        text=f"{name} is waiting on seal: run {run.run_id} is not sealed, and a run-level stage "
                             "reads every partition")
        if pipeline_status != "active":
            return Fact(kind="waiting", stage=name, positions=(),
                        text=f"{name} waits: the pipeline is {pipeline_status}")
        task = self.p.task(run.run_id, name, self._task_ref(planned))
        if task is not None:
            error = f": {task.last_error}" if task.last_error else ""
            return Fact(kind="running", stage=name, positions=(),
                        text=f"{name} is {task.status} (attempt {task.attempts}){error}")
        waiting_on = [up for up in planned.after if self.state.get(up, ("open",))[0] != "done"]
        if waiting_on:
            return Fact(kind="waiting", stage=name, positions=(),
                        text=f"{name} is waiting on upstream stage(s) {', '.join(waiting_on)}")
        return Fact(kind="waiting", stage=name, positions=(), text=f"{name} is ready: it runs at the next stagebus run")


def _closure(plan: tuple[PlannedStage, ...], stage: str) -> set[str]:
    seen, todo = {stage}, [stage]
    while todo:
        current = todo.pop()
        for s in plan:
            if current in s.after and s.name not in seen:
                seen.add(s.name)
                todo.append(s.name)
    return seen


def _short(digest: str) -> str:
    return digest[:12] or "?"
