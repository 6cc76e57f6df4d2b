"""Opening the Redis log by URL: schemes, passwords kept out of messages, failing fast."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.connection import SSLConnection, UnixDomainSocketConnection

from stagebus.errors import InvalidInput, ReadOnlyStore, StoreError, StoreUnavailable
from stagebus.events import PipelineStarted
from stagebus.store import open_store
from stagebus.store.redis import RedisEventStore, client_for
from stagebus.store.urls import redact_url

FAIL_FAST_S = 5.0


def test_redis_url_names_host_port_db_and_password() -> None:
    kwargs = client_for("redis://user:s3cret@cache.internal:6380/3").connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.internal", 6380, 3)
    assert (kwargs["username"], kwargs["password"]) == ("user", "s3cret")


def test_rediss_url_connects_over_tls() -> None:
    pool = client_for("rediss://:s3cret@cache.internal:6390/1").connection_pool
    assert pool.connection_class is SSLConnection
    assert pool.connection_kwargs["db"] == 1


def test_unix_url_names_socket_db_and_password() -> None:
    pool = client_for("unix:///run/redis/redis.sock?db=2&password=s3cret").connection_pool
    assert pool.connection_class is UnixDomainSocketConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["path"], kwargs["db"], kwargs["password"]) == ("/run/redis/redis.sock", 2, "s3cret")


def test_malformed_redis_url_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="bad redis URL"):
        client_for("redis://:s3cret@host:notaport/0")


@pytest.mark.parametrize("url", [
    "redis://user:s3cret@cache.internal:6380/3",
    "rediss://:s3cret@cache.internal:6390/1",
    "unix:///run/redis/redis.sock?db=2&password=s3cret",
])
def test_redacted_url_keeps_everything_but_the_password(url: str) -> None:
    shown = redact_url(url)
    assert "s3cret" not in shown
    assert shown.split(":", 1)[0] == url.split(":", 1)[0] and "***" in shown


@pytest.mark.parametrize("url, address", [
    ("redis://:s3cret@127.0.0.1:1/0", "127.0.0.1:1"),
    ("rediss://user:s3cret@127.0.0.1:1/2", "127.0.0.1:1"),
    ("unix:///nonexistent/redis.sock?password=s3cret", "/nonexistent/redis.sock"),
])
def test_unreachable_url_fails_fast_with_one_line(url: str, address: str) -> None:
    # Given a URL where no Redis listens, When the CLI opens it
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as failure:
        open_store(url)

    # Then one line comes back quickly, naming the address and never the password
    message = str(failure.value)
    assert time.monotonic() - started < FAIL_FAST_S
    assert message.startswith(f"cannot reach redis at {address}:")
    assert "\n" not in message and "s3cret" not in message


@pytest.fixture
def tcp_listener() -> Iterator[Callable[[bytes], int]]:
    """Start a local TCP server that answers every connection with fixed bytes ("" = silence)."""
    sockets: list[socket.socket] = []

    def start(reply: bytes) -> int:
        server = socket.create_server(("127.0.0.1", 0))
        sockets.append(server)

        def serve() -> None:
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = server.accept()
                    sockets.append(conn)
                    if reply:
                        conn.sendall(reply)

        threading.Thread(target=serve, daemon=True).start()
        return int(server.getsockname()[1])

    yield start
    for sock in sockets:
        sock.close()


def test_server_that_never_answers_fails_within_the_probe_budget(tcp_listener) -> None:  # type: ignore[no-untyped-def]
    # Given a server that accepts connections and then says nothing (hung, or a black hole)
    port = tcp_listener(b"")
    started = time.monotonic()

    # When opened, Then the probe's timeouts bound the wait
    with pytest.raises(StoreUnavailable, match=f"cannot reach redis at 127.0.0.1:{port}"):
        open_store(f"redis://127.0.0.1:{port}/0")
    assert time.monotonic() - started < FAIL_FAST_S


def test_server_that_is_not_redis_is_a_one_line_store_error(tcp_listener) -> None:  # type: ignore[no-untyped-def]
    # Given something else listening where Redis was expected
    port = tcp_listener(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    # When opened, Then one line says so, without retrying as if it might become Redis
    with pytest.raises(StoreError) as failure:
        open_store(f"redis://:s3cret@127.0.0.1:{port}/0")
    message = str(failure.value)
    assert message.startswith(f"redis at 127.0.0.1:{port} refused us:")
    assert "\n" not in message and "s3cret" not in message


@pytest.mark.redis
def test_open_store_unix_url_reaches_the_log(redis_url: str) -> None:
    # Given a running server, When its unix:// URL is opened through the factory
    with open_store(redis_url) as store:
        store.append([PipelineStarted(pipeline="p")])

    # Then a second open sees the event, and a read-only one refuses to write
    with open_store(redis_url, readonly=True) as readonly:
        assert isinstance(readonly, RedisEventStore) and readonly.head() == 1
        with pytest.raises(ReadOnlyStore):
            readonly.append([PipelineStarted(pipeline="p")])


@pytest.mark.redis
def test_password_in_url_is_used_and_hidden(redis_instances) -> None:  # type: ignore[no-untyped-def]
    # Given a server that requires a password
    server = redis_instances()
    with redis.Redis.from_url(server.url) as client:
        client.config_set("requirepass", "s3cret")
    path = server.url.removeprefix("unix://")

    # When opened with it, Then it works, and the store's own URL does not show it
    with open_store(f"unix://:s3cret@{path}") as store:
        assert store.head() == 0
        assert "s3cret" not in store.url

    # And opened with a wrong one, one line says the server refused, without the password
    with pytest.raises(StoreError) as failure:
        open_store(f"unix://{path}?password=wrong")
    assert "refused us" in str(failure.value) and "wrong" not in str(failure.value)
