"""API pipelines and their batches, as the HTTP service reads them; scoped by owner.

A batch is a stagebus run (``run_id = "api-" + batch_id``) of one partition through the two
batch stages, ``process`` then ``deliver``: its status follows the run's stage events —
``pending`` when submitted, ``processing`` once a stage started, ``completed`` when ``deliver``
wrote its manifest, ``failed`` when a stage failed for good. Timestamps are the log's
``recorded_at``, so a replay rebuilds the same rows. Lifecycle (active / stopped / deleted) is
the ``pipelines`` projection's, under the stagebus pipeline name ``"api-" + pipeline_id``.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

import msgspec

from stagebus.events import AnyEvent, Event, ManifestWritten, StageFailed, StageStarted
from stagebus.events.types import ApiBatchSubmitted, ApiPipelineVersioned
from stagebus.projections.base import JSON
from stagebus.store import RecordedEvent
from stagebus.store.keys import API_BATCHES_TABLE, API_PIPELINES_TABLE

API_PREFIX = "api-"  # of the stagebus pipeline name of an API pipeline and of a batch's run id
PROCESS_STAGE = "process"
DELIVER_STAGE = "deliver"
BATCH_STATUSES = ("pending", "processing", "completed", "failed")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {API_PIPELINES_TABLE} (
    pipeline_id TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    config      BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    position    INTEGER NOT NULL  -- of the creation: the paging order
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS api_pipelines_by_owner ON {API_PIPELINES_TABLE} (owner, position);
CREATE TABLE IF NOT EXISTS {API_BATCHES_TABLE} (
    batch_id        TEXT PRIMARY KEY,
    pipeline_id     TEXT NOT NULL,
    owner           TEXT NOT NULL,
    run_id          TEXT NOT NULL UNIQUE,
    version         INTEGER NOT NULL,
    status          TEXT NOT NULL,
    record_count    INTEGER NOT NULL,
    processed_count INTEGER NOT NULL,
    failed_count    INTEGER NOT NULL,
    submitted_at    TEXT NOT NULL,
    started_at      TEXT,
    completed_at    TEXT,
    latency_us      INTEGER,
    error           TEXT NOT NULL,
    rejects         BLOB,  -- the process stage's rejects artifact, JSON
    position        INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS api_batches_by_pipeline ON {API_BATCHES_TABLE} (pipeline_id, position);
"""

_STARTED = f"""UPDATE {API_BATCHES_TABLE} SET status = 'processing', started_at = ?
WHERE run_id = ? AND status = 'pending'"""
_PROCESSED = f"""UPDATE {API_BATCHES_TABLE} SET processed_count = ?, failed_count = ?, rejects = ?
WHERE run_id = ?"""
_COMPLETED = f"""UPDATE {API_BATCHES_TABLE} SET status = 'completed', completed_at = ?, latency_us = ?,
    started_at = COALESCE(started_at, ?)
WHERE run_id = ? AND status IN ('pending', 'processing')"""
_FAILED = f"""UPDATE {API_BATCHES_TABLE} SET status = 'failed', completed_at = ?, latency_us = ?, error = ?
WHERE run_id = ? AND status IN ('pending', 'processing')"""

_PIPELINE_COLUMNS = "pipeline_id, owner, name, version, config, created_at, updated_at, position"
_BATCH_COLUMNS = ("batch_id, pipeline_id, owner, run_id, version, status, record_count, processed_count, "
                  "failed_count, submitted_at, started_at, completed_at, latency_us, error, rejects, position")
_CONFIG = msgspec.json.Decoder(dict[str, Any])


class ApiPipelineRow(msgspec.Struct, frozen=True, kw_only=True):
    pipeline_id: str
    owner: str
    name: str
    version: int
    config: dict[str, Any]
    created_at: str
    updated_at: str
    position: int


class ApiBatchRow(msgspec.Struct, frozen=True, kw_only=True):
    batch_id: str
    pipeline_id: str
    owner: str
    run_id: str
    version: int
    status: str
    record_count: int
    processed_count: int
    failed_count: int
    submitted_at: str
    started_at: str | None
    completed_at: str | None
    latency_us: int | None
    error: str
    rejects: dict[str, Any] | None
    position: int


class ApiResources:
    name = "api_resources"
    tables: tuple[str, ...] = (API_PIPELINES_TABLE, API_BATCHES_TABLE)
    schema = SCHEMA
    handles: tuple[type[Event], ...] = (ApiPipelineVersioned, ApiBatchSubmitted, StageStarted, ManifestWritten,
                                        StageFailed)

    def apply(self, conn: sqlite3.Connection, record: RecordedEvent, event: AnyEvent) -> None:
        at = record.recorded_at
        match event:
            case ApiPipelineVersioned():
                conn.execute(
                    f"INSERT INTO {API_PIPELINES_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (pipeline_id) DO UPDATE SET version = excluded.version, config = excluded.config, "
                    "name = excluded.name, updated_at = excluded.updated_at WHERE excluded.version > version",
                    (event.pipeline_id, event.owner, event.name, event.version, JSON.encode(event.config), at, at,
                     record.position))
            case ApiBatchSubmitted():
                conn.execute(
                    f"INSERT OR IGNORE INTO {API_BATCHES_TABLE} VALUES "
                    "(?, ?, ?, ?, ?, 'pending', ?, 0, 0, ?, NULL, NULL, NULL, '', NULL, ?)",
                    (event.batch_id, event.pipeline_id, event.owner, event.run_id, event.version,
                     event.record_count, at, record.position))
            case StageStarted() if event.run_id.startswith(API_PREFIX):
                conn.execute(_STARTED, (at, event.run_id))
            case ManifestWritten() if event.run_id.startswith(API_PREFIX):
                if event.stage == PROCESS_STAGE:
                    rejects = next((a for a in event.manifest.artifacts if a.name == "rejects"), None)
                    conn.execute(_PROCESSED, (event.manifest.metrics.records_out,
                                              event.manifest.metrics.records_rejected,
                                              None if rejects is None else JSON.encode(rejects), event.run_id))
                elif event.stage == DELIVER_STAGE:
                    conn.execute(_COMPLETED, (at, _latency(conn, event.run_id, at), at, event.run_id))
            case StageFailed() if event.final and event.run_id.startswith(API_PREFIX):
                conn.execute(_FAILED, (at, _latency(conn, event.run_id, at),
                                       f"{event.stage}: {event.error_type}: {event.message}", event.run_id))
            case _:
                pass

    def flush(self, conn: sqlite3.Connection) -> None:
        """Nothing buffered: every write above is read back by later events of the same batch."""


