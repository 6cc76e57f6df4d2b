"""``stagebus pipeline``: list, stop, start and delete pipelines (facts in the log)."""

from __future__ import annotations

from typing import Annotated

import typer

from stagebus.actors import lifecycle
from stagebus.cli._context import FORMATS, AppContext, check_choice, get_context
from stagebus.cli._render import print_json, stdout, table
from stagebus.pipeline.registry import load_pipelines

pipeline_app = typer.Typer(help="List, stop, start and delete pipelines.", no_args_is_help=True)


@pipeline_app.command("list")
def list_pipelines(ctx: typer.Context,
                   fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table") -> None:
    """Every pipeline this installation knows, with its status from the log (read-only)."""
    check_choice("format", fmt, FORMATS)
    app = get_context(ctx)
    projections = app.projections(readonly=True)
    projections.catch_up()
    rows = []
    for pipeline in load_pipelines(app.settings.pipelines):
        state = projections.pipeline(pipeline.name)
        rows.append({"pipeline": pipeline.name, "version": pipeline.version, "status": state.status,
                     "reason": state.reason, "stages": [d.name for d in pipeline.stages]})
    if fmt == "json":
        print_json(rows)
        return
    grid = table("pipeline", "version", "status", "stages", "reason")
    for row in rows:
        grid.add_row(row["pipeline"], row["version"], row["status"], " → ".join(row["stages"]), row["reason"])
    stdout().print(grid)


def known_pipeline(ctx: typer.Context, name: str) -> AppContext:
    """The command's context, once ``name`` is a pipeline this installation knows."""
    app = get_context(ctx)
    load_pipelines(app.settings.pipelines).get(name)
    return app


@pipeline_app.command("stop")
def stop(ctx: typer.Context, name: str,
         reason: Annotated[str, typer.Option("--reason", help="Why; shown in `pipeline list`.")] = "") -> None:
    """Hold the pipeline's ready tasks: nothing new is enqueued until it starts again."""
    app = known_pipeline(ctx, name)
    lifecycle.stop(app.store(), app.projections(), name, reason)
    typer.echo(f"pipeline {name} stopped", err=True)


@pipeline_app.command("start")
def start(ctx: typer.Context, name: str) -> None:
    """Release a stopped pipeline's held tasks."""
    app = known_pipeline(ctx, name)
    lifecycle.start(app.store(), app.projections(), name)
    typer.echo(f"pipeline {name} started", err=True)


@pipeline_app.command("delete")
def delete(ctx: typer.Context, name: str) -> None:
    """Refuse new runs of the pipeline from now on; refused while any of its tasks runs."""
    app = known_pipeline(ctx, name)
    lifecycle.delete(app.store(), app.projections(), name)
    typer.echo(f"pipeline {name} deleted: it takes no new runs", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")
