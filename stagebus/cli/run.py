"""``stagebus run``: embedded mode — process ready work until idle."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from stagebus.actors.embedded import Shard
from stagebus.actors.reruns import check_subset, resume_run
from stagebus.cli._context import AppContext, get_context
from stagebus.cli._processes import merge, run_shards, shard_summary
from stagebus.cli._runner import blocked_tasks, failed_tasks, outcome_table, run_with_progress
from stagebus.errors import InvalidInput
from stagebus.pipeline.definition import PipelineRegistry
from stagebus.pipeline.registry import load_pipelines


def run(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Only this run (with --resume-from: the parent).")
                      ] = None,
    stages: Annotated[str | None, typer.Option("--stages", help="Comma-separated subset of stages to run.")] = None,
    resume_from: Annotated[str | None, typer.Option(
        "--resume-from", help="Open a new run from --run-id that re-executes this stage and everything after it.")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Worker threads (per process).")] = 2,
    processes: Annotated[int, typer.Option(
        "--processes", min=1, max=64, help="Processes for partition stages (CPU-bound stages use one core each).")
    ] = 1,
    shard: Annotated[str | None, typer.Option("--shard", hidden=True, help="INDEX/COUNT: a --processes child.")
                     ] = None,
    wait_infra: Annotated[float, typer.Option(
        "--wait-infra", min=0.0, help="Seconds to keep retrying tasks stopped by a disk or I/O fault.")] = 30.0,
    log_file: Annotated[Path | None, typer.Option("--log-file", help="NDJSON task telemetry (default: home/logs).")
                        ] = None,
) -> None:
    """Process every ready stage task in this process until none is ready; exit 1 on new final failures."""
    if log_file is not None and (log_file.is_dir() or (log_file.exists() and not log_file.is_file())):
        raise InvalidInput(f"--log-file {log_file} is not a file")
    app = get_context(ctx)
    console = Console(stderr=True)
    registry = load_pipelines(app.settings.pipelines)
    projections = app.projections()
    projections.catch_up()
    run_ids = [run_id] if run_id else None
    if run_id is not None and projections.run(run_id) is None:
        raise InvalidInput(f"unknown run {run_id!r}")
    if resume_from is not None:
        if run_id is None:
            raise InvalidInput("--resume-from needs --run-id, the run to resume from")
        parent = projections.run(run_id)
        assert parent is not None
        new_id = resume_run(app.store(), parent, registry.get(parent.pipeline), resume_from)
        projections.catch_up()
        typer.echo(f"resumed run {run_id} from {resume_from} as run {new_id}")
        run_ids = [new_id]
    only = {s.strip() for s in stages.split(",") if s.strip()} if stages is not None else None
    if only is not None and not only:
        raise InvalidInput(f"--stages {stages!r} names no stage: give a comma-separated list such as ingest,normalize")
    if only is not None:
        targets = run_ids or [r.run_id for r in projections.runs()]
        for target in targets:
            state = projections.run(target)
            if state is not None:
                check_subset(state, registry.get(state.pipeline), only)
    if shard is not None:  # a child of --processes: run its shard quietly, tell the parent what it did
        report = run_with_progress(app, registry, Console(stderr=True, quiet=True), run_ids=run_ids,
                                   only_stages=only, workers=workers, log_file=log_file, infra_wait_s=wait_infra,
                                   shard=Shard.parse(shard))
        typer.echo(shard_summary(report))
        return
    failed_before = failed_tasks(app, run_ids)
    sharded = None
    if processes > 1:
        sharded = run_shards(app, processes, run_ids=run_ids, stages=stages, workers=workers,
                             log_file=log_file, wait_infra=wait_infra)
    report = run_with_progress(app, registry, console, run_ids=run_ids, only_stages=only, workers=workers,
                               log_file=log_file, infra_wait_s=wait_infra)
    if sharded is not None:
        merge(report, {"by_stage": sharded.by_stage, "swept": sharded.swept})
        order = [d.name for p in registry for d in p.stages]
        report.by_stage = dict(sorted(report.by_stage.items(),
                                      key=lambda item: order.index(item[0]) if item[0] in order else len(order)))
    console.print(outcome_table(report))
    new_failures = failed_tasks(app, run_ids) - failed_before
    if report.swept:
        console.print(f"swept {report.swept} temp file(s) left by crashed attempts")
    if not report.by_stage:
        console.print("nothing was ready to run")
    if report.waiting:
        why = sorted({reason for _, reason in report.waiting})
        console.print(f"[yellow]{len(report.waiting)} tasks waiting on infrastructure[/yellow]: {'; '.join(why)}"
                      " (they stay pending; run again once the fault is fixed)")
    if new_failures:
        reasons = {tuple(task): error for task, error in report.failed}
        for failed in sorted(new_failures):
            console.print(f"[red]failed[/red] {'/'.join(failed)}: {reasons.get(failed, '')}")
        for line in after_failure(app, registry, new_failures):
            console.print(line, highlight=False)
        raise typer.Exit(1)
    if report.waiting:
        raise typer.Exit(EXIT_WAITING)


def after_failure(app: AppContext, registry: PipelineRegistry, failures: set[tuple[str, str, str]]) -> list[str]:
    """Per failed run: what is blocked downstream (stages x partitions) and the command that resumes it."""
    projections = app.projections()
    lines = []
    for run_id in sorted({run_id for run_id, _, _ in failures}):
        run = projections.run(run_id)
        if run is None:
            continue
        pipeline = registry.get(run.pipeline)
        blocked = Counter(stage for stage, _ in blocked_tasks(run, pipeline))
        if blocked:
            shown = ", ".join(f"{stage} x {blocked[stage]}" for stage in (d.name for d in pipeline.stages)
                              if stage in blocked)
            lines.append(f"blocked downstream in run {run_id}: {shown} (stage x partitions)")
        failed_stages = {stage for r, stage, _ in failures if r == run_id}
        first = next(d.name for d in pipeline.stages if d.name in failed_stages)
        lines.append(f"after fixing the cause, resume with: stagebus run --run-id {run_id} --resume-from {first}")
    return lines


EXIT_WAITING = 75  # EX_TEMPFAIL: nothing failed, try again later


def register(app: typer.Typer) -> None:
    app.command("run")(run)
