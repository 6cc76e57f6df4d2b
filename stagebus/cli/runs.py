"""``stagebus runs``: operations on runs. ``abandon`` gives up a run its producer will never finish."""

from __future__ import annotations

from typing import Annotated

import typer

from stagebus.actors.abandon import abandon_run
from stagebus.cli._context import get_context

runs_app = typer.Typer(help="Operations on runs.", no_args_is_help=True)


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
