"""Redis-specific behaviour of the log beyond the shared contract: lost replies, the optimistic
head, the stream layout operators see, and translated errors."""

from __future__ import annotations

import threading
import time
from typing import Any

import fakeredis
import pytest
import redis

from stagebus.errors import StoreError, StoreUnavailable
from stagebus.events import PipelineStarted, RunOpened
from stagebus.store import Appended
from stagebus.store.keys import RedisKeys
from stagebus.store.redis import RedisEventStore, is_transient


def started(pipeline: str = "p") -> PipelineStarted:
    return PipelineStarted(pipeline=pipeline)


class LoseReplies:
    """Stands in for the append script and loses the connection around its first call."""

    def __init__(self, script: Any, *, after_running: bool) -> None:
        self.script, self.after_running, self.calls = script, after_running, 0

    def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1 and not self.after_running:
            raise redis.ConnectionError("connection reset before the script was sent")
        reply = self.script(**kwargs)
        if self.calls == 1:
            raise redis.ConnectionError("connection reset before the reply came back")
        return reply


@pytest.mark.parametrize("after_running", [True, False], ids=["reply-lost", "request-lost"])
def test_lost_connection_stores_an_unkeyed_batch_exactly_once(
    fake_redis: fakeredis.FakeRedis, after_running: bool
) -> None:
    # Given a store whose connection drops around its first script call
    store = RedisEventStore(fake_redis, attempts=3)
    store._append_script = LoseReplies(store._append_script, after_running=after_running)  # type: ignore[method-assign]

    # When an unkeyed batch (nothing would catch a duplicate of it) is appended
    answers = store.append([started("a"), started("b")])

    # Then the retry finds out whether the first attempt landed, and the batch is there once
    assert [a.position for a in answers] == [1, 2] and all(a.stored for a in answers)
    assert [r.event().pipeline for r in store.read()] == ["a", "b"]  # type: ignore[union-attr]
    assert store.verify().ok


def test_append_through_a_handle_with_a_stale_head_reseals_the_batch(
    fake_redis_server: fakeredis.FakeServer,
) -> None:
    # Given two handles, each having appended once (so each remembers a head)
    first = RedisEventStore(fakeredis.FakeRedis(server=fake_redis_server))
    second = RedisEventStore(fakeredis.FakeRedis(server=fake_redis_server))
    first.append([started()])
    second.append([started()])

    # When the first handle, whose remembered head is now behind, appends again
    answer = first.append_one(started())

    # Then the script's "stale" answer makes it seal on the real head: no gap, chain intact
    assert answer.position == 3
    assert first.verify().ok


