"""The chain, immutability and read-only opens: what protects the log from being rewritten."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stagebus.errors import ReadOnlyStore
from stagebus.store import EventStore, SqliteEventStore
from stagebus.store.keys import EVENTS_TABLE

from .backends import Backend
from .samples import keyed, unkeyed, unkeyed_batch


def test_verify_passes_on_an_intact_chain(store: EventStore) -> None:
    # Given a log built from several batches
    store.append(unkeyed_batch(3))
    store.append([keyed("a"), unkeyed()])

    # When the chain is walked
    report = store.verify()

    # Then every event checks out
    assert report.ok and report.checked == 5 and report.broken_at is None


def test_verify_passes_on_an_empty_log(store: EventStore) -> None:
    assert store.verify().ok


def test_verify_names_the_position_of_a_tampered_payload(backend: Backend) -> None:
    # Given a five-event log whose payload at position 3 was rewritten behind the store's back
    store = backend.open()
    store.append(unkeyed_batch(5))
    original = list(store.read())[2].payload
    backend.tamper(3, original.replace(b'"contract"', b'"forged__"'))

    # When the chain is walked
    report = store.verify()

    # Then the report names position 3, having checked the two before it
    assert not report.ok
    assert (report.broken_at, report.checked) == (3, 2)
    assert "hash" in report.reason


def test_readonly_handle_refuses_append(backend: Backend) -> None:
    # Given a log with an event, opened read-only
    backend.open().append([unkeyed()])
    readonly = backend.open(readonly=True)

    # When appending through the read-only handle, Then it is refused
    with pytest.raises(ReadOnlyStore):
        readonly.append([keyed("a")])
    assert backend.open().head() == 1


def test_readonly_handle_reads(backend: Backend) -> None:
    if backend.name == "memory":
        pytest.skip("a read-only memory log is a separate, empty log")
    # Given a log with a keyed event
    backend.open().append([keyed("a")])

    # When opened read-only, Then it reads, looks up and verifies like any handle
    readonly = backend.open(readonly=True)
    assert [r.key for r in readonly.read()] == ["run/a"]
    assert readonly.get("run/a") is not None and readonly.head() == 1
    assert readonly.verify().ok


# --- SQLite: the file itself refuses to be rewritten ------------------------------------------


@pytest.fixture
def sqlite_log(tmp_path: Path) -> sqlite3.Connection:
    path = tmp_path / "log.db"
    with SqliteEventStore(path) as store:
        store.append([keyed("a"), unkeyed()])
    return sqlite3.connect(path, isolation_level=None)


def test_sqlite_trigger_refuses_update(sqlite_log: sqlite3.Connection) -> None:
    # Given a raw connection to a log file, When it tries to rewrite a payload
    # Then the trigger aborts the statement
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        sqlite_log.execute(f"UPDATE {EVENTS_TABLE} SET payload = x'00' WHERE position = 1")


def test_sqlite_trigger_refuses_delete(sqlite_log: sqlite3.Connection) -> None:
    # Given a raw connection to a log file, When it tries to delete an event
    # Then the trigger aborts the statement, and the event is still there
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        sqlite_log.execute(f"DELETE FROM {EVENTS_TABLE} WHERE position = 1")
    assert sqlite_log.execute(f"SELECT COUNT(*) FROM {EVENTS_TABLE}").fetchone() == (2,)
