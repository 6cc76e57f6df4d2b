"""``stagebus replay``: rebuild projections from the log, or prove they match it."""

from __future__ import annotations

from typing import Annotated

import typer

from stagebus.cli._context import get_context
from stagebus.cli._render import progress_bar
from stagebus.errors import InvalidInput, StoreError


def replay(
    ctx: typer.Context,
    projection: Annotated[str | None, typer.Option("--projection", help="Rebuild only this projection.")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Rebuild a scratch copy and compare digests.")] = False,
) -> None:
    """Rebuild the projections from position 0 into a new generation and swap it in atomically."""
    if verify and projection is not None:
        raise InvalidInput("--verify checks every projection; do not combine it with --projection")
    app = get_context(ctx)
    app.require_log()
    projections = app.projections()
    if verify:
        with progress_bar("verifying") as progress:
            checked = projections.verify(progress)
        typer.echo(f"live:    {checked.live_digest}")
        typer.echo(f"rebuilt: {checked.rebuilt_digest}")
        if not checked.ok:
            raise StoreError(f"the projections differ from a replay of the log up to position {checked.checkpoint}; "
                             "run `stagebus replay` to rebuild them")
        typer.echo(f"ok: the projections match a replay of the log up to position {checked.checkpoint}")
        return
    with progress_bar("replaying") as progress:
        result = projections.replay(projection=projection, progress=progress)
    what = f"projection {projection!r}" if projection else "all projections"
    typer.echo(f"replayed {what}: {result.events} event(s) into generation {result.generation}, "
               f"position {result.checkpoint}, digest {result.digest}")


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