def test_endless_contention_gives_up_with_store_unavailable(
    fake_redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a head that moves before every attempt (other appenders always win)
    monkeypatch.setattr("stagebus.store.redis.CONTENTION_ATTEMPTS", 4)
    store = RedisEventStore(fake_redis)
    store._append_script = lambda **_: [b"stale", b"7", b"f" * 64]  # type: ignore[method-assign]

    # When appending, Then it gives up after a bounded number of attempts, saying why
    with pytest.raises(StoreUnavailable, match="stayed contended after 4 attempts"):
        store.append([started()])


def test_stream_layout_is_readable_with_plain_redis_commands(fake_redis: fakeredis.FakeRedis) -> None:
    # Given a keyed and an unkeyed event in namespace "ops"
    store = RedisEventStore(fake_redis, namespace="ops")
    store.append([RunOpened(run_id="r1", pipeline="p"), started()])
    keys = RedisKeys("ops")

    # When an operator looks with redis-cli, Then entry ids are "<position>-1", the key index
    # maps keys to positions, and the head names the last position and hash
    entries: Any = fake_redis.xrange(keys.stream)
    assert [entry_id for entry_id, _ in entries] == [b"1-1", b"2-1"]
    assert entries[0][1][b"k"] == b"run/r1" and b"k" not in entries[1][1]
    assert set(entries[1][1]) == {b"t", b"v", b"p", b"r", b"h"}
    assert fake_redis.hgetall(keys.keys) == {b"run/r1": b"1"}
    assert fake_redis.hgetall(keys.head) == {b"position": b"2", b"hash": entries[1][1][b"h"]}


def test_namespaces_keep_logs_apart(fake_redis: fakeredis.FakeRedis) -> None:
    # Given two logs in one database, When each gets an event with the same key
    one = RedisEventStore(fake_redis, namespace="one")
    two = RedisEventStore(fake_redis, namespace="two")

    # Then neither sees the other's
    assert one.append_one(RunOpened(run_id="r", pipeline="p")).stored
    assert two.append_one(RunOpened(run_id="r", pipeline="p")).stored
    assert one.head() == two.head() == 1


def test_a_redis_error_that_no_retry_fixes_becomes_a_store_error(fake_redis: fakeredis.FakeRedis) -> None:
    # Given the log's head key taken by a value of another type (a namespace clash)
    fake_redis.set(RedisKeys("clash").head, "not a hash")
    store = RedisEventStore(fake_redis, namespace="clash")

    # When the log is used, Then one StoreError line names the cause
    with pytest.raises(StoreError, match="WRONGTYPE") as failure:
        store.head()
    assert not isinstance(failure.value, StoreUnavailable)


@pytest.mark.parametrize("error, transient", [
    (redis.ConnectionError("reset"), True),
    (redis.TimeoutError("timed out"), True),
    (redis.exceptions.BusyLoadingError("loading"), True),
    (redis.exceptions.ReadOnlyError("replica"), True),
    (redis.AuthenticationError("bad password"), False),
    (redis.ResponseError("WRONGTYPE"), False),
])
def test_which_redis_errors_are_retried(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.mark.redis
def test_killed_server_is_one_line_store_unavailable(redis_instances) -> None:  # type: ignore[no-untyped-def]
    # Given a log on a server that then dies
    server = redis_instances()
    store = RedisEventStore.from_url(server.url, attempts=3)
    store.append([started()])
    server.kill()

    # When appending, Then the failure is one line naming the server
    with pytest.raises(StoreUnavailable) as failure:
        store.append([started()])
    message = str(failure.value)
    assert message.startswith(f"cannot reach redis at {server.url.removeprefix('unix://')}:")
    assert "\n" not in message and message.endswith("(after 3 attempts)")


@pytest.mark.redis
def test_log_survives_a_crash_with_aof(redis_instances) -> None:  # type: ignore[no-untyped-def]
    # Given a log on an AOF server (appendfsync always), killed right after acknowledged appends
    server = redis_instances(appendonly=True, name="durable")
    with RedisEventStore.from_url(server.url) as store:
        store.append([RunOpened(run_id="r1", pipeline="p"), started()])
        store.append([started()])
    server.kill()

    # When it is restarted on the same data
    restarted = redis_instances(appendonly=True, name="durable")

    # Then every acknowledged event is back, the chain intact and appends continue after it
    with RedisEventStore.from_url(restarted.url) as store:
        assert store.verify().ok and store.head() == 3
        assert store.append_one(RunOpened(run_id="r1", pipeline="p")).conflict
        assert store.append_one(started()).position == 4


def test_a_keyed_event_read_before_a_lost_connection_is_read_again_after_it(
    fake_redis_server: fakeredis.FakeServer,
) -> None:
    # Given a handle that has read a run's RunOpened (it keeps the keyed events it has read)
    store = RedisEventStore(fakeredis.FakeRedis(server=fake_redis_server), attempts=2)
    store.append([RunOpened(run_id="a", pipeline="one")])
    assert store.get("run/a") is not None
    # When the connection fails, and the server comes back without that event (a restart lost it)
    fake_redis_server.connected = False
    with pytest.raises(StoreUnavailable):
        store.head()
    fake_redis_server.connected = True
    fakeredis.FakeRedis(server=fake_redis_server).flushall()
    # Then the handle asks the log again instead of answering from memory
    assert store.get("run/a") is None and store.get_many(["run/a"]) == {}


def test_a_lookup_refreshes_the_head_the_next_append_seals_on(fake_redis_server: fakeredis.FakeServer) -> None:
    # Given a handle that appended once, and another that appended after it
    first = RedisEventStore(fakeredis.FakeRedis(server=fake_redis_server))
    second = RedisEventStore(fakeredis.FakeRedis(server=fake_redis_server))
    first.append([started()])
    second.append([started()])
    calls = []
    script = first._append_script
    first._append_script = lambda **kw: calls.append(1) or script(**kw)  # type: ignore[method-assign]
    # When the first handle looks a key up, then appends
    first.get("run/none")
    answer = first.append_one(started())
    # Then its append was sealed on the head the lookup saw: one script call, no stale retry
    assert answer.position == 3 and calls == [1] and first.verify().ok


class HoldFirstCall:
    """The append script, whose first call waits until ``waiting`` more batches are queued."""

    def __init__(self, store: RedisEventStore, waiting: int) -> None:
        self.store, self.script, self.waiting, self.calls = store, store._append_script, waiting, 0

    def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            deadline = time.monotonic() + 10
            while len(self.store._queue) < self.waiting and time.monotonic() < deadline:
                time.sleep(0.001)
        return self.script(**kwargs)


def append_from_threads(store: RedisEventStore, batches: list[list[Any]]) -> list[list[Any]]:
    answers: list[list[Any]] = [[] for _ in batches]

    def one(index: int) -> None:
        answers[index] = store.append(batches[index])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(batches))]
    threads[0].start()
    while store._append_script.calls == 0:  # type: ignore[attr-defined]
        time.sleep(0.001)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_batches_appended_at_once_by_threads_share_one_script_call(fake_redis: fakeredis.FakeRedis) -> None:
    # Given a handle whose first append is in flight while three more threads append
    store = RedisEventStore(fake_redis)
    store._append_script = HoldFirstCall(store, waiting=3)  # type: ignore[method-assign]
    # When all four batches are stored
    answers = append_from_threads(store, [[started("a")], [started("b"), started("c")], [started("d")],
                                          [started("e")]])
    # Then the three that waited went in one script call, each batch whole, the chain intact
    assert store._append_script.calls == 2  # type: ignore[attr-defined]
    assert all(a.stored for batch in answers for a in batch)
    assert sorted(a.position for batch in answers for a in batch) == [1, 2, 3, 4, 5]
    positions = [a.position for a in answers[1]]
    assert positions[1] == positions[0] + 1 and store.verify().ok


