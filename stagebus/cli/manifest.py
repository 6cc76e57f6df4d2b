"""``stagebus manifest show``: a run's manifests of record, read-only."""

from __future__ import annotations

from typing import Annotated

import typer

from stagebus.cli._context import FORMATS, check_choice, get_context
from stagebus.cli._render import print_json, stdout, table
from stagebus.errors import InvalidInput

manifest_app = typer.Typer(help="Look at stage manifests (read-only).", no_args_is_help=True)


@manifest_app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run whose manifests to show.")],
    stage: Annotated[str | None, typer.Option("--stage", help="Only this stage.")] = None,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Show a run's manifests in the order they were written, with per-stage totals."""
    check_choice("format", output, FORMATS)
    projections = get_context(ctx).projections(readonly=True)
    projections.catch_up()
    run = projections.run(run_id)
    if run is None:
        raise InvalidInput(f"no run {run_id!r} in the log")
    if stage is not None:
        check_choice("stage", stage, tuple(s.name for s in run.plan))
    manifests = projections.manifests(run_id, stage)
    if output == "json":
        print_json(manifests)
        return
    rollups = [r for r in projections.rollups(run_id) if stage is None or r.stage == stage]
    totals = "; ".join(f"{r.stage}: {r.complete} complete, {r.reused} reused, {r.records_out} records out"
                       for r in rollups)
    grid = table("stage", "partition", "status", "attempt", "in", "out", "rejected", "duration_s", "output",
                 "reused_from", caption=f"{len(manifests)} manifest(s) · {totals or 'none yet'}")
    for m in manifests:
        grid.add_row(m.stage, m.partition, m.status, str(m.attempt), str(m.metrics.records_in),
                     str(m.metrics.records_out), str(m.metrics.records_rejected), f"{m.metrics.duration_s:.3f}",
                     m.output_hash[:12], m.reused_from or "")
    stdout().print(grid)


def register(app: typer.Typer) -> None:
    app.add_typer(manifest_app, name="manifest")
