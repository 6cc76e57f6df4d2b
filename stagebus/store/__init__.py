"""The event log: one protocol, several backends, chosen by URL."""

from __future__ import annotations

from pathlib import Path

from stagebus.errors import InvalidInput
from stagebus.store.base import Appended, EventStore, RecordedEvent, VerifyReport
from stagebus.store.memory import MemoryEventStore
from stagebus.store.sqlite import SqliteEventStore
from stagebus.store.urls import redact_url, require_host

__all__ = [
    "Appended",
    "EventStore",
    "MemoryEventStore",
    "RecordedEvent",
    "SqliteEventStore",
    "VerifyReport",
    "open_store",
]


def open_store(url: str, *, readonly: bool = False) -> EventStore:
    """Open the event log named by ``url``: ``sqlite:///PATH``, ``redis://…``, ``rediss://…``,
    ``unix://…`` or ``memory://``. Raises :class:`InvalidInput` for an unknown scheme and
    :class:`~stagebus.errors.StoreUnavailable` when the store cannot be reached."""
    if url.startswith("sqlite:///"):
        return SqliteEventStore(Path(url.removeprefix("sqlite:///")), readonly=readonly)
    if url.startswith(("redis://", "rediss://", "unix://")):
        require_host(url, "store")
        from stagebus.store.redis import RedisEventStore

        return RedisEventStore.from_url(url, readonly=readonly)
    if url == "memory://":
        return MemoryEventStore(readonly=readonly)
    raise InvalidInput(f"unknown store URL {redact_url(url)!r}: use sqlite:///PATH, redis://HOST:PORT/DB or rediss://…")
