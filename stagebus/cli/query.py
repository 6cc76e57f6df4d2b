"""``stagebus query``: search the served view of the reference pipeline (read-only)."""

from __future__ import annotations

import json
from typing import Annotated

import msgspec
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stagebus.cli._context import FORMATS, AppContext, check_choice, get_context
from stagebus.projections import LedgerEntry
from stagebus.stages.query import Hit, LedgerLookup, search


def hits_table(hits: list[Hit], title: str) -> Table:
    table = Table(title=title)
    for column in ("score", "dataset", "partition", "row", "run", "snippet"):
        table.add_column(column, justify="right" if column in ("score", "row") else "left",
                         overflow="fold", max_width=70 if column == "snippet" else None)
    for hit in hits:
        # User text is not rich markup: a snippet's [match] would vanish as a tag.
        run = escape(hit.run_id) + (f" [yellow]{escape(f'(stale: run {hit.failed_run} failed)')}[/]"
                                    if hit.stale else "")
        table.add_row(f"{hit.score:.2f}", escape(hit.dataset), escape(hit.partition), str(hit.index), run,
                      escape(hit.snippet))
    return table


def ledger_lookup(app: AppContext) -> LedgerLookup:
    """Ledger rows read-only, the projections opened (and caught up in memory) on first use only."""
    opened: list[bool] = []

    def lookup(dataset: str, partition: str) -> LedgerEntry:
        projections = app.projections(readonly=True)
        if not opened:
            projections.catch_up()
            opened.append(True)
        return projections.partition(dataset, partition)

    return lookup


def query(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="Words to find; every word must match.")],
    dataset: Annotated[str | None, typer.Option("--dataset", help="Only this dataset.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many hits.")] = 10,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Full-text search over every served partition (read-only); a hit a newer run failed is marked stale."""
    check_choice("format", fmt, FORMATS)
    app = get_context(ctx)
    hits = search(app.settings.artifacts_root, text, dataset=dataset, limit=limit, ledger=ledger_lookup(app))
    if fmt == "json":
        typer.echo(json.dumps(msgspec.to_builtins(hits), ensure_ascii=False))
    else:
        Console().print(hits_table(hits, f"{len(hits)} hit(s) for {text!r}"))


def register(app: typer.Typer) -> None:
    app.command("query")(query)
