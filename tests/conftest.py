"""Fixtures every test layer shares: real redis-server instances of our own, fakeredis, and a
real S3 HTTP API (moto_server, :mod:`support.s3`).

The real servers listen on a unix socket only (``--port 0``), so tests never touch a Redis on
127.0.0.1:6379. A missing ``redis-server`` skips the tests that need one locally and fails them
under CI (``CI=true``), where a skip would hide a broken setup.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import fakeredis
import pytest
import redis

from support.s3 import MotoServer, start_moto

REDIS_SERVER = shutil.which("redis-server")
SOCKET_PATH_MAX = 100  # unix socket paths are limited to ~107 bytes


def require_redis_server() -> str:
    """The redis-server binary, or a skip (locally) / failure (under CI) naming what is missing."""
    if REDIS_SERVER is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return REDIS_SERVER


@dataclass
class RedisInstance:
    """A redis-server process of our own, reachable at ``url`` (``unix://…``)."""

    url: str
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM): with AOF on, everything acknowledged is on disk."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """Crash it (SIGKILL), as a power cut or an OOM kill would."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


def start_redis(tmpdir: Path, appendonly: bool = False) -> RedisInstance:
    """Start a redis-server keeping its data in ``tmpdir``; calling it again with the same
    ``tmpdir`` after ``stop()``/``kill()`` restarts it on the same data (AOF, for crash tests)."""
    binary = require_redis_server()
    tmpdir.mkdir(parents=True, exist_ok=True)
    socket = tmpdir / "redis.sock"
    if len(str(socket)) > SOCKET_PATH_MAX:
        # Derived from tmpdir, so that a restart on the same data listens at the same URL.
        digest = hashlib.sha1(str(tmpdir.resolve()).encode()).hexdigest()[:16]
        socket = Path(tempfile.gettempdir()) / f"sb-redis-{digest}.sock"
    args = [
        binary, "--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700",
        "--dir", str(tmpdir), "--save", "", "--daemonize", "no",
        "--logfile", str(tmpdir / "redis.log"),
        "--appendonly", "yes" if appendonly else "no",
        # Every acknowledged write survives a SIGKILL: what the crash tests rely on.
        "--appendfsync", "always",
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    instance = RedisInstance(f"unix://{socket}", process, tmpdir)
    _wait_until_ready(instance)
    return instance


def _wait_until_ready(instance: RedisInstance, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if instance.process.poll() is not None:
            log = instance.directory / "redis.log"
            tail = log.read_text()[-500:] if log.exists() else ""
            raise RuntimeError(f"redis-server exited with {instance.process.returncode}: {tail}")
        try:
            with redis.Redis.from_url(instance.url, socket_connect_timeout=0.2) as client:
                if client.ping():
                    return
        except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
            pass
        if time.monotonic() > deadline:
            instance.kill()
            raise RuntimeError(f"redis-server at {instance.url} did not answer within {timeout_s}s")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL (``unix://…``) of a redis-server shared by the session; no persistence."""
    instance = start_redis(tmp_path_factory.mktemp("redis"))
    yield instance.url
    instance.stop()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The shared server's URL with its database flushed, so a test sees only its own data."""
    with redis.Redis.from_url(redis_server) as client:
        client.flushall()
    return redis_server


@pytest.fixture
def redis_instances(tmp_path: Path) -> Iterator[Callable[..., RedisInstance]]:
    """A factory of extra servers this test may stop or kill: ``start(appendonly=False, name="")``.
    Starting the same ``name`` again after ``kill()`` restarts that server on its data."""
    started: list[RedisInstance] = []

    def start(appendonly: bool = False, name: str = "") -> RedisInstance:
        instance = start_redis(tmp_path / (name or f"redis{len(started)}"), appendonly=appendonly)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.kill()


@pytest.fixture
def fake_redis_server() -> fakeredis.FakeServer:
    """An in-process fake server; clients made on it share its data."""
    return fakeredis.FakeServer()


@pytest.fixture
def fake_redis(fake_redis_server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    """A fakeredis client (Lua through ``lupa``) to hand to ``RedisEventStore(client)``."""
    return fakeredis.FakeRedis(server=fake_redis_server)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A real S3 HTTP API (``moto_server``) on a free loopback port, shared by the session; tests
    keep apart by bucket (:func:`s3_bucket`). Skips locally when moto is missing, fails under CI."""
    server = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> str:
    """A fresh, empty bucket of this test's own."""
    return moto_server.new_bucket()
