"""``stagebus rejects``: the records stages rejected, read from the ``rejects`` artifacts the
manifests of record name, and from what tasks a quality policy failed kept in their work
directory (each verified against its recorded sha256 as it is read), redacted where the pipeline
marks fields sensitive. Read-only: opens the log, projections and artifacts without changing a file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import msgspec
import typer
from rich.text import Text

from stagebus.artifacts.integrity import VerifiedReader
from stagebus.artifacts.local import ArtifactStore
from stagebus.cli._context import FORMATS, AppContext, check_choice, get_context
from stagebus.cli._render import print_json, stdout, table
from stagebus.errors import InvalidInput
from stagebus.events import RUN_SCOPE, Artifact
from stagebus.pipeline.context import failed_rejects
from stagebus.pipeline.contract import REJECTS
from stagebus.pipeline.registry import load_pipelines
from stagebus.projections import Projections
from stagebus.projections.runs import RunInfo

DEFAULT_LIMIT = 100
HIDDEN = "***"
_LINE = msgspec.json.Decoder(dict[str, Any])
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
        refs = [r for r in run.partitions if _matches(r, dataset, partition)]
        if not refs:
            raise InvalidInput(f"run {run.run_id} has no partition {_filter_text(dataset, partition)}")
    sensitive = _sensitive_fields(app, run)
    artifacts = ArtifactStore(app.settings.artifacts_root, create=False)
    chosen = _sources(projections, artifacts, run.run_id, stage, dataset, partition)
    total = sum(source.artifact.records for source in chosen)
    shown = list(_read(chosen, limit or total, sensitive))
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
    runs = [r for r in projections.runs() if any(_matches(ref, dataset, partition) for ref in r.partitions)]
    if not runs:
        raise InvalidInput("no run in the log" + (f" has a partition {_filter_text(dataset, partition)}"
                                                   if dataset is not None or partition is not None else ""))
    holding = f" holding {_filter_text(dataset, partition)}" if dataset is not None or partition is not None else ""
    typer.echo(f"rejects of run {runs[-1].run_id}, the latest{holding}; name a RUN for another", err=True)
    return runs[-1]


def _filter_text(dataset: str | None, partition: str | None) -> str:
    return f"{dataset or '*'}/{partition or '*'}"


def _matches(ref: str, dataset: str | None, partition: str | None) -> bool:
    """Whether a partition ref (``dataset/partition``) passes the filters; a run-level task's
    rejects (partition ``*``) belong to no one partition, so any filter leaves them out."""
    if dataset is None and partition is None:
        return True
    if ref == RUN_SCOPE:
        return False
    ds, _, name = ref.partition("/")
    return (dataset is None or ds == dataset) and (partition is None or name == partition)


def _sensitive_fields(app: AppContext, run: RunInfo) -> frozenset[str]:
    """Every field a stage of the run's pipeline marks sensitive. A pipeline this process cannot
    load is refused rather than guessed at: showing its rejects might show what it hides."""
    try:
        pipeline = load_pipelines(app.settings.pipelines).get(run.pipeline)
    except InvalidInput as exc:
        raise InvalidInput(f"run {run.run_id} belongs to pipeline {run.pipeline!r}, whose stages say which fields "
                           f"are sensitive: set STAGEBUS_PIPELINES as for `stagebus run` ({exc})") from None
    return frozenset().union(*(d.contract.sensitive_fields() for d in pipeline.stages))


class Source(NamedTuple):
    """One task's rejects: the artifact its manifest names, or what its failed attempt kept."""

    run_id: str
    stage: str
    partition: str
    status: str  # of the task: complete, reused, or failed (a quality policy failed it)
    path: Path
    artifact: Artifact
    origin: str


def _sources(projections: Projections, artifacts: ArtifactStore, run_id: str, stage: str | None,
             dataset: str | None, partition: str | None) -> list[Source]:
    """The run's rejects artifacts in manifest order, then those kept by tasks that failed."""
    sources = [
        Source(run_id, m.stage, m.partition, m.status, artifacts.path(a), a,
               f"stage {m.stage!r}, partition {m.partition!r} of run {m.reused_from or run_id}")
        for m in projections.manifests(run_id, stage) if _matches(m.partition, dataset, partition)
        for a in m.artifacts if a.name == REJECTS and a.records
    ]
    state = projections.run(run_id)
    for (task_stage, ref), task in sorted(state.tasks.items()) if state is not None else ():
        if task.status != "failed" or (stage is not None and task_stage != stage) or \
                not _matches(ref, dataset, partition):
            continue
        kept = failed_rejects(artifacts, run_id, task_stage, ref)
        if kept is not None and kept.records:
            sources.append(Source(run_id, task_stage, ref, "failed", artifacts.root / kept.path, kept,
                                  f"the failed attempt of stage {task_stage!r}, partition {ref!r}"))
    return sources


def _read(chosen: list[Source], limit: int, sensitive: frozenset[str]) -> Iterator[dict[str, Any]]:
    """Up to ``limit`` rejects; every artifact read is verified to its end before any row of it is shown."""
    left = limit
    for source in chosen:
        if left <= 0:
            return
        dataset, _, name = source.partition.partition("/")
        with VerifiedReader(source.path, source.artifact, origin=source.origin) as reader:
            rows: list[dict[str, Any]] = []
            for line in reader.stream:
                if len(rows) < left:
                    rows.append(_LINE.decode(line))
            reader.finish()  # a tampered object is an error, never shown
        for row in rows:
            yield {"run_id": source.run_id, "dataset": dataset if source.partition != RUN_SCOPE else None,
                   "partition": name if source.partition != RUN_SCOPE else None, "stage": source.stage,
                   "task": source.status, "row": row.get("index"), "error": row.get("error", ""),
                   "record": redact(row.get("record"), sensitive)}
        left -= len(rows)


def redact(record: Any, sensitive: frozenset[str]) -> Any:
    """A rejected record with every sensitive field's value (at any depth) replaced by ``***``.

    A record that is raw text (a line or element ingest could not parse) cannot be redacted field
    by field, since where a field's value sits in a broken line is unknown: when the pipeline marks
    any field sensitive, the text is hidden whole and only its length is shown."""
    if not sensitive:
        return record
    if isinstance(record, str):
        return f"{HIDDEN} (raw text of {len(record)} characters hidden: the pipeline marks fields sensitive)"
    return _redact_fields(record, sensitive)


def _redact_fields(value: Any, sensitive: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: HIDDEN if k in sensitive else _redact_fields(v, sensitive) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_fields(v, sensitive) for v in value]
    return value


def _shown(record: Any) -> str:
    return record if isinstance(record, str) else _COMPACT.encode(record).decode()


def register(app: typer.Typer) -> None:
    app.command("rejects")(rejects)
