"""The event log contract every backend implements, and the hash chain they share."""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import msgspec

from stagebus.errors import InvalidInput, ReadOnlyStore
from stagebus.events import AnyEvent, Event, decode, encode

GENESIS_HASH = "0" * 64
READ_PAGE = 1000
_HEADER = msgspec.json.Encoder()


class RecordedEvent(msgspec.Struct, frozen=True):
    """An event as the log holds it: opaque payload bytes plus the log's own stamps."""

    position: int
    key: str | None
    type: str
    version: int
    payload: bytes
    recorded_at: str
    hash: str

    def event(self) -> AnyEvent:
        return decode(self.payload, type_name=self.type, version=self.version, position=self.position)


class Appended(NamedTuple):
    """What became of one event of a batch.

    ``stored`` is True when this append stored it. On a key conflict ``position`` is the
    position of the event already holding the key; for the other events of a refused batch it
    is ``None``.
    """

    position: int | None
    stored: bool

    @property
    def conflict(self) -> bool:
        return not self.stored and self.position is not None


class VerifyReport(NamedTuple):
    ok: bool
    checked: int
    broken_at: int | None = None
    reason: str = ""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def chain_hash(prev_hash: str, position: int, key: str | None, type_name: str, version: int,
               recorded_at: str, payload: bytes) -> str:
    """``sha256(prev_hash + canonical bytes)``; the canonical bytes cover every stored field."""
    header = _HEADER.encode([position, key, type_name, version, recorded_at])
    return hashlib.sha256(prev_hash.encode() + header + b"\n" + payload).hexdigest()


def seal_batch(events: Sequence[Event], head_position: int, head_hash: str,
               recorded_at: str) -> list[RecordedEvent]:
    """Assign positions and chain hashes to a batch that follows ``head_position``."""
    records = []
    prev = head_hash
    for offset, event in enumerate(events, start=1):
        position = head_position + offset
        payload = encode(event)
        tag = event.type_name
        digest = chain_hash(prev, position, event.key, tag, event.VERSION, recorded_at, payload)
        records.append(RecordedEvent(position, event.key, tag, event.VERSION, payload, recorded_at, digest))
        prev = digest
    return records


def check_batch(events: Sequence[Event]) -> None:
    """Refuse a batch that could never be stored: empty, or naming one key twice."""
    if not events:
        raise InvalidInput("cannot append an empty batch")
    keys = [e.key for e in events if e.key is not None]
    if len(keys) != len(set(keys)):
        raise InvalidInput("a batch names the same event key twice")


def refused(events: Sequence[Event], existing: dict[str, int]) -> list[Appended]:
    """The answer for a batch refused because some of its keys are taken."""
    return [Appended(existing.get(e.key) if e.key else None, False) for e in events]


class EventStore(abc.ABC):
    """An append-only, hash-chained, totally ordered log of events.

    Backends: :class:`~stagebus.store.memory.MemoryEventStore` (reference),
    :class:`~stagebus.store.sqlite.SqliteEventStore` (embedded default),
    :class:`~stagebus.store.redis.RedisEventStore` (fleet). One contract test suite runs
    against each (``tests/contract``).
    """

    url: str = ""
    readonly: bool = False

    @abc.abstractmethod
    def append(self, events: Sequence[Event]) -> list[Appended]:
        """Append a batch atomically: every event is stored, or none is.

        Positions are global, gap-free and start at 1. If any event's key is already taken,
        nothing is stored and the answer names the existing positions (a conflict is an
        answer, not an error: "already done"). Stamps ``recorded_at`` and extends the hash
        chain. Raises :class:`InvalidInput` for an empty batch or a key named twice,
        :class:`ReadOnlyStore` when opened read-only, :class:`StoreUnavailable` when the
        backend stays unreachable after bounded retries.
        """

    @abc.abstractmethod
    def read(self, after: int = 0, limit: int | None = None) -> Iterator[RecordedEvent]:
        """Yield events with ``position > after`` in order, in pages: memory stays constant."""

    @abc.abstractmethod
    def get(self, key: str) -> RecordedEvent | None:
        """The event holding ``key``, read with strong consistency (gates rely on it)."""

    @abc.abstractmethod
    def head(self) -> int:
        """The position of the last event, 0 for an empty log."""

    def get_many(self, keys: Sequence[str]) -> dict[str, RecordedEvent]:
        """The events holding any of ``keys``; absent keys are left out."""
        found = {}
        for key in keys:
            record = self.get(key)
            if record is not None:
                found[key] = record
        return found

    def append_one(self, event: Event) -> Appended:
        return self.append([event])[0]

    def verify(self) -> VerifyReport:
        """Walk the whole chain; report the first position whose hash or order is wrong."""
        prev, expected, checked = GENESIS_HASH, 1, 0
        for r in self.read():
            if r.position != expected:
                return VerifyReport(False, checked, expected, f"position {expected} is missing")
            digest = chain_hash(prev, r.position, r.key, r.type, r.version, r.recorded_at, r.payload)
            if digest != r.hash:
                return VerifyReport(False, checked, r.position, "stored hash does not match its content")
            prev, expected, checked = r.hash, expected + 1, checked + 1
        return VerifyReport(True, checked)

    def _refuse_if_readonly(self) -> None:
        if self.readonly:
            raise ReadOnlyStore(f"{self.url or 'the event log'} is open read-only")

    def close(self) -> None:  # noqa: B027 - optional for backends that hold nothing
        """Release connections; the store must not be used afterwards."""

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
