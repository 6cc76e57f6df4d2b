"""Manifests of record: ``(run_id, stage, partition) -> Manifest``, with per ``(run_id, stage)`` rollups.

The full manifest is stored as canonical msgspec JSON (so reads give back exactly what the
``ManifestWritten`` event carried); the columns beside it exist to index, filter and roll up.
Rollups are sums over a run's rows, computed on read (one indexed range scan), so they cannot
drift from the rows and cost catch-up nothing; durations are kept in integer microseconds.
"""

from __future__ import annotations

import hashlib
import sqlite3

import msgspec

from stagebus.events import AnyEvent, Event, Manifest, ManifestWritten
from stagebus.projections.base import JSON, to_micros
from stagebus.store import RecordedEvent
from stagebus.store.keys import MANIFESTS_TABLE

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {MANIFESTS_TABLE} (
    position         INTEGER PRIMARY KEY,  -- of the ManifestWritten event: rows append in log order
    run_id           TEXT NOT NULL,
    stage            TEXT NOT NULL,
    partition        TEXT NOT NULL,
    status           TEXT NOT NULL,
    input_hash       TEXT NOT NULL,
    output_hash      TEXT NOT NULL,
    config_hash      TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    worker           TEXT NOT NULL,
    started_at       TEXT NOT NULL,
    ended_at         TEXT NOT NULL,
    reused_from      TEXT,
    records_in       INTEGER NOT NULL,
    records_out      INTEGER NOT NULL,
    records_rejected INTEGER NOT NULL,
    duration_us      INTEGER NOT NULL,
    recorded_at      TEXT NOT NULL,
    body             BLOB NOT NULL,
    reuse_key        INTEGER NOT NULL,  -- see reuse_key(): a small index instead of four long columns
    UNIQUE (run_id, stage, partition)
);
CREATE INDEX IF NOT EXISTS {MANIFESTS_TABLE}_reusable ON {MANIFESTS_TABLE} (reuse_key);
"""

_INSERT = f"INSERT OR IGNORE INTO {MANIFESTS_TABLE} VALUES ({', '.join('?' * 20)})"
_MANIFEST = msgspec.json.Decoder(Manifest)


def reuse_key(stage: str, partition: str, input_hash: str, config_hash: str) -> int:
    """64 bits of sha256 over what makes work reusable; lookups still compare every column."""
    digest = hashlib.sha256(f"{stage}\0{partition}\0{input_hash}\0{config_hash}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class StageRollup(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    stage: str
    manifests: int
    complete: int
    reused: int
    records_in: int
    records_out: int
    records_rejected: int
    duration_s: float
    last_at: str


class ManifestIndex:
    name = "manifests"
    tables: tuple[str, ...] = (MANIFESTS_TABLE,)
    schema = SCHEMA
    handles: tuple[type[Event], ...] = (ManifestWritten,)

    def __init__(self) -> None:
        self._rows: list[tuple[object, ...]] = []  # written in one executemany by flush()

    def apply(self, conn: sqlite3.Connection, record: RecordedEvent, event: AnyEvent) -> None:
        if not isinstance(event, ManifestWritten):
            return
        m, metrics = event.manifest, event.manifest.metrics
        self._rows.append((
            record.position, event.run_id, event.stage, event.partition, m.status, m.input_hash, m.output_hash,
            m.config_hash, m.attempt, m.worker, m.started_at, m.ended_at, m.reused_from,
            metrics.records_in, metrics.records_out, metrics.records_rejected, to_micros(metrics.duration_s),
            record.recorded_at, JSON.encode(m), reuse_key(event.stage, event.partition, m.input_hash, m.config_hash),
        ))

    def flush(self, conn: sqlite3.Connection) -> None:
        if self._rows:
            conn.executemany(_INSERT, self._rows)
            self._rows.clear()


# --- reads ----------------------------------------------------------------------------------


def read_manifests(conn: sqlite3.Connection, run_id: str, stage: str | None = None) -> list[Manifest]:
    """A run's manifests in log order (the order they were written)."""
    if stage is None:
        cursor = conn.execute(f"SELECT body FROM {MANIFESTS_TABLE} WHERE run_id = ? ORDER BY position", (run_id,))
    else:
        cursor = conn.execute(
            f"SELECT body FROM {MANIFESTS_TABLE} WHERE run_id = ? AND stage = ? ORDER BY position", (run_id, stage)
        )
    return [_MANIFEST.decode(body) for (body,) in cursor]


def read_manifest(conn: sqlite3.Connection, run_id: str, stage: str, partition: str) -> Manifest | None:
    row = conn.execute(
        f"SELECT body FROM {MANIFESTS_TABLE} WHERE run_id = ? AND stage = ? AND partition = ?",
        (run_id, stage, partition),
    ).fetchone()
    return None if row is None else _MANIFEST.decode(row[0])


def find_reusable(conn: sqlite3.Connection, stage: str, partition: str, input_hash: str,
                  config_hash: str) -> Manifest | None:
    """The earliest ``complete`` manifest of the same stage, partition, input and config: its
    outputs can stand in for a rerun. ``reused`` manifests are never a source, so a reuse
    always points at the run that did the work."""
    row = conn.execute(
        f"SELECT body FROM {MANIFESTS_TABLE} WHERE reuse_key = ? AND stage = ? AND partition = ? "
        "AND input_hash = ? AND config_hash = ? AND status = 'complete' ORDER BY position LIMIT 1",
        (reuse_key(stage, partition, input_hash, config_hash), stage, partition, input_hash, config_hash),
    ).fetchone()
    return None if row is None else _MANIFEST.decode(row[0])


def read_rollups(conn: sqlite3.Connection, run_id: str) -> list[StageRollup]:
    """Per-stage totals of a run's manifests, summed on read so they always match the rows."""
    cursor = conn.execute(
        "SELECT run_id, stage, count(*), sum(status = 'complete'), sum(status = 'reused'), sum(records_in), "
        "sum(records_out), sum(records_rejected), sum(duration_us), max(recorded_at) "
        f"FROM {MANIFESTS_TABLE} WHERE run_id = ? GROUP BY stage ORDER BY stage",
        (run_id,),
    )
    return [
        StageRollup(run_id=r[0], stage=r[1], manifests=r[2], complete=r[3], reused=r[4], records_in=r[5],
                    records_out=r[6], records_rejected=r[7], duration_s=r[8] / 1_000_000, last_at=r[9])
        for r in cursor
    ]
