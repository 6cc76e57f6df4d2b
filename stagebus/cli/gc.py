"""``stagebus gc``: delete artifacts no manifest references, and leftovers of serving (never what is served)."""

from __future__ import annotations

from typing import Annotated

import typer

from stagebus.artifacts.location import open_artifacts
from stagebus.cli._context import get_context
from stagebus.stages.serve import collect_served


def gc(
    ctx: typer.Context,
    min_age: Annotated[float, typer.Option("--min-age", min=0, help="Keep anything younger (seconds).")] = 3600.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be deleted.")] = False,
) -> None:
    """Collect objects no manifest references and serving leftovers; never the log, manifests or served view."""
    app = get_context(ctx)
    app.require_log()
    projections = app.projections(readonly=dry_run)
    projections.catch_up()
    referenced = {artifact.path for info in projections.runs() for manifest in projections.manifests(info.run_id)
                  for artifact in manifest.artifacts}
    root = app.settings.artifacts_root
    objects = open_artifacts(app.settings).gc(referenced, min_age_s=min_age, dry_run=dry_run)
    leftovers = collect_served(root, min_age_s=min_age, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    typer.echo(f"{verb} {objects.files} unreferenced object(s) ({objects.bytes} bytes) and {leftovers[0]} "
               f"serving leftover(s) ({leftovers[1]} bytes); {len(referenced)} object(s) referenced")


def register(app: typer.Typer) -> None:
    app.command("gc")(gc)
