"""``stagebus pipeline``: list, show and check pipelines' contracts; stop, start and delete
pipelines (facts in the log)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from stagebus.actors import lifecycle
from stagebus.cli._context import FORMATS, AppContext, check_choice, get_context
from stagebus.cli._render import print_json, stdout, table
from stagebus.errors import InvalidInput
from stagebus.pipeline.definition import Pipeline
from stagebus.pipeline.describe import compare, dag_lines, describe
from stagebus.pipeline.registry import load_pipeline, load_pipelines

pipeline_app = typer.Typer(help="List, show, check, stop, start and delete pipelines.", no_args_is_help=True)


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
    for pipeline, row in zip(load_pipelines(app.settings.pipelines), rows, strict=True):
        grid.add_row(row["pipeline"], row["version"], row["status"], "\n".join(dag_lines(pipeline)), row["reason"])
    stdout().print(grid)


def resolve(app: AppContext, name: str) -> Pipeline:
    """A pipeline this installation knows by name, or any ``module:attribute`` spec."""
    return load_pipeline(name) if ":" in name else load_pipelines(app.settings.pipelines).get(name)


@pipeline_app.command("show")
def show(ctx: typer.Context, name: Annotated[str, typer.Argument(help="A pipeline name, or module:attribute.")],
         fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table") -> None:
    """Each stage's contract: what it reads and writes (record schemas), when it may start,
    what its manifest holds, its config, retries and time limit; and the DAG."""
    check_choice("format", fmt, FORMATS)
    described = describe(resolve(get_context(ctx), name))
    if fmt == "json":
        print_json(described)
        return
    out = stdout()
    out.print(f"pipeline {described['pipeline']} (version {described['version']})")
    out.print("\n".join(described["dag"]), highlight=False)
    for stage in described["stages"]:
        grid = table("field", "value")
        grid.title = f"stage {stage['stage']}"
        outputs = "\n".join(f"{output}: " + ("one file" if spec["file"] else _fields(spec["schema"]))
                            for output, spec in stage["outputs"].items())
        rows = (("after", ", ".join(stage["after"]) or "-"), ("scope", stage["scope"]),
                ("reads", ", ".join(stage["reads"]) or "-"), ("outputs", outputs or "-"),
                ("entry (gate)", stage["entry"]), ("exit (manifest)", stage["exit"]),
                ("manifest path", stage["manifest_path"]), ("config", str(stage["config"])),
                ("config schema", _fields(stage["config_schema"]) or "-"),
                ("retry", str(stage["retry"])), ("time limit", f"{stage['time_limit_s']:g} s"),
                ("reusable", "yes" if stage["reusable"] else "no: always executes"),
                ("quality", ", ".join(f"{k} {v}" for k, v in stage["quality"].items()) or "no limits"),
                ("sensitive", ", ".join(stage["sensitive"]) or "-"),
                ("version", stage["version"]))
        for label, value in rows:
            grid.add_row(label, value)
        out.print(grid)


def _fields(schema: dict[str, Any]) -> str:
    properties = schema.get("properties") or {}
    return ", ".join(f"{field} ({spec.get('type', 'object')})" for field, spec in properties.items())


@pipeline_app.command("check")
def check(ctx: typer.Context,
          new: Annotated[str, typer.Argument(help="The changed pipeline: module:attribute, or a known name.")],
          against: Annotated[str | None, typer.Option(
              "--against", help="What runs today (default: the known pipeline of the same name).")] = None,
          fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table") -> None:
    """Is a changed pipeline compatible with what runs today? Lists changes per stage; exit 1 on
    an incompatible one (a removed stage or output, a changed `after`, a field a stage reads
    dropped or retyped)."""
    check_choice("format", fmt, FORMATS)
    app = get_context(ctx)
    changed = resolve(app, new)
    if against is None:
        known = {p.name: p for p in load_pipelines(app.settings.pipelines)}
        if changed.name not in known:
            raise InvalidInput(f"no pipeline named {changed.name!r} runs today: give --against")
        current = known[changed.name]
    else:
        current = resolve(app, against)
    changes = compare(current, changed)
    if fmt == "json":
        print_json([c._asdict() for c in changes])
    else:
        grid = table("stage", "change", "verdict")
        for c in changes:
            grid.add_row(c.stage, c.what, c.severity)
        stdout().print(grid if changes else "no changes")
    if any(c.severity == "incompatible" for c in changes):
        raise typer.Exit(1)


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