def _latency(conn: sqlite3.Connection, run_id: str, at: str) -> int | None:
    row = conn.execute(f"SELECT submitted_at FROM {API_BATCHES_TABLE} WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    delta = datetime.fromisoformat(at) - datetime.fromisoformat(row[0])
    return delta // datetime.resolution  # whole microseconds: no float in a projection


# --- reads ------------------------------------------------------------------------------------


def read_pipeline(conn: sqlite3.Connection, pipeline_id: str) -> ApiPipelineRow | None:
    row = conn.execute(f"SELECT {_PIPELINE_COLUMNS} FROM {API_PIPELINES_TABLE} WHERE pipeline_id = ?",
                       (pipeline_id,)).fetchone()
    return None if row is None else _pipeline(row)


def read_pipelines(conn: sqlite3.Connection, owner: str, *, after: int = 0, limit: int = 50) -> list[ApiPipelineRow]:
    rows = conn.execute(f"SELECT {_PIPELINE_COLUMNS} FROM {API_PIPELINES_TABLE} WHERE owner = ? AND position > ? "
                        "ORDER BY position LIMIT ?", (owner, after, limit))
    return [_pipeline(row) for row in rows]


def read_batch(conn: sqlite3.Connection, batch_id: str) -> ApiBatchRow | None:
    row = conn.execute(f"SELECT {_BATCH_COLUMNS} FROM {API_BATCHES_TABLE} WHERE batch_id = ?",
                       (batch_id,)).fetchone()
    return None if row is None else _batch(row)


def read_batches(conn: sqlite3.Connection, pipeline_id: str, *, status: str | None = None, after: int = 0,
                 limit: int = 50) -> list[ApiBatchRow]:
    where, args = ("AND status = ?", (status,)) if status is not None else ("", ())
    rows = conn.execute(f"SELECT {_BATCH_COLUMNS} FROM {API_BATCHES_TABLE} WHERE pipeline_id = ? AND position > ? "
                        f"{where} ORDER BY position LIMIT ?", (pipeline_id, after, *args, limit))
    return [_batch(row) for row in rows]


def count_active_batches(conn: sqlite3.Connection, pipeline_id: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {API_BATCHES_TABLE} WHERE pipeline_id = ? "
                       "AND status IN ('pending', 'processing')", (pipeline_id,)).fetchone()
    return int(row[0])


def read_open_runs(conn: sqlite3.Connection) -> list[str]:
    """Run ids of every batch still pending or processing, oldest first."""
    rows = conn.execute(f"SELECT run_id FROM {API_BATCHES_TABLE} WHERE status IN ('pending', 'processing') "
                        "ORDER BY position")
    return [row[0] for row in rows]


class PipelineTotals(msgspec.Struct, frozen=True, kw_only=True):
    batches: int
    records_processed: int
    records_failed: int
    latencies_us: list[int]  # of completed batches, ascending
    last_run_at: str | None


def read_totals(conn: sqlite3.Connection, pipeline_id: str) -> PipelineTotals:
    batches, processed, failed, last = conn.execute(
        f"SELECT count(*), COALESCE(sum(processed_count), 0), COALESCE(sum(failed_count), 0), "
        f"max(COALESCE(completed_at, started_at)) FROM {API_BATCHES_TABLE} WHERE pipeline_id = ?",
        (pipeline_id,)).fetchone()
    latencies = [row[0] for row in conn.execute(
        f"SELECT latency_us FROM {API_BATCHES_TABLE} WHERE pipeline_id = ? AND status = 'completed' "
        "AND latency_us IS NOT NULL ORDER BY latency_us", (pipeline_id,))]
    return PipelineTotals(batches=batches, records_processed=processed, records_failed=failed,
                          latencies_us=latencies, last_run_at=last)


def _pipeline(row: tuple) -> ApiPipelineRow:  # type: ignore[type-arg]
    return ApiPipelineRow(pipeline_id=row[0], owner=row[1], name=row[2], version=row[3],
                          config=_CONFIG.decode(row[4]), created_at=row[5], updated_at=row[6], position=row[7])


def _batch(row: tuple) -> ApiBatchRow:  # type: ignore[type-arg]
    return ApiBatchRow(batch_id=row[0], pipeline_id=row[1], owner=row[2], run_id=row[3], version=row[4],
                       status=row[5], record_count=row[6], processed_count=row[7], failed_count=row[8],
                       submitted_at=row[9], started_at=row[10], completed_at=row[11], latency_us=row[12],
                       error=row[13], rejects=None if row[14] is None else _CONFIG.decode(row[14]),
                       position=row[15])
