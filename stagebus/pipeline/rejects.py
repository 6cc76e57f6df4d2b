"""Rejected records, as the manifests of record and failed tasks keep them: read from the
``rejects`` artifacts the manifests name, and from what tasks a quality policy failed kept in
their work directory, each verified against its recorded sha256 as it is read, redacted where
the pipeline marks fields sensitive. Read-only. Shared by ``stagebus rejects`` and the web inspector."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from stagebus.artifacts.integrity import VerifiedReader
from stagebus.artifacts.store import ArtifactStore
from stagebus.errors import InvalidInput
from stagebus.events import RUN_SCOPE, Artifact
from stagebus.pipeline.context import failed_rejects
from stagebus.pipeline.contract import REJECTS
from stagebus.pipeline.registry import load_pipelines
from stagebus.projections import Projections
from stagebus.projections.runs import RunInfo

HIDDEN = "***"
_LINE = msgspec.json.Decoder(dict[str, Any])


def matches(ref: str, dataset: str | None, partition: str | None) -> bool:
    """Whether a partition ref (``dataset/partition``) passes the filters; a run-level task's
    rejects (partition ``*``) belong to no one partition, so any filter leaves them out."""
    if dataset is None and partition is None:
        return True
    if ref == RUN_SCOPE:
        return False
    ds, _, name = ref.partition("/")
    return (dataset is None or ds == dataset) and (partition is None or name == partition)


def sensitive_fields(pipelines: str, run: RunInfo) -> frozenset[str]:
    """Every field a stage of the run's pipeline marks sensitive. A pipeline this process cannot
    load is refused rather than guessed at: showing its rejects might show what it hides."""
    try:
        pipeline = load_pipelines(pipelines).get(run.pipeline)
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


def sources(projections: Projections, artifacts: ArtifactStore, run_id: str, stage: str | None,
             dataset: str | None, partition: str | None) -> list[Source]:
    """The run's rejects artifacts in manifest order, then those kept by tasks that failed."""
    sources = [
        Source(run_id, m.stage, m.partition, m.status, artifacts.path(a), a,
               f"stage {m.stage!r}, partition {m.partition!r} of run {m.reused_from or run_id}")
        for m in projections.manifests(run_id, stage) if matches(m.partition, dataset, partition)
        for a in m.artifacts if a.name == REJECTS and a.records
    ]
    state = projections.run(run_id)
    for (task_stage, ref), task in sorted(state.tasks.items()) if state is not None else ():
        if task.status != "failed" or (stage is not None and task_stage != stage) or \
                not matches(ref, dataset, partition):
            continue
        kept = failed_rejects(artifacts, run_id, task_stage, ref)
        if kept is not None and kept.records:
            sources.append(Source(run_id, task_stage, ref, "failed", artifacts.root / kept.path, kept,
                                  f"the failed attempt of stage {task_stage!r}, partition {ref!r}"))
    return sources


def read_rejects(chosen: list[Source], limit: int, sensitive: frozenset[str]) -> Iterator[dict[str, Any]]:
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
