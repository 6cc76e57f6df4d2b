"""``stagebus load``: a dataset's valid records into a warehouse table (PostgreSQL or SQLite).

A consumer-side destination: it reads the home read-only, like ``export``, and writes only to
the warehouse, one transaction per partition (:mod:`stagebus.warehouse`). Running it again, or
twice at once, loads each partition's rows once per authoritative run. The warehouse URL never
appears in output with its password.
"""

from __future__ import annotations

from typing import Annotated

import typer

from stagebus.cli._context import check_choice, get_context
from stagebus.cli._render import print_json, progress_bar
from stagebus.errors import InvalidInput, StagebusError, WarehouseError
from stagebus.warehouse import LoadResult, load
from stagebus.warehouse.targets import scrub

FORMATS = ("text", "json")


def load_command(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", help="The dataset whose valid partitions to load.")],
    table: Annotated[str, typer.Option("--table", help="Target table: NAME, or SCHEMA.NAME in PostgreSQL.")],
    to: Annotated[str | None, typer.Option(
        "--to", envvar="STAGEBUS_LOAD_DSN", show_envvar=True, show_default=False, metavar="URL",
        help="postgresql://USER[:PASSWORD]@HOST[:PORT]/DB or sqlite:///PATH.")] = None,
    output: Annotated[str, typer.Option("--output", help="STAGE.OUTPUT whose records to load.")] = "normalize.records",
    as_of: Annotated[int | None, typer.Option(
        "--as-of", metavar="POSITION", help="Load the dataset as the ledger had it at this log position.")] = None,
    output_format: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """Load a dataset's valid records into a warehouse table, exactly once per partition and run."""
    check_choice("format", output_format, FORMATS)
    if not to:
        raise InvalidInput("no warehouse to load into: give --to URL or set STAGEBUS_LOAD_DSN")
    settings = get_context(ctx).settings
    try:
        with progress_bar(f"loading {dataset}") as update:
            result = load(dataset, to, table, output=output, as_of=as_of, home=settings.home,
                          store=settings.store or None, progress=update)
    except StagebusError:
        raise
    except Exception as exc:  # a driver error we did not expect: still one line, and no password
        raise WarehouseError(scrub(f"{type(exc).__name__}: {exc}", to)) from None
    if output_format == "json":
        print_json(_as_json(result))
    else:
        typer.echo(_summary(result))


def _summary(result: LoadResult) -> str:
    kept = result.count("already_loaded")
    newer = result.count("newer_loaded")
    return (f"loaded {result.rows_loaded} row(s) of {result.count('loaded')} partition(s) of {result.dataset} "
            f"into {result.table} at {result.target} as of log position {result.position}; "
            f"{kept} partition(s) already loaded, {newer} held by a newer run")


def _as_json(result: LoadResult) -> dict[str, object]:
    return {"dataset": result.dataset, "table": result.table, "target": result.target, "output": result.output,
            "position": result.position, "rows_loaded": result.rows_loaded,
            "partitions": [p._asdict() for p in result.partitions]}


def register(app: typer.Typer) -> None:
    app.command("load")(load_command)
