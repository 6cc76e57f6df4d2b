"""``stagebus runs``: list runs, show one (stages, lineage, failures), and ``abandon`` a run its
producer will never finish. Listing and showing are read-only."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from stagebus.actors.abandon import abandon_run
from stagebus.cli._context import FORMATS, check_choice, get_context
from stagebus.cli._render import print_json, stdout, table
from stagebus.projections.report import RUN_STATUSES, describe_run, listed_run

STYLE = {"complete": "green", "failed": "red", "abandoned": "red", "running": "yellow", "pending": "yellow"}
UNFOLDED = 1_000  # widest a table printed to a pipe or file may grow

runs_app = typer.Typer(help="List runs, show one, or abandon one.", invoke_without_command=True)


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
    rows = [listed_run(run) for run in projections.runs()]
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
    info = describe_run(projections, run_id)
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
