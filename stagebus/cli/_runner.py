"""Shared by ``stagebus run`` and ``stagebus demo``: the embedded runner with progress bars."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stagebus.actors.embedded import EmbeddedRunner, RunReport, Shard
from stagebus.actors.executor import Outcome
from stagebus.actors.gate import TaskRef
from stagebus.actors.readiness import DONE, expected_partitions, has_open_tasks
from stagebus.actors.telemetry import Telemetry
from stagebus.artifacts.location import open_artifacts
from stagebus.cli._context import AppContext
from stagebus.events import RUN_SCOPE
from stagebus.pipeline.definition import Pipeline, PipelineRegistry
from stagebus.projections import RunState

FINISHED = {Outcome.COMPLETE, Outcome.REUSED, Outcome.DUPLICATE}


def remaining_by_stage(app: AppContext, registry: PipelineRegistry, run_ids: Collection[str] | None,
                       only_stages: Collection[str] | None) -> dict[str, int]:
    """Tasks per stage not yet done in the targeted runs: the progress bars' totals."""
    projections = app.projections()
    # A run with nothing pending or running adds nothing: only open runs' tasks are read.
    ids = run_ids if run_ids is not None else [r.run_id for r in projections.open_runs() if has_open_tasks(r)
                                               and not projections.child_runs(r.run_id)]
    totals: Counter[str] = Counter()
    for run_id in ids:
        run = projections.run(run_id)
        if run is None or run.abandoned:
            continue
        pipeline = registry.get(run.pipeline)
        blocked = blocked_tasks(run, pipeline)
        for definition in pipeline.stages:
            stage = definition.name
            if (run.stages is not None and stage not in run.stages) or (only_stages and stage not in only_stages):
                continue
            for ref in expected_partitions(run, pipeline, stage):
                state = run.tasks.get((stage, ref))
                if (stage, ref) in blocked:
                    continue  # an upstream failed for good: it will not run, so it gets no bar
                if state is None or state.status not in DONE | {"failed"}:
                    totals[stage] += 1
    return dict(totals)


def blocked_tasks(run: RunState, pipeline: Pipeline) -> set[tuple[str, str]]:
    """(stage, partition ref) of the run's tasks that cannot run because an upstream task failed
    for good: downstream partition stages of the failed partition, and every run-level stage after."""
    blocked: set[tuple[str, str]] = set()
    for (stage, ref), state in run.tasks.items():
        if state.status != "failed" or stage not in pipeline:
            continue
        for after in pipeline.closure(stage) - {stage}:
            scope = pipeline[after].contract.scope
            blocked.add((after, RUN_SCOPE if scope == "run" or ref == RUN_SCOPE else ref))
    return blocked


def failed_tasks(app: AppContext, run_ids: Collection[str] | None) -> set[tuple[str, str, str]]:
    return {(run_id, t.stage, t.partition) for run_id, t in app.projections().tasks_in(("failed",), run_ids)}


def run_with_progress(app: AppContext, registry: PipelineRegistry, console: Console, *,
                      run_ids: Collection[str] | None, only_stages: Collection[str] | None,
                      workers: int, log_file: Path | None, infra_wait_s: float = 30.0,
                      shard: Shard | None = None) -> RunReport:
    """Run until idle, one progress bar per stage. Quiet Dramatiq: our telemetry says it all."""
    if logging.getLogger("stagebus").getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("dramatiq").setLevel(logging.CRITICAL)
    store = app.store()
    projections = app.projections()
    projections.catch_up()
    totals = remaining_by_stage(app, registry, run_ids, only_stages)
    telemetry = Telemetry(log_file or app.settings.logs_dir / "tasks.ndjson")
    order = [d.name for p in registry for d in p.stages if d.name in totals]
    with Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False, disable=not console.is_terminal and not totals) as progress:
        bars = {stage: progress.add_task(stage, total=totals[stage]) for stage in dict.fromkeys(order)}

        def advance(task: TaskRef, outcome: Outcome) -> None:
            if outcome in FINISHED and task.stage in bars:
                progress.advance(bars[task.stage])

        with EmbeddedRunner(store, projections, open_artifacts(app.settings), registry, workers=workers,
                            telemetry=telemetry, on_outcome=advance, infra_wait_s=infra_wait_s,
                            shard=shard) as runner:
            report = runner.run(run_ids, only_stages=only_stages)
    telemetry.close()
    return report


def outcome_table(report: RunReport) -> Table:
    table = Table(title="stage tasks this run")
    for column in ("stage", "complete", "reused", "duplicate", "refused"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, counts in report.by_stage.items():
        table.add_row(stage, *(str(counts.get(k, 0)) for k in ("complete", "reused", "duplicate", "refused")))
    return table
