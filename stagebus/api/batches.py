"""How an API batch runs: a stagebus run of one partition through ``process`` then ``deliver``.

The HTTP service writes the batch's records to a file (NDJSON, one record a line) and appends,
in one atomic write, ``ApiBatchSubmitted`` with the run's ``RunOpened``, ``PartitionIngested``
(its metadata carries the pipeline version's processors and destination, so a running batch
keeps the version it started with) and ``RunSealed``. The stage runner then processes it like
any other run, so ``stagebus runs``, ``why``, ``manifest show`` and ``state inspect`` show it.

Every API pipeline is the stagebus pipeline ``"api-" + pipeline_id`` (so ``PipelineStopped``
holds its batches); all of them share the two stages below, built over a
:class:`~stagebus.api.processors.ProcessorRegistry` by :class:`BatchPipelines`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict

from stagebus.api.processors import ProcessorRegistry, RecordRejected, load_processors
from stagebus.api.served import serve_batch
from stagebus.api.settings import ApiSettings
from stagebus.artifacts.names import encode_name
from stagebus.errors import PermanentStageError
from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import RetryPolicy, StageDefinition, stage
from stagebus.pipeline.definition import Pipeline, PipelineRegistry
from stagebus.projections.api_resources import API_PREFIX, DELIVER_STAGE, PROCESS_STAGE
from stagebus.settings import Settings

DATASET_PREFIX = "api-"  # dataset of a batch's partition: "api-" + pipeline_id; partition: batch_id
CONFIG_META = "api_config"  # PartitionIngested.metadata key holding {processors, destination} as JSON
OWNER_META = "api_owner"

_JSON = msgspec.json.Encoder(order="deterministic")
_CONFIG = msgspec.json.Decoder(dict[str, Any])
_RECORD = msgspec.json.Decoder()


class BatchRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    index: int  # 0-based position of the record in the submitted batch
    record: Any


def pipeline_name(pipeline_id: str) -> str:
    return API_PREFIX + pipeline_id


def run_id_of(batch_id: str) -> str:
    return API_PREFIX + batch_id


def encode_records(records: list[Any]) -> bytes:
    return b"".join(_JSON.encode(r) + b"\n" for r in records)


def encode_config(config: dict[str, Any]) -> str:
    return _JSON.encode(config).decode()


def read_batch_file(path: Path, content_hash: str) -> Iterator[tuple[int, Any]]:
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != content_hash:
        raise PermanentStageError(f"batch file {path} changed after it was submitted (sha256 differs)")
    for index, line in enumerate(data.splitlines()):
        yield index, _RECORD.decode(line)


class BatchPipelines(PipelineRegistry):
    """The pipelines of ``base`` plus every ``api-*`` pipeline, all made of the batch stages."""

    def __init__(self, base: PipelineRegistry, processors: ProcessorRegistry, export_root: Path) -> None:
        super().__init__(list(base))
        self.processors = processors
        self.export_root = export_root
        self._stages = batch_stages(processors, export_root)
        self._made: dict[str, Pipeline] = {}

    def get(self, name: str) -> Pipeline:
        if not name.startswith(API_PREFIX):
            return super().get(name)
        made = self._made.get(name)
        if made is None:
            made = self._made[name] = Pipeline(name, self._stages, version="1")
        return made

    def __iter__(self):  # type: ignore[no-untyped-def]
        """The base pipelines and one pipeline of the batch stages, so runners declare their actors."""
        return iter([*super().__iter__(), self.get(API_PREFIX + "*")])


def with_batch_pipelines(base: PipelineRegistry, settings: Settings) -> BatchPipelines:
    """The fleet's hook (:data:`stagebus.pipeline.registry.FAMILY_SPECS`): ``base`` plus the
    ``api-*`` pipelines, with the processors ``STAGEBUS_PROCESSORS`` loads in this process."""
    return BatchPipelines(base, load_processors(ApiSettings().processors), settings.home / "exports")


def batch_stages(processors: ProcessorRegistry, export_root: Path) -> tuple[StageDefinition, ...]:
    # Data errors are the records' (rejected one by one); a retry helps only a crashed worker.
    retry = RetryPolicy(max_retries=2, min_backoff_ms=50, max_backoff_ms=1000)

    @stage(PROCESS_STAGE, outputs={"records": BatchRecord}, retry=retry, time_limit_s=300)
    def process(ctx: StageContext) -> None:
        """Every record through every processor in order; a refused record is a reject."""
        event = ctx.ingested
        config = _CONFIG.decode(event.metadata.get(CONFIG_META, "{}"))
        steps = []
        for spec in config.get("processors", []):
            definition = processors.get(spec["name"])
            if definition is None:
                raise PermanentStageError(f"processor {spec['name']!r} is not loaded in this process "
                                          "(set STAGEBUS_PROCESSORS)")
            steps.append((spec["name"], definition.compile(spec.get("config", {}))))
        for index, record in read_batch_file(ctx.source_path(), event.content_hash):
            ctx.count_in()
            if not isinstance(record, dict):
                ctx.reject({"processor": None, "record": record}, "the record is not a JSON object", index=index)
                continue
            out: Any = record
            for name, step in steps:
                try:
                    out = step(dict(out))
                except RecordRejected as exc:
                    ctx.reject({"processor": name, "record": record}, str(exc), index=index)
                    break
                except Exception as exc:  # a user processor's bug is this record's error, not the batch's
                    ctx.reject({"processor": name, "record": record}, f"{type(exc).__name__}: {exc}", index=index)
                    break
                if not isinstance(out, dict):
                    ctx.reject({"processor": name, "record": record}, "the processor returned no JSON object",
                               index=index)
                    break
            else:
                ctx.emit("records", BatchRecord(index=index, record=out))

    @stage(DELIVER_STAGE, after=[PROCESS_STAGE], outputs={"records": BatchRecord}, retry=retry, reusable=False)
    def deliver(ctx: StageContext) -> None:
        """The processed records to the destination: kept as this stage's output (a ``dataset``
        destination is read from it), for ``export`` also written to
        ``<home>/exports/<owner>/<folder>/<batch>.jsonl``, for ``served`` switched into the served view."""
        event = ctx.ingested
        destination = _CONFIG.decode(event.metadata.get(CONFIG_META, "{}")).get("destination", {})
        lines, rows = [], []
        for row in ctx.read(PROCESS_STAGE, "records"):
            ctx.emit("records", BatchRecord.model_validate(row))
            lines.append(_JSON.encode(row["record"]) + b"\n")
            rows.append((row["index"], row["record"]))
        if destination.get("type") == "served":
            serve_batch(ctx.artifact_root, ctx.partition, rows, run_id=ctx.run_id, run_position=ctx.run_position)
        if destination.get("type") == "export":
            owner = encode_name(event.metadata.get(OWNER_META, "unknown"))
            folder = export_root / owner / encode_name(destination["folder"])
            _write_atomically(folder / f"{encode_name(event.partition)}.jsonl", b"".join(lines))

    return (process, deliver)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
