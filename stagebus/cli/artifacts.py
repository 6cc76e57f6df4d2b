"""``stagebus artifacts verify``: every object and view the manifests of record reference, checked."""

from __future__ import annotations

from typing import Annotated

import typer

from stagebus.artifacts.audit import audit
from stagebus.artifacts.location import open_artifacts
from stagebus.cli._context import FORMATS, check_choice, get_context
from stagebus.cli._render import print_json, stdout, table
from stagebus.errors import InvalidInput
from stagebus.events import Manifest, ManifestWritten, manifest_key
from stagebus.store import EventStore

artifacts_app = typer.Typer(help="Check the artifact store against the log.", no_args_is_help=True)


@artifacts_app.command("verify")
def verify(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run's manifests.")] = None,
    repair: Annotated[bool, typer.Option("--repair", help="Rebuild missing or wrong manifest.json views.")] = False,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> int:
    """Check every object a manifest references (exists, size, sha256) and every
    runs/.../manifest.json view (exists, matches its ManifestWritten event). Read-only unless
    --repair. Exit 1 when anything is left damaged; damaged objects name the stage to run again."""
    check_choice("format", output, FORMATS)
    app = get_context(ctx)
    store = app.store(readonly=True)
    projections = app.projections(readonly=True)
    projections.catch_up()
    if run_id is not None and projections.run(run_id) is None:
        raise InvalidInput(f"no run {run_id!r} in the log")
    run_ids = [run_id] if run_id is not None else [info.run_id for info in projections.runs()]
    manifests = (_of_record(store, m) for r in run_ids for m in projections.manifests(r))
    artifacts = open_artifacts(app.settings, create=False)
    report = audit(artifacts, manifests, repair=repair)
    if output == "json":
        print_json({"ok": report.ok, "manifests": report.manifests, "objects": report.objects,
                    "views": report.views, "findings": report.findings})
    else:
        left = sum(not f.repaired for f in report.findings)
        grid = table("kind", "run", "stage", "partition", "path", "problem", "repaired", "what to do",
                     caption=f"{report.manifests} manifest(s), {report.objects} object(s), {report.views} view(s) "
                             f"checked; {len(report.findings)} problem(s), {left} left")
        for f in report.findings:
            grid.add_row(f.kind, f.run_id, f.stage, f.partition, f.path, f.problem, "yes" if f.repaired else "no",
                         f.advice)
        stdout().print(grid)
    return 0 if report.ok else 1


def _of_record(store: EventStore, manifest: Manifest) -> Manifest:
    """The manifest as its ``ManifestWritten`` event holds it (the projection is a copy of it)."""
    record = store.get(manifest_key(manifest.run_id, manifest.stage, manifest.partition))
    event = record.event() if record is not None else None
    return event.manifest if isinstance(event, ManifestWritten) else manifest


def register(app: typer.Typer) -> None:
    app.add_typer(artifacts_app, name="artifacts")
