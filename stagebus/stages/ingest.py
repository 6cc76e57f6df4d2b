"""ingest: keep the raw partition as published, verified, and parse it into records.

The producer's ``PartitionIngested`` event carries the file's sha256 and size. ingest copies the
file into its own ``raw`` output while hashing it, so what is verified is exactly what is kept
and parsed (a file changed after publishing cannot slip through between a check and a read).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel, ConfigDict, Field

from stagebus.errors import PermanentStageError
from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import stage
from stagebus.stages.parsing import MAX_LINE_BYTES, dialect_of, parse
from stagebus.stages.records import IndexedRecord, RawMetadata, RawPayload

_BLOCK = 1 << 20
READ_BUFFER = 1 << 20  # few read calls: each gives up the GIL (see stagebus.artifacts.local.WRITE_BUFFER)


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # A longer source line (or .json array element) is a reject with its number, skipped without being held.
    max_line_bytes: int = Field(default=MAX_LINE_BYTES, ge=1)


@stage("ingest", outputs={"raw": RawPayload, "metadata": RawMetadata, "records": IndexedRecord},
       config=IngestConfig)
def ingest(ctx: StageContext) -> None:
    config: IngestConfig = ctx.config  # type: ignore[assignment]
    event = ctx.ingested
    dialect = dialect_of(event.uri, event.metadata)
    raw = ctx.output_path("raw")
    digest, size = copy_hashing(ctx.source_path(), raw)
    if digest != event.content_hash:
        raise PermanentStageError(
            f"partition {event.ref}: {event.uri} has sha256 {digest}, the producer published "
            f"{event.content_hash}: the file changed after it was published"
        )
    if size != event.size:
        raise PermanentStageError(f"partition {event.ref}: {event.uri} has {size} bytes, published {event.size}")

    parsed = rejected = 0
    with raw.open("rb", buffering=READ_BUFFER) as fh:
        for row in parse(fh, dialect, config.max_line_bytes):
            ctx.count_in()
            if row.record is None:
                ctx.reject(row.raw, row.error or "malformed row", index=row.index)
                rejected += 1
            else:
                ctx.emit("records", {"index": row.index, "record": row.record})
                parsed += 1
    ctx.emit("metadata", RawMetadata(
        dataset=event.dataset, partition=event.partition, uri=event.uri, content_hash=digest, size=size,
        format=dialect.format, metadata=dict(sorted(event.metadata.items())),
        schema_version=event.schema_version, records=parsed, rejected=rejected,
    ))


def open_regular(source: Path) -> BinaryIO:
    """Open a published source for reading; refuse anything but a regular file without blocking
    (opening a FIFO would wait for a writer and hold a worker thread forever)."""
    fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PermanentStageError(f"source {source} is not a regular file")
    return os.fdopen(fd, "rb")


def copy_hashing(source: Path, target: Path) -> tuple[str, int]:
    """Copy ``source`` to ``target``; return the sha256 and size of the bytes copied."""
    digest, size = hashlib.sha256(), 0
    with open_regular(source) as src, target.open("wb") as dst:
        while block := src.read(_BLOCK):
            digest.update(block)
            dst.write(block)
            size += len(block)
    return digest.hexdigest(), size

