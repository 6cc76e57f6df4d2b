"""A run as people read it: its status and a description of its stages, lineage and failures.

Shared by ``stagebus runs`` / ``runs show`` and the web inspector, so both say the same thing.
Read-only; the failure tracebacks come from the log's keyed ``StageFailed`` events.
"""

from __future__ import annotations

from typing import Any

from stagebus.errors import InvalidInput
from stagebus.events import StageFailed, failure_key
from stagebus.projections.reader import Projections
from stagebus.projections.runs import RunInfo

RUN_STATUSES = ("pending", "running", "complete", "failed", "abandoned")
TRACEBACKS_SHOWN = 20


def run_status(run: RunInfo) -> str:
    """abandoned, else failed (a final failure), else complete (every selected stage done), else
    running (a task started), else pending."""
    selected = [s for s in run.stage_summaries if s.selected]
    if run.abandoned:
        return "abandoned"
    if any(s.failed for s in selected):
        return "failed"
    if selected and all(s.expected and s.complete + s.reused >= s.expected for s in selected):
        return "complete"
    if any(s.running or s.complete or s.reused for s in selected):
        return "running"
    return "pending"


def listed_run(run: RunInfo) -> dict[str, Any]:
    """What a list of runs shows of one."""
    return {"run_id": run.run_id, "pipeline": run.pipeline, "status": run_status(run), "opened_at": run.opened_at,
            "partitions": len(run.partitions), "parent_run_id": run.parent_run_id}


def describe_run(projections: Projections, run_id: str, *, tracebacks: int = TRACEBACKS_SHOWN) -> dict[str, Any]:
    """A run's stage counts, records, rejects, durations, lineage and (up to ``tracebacks``)
    final failures with their tracebacks and log positions. Raises :class:`InvalidInput` for an
    unknown run."""
    run = projections.run(run_id)
    if run is None:
        raise InvalidInput(f"unknown run {run_id!r}")
    rollups = {r.stage: r for r in projections.rollups(run_id)}
    stages = []
    for s in run.stage_summaries:
        rollup = rollups.get(s.stage)
        stages.append({"stage": s.stage, "scope": s.scope, "selected": s.selected, "expected": s.expected,
                       "pending": s.pending, "running": s.running, "complete": s.complete, "reused": s.reused,
                       "failed": s.failed, "records": rollup.records_out if rollup else 0,
                       "records_in": s.records_in, "rejected": s.records_rejected,
                       "duration_s": rollup.duration_s if rollup else 0.0})
    failed = projections.failed_tasks(run_id, limit=tracebacks)
    total_failed = sum(s.failed for s in run.stage_summaries)
    failures = []
    for task in failed:
        record = projections.store.get(failure_key(run_id, task.stage, task.partition))
        event = record.event() if record else None
        failures.append({"stage": task.stage, "partition": task.partition, "attempts": task.attempts,
                         "error": task.last_error or "", "position": record.position if record else None,
                         "traceback": event.traceback if isinstance(event, StageFailed) else ""})
    return {**listed_run(run), "pipeline_version": run.pipeline_version, "resume_from": run.resume_from,
            "stages_selected": run.stages, "sealed": run.sealed, "last_activity": run.last_activity,
            "child_runs": projections.child_runs(run_id), "abandon_reason": run.abandon_reason,
            "stages": stages, "failures": failures, "failures_not_shown": max(total_failed - len(failures), 0)}
