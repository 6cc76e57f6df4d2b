"""Pipeline lifecycle: name -> defined version and plan, status ``active | stopped | deleted``.

Defining a pipeline makes it active; started / stopped switch it; deleted is final (the log
accepts one deletion per name, and later events about the name change nothing). A pipeline
the log never mentions reads as active: a producer may open runs of a pipeline nobody defined.
"""

from __future__ import annotations

import sqlite3

import msgspec

from stagebus.events import (
    AnyEvent,
    Event,
    PipelineDefined,
    PipelineDeleted,
    PipelineStarted,
    PipelineStopped,
    PlannedStage,
)
from stagebus.projections.base import decode_plan, encode_plan
from stagebus.store import RecordedEvent
from stagebus.store.keys import PIPELINES_TABLE

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {PIPELINES_TABLE} (
    name       TEXT PRIMARY KEY,
    version    TEXT,
    plan       BLOB,
    status     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    position   INTEGER NOT NULL  -- of the event that set the status
) WITHOUT ROWID;
"""

_DEFINED = f"""
INSERT INTO {PIPELINES_TABLE} VALUES (?, ?, ?, 'active', '', ?, ?)
ON CONFLICT (name) DO UPDATE SET version = excluded.version, plan = excluded.plan, updated_at = excluded.updated_at
WHERE status != 'deleted'
"""
_STATUS = f"""
INSERT INTO {PIPELINES_TABLE} VALUES (?, NULL, NULL, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET status = excluded.status, reason = excluded.reason, updated_at = excluded.updated_at,
    position = excluded.position
WHERE status != 'deleted'
"""


class PipelineState(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str | None
    plan: tuple[PlannedStage, ...] | None
    status: str
    reason: str
    updated_at: str | None
    position: int | None = None  # of the event that set the status


class PipelineLifecycle:
    name = "pipelines"
    tables: tuple[str, ...] = (PIPELINES_TABLE,)
    schema = SCHEMA
    handles: tuple[type[Event], ...] = (PipelineDefined, PipelineStarted, PipelineStopped, PipelineDeleted)

    def apply(self, conn: sqlite3.Connection, record: RecordedEvent, event: AnyEvent) -> None:
        at = record.recorded_at
        match event:
            case PipelineDefined():
                conn.execute(_DEFINED, (event.pipeline, event.version, encode_plan(event.stages), at, record.position))
            case PipelineStarted():
                conn.execute(_STATUS, (event.pipeline, "active", "", at, record.position))
            case PipelineStopped():
                conn.execute(_STATUS, (event.pipeline, "stopped", event.reason, at, record.position))
            case PipelineDeleted():
                conn.execute(_STATUS, (event.pipeline, "deleted", "", at, record.position))
            case _:
                pass

    def flush(self, conn: sqlite3.Connection) -> None:
        """Nothing buffered: lifecycle events are rare."""


def read_pipelines(conn: sqlite3.Connection) -> list[PipelineState]:
    cursor = conn.execute(
        f"SELECT name, version, plan, status, reason, updated_at, position FROM {PIPELINES_TABLE} ORDER BY name"
    )
    return [_state(row) for row in cursor]


def read_pipeline(conn: sqlite3.Connection, name: str) -> PipelineState:
    row = conn.execute(
        f"SELECT name, version, plan, status, reason, updated_at, position FROM {PIPELINES_TABLE} WHERE name = ?",
        (name,),
    ).fetchone()
    if row is None:
        return PipelineState(name=name, version=None, plan=None, status="active", reason="", updated_at=None)
    return _state(row)


def _state(row: tuple) -> PipelineState:  # type: ignore[type-arg]
    return PipelineState(name=row[0], version=row[1], plan=None if row[2] is None else decode_plan(row[2]),
                         status=row[3], reason=row[4], updated_at=row[5], position=row[6])
