"""``stagebus artifacts verify``: every object and view the manifests of record reference, checked;
``stagebus artifacts views``: the browsable ``runs/…/manifest.json`` views, written from the log."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Annotated

import typer

from stagebus.artifacts.audit import audit
from stagebus.artifacts.location import open_artifacts
from stagebus.cli._context import FORMATS, AppContext, check_choice, get_context
from stagebus.cli._render import print_json, stdout, table
from stagebus.errors import InvalidInput
from stagebus.events import Manifest, ManifestWritten, manifest_key
from stagebus.store import EventStore

artifacts_app = typer.Typer(help="Check the artifact store against the log; write its browsable views.",
                            no_args_is_help=True)


@artifacts_app.command("verify")
def verify(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run's manifests.")] = None,
    repair: Annotated[bool, typer.Option("--repair", help="Rewrite wrong manifest.json views, write missing ones.")
                      ] = False,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> int:
    """Check every object a manifest references (exists, size, sha256) and every
    runs/.../manifest.json view there is (matches its ManifestWritten event; views are written on
    demand, so a missing one is no damage). Read-only unless --repair. Exit 1 when anything is
    left damaged; damaged objects name the stage to run again."""
    check_choice("format", output, FORMATS)
    app = get_context(ctx)
    manifests = _manifests_of_record(app, run_id)
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


@artifacts_app.command("views")
def views(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run's manifests.")] = None,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """Write the browsable runs/<run>/<stage>/<partition>/manifest.json views from the log: one
    per manifest, each its ManifestWritten event's manifest. Stage tasks do not write them (a
    directory and a file per task, for a copy of what the log and `stagebus manifest show`
    already hold); this writes the missing and wrong ones. Idempotent; changes nothing stored."""
    check_choice("format", output, FORMATS)
    app = get_context(ctx)
    manifests = _manifests_of_record(app, run_id)
    artifacts = open_artifacts(app.settings, create=True)
    counted = _Counted(manifests)
    written = artifacts.materialize_many(counted)
    where = (artifacts.root / "runs").as_posix()
    if output == "json":
        print_json({"manifests": counted.n, "written": written, "path": where})
    else:
        stdout().print(f"{written} manifest.json view(s) written under {where} "
                       f"({counted.n - written} already current)", markup=False, highlight=False)


class _Counted:
    def __init__(self, items: Iterator[Manifest]) -> None:
        self._items, self.n = items, 0

    def __iter__(self) -> Iterator[Manifest]:
        for item in self._items:
            self.n += 1
            yield item


def _manifests_of_record(app: AppContext, run_id: str | None) -> Iterator[Manifest]:
    """Every manifest of ``run_id`` (default: of every run), as its ``ManifestWritten`` event
    holds it (the projection is a copy of it), read from the log 500 keys a lookup."""
    store = app.store(readonly=True)
    projections = app.projections(readonly=True)
    projections.catch_up()
    if run_id is not None and projections.run(run_id) is None:
        raise InvalidInput(f"no run {run_id!r} in the log")
    run_ids = [run_id] if run_id is not None else [info.run_id for info in projections.runs()]
    projected = (m for r in run_ids for m in projections.manifests(r))
    while chunk := list(islice(projected, 500)):
        yield from _of_record(store, chunk)


def _of_record(store: EventStore, manifests: list[Manifest]) -> list[Manifest]:
    keys = [manifest_key(m.run_id, m.stage, m.partition) for m in manifests]
    found = store.get_many(keys)
    out = []
    for key, manifest in zip(keys, manifests, strict=True):
        record = found.get(key)
        event = record.event() if record is not None else None
        out.append(event.manifest if isinstance(event, ManifestWritten) else manifest)
    return out


def register(app: typer.Typer) -> None:
    app.add_typer(artifacts_app, name="artifacts")
