"""The backends the contract suite runs against, each behind the same small test harness.

A :class:`Backend` opens handles onto one log, tampers with it behind the store's back, and
stages an outage its own way (a held write lock, a dropped connection, a killed server).
"""

from __future__ import annotations

import abc
import contextlib
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis as redis_py

from stagebus.store import EventStore, MemoryEventStore, SqliteEventStore
from stagebus.store.keys import EVENTS_TABLE, RedisKeys
from stagebus.store.redis import RedisEventStore


class Backend(abc.ABC):
    name: str
    racers = "threads"  # how concurrent appenders run: "threads" or "processes"
    stream_sizes = (20_000, 100_000)  # log lengths the bounded-memory read compares

    @abc.abstractmethod
    def open(self, *, readonly: bool = False) -> EventStore:
        """A new handle onto the same log (a second connection where the backend has them)."""

    @abc.abstractmethod
    def tamper(self, position: int, payload: bytes) -> None:
        """Overwrite the stored payload at ``position`` without going through the store."""

    @contextlib.contextmanager
    def outage(self, heal_after_s: float | None) -> Iterator[EventStore]:
        """A store on a backend that stops answering now; it answers again after
        ``heal_after_s`` (``None``: never, within the test)."""
        pytest.skip(f"{self.name} has no transient failures")
        yield self.open()

    def spec(self) -> tuple[str, str, str]:
        """What a racing process needs to open this log: (kind, location, namespace)."""
        raise NotImplementedError(f"{self.name} races in threads")

    def close(self) -> None:  # noqa: B027 - most backends hold nothing
        pass


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self) -> None:
        self.store = MemoryEventStore()

    def open(self, *, readonly: bool = False) -> EventStore:
        # One process, one list: every handle is the same store.
        return MemoryEventStore(readonly=True) if readonly else self.store

    def tamper(self, position: int, payload: bytes) -> None:
        self.store.tamper(position, payload)


class SqliteBackend(Backend):
    name = "sqlite"
    racers = "processes"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened: list[SqliteEventStore] = []
        SqliteEventStore(path).close()  # create the schema before anyone races for it

    def open(self, *, readonly: bool = False, busy_timeout_s: float = 10.0) -> EventStore:
        store = SqliteEventStore(self.path, readonly=readonly, busy_timeout_s=busy_timeout_s)
        self.opened.append(store)
        return store

    def tamper(self, position: int, payload: bytes) -> None:
        raw = sqlite3.connect(self.path, isolation_level=None)
        raw.execute(f"DROP TRIGGER {EVENTS_TABLE}_no_update")
        raw.execute(f"UPDATE {EVENTS_TABLE} SET payload = ? WHERE position = ?", (payload, position))
        raw.close()

    @contextlib.contextmanager
    def outage(self, heal_after_s: float | None) -> Iterator[EventStore]:
        store = self.open(busy_timeout_s=0.05)
        holder = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")  # another process's long write transaction
        healer = _after(heal_after_s, lambda: holder.execute("ROLLBACK"))
        try:
            yield store
        finally:
            healer.cancel()
            holder.close()

    def spec(self) -> tuple[str, str, str]:
        return ("sqlite", str(self.path), "")

    def close(self) -> None:
        for store in self.opened:
            store.close()


def tamper_stream(client: Any, keys: RedisKeys, position: int, payload: bytes) -> None:
    """Rewrite the whole stream with one entry's payload changed: what an operator with
    redis-cli could do, since Redis cannot forbid it the way SQLite triggers do."""
    entries = client.xrange(keys.stream)
    client.delete(keys.stream)
    for entry_id, fields in entries:
        if int(entry_id.split(b"-")[0]) == position:
            fields = {**fields, b"p": payload}
        client.xadd(keys.stream, fields, id=entry_id)


class FakeRedisBackend(Backend):
    name = "fakeredis"
    # Its Lua runs in-process, ~100x slower than a real server: a smaller log shows the same bound.
    stream_sizes = (4_000, 20_000)

    def __init__(self, server: fakeredis.FakeServer) -> None:
        self.server = server
        self.namespace = f"test-{uuid.uuid4().hex[:8]}"

    def open(self, *, readonly: bool = False, attempts: int = 8) -> EventStore:
        return RedisEventStore(fakeredis.FakeRedis(server=self.server), namespace=self.namespace,
                               readonly=readonly, attempts=attempts)

    def tamper(self, position: int, payload: bytes) -> None:
        tamper_stream(fakeredis.FakeRedis(server=self.server), RedisKeys(self.namespace), position, payload)

    @contextlib.contextmanager
    def outage(self, heal_after_s: float | None) -> Iterator[EventStore]:
        store = self.open(attempts=8 if heal_after_s else 3)
        store.head()  # connected before the outage, as a long-running worker would be
        self.server.connected = False
        healer = _after(heal_after_s, lambda: setattr(self.server, "connected", True))
        try:
            yield store
        finally:
            healer.cancel()
            self.server.connected = True


class RedisBackend(Backend):
    name = "redis"
    racers = "processes"

    def __init__(self, url: str, start_server: Callable[..., Any]) -> None:
        self.url = url
        self.start_server = start_server
        self.namespace = f"test-{uuid.uuid4().hex[:8]}"
        self.opened: list[RedisEventStore] = []

    def open(self, *, readonly: bool = False) -> EventStore:
        store = RedisEventStore.from_url(self.url, readonly=readonly, namespace=self.namespace)
        self.opened.append(store)
        return store

    def tamper(self, position: int, payload: bytes) -> None:
        with redis_py.Redis.from_url(self.url) as client:
            tamper_stream(client, RedisKeys(self.namespace), position, payload)

    @contextlib.contextmanager
    def outage(self, heal_after_s: float | None) -> Iterator[EventStore]:
        # A server of its own, with AOF so that a restart brings the log back.
        server = self.start_server(appendonly=True, name="outage")
        store = RedisEventStore.from_url(server.url, namespace=self.namespace,
                                         attempts=8 if heal_after_s else 3)
        self.opened.append(store)
        store.head()
        server.kill()
        healer = _after(heal_after_s, lambda: self.start_server(appendonly=True, name="outage"))
        try:
            yield store
        finally:
            healer.cancel()
            if heal_after_s is not None:
                healer.join()  # the fixture kills what it started, once it has started

    def spec(self) -> tuple[str, str, str]:
        return ("redis", self.url, self.namespace)

    def close(self) -> None:
        for store in self.opened:
            store.close()


def _after(delay_s: float | None, action: Any) -> threading.Timer:
    timer = threading.Timer(delay_s if delay_s is not None else 3600.0, action)
    timer.daemon = True
    if delay_s is not None:
        timer.start()
    return timer
