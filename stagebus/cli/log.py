"""``stagebus log verify`` and ``stagebus log tail``: the event log itself, read-only."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from stagebus.cli._context import FORMATS, check_choice, get_context
from stagebus.cli._render import print_json_line, stdout, table
from stagebus.errors import InvalidInput, StoreError
from stagebus.events import to_builtins
from stagebus.projections.anchors import checkpoint_anchors
from stagebus.store import RecordedEvent
from stagebus.store.anchors import check_anchor, head_anchor, parse_anchor

log_app = typer.Typer(help="Check and read the event log (read-only).", no_args_is_help=True)


@log_app.command("verify")
def verify(
    ctx: typer.Context,
    expect: Annotated[str | None, typer.Option(
        "--expect", metavar="POSITION:HASH",
        help="An anchor printed earlier by `stagebus log head`: the log must still hold it.")] = None,
) -> None:
    """Walk the hash chain, then hold the log to every anchor: the projections' checkpoints and
    ``--expect``. Exit 1 naming the first broken position or the anchor the log no longer holds."""
    anchors = [parse_anchor(expect)] if expect is not None else []
    app = get_context(ctx)
    store = app.store(readonly=True)
    report = store.verify()
    if not report.ok:
        raise StoreError(f"the log is broken at position {report.broken_at}: {report.reason} "
                         f"({report.checked} event(s) before it are intact)")
    if store.url != "memory://":
        anchors += checkpoint_anchors(app.settings.projections_path)
    for anchor in anchors:
        finding = check_anchor(store, anchor)
        if finding is not None:
            raise StoreError(finding)
    held = "".join(f", {'--expect' if a.source == '--expect' else 'checkpoint'} {a.position} held" for a in anchors)
    typer.echo(f"ok: {report.checked} event(s), hash chain intact{held}")


@log_app.command("head")
def head(
    ctx: typer.Context,
    output: Annotated[str, typer.Option("--format", help="text (POSITION:HASH) or json.")] = "text",
) -> None:
    """Print the log's head as POSITION:HASH, to keep somewhere else and check later with
    `stagebus log verify --expect`."""
    check_choice("format", output, ("text", "json"))
    anchor = head_anchor(get_context(ctx).store(readonly=True))
    if output == "json":
        print_json_line({"position": anchor.position, "hash": anchor.hash})
    else:
        typer.echo(str(anchor))


@log_app.command("tail")
def tail(
    ctx: typer.Context,
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many of the newest events.")] = 10,
    output: Annotated[str, typer.Option("--format", help="table or json (one event per line).")] = "table",
) -> None:
    """Show the newest events, oldest first."""
    if lines < 1:
        raise InvalidInput(f"-n must be at least 1, got {lines}")
    check_choice("format", output, FORMATS)
    store = get_context(ctx).store(readonly=True)
    records = list(store.read(after=max(store.head() - lines, 0)))
    if output == "json":
        for record in records:
            print_json_line(as_json(record))
        return
    grid = table("position", "recorded_at", "type", "key", "about")
    for record in records:
        grid.add_row(str(record.position), record.recorded_at, record.type, record.key or "", about(record))
    stdout().print(grid)


def as_json(record: RecordedEvent) -> dict[str, Any]:
    """The log's stamps first, then the event's own fields."""
    fields = to_builtins(record.event())
    fields.pop("type", None)
    return {"position": record.position, "type": record.type, "key": record.key,
            "recorded_at": record.recorded_at, **fields}


def about(record: RecordedEvent) -> str:
    fields = to_builtins(record.event())
    parts = [str(fields[name]) for name in ("pipeline", "run_id", "stage", "dataset", "partition") if name in fields]
    return " ".join(parts)


def register(app: typer.Typer) -> None:
    app.add_typer(log_app, name="log")
