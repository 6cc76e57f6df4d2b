"""``stagebus runs``: list runs, show one (stages, lineage, failures), and ``abandon`` a run its
producer will never finish. Listing and showing are read-only."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from stagebus.actors.abandon import abandon_run
from stagebus.cli._context import FORMATS, check_choice, get_context
from stagebus.cli._render import print_json, stdout, table
from stagebus.errors import InvalidInput
from stagebus.events import StageFailed, failure_key
from stagebus.projections import Projections, RunInfo

RUN_STATUSES = ("pending", "running", "complete", "failed", "abandoned")
STYLE = {"complete": "green", "failed": "red", "abandoned": "red", "running": "yellow", "pending": "yellow"}
TRACEBACKS_SHOWN = 20
UNFOLDED = 1_000  # widest a table printed to a pipe or file may grow

runs_app = typer.Typer(help="List runs, show one, or abandon one.", invoke_without_command=True)


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


@runs_app.callback()
def runs(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="Only runs in this status: "
                                                                + ", ".join(RUN_STATUSES) + ".")] = None,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """List runs in the order they were opened (read-only); see also runs show and runs abandon."""
    if ctx.invoked_subcommand is not None:
        return
    if status is not None:
        check_choice("status", status, RUN_STATUSES)
    check_choice("format", output, FORMATS)
    projections = get_context(ctx).projections(readonly=True)
    projections.catch_up()
    rows = [_listed(run) for run in projections.runs()]
    rows = [r for r in rows if status is None or r["status"] == status]
    if output == "json":
        print_json(rows)
        return
    grid = table("run", "pipeline", "status", "opened", "partitions", "parent", caption=f"{len(rows)} run(s)")
    for r in rows:
        grid.add_row(r["run_id"], r["pipeline"], f"[{STYLE[r['status']]}]{r['status']}[/]", r["opened_at"],
                     str(r["partitions"]), r["parent_run_id"] or "")
    _print_whole(stdout(), grid)


def _print_whole(console: Console, grid: Table) -> None:
    """Print a table unfolded when stdout is not a terminal, so a run id in it can be copied whole."""
    if not console.is_terminal:
        natural = console.measure(grid, options=console.options.update_width(UNFOLDED)).maximum
        console.width = max(console.width, natural)
    console.print(grid)


def _listed(run: RunInfo) -> dict[str, Any]:
    return {"run_id": run.run_id, "pipeline": run.pipeline, "status": run_status(run), "opened_at": run.opened_at,
            "partitions": len(run.partitions), "parent_run_id": run.parent_run_id}


@runs_app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to show.", show_default=False)],
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Show a run's stage counts, records, rejects, durations, lineage and failure tracebacks (read-only)."""
    check_choice("format", output, FORMATS)
    projections = get_context(ctx).projections(readonly=True)
    projections.catch_up()
    info = _describe(projections, run_id)
    if output == "json":
        print_json(info)
        return
    console = stdout()
    lineage = f" · parent {info['parent_run_id']} (resumed from {info['resume_from']})" if info["parent_run_id"] else ""
    children = f" · resumed by {', '.join(info['child_runs'])}" if info["child_runs"] else ""
    console.print(f"run {run_id} · pipeline {info['pipeline']} · {info['status']} · opened {info['opened_at']} · "
                  f"{info['partitions']} partition(s){' · sealed' if info['sealed'] else ''}{lineage}{children}",
                  markup=False, soft_wrap=True)
    grid = table("stage", "pending", "running", "complete", "reused", "failed", "records", "rejected", "duration_s")
    for s in info["stages"]:
        grid.add_row(s["stage"] + ("" if s["selected"] else " (not run)"),
                     *(str(s[k]) for k in ("pending", "running", "complete", "reused", "failed", "records",
                                           "rejected")), f"{s['duration_s']:.3f}")
    _print_whole(console, grid)
    for failure in info["failures"]:
        console.print(f"[red]failed[/] {failure['stage']} {failure['partition']}: {failure['error']}",
                      highlight=False)
        if failure["traceback"]:
            console.print(failure["traceback"].rstrip(), markup=False, highlight=False)
    if info["failures_not_shown"]:
        console.print(f"… and {info['failures_not_shown']} more final failure(s): see --format json or stagebus why")


def _describe(projections: Projections, run_id: str) -> dict[str, Any]:
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
    failed = projections.failed_tasks(run_id, limit=TRACEBACKS_SHOWN)
    total_failed = sum(s.failed for s in run.stage_summaries)
    failures = []
    for task in failed:
        record = projections.store.get(failure_key(run_id, task.stage, task.partition))
        event = record.event() if record else None
        failures.append({"stage": task.stage, "partition": task.partition, "attempts": task.attempts,
                         "error": task.last_error or "", "position": record.position if record else None,
                         "traceback": event.traceback if isinstance(event, StageFailed) else ""})
    return {**_listed(run), "pipeline_version": run.pipeline_version, "resume_from": run.resume_from,
            "stages_selected": run.stages, "sealed": run.sealed, "last_activity": run.last_activity,
            "child_runs": projections.child_runs(run_id), "abandon_reason": run.abandon_reason,
            "stages": stages, "failures": failures, "failures_not_shown": max(total_failed - len(failures), 0)}


@runs_app.command("abandon")
def abandon(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to abandon.", show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="Why; shown in the ledger.")] = "",
) -> None:
    """Stop processing a run and stop showing its partitions as pending (an event; idempotent)."""
    app = get_context(ctx)
    outcome = abandon_run(app.store(), run_id, reason)
    if outcome.stored:
        typer.echo(f"abandoned run {run_id} at position {outcome.position}", err=True)
    else:
        typer.echo(f"run {run_id} was already abandoned (position {outcome.position}); nothing stored", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
