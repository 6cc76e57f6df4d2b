"""The Projection protocol and the small helpers every projection shares.

A projection is a pure function of the ordered events: ``apply`` changes only the projection's
own tables, reads no clock (timestamps come from ``record.recorded_at``), draws no random
numbers and does no other I/O. The runner calls it inside the transaction that also moves the
projection's checkpoint, so a crash never leaves a half-applied event behind.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol

import msgspec

from stagebus.events import AnyEvent, Event, PlannedStage
from stagebus.store import RecordedEvent

# Canonical JSON for values stored in projection tables: equal values give equal bytes.
JSON = msgspec.json.Encoder(order="deterministic")
_PLAN = msgspec.json.Decoder(tuple[PlannedStage, ...])
_STRINGS = msgspec.json.Decoder(tuple[str, ...])
_STRING_MAP = msgspec.json.Decoder(dict[str, str])


class Projection(Protocol):
    """A named view of the log kept in SQLite tables it alone writes."""

    name: str
    tables: tuple[str, ...]  # every table it owns: dumped by the digest, dropped by a rebuild
    schema: str  # DDL creating those tables (and their indexes)
    handles: tuple[type[Event], ...]  # the event types apply() acts on; the runner skips the rest

    def apply(self, conn: sqlite3.Connection, record: RecordedEvent, event: AnyEvent) -> None:
        """Apply one event. Pure and deterministic; called in log order, exactly once per event.
        May buffer writes to its own tables that no later ``apply`` reads back (see ``flush``)."""
        ...

    def flush(self, conn: sqlite3.Connection) -> None:
        """Write what ``apply`` buffered (typically with one ``executemany``). The runner calls it
        before every commit; after a failed batch it replaces the instance, so a buffer never
        outlives a rolled-back transaction."""
        ...


def encode_plan(plan: tuple[PlannedStage, ...]) -> bytes:
    return JSON.encode(plan)


def decode_plan(data: bytes) -> tuple[PlannedStage, ...]:
    return _PLAN.decode(data)


def decode_strings(data: bytes | None) -> tuple[str, ...] | None:
    return None if data is None else _STRINGS.decode(data)


def decode_string_map(data: bytes) -> dict[str, str]:
    return _STRING_MAP.decode(data)


def to_micros(seconds: float) -> int:
    # Durations are summed as integers: float sums would depend on how events were batched.
    return round(seconds * 1_000_000)


def rows_as_dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]
