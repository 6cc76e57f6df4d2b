"""``stagebus query``: search the served snapshot of the reference pipeline's index."""

from __future__ import annotations

import json
from typing import Annotated

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from stagebus.cli._context import FORMATS, check_choice, get_context
from stagebus.stages.query import Hit, search


def hits_table(hits: list[Hit], title: str) -> Table:
    table = Table(title=title)
    for column in ("score", "dataset", "partition", "row", "snippet"):
        table.add_column(column, justify="right" if column in ("score", "row") else "left",
                         overflow="fold", max_width=70 if column == "snippet" else None)
    for hit in hits:
        table.add_row(f"{hit.score:.2f}", hit.dataset, hit.partition, str(hit.index), hit.snippet)
    return table


def query(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="Words to find; every word must match.")],
    dataset: Annotated[str | None, typer.Option("--dataset", help="Only this dataset.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 10,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Full-text search over the currently served index (read-only)."""
    check_choice("format", fmt, FORMATS)
    app = get_context(ctx)
    hits = search(app.settings.artifacts_root, text, dataset=dataset, limit=limit)
    if fmt == "json":
        typer.echo(json.dumps(msgspec.to_builtins(hits), ensure_ascii=False))
    else:
        Console().print(hits_table(hits, f"{len(hits)} hit(s) for {text!r}"))


def register(app: typer.Typer) -> None:
    app.command("query")(query)
