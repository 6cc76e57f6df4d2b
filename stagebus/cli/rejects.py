"""``stagebus rejects``: the records stages rejected, read from the ``rejects`` artifacts the
manifests of record name, and from what tasks a quality policy failed kept in their work
directory (each verified against its recorded sha256 as it is read), redacted where the pipeline
marks fields sensitive. Read-only: opens the log, projections and artifacts without changing a file."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import typer
from rich.text import Text

from stagebus.artifacts.location import open_artifacts
from stagebus.cli._context import FORMATS, check_choice, get_context
from stagebus.cli._render import print_json, stdout, table
from stagebus.errors import InvalidInput
from stagebus.pipeline.rejects import HIDDEN, matches, read_rejects, sensitive_fields, sources
from stagebus.projections import Projections
from stagebus.projections.runs import RunInfo

DEFAULT_LIMIT = 100
_COMPACT = msgspec.json.Encoder()


def rejects(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Argument(
        metavar="RUN", help="The run whose rejects to show (default: the latest run).", show_default=False)] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Only partitions of this dataset.")] = None,
    partition: Annotated[str | None, typer.Option("--partition", help="Only partitions of this name.")] = None,
    stage: Annotated[str | None, typer.Option("--stage", help="Only rejects of this stage.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Show at most this many rejects; 0 shows all.")]
    = DEFAULT_LIMIT,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """List rejected records: run, dataset, partition, stage, row number, error and the record,
    with the values of fields the pipeline marks sensitive shown as ***. Without RUN: the latest
    run (that holds the dataset and partition, if given), named on stderr."""
    check_choice("format", output, FORMATS)
    app = get_context(ctx)
    projections = app.projections(readonly=True)
    projections.catch_up()
    run = _chosen_run(projections, run_id, dataset, partition)
    if stage is not None:
        check_choice("stage", stage, tuple(s.name for s in run.plan))
    if dataset is not None or partition is not None:
        refs = [r for r in run.partitions if matches(r, dataset, partition)]
        if not refs:
            raise InvalidInput(f"run {run.run_id} has no partition {_filter_text(dataset, partition)}")
    sensitive = sensitive_fields(app.settings.pipelines, run)
    artifacts = open_artifacts(app.settings, create=False)
    chosen = sources(projections, artifacts, run.run_id, stage, dataset, partition)
    total = sum(source.artifact.records for source in chosen)
    shown = list(read_rejects(chosen, limit or total, sensitive))
    more = total - len(shown)
    if output == "json":
        print_json({"run_id": run.run_id, "total": total, "shown": len(shown), "sensitive": sorted(sensitive),
                    "rejects": shown})
        return
    caption = f"{total} reject(s) in run {run.run_id}"
    if more:
        caption += f" · {more} more not shown (--limit {limit}; --limit 0 shows all)"
    if sensitive:
        caption += f" · sensitive fields shown as {HIDDEN}: {', '.join(sorted(sensitive))}"
    grid = table("dataset", "partition", "stage", "task", "row", "error", "record", caption=caption)
    for row in shown:
        # Text, not markup: a record holding "[b]" is data to show, not styling.
        grid.add_row(Text(row["dataset"] or ""), Text(row["partition"] or ""), row["stage"], row["task"],
                     "" if row["row"] is None else str(row["row"]), Text(row["error"]), Text(_shown(row["record"])))
    stdout().print(grid, highlight=False)


def _chosen_run(projections: Projections, run_id: str | None, dataset: str | None,
                partition: str | None) -> RunInfo:
    if run_id is not None:
        run = projections.run(run_id)
        if run is None:
            raise InvalidInput(f"no run {run_id!r} in the log")
        return run
    runs = [r for r in projections.runs() if any(matches(ref, dataset, partition) for ref in r.partitions)]
    if not runs:
        raise InvalidInput("no run in the log" + (f" has a partition {_filter_text(dataset, partition)}"
                                                   if dataset is not None or partition is not None else ""))
    holding = f" holding {_filter_text(dataset, partition)}" if dataset is not None or partition is not None else ""
    typer.echo(f"rejects of run {runs[-1].run_id}, the latest{holding}; name a RUN for another", err=True)
    return runs[-1]


def _filter_text(dataset: str | None, partition: str | None) -> str:
    return f"{dataset or '*'}/{partition or '*'}"


def _shown(record: Any) -> str:
    return record if isinstance(record, str) else _COMPACT.encode(record).decode()


def register(app: typer.Typer) -> None:
    app.command("rejects")(rejects)