def test_a_taken_key_in_a_group_refuses_only_its_own_batch(fake_redis: fakeredis.FakeRedis) -> None:
    # Given run "a" already opened, and three threads appending while a first append is in flight,
    # one of them opening "a" again
    store = RedisEventStore(fake_redis)
    store.append([RunOpened(run_id="a", pipeline="one")])
    store._append_script = HoldFirstCall(store, waiting=3)  # type: ignore[method-assign]
    answers = append_from_threads(store, [[started("x")], [started("y")],
                                          [RunOpened(run_id="a", pipeline="two")], [started("z")]])
    # Then the duplicate is refused, naming the position holding the key, and the others are stored
    assert answers[2] == [Appended(1, False)]
    assert all(a.stored for i, batch in enumerate(answers) if i != 2 for a in batch)
    assert store.head() == 4 and store.verify().ok


class MoveHeadOnFirstCall:
    """The append script, whose first call waits for two more queued batches, then finds the
    head moved by another process (a real "stale" reply)."""

    def __init__(self, store: RedisEventStore, other: RedisEventStore) -> None:
        self.store, self.other, self.script, self.calls = store, other, store._append_script, 0

    def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            while len(self.store._queue) < 2:
                time.sleep(0.001)
            self.other.append([started("elsewhere")])
        return self.script(**kwargs)


def test_batches_queued_while_the_head_moved_ride_on_the_retry(fake_redis_server: fakeredis.FakeServer) -> None:
    # Given a handle whose first append meets a head moved meanwhile, two more batches queued
    store = RedisEventStore(fakeredis.FakeRedis(server=fake_redis_server))
    store._append_script = MoveHeadOnFirstCall(  # type: ignore[method-assign]
        store, RedisEventStore(fakeredis.FakeRedis(server=fake_redis_server)))
    # When the three batches are stored
    answers = append_from_threads(store, [[started("a")], [started("b")], [started("c")]])
    # Then the retry of the stale attempt carried the queued ones: two script calls in all
    assert store._append_script.calls == 2  # type: ignore[attr-defined]
    assert sorted(a.position for batch in answers for a in batch) == [2, 3, 4] and store.verify().ok
