"""The fleet event log: Redis Streams, one stream entry ``"<position>-1"`` per event.

Redis Lua has no sha256, so the client computes the chain: it reads the head (position, hash),
seals the batch with :func:`seal_batch`, and one Lua script then checks the keys, checks that the
head is still the one the batch was sealed on (optimistic concurrency), XADDs the entries,
records the keys and moves the head — all or nothing. A moved head answers with the new head
and the client seals again. Nothing in this module updates or deletes an entry.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stagebus.errors import InvalidInput, StoreError, StoreUnavailable
from stagebus.events import Event
from stagebus.store.base import (
    GENESIS_HASH,
    READ_PAGE,
    Appended,
    EventStore,
    RecordedEvent,
    check_batch,
    refused,
    seal_batch,
    utc_now,
)
from stagebus.store.keys import RedisKeys
from stagebus.store.retry import ATTEMPTS, retrying
from stagebus.store.urls import redact_url

# Attempts at sealing a batch on a head other appenders keep moving; each costs one round trip.
CONTENTION_ATTEMPTS = 100
# Opening probes with a short budget so a wrong URL comes back to the CLI in ~2-3 s.
PROBE_ATTEMPTS = 3
PROBE_TIMEOUT_S = 0.75
CONNECT_TIMEOUT_S = 2.0
# Longer than any one command takes (a 5,000-event script runs in ~50 ms); a hung server is retried.
SOCKET_TIMEOUT_S = 10.0

# KEYS: stream, keys hash, head hash.
# ARGV: expected head position, new head position, then 7 per event: stream id, key ("" for
# none, else "=" .. key so that an empty key stays distinguishable), type, version, payload,
# recorded_at, hash.
# Replies: {"ok"} | {"taken", key, position, ...} | {"stale", head position, head hash}.
APPEND_SCRIPT = """
local n = (#ARGV - 2) / 7
local taken = {'taken'}
for i = 0, n - 1 do
  local key = ARGV[4 + i * 7]
  if key ~= '' then
    local position = redis.call('HGET', KEYS[2], string.sub(key, 2))
    if position then
      taken[#taken + 1] = string.sub(key, 2)
      taken[#taken + 1] = position
    end
  end
end
if #taken > 1 then return taken end
local head = redis.call('HMGET', KEYS[3], 'position', 'hash')
local position = head[1] or '0'
if position ~= ARGV[1] then return {'stale', position, head[2] or ''} end
local last_hash
for i = 0, n - 1 do
  local at = 3 + i * 7
  local id, key = ARGV[at], ARGV[at + 1]
  if key ~= '' then
    key = string.sub(key, 2)
    redis.call('XADD', KEYS[1], id, 'k', key, 't', ARGV[at + 2], 'v', ARGV[at + 3],
               'p', ARGV[at + 4], 'r', ARGV[at + 5], 'h', ARGV[at + 6])
    redis.call('HSET', KEYS[2], key, string.sub(id, 1, -3))
  else
    redis.call('XADD', KEYS[1], id, 't', ARGV[at + 2], 'v', ARGV[at + 3],
               'p', ARGV[at + 4], 'r', ARGV[at + 5], 'h', ARGV[at + 6])
  end
  last_hash = ARGV[at + 6]
end
redis.call('HSET', KEYS[3], 'position', ARGV[2], 'hash', last_hash)
return {'ok'}
"""


# KEYS: stream, keys hash, head hash. ARGV: event keys.
# Reply: {head position, head hash, then per key its entry {id, fields} or false}: one round trip
# for any number of keyed lookups, and the head they were read at (a fresh hint for the next append).
GET_SCRIPT = """
local head = redis.call('HMGET', KEYS[3], 'position', 'hash')
local reply = {head[1] or '0', head[2] or ''}
for i = 1, #ARGV do
  local position = redis.call('HGET', KEYS[2], ARGV[i])
  local entry = false
  if position then
    local id = position .. '-1'
    entry = redis.call('XRANGE', KEYS[1], id, id)[1] or false
  end
  reply[#reply + 1] = entry
end
return reply
"""
# Events per group commit at most (one script call; a 5,000-event script runs in ~50 ms).
GROUP_EVENTS = 500
# Keyed records kept per store handle: a key, once in the log, names the same event for good.
FACT_CACHE = 50_000


def is_transient(exc: BaseException) -> bool:
    """Failures a later attempt can fix: lost connections, a loading server, a demoted primary."""
    # redis-py files a refused password under ConnectionError; no retry will fix that one.
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.AuthorizationError):
        return False
    # BusyLoadingError is a ConnectionError; ReadOnlyError comes from a replica after failover.
    return isinstance(exc, redis.ConnectionError | redis.TimeoutError | redis.exceptions.ReadOnlyError)


def client_for(url: str, timeout_s: float = SOCKET_TIMEOUT_S) -> redis.Redis:
    """A redis-py client for ``url`` that does not retry by itself: the store's own retries know
    which writes may already have landed, redis-py's would blindly send a script twice."""
    try:
        return redis.Redis.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=min(CONNECT_TIMEOUT_S, timeout_s),
            socket_timeout=timeout_s,
        )
    except ValueError as exc:
        raise InvalidInput(f"bad redis URL {redact_url(url)!r}: {exc}") from None


def probe(url: str) -> None:
    """Ping ``url`` on a short budget; :class:`StoreUnavailable` when nothing answers in time,
    :class:`StoreError` when something answers that will not serve us (a wrong password, not
    a Redis at all)."""
    client = client_for(url, timeout_s=PROBE_TIMEOUT_S)
    address = address_of(client)
    try:
        retrying(is_transient, f"cannot reach redis at {address}", PROBE_ATTEMPTS)(client.ping)()
    except redis.RedisError as exc:
        raise StoreError(f"redis at {address} refused us: {one_line(exc)}") from exc
    finally:
        client.close()


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def address_of(client: Any) -> str:
    """``host:port`` or the socket path of a client, never its password."""
    kwargs = client.connection_pool.connection_kwargs
    if "server" in kwargs:  # fakeredis: its made-up host and port would mislead
        return "fakeredis"
    if "path" in kwargs:
        return str(kwargs["path"])
    if "host" in kwargs:
        return f"{kwargs['host']}:{kwargs.get('port', 6379)}"
    return "redis"


def _record(entry_id: bytes, fields: dict[bytes, bytes]) -> RecordedEvent:
    key = fields.get(b"k")
    return RecordedEvent(
        int(entry_id[:-2]),  # every id is "<position>-1"
        None if key is None else key.decode(),
        fields[b"t"].decode(),
        int(fields[b"v"]),
        fields[b"p"],
        fields[b"r"].decode(),
        fields[b"h"].decode(),
    )


class _Pending:
    """One caller's batch, waiting for the writer to commit it (maybe with others)."""

    __slots__ = ("done", "error", "events", "result")

    def __init__(self, events: Sequence[Event]) -> None:
        self.events = events
        self.result: list[Appended] = []
        self.error: BaseException | None = None
        self.done = False


class RedisEventStore(EventStore):
    """The event log of one ``namespace`` in one Redis database.

    Takes any redis-py compatible client (``fakeredis.FakeRedis`` in tests); :meth:`from_url`
    builds one from ``redis://``, ``rediss://`` or ``unix://`` and checks it answers.
    """

    def __init__(self, client: Any, *, namespace: str = "stagebus", readonly: bool = False,
                 url: str = "", attempts: int = ATTEMPTS, owns_client: bool = False) -> None:
        self.client = client
        self.names = RedisKeys(namespace)
        self.readonly = readonly
        self.address = address_of(client)
        self.url = url or f"redis ({self.address})"
        self._owns_client = owns_client
        self._append_script = client.register_script(APPEND_SCRIPT)
        self._get_script = client.register_script(GET_SCRIPT)
        # Found keyed events, in the order they were read (oldest dropped first past FACT_CACHE).
        # Only presence is cached, never absence; the cache is dropped whenever the connection
        # fails, since only a restarted Redis can have lost events (see RelayProcess).
        self._facts: OrderedDict[str, RecordedEvent] = OrderedDict()
        self._script_keys = [self.names.stream, self.names.keys, self.names.head]
        # The head this handle last saw; a wrong guess costs one "stale" reply, not an error.
        self._head_hint: tuple[int, str] | None = None
        self._writer = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: deque[_Pending] = deque()  # batches waiting for the writer
        self._retried: Callable[..., Any] = retrying(
            self._transient, f"cannot reach redis at {self.address}", attempts
        )(_invoke)

    @classmethod
    def from_url(cls, url: str, readonly: bool = False, namespace: str = "stagebus",
                 attempts: int = ATTEMPTS) -> RedisEventStore:
        """Check the server answers (see :func:`probe`), then open the log on it."""
        probe(url)
        return cls(client_for(url), namespace=namespace, readonly=readonly, url=redact_url(url),
                   attempts=attempts, owns_client=True)

    def _transient(self, exc: BaseException) -> bool:
        transient = is_transient(exc)
        if transient:
            self._facts.clear()  # the server may be a restarted one that lost its last writes
        return transient

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` with transient failures retried and Redis's own errors translated."""
        try:
            return self._retried(fn, *args)
        except redis.RedisError as exc:  # not transient: a full server, a key of another type
            raise StoreError(f"redis at {self.address} failed: {one_line(exc)}") from exc

    # --- writing ---------------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> list[Appended]:
        """Group commit: threads of one process that append at the same time share one script
        call. Each batch stays whole and in order within the group, and each caller returns
        only once its own batch is stored (or refused), so nothing a caller does next can
        start before its events are in the log. A group with a taken key is split up again,
        so one batch's conflict never refuses another's."""
        self._refuse_if_readonly()
        check_batch(events)
        mine = _Pending(events)
        with self._queue_lock:
            self._queue.append(mine)
        # Threads of one process take turns: they would only collide on the head and retry.
        # Appenders in other processes still meet at the script's head check.
        with self._writer:
            while not mine.done:
                group: list[_Pending] = []
                self._take_group(group)
                self._commit(group)
        if mine.error is not None:
            raise mine.error
        return mine.result

    def _take_group(self, group: list[_Pending] | None = None) -> list[_Pending]:
        """The oldest waiting batches, as many as fit in one script call without a key twice;
        given a ``group``, those that can still join it (it is extended, the new ones returned)."""
        group = [] if group is None else group
        keys = {e.key for pending in group for e in pending.events if e.key is not None}
        size = sum(len(pending.events) for pending in group)
        taken: list[_Pending] = []
        with self._queue_lock:
            while self._queue:
                pending = self._queue[0]
                batch_keys = {e.key for e in pending.events if e.key is not None}
                if group and (size + len(pending.events) > GROUP_EVENTS or keys & batch_keys):
                    break
                group.append(self._queue.popleft())
                taken.append(pending)
                keys |= batch_keys
                size += len(pending.events)
        return taken

    def _commit(self, group: list[_Pending]) -> None:
        try:
            events = [e for pending in group for e in pending.events]
            # The group grows on a stale head by the batches queued meanwhile (see _append_sealed).
            answers: list[Appended] = self._call(self._append_sealed, events, [], group)
            if len(group) > 1 and not answers[0].stored:  # a key was taken: each batch on its own
                for pending in group:
                    pending.result = self._call(self._append_sealed, pending.events, [])
            else:
                offset = 0
                for pending in group:
                    pending.result = answers[offset:offset + len(pending.events)]
                    offset += len(pending.events)
        except BaseException as exc:
            for pending in group:
                pending.error = exc
        finally:
            for pending in group:
                pending.done = True

    def _append_sealed(self, events: Sequence[Event], sent: list[RecordedEvent],
                       group: list[_Pending] | None = None) -> list[Appended]:
        """Seal ``events`` on the head and store them, sealing again while the head moves.
        With the ``group`` they came from, batches queued while the head moved join it (and
        ``events``, which must then be that group's list): the retry carries them too."""
        if sent and self._landed(sent[-1]):
            # The previous attempt's script ran but its reply was lost: it is stored, once.
            return [Appended(r.position, True) for r in sent]
        head, head_hash = self._head_hint or self._read_head()
        for attempt in range(CONTENTION_ATTEMPTS):
            records = seal_batch(events, head, head_hash, utc_now())
            sent[:] = records
            reply = self._append_script(keys=self._script_keys, args=_script_args(head, records))
            sent.clear()  # the script answered, so it either stored the batch or nothing
            verdict = reply[0]
            if verdict == b"ok":
                self._head_hint = (records[-1].position, records[-1].hash)
                return [Appended(r.position, True) for r in records]
            if verdict == b"taken":
                pairs = reply[1:]
                return refused(events, {pairs[i].decode(): int(pairs[i + 1]) for i in range(0, len(pairs), 2)})
            head, head_hash = int(reply[1]), reply[2].decode() or GENESIS_HASH
            if group is not None:
                assert isinstance(events, list)
                events.extend(e for pending in self._take_group(group) for e in pending.events)
            if attempt >= 2:  # spread appenders that keep colliding
                time.sleep(random.uniform(0, 0.001 * attempt))
        raise StoreUnavailable(
            f"the redis event log at {self.address} stayed contended after {CONTENTION_ATTEMPTS} attempts"
        )

    def _landed(self, last: RecordedEvent) -> bool:
        found = self._entry(last.position)
        return found is not None and found.hash == last.hash

    def _read_head(self) -> tuple[int, str]:
        position, digest = self.client.hmget(self.names.head, "position", "hash")
        return int(position or 0), digest.decode() if digest else GENESIS_HASH

    # --- reading ---------------------------------------------------------------------------

    def read(self, after: int = 0, limit: int | None = None) -> Iterator[RecordedEvent]:
        remaining = limit
        while remaining is None or remaining > 0:
            page = READ_PAGE if remaining is None else min(READ_PAGE, remaining)
            # "<after + 1>" as a start id means "<after + 1>-0": the first entry past ``after``.
            entries = self._call(self.client.xrange, self.names.stream, after + 1, "+", page)
            if not entries:
                return
            for entry_id, fields in entries:
                yield _record(entry_id, fields)
            after = int(entries[-1][0][:-2])
            if remaining is not None:
                remaining -= len(entries)

    def get(self, key: str) -> RecordedEvent | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, RecordedEvent]:
        """The events holding ``keys``, in one round trip; events read before come from memory."""
        found = {key: self._facts[key] for key in keys if key in self._facts}
        wanted = list(dict.fromkeys(key for key in keys if key not in found))
        if wanted:
            found.update(self._call(self._get_many, wanted))
        return found

    def _get_many(self, keys: list[str]) -> dict[str, RecordedEvent]:
        reply = self._get_script(keys=self._script_keys, args=keys)
        position, digest = int(reply[0]), reply[1].decode() or GENESIS_HASH
        if self._head_hint is None or self._head_hint[0] < position:
            self._head_hint = (position, digest)
        found = {}
        for key, entry in zip(keys, reply[2:], strict=True):
            if entry:
                record = found[key] = _record(entry[0], _fields(entry[1]))
                self._remember(key, record)
        return found

    def _remember(self, key: str, record: RecordedEvent) -> None:
        self._facts[key] = record
        if len(self._facts) > FACT_CACHE:
            self._facts.popitem(last=False)

    def _entry(self, position: int) -> RecordedEvent | None:
        entry_id = f"{position}-1"
        entries = self.client.xrange(self.names.stream, entry_id, entry_id)
        return _record(*entries[0]) if entries else None

    def head(self) -> int:
        position = self._call(self.client.hget, self.names.head, "position")
        return int(position or 0)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


def _fields(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A stream entry's fields as a script returns them (a flat list), as a dict."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _invoke(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def _script_args(head: int, records: list[RecordedEvent]) -> list[Any]:
    args: list[Any] = [head, records[-1].position]
    for r in records:
        key = "" if r.key is None else "=" + r.key
        args += (f"{r.position}-1", key, r.type, r.version, r.payload, r.recorded_at, r.hash)
    return args
