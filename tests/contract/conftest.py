"""The contract suite's fixtures: every test runs once per backend (see :mod:`.backends`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest

from stagebus.store import EventStore

from .backends import Backend, FakeRedisBackend, MemoryBackend, RedisBackend, SqliteBackend

BACKENDS = ["memory", "sqlite", "fakeredis", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    chosen: Backend
    if request.param == "memory":
        chosen = MemoryBackend()
    elif request.param == "sqlite":
        chosen = SqliteBackend(tmp_path / "log.db")
    elif request.param == "fakeredis":
        chosen = FakeRedisBackend(fakeredis.FakeServer())
    else:
        chosen = RedisBackend(request.getfixturevalue("redis_url"), request.getfixturevalue("redis_instances"))
    yield chosen
    chosen.close()


@pytest.fixture
def store(backend: Backend) -> EventStore:
    return backend.open()
