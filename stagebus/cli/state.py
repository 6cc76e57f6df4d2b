"""``stagebus state inspect``: the partition ledger, read-only."""

from __future__ import annotations

from typing import Annotated

import typer

from stagebus.cli._context import FORMATS, check_choice, get_context
from stagebus.cli._render import print_json, stdout, table
from stagebus.errors import InvalidInput
from stagebus.projections import STATUSES

state_app = typer.Typer(help="Look at projected state (read-only).", no_args_is_help=True)

STYLE = {"valid": "green", "invalid": "red", "pending": "yellow"}


@state_app.command("inspect")
def inspect(
    ctx: typer.Context,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Only this dataset.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="pending, valid or invalid.")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Only rows whose authoritative run is this.")] = None,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    as_of: Annotated[int | None, typer.Option("--as-of", metavar="POSITION",
                                              help="Show the ledger as it stood at this log position.")] = None,
) -> None:
    """Show the partition ledger. Opens the log and projections read-only; if the projections lag
    the log, the newest events are applied to an in-memory copy, never to the files."""
    if status is not None:
        check_choice("status", status, STATUSES)
    check_choice("format", output, FORMATS)
    projections = get_context(ctx).projections(readonly=True)
    projections.catch_up()
    if as_of is None:
        rows = projections.ledger(dataset=dataset, status=status, run_id=run_id)
    else:
        check_position(as_of, projections.checkpoint())
        rows = projections.ledger_as_of(as_of, dataset=dataset, status=status, run_id=run_id)
    if output == "json":
        print_json(rows)
        return
    head = projections.store.head()
    caption = f"{len(rows)} partition(s) · log head {head}"
    if as_of is not None:
        caption += f" · as of position {as_of}"
    if projections.applied_in_memory:
        caption += (f" · the local projections lag the log by {projections.applied_in_memory} event(s), "
                    "applied in memory for this view")
    # records and rejected share a column ("50/2"): the table must stay readable at 80 columns
    grid = table("dataset", "partition", "status", "run", "attempts", "rec/rej", "updated_at", "reason",
                 caption=caption)
    for row in rows:
        grid.add_row(row.dataset, row.partition, f"[{STYLE[row.status]}]{row.status}[/]", row.run_id or "",
                     str(row.attempts), _counts(row.records, row.rejected), row.updated_at or "",
                     row.reason or "")
    stdout().print(grid)


def _counts(records: int | None, rejected: int | None) -> str:
    if records is None and rejected is None:
        return ""
    return f"{'?' if records is None else records}/{rejected or 0}"


def check_position(position: int, head: int) -> None:
    """Refuse a position the log does not have (yet)."""
    if position < 0 or position > head:
        raise InvalidInput(f"--as-of {position} is outside the log (positions 0 to {head})")


def register(app: typer.Typer) -> None:
    app.add_typer(state_app, name="state")
