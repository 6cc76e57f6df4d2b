"""API keys: key id -> owner, SHA-256 of the secret, rate limit, created / revoked.

Only hashes are ever in the log or here: the secret is shown once, when the key is created.
A revocation is final; a key id the log never created reads as absent.
"""

from __future__ import annotations

import sqlite3

import msgspec

from stagebus.events import AnyEvent, Event
from stagebus.events.types import ApiKeyCreated, ApiKeyRevoked
from stagebus.store import RecordedEvent
from stagebus.store.keys import API_KEYS_TABLE

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {API_KEYS_TABLE} (
    key_id     TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    rate       TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
) WITHOUT ROWID;
"""

_COLUMNS = "key_id, owner, key_hash, rate, prefix, created_at, revoked_at"


class ApiKeyState(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    owner: str
    key_hash: str
    rate: str
    prefix: str
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class ApiKeys:
    name = "api_keys"
    tables: tuple[str, ...] = (API_KEYS_TABLE,)
    schema = SCHEMA
    handles: tuple[type[Event], ...] = (ApiKeyCreated, ApiKeyRevoked)

    def apply(self, conn: sqlite3.Connection, record: RecordedEvent, event: AnyEvent) -> None:
        match event:
            case ApiKeyCreated():
                # A hash already held by another key (never, for random keys) keeps the first.
                conn.execute(f"INSERT OR IGNORE INTO {API_KEYS_TABLE} VALUES (?, ?, ?, ?, ?, ?, NULL)",
                             (event.key_id, event.owner, event.key_hash, event.rate, event.prefix,
                              record.recorded_at))
            case ApiKeyRevoked():
                conn.execute(f"UPDATE {API_KEYS_TABLE} SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                             (record.recorded_at, event.key_id))
            case _:
                pass

    def flush(self, conn: sqlite3.Connection) -> None:
        """Nothing buffered: key events are rare."""


def read_key_by_hash(conn: sqlite3.Connection, key_hash: str) -> ApiKeyState | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM {API_KEYS_TABLE} WHERE key_hash = ?", (key_hash,)).fetchone()
    return None if row is None else _state(row)


def read_key(conn: sqlite3.Connection, key_id: str) -> ApiKeyState | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM {API_KEYS_TABLE} WHERE key_id = ?", (key_id,)).fetchone()
    return None if row is None else _state(row)


def read_keys(conn: sqlite3.Connection, owner: str | None = None) -> list[ApiKeyState]:
    where, args = ("WHERE owner = ?", (owner,)) if owner is not None else ("", ())
    rows = conn.execute(f"SELECT {_COLUMNS} FROM {API_KEYS_TABLE} {where} ORDER BY created_at, key_id", args)
    return [_state(row) for row in rows]


def _state(row: tuple) -> ApiKeyState:  # type: ignore[type-arg]
    return ApiKeyState(key_id=row[0], owner=row[1], key_hash=row[2], rate=row[3], prefix=row[4],
                       created_at=row[5], revoked_at=row[6])
