"""The in-memory event log: the reference implementation and the unit-test default."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import msgspec

from stagebus.events import Event
from stagebus.store.base import (
    GENESIS_HASH,
    Appended,
    EventStore,
    RecordedEvent,
    check_batch,
    refused,
    seal_batch,
    utc_now,
)


class MemoryEventStore(EventStore):
    def __init__(self, clock: Callable[[], str] = utc_now, *, readonly: bool = False) -> None:
        self.url = "memory://"
        self.readonly = readonly
        self._clock = clock
        self._lock = threading.Lock()
        self._records: list[RecordedEvent] = []
        self._keys: dict[str, int] = {}

    def append(self, events: Sequence[Event]) -> list[Appended]:
        self._refuse_if_readonly()
        check_batch(events)
        with self._lock:
            taken = {e.key: self._keys[e.key] for e in events if e.key in self._keys}
            if taken:
                return refused(events, taken)  # type: ignore[arg-type]
            last = self._records[-1].hash if self._records else GENESIS_HASH
            records = seal_batch(events, len(self._records), last, self._clock())
            self._records.extend(records)
            for r in records:
                if r.key is not None:
                    self._keys[r.key] = r.position
            return [Appended(r.position, True) for r in records]

    def read(self, after: int = 0, limit: int | None = None) -> Iterator[RecordedEvent]:
        end = len(self._records) if limit is None else min(len(self._records), after + limit)
        for index in range(max(after, 0), end):
            yield self._records[index]

    def get(self, key: str) -> RecordedEvent | None:
        position = self._keys.get(key)
        return None if position is None else self._records[position - 1]

    def head(self) -> int:
        return len(self._records)

    def tamper(self, position: int, payload: bytes) -> None:
        """Test hook: overwrite a stored payload behind the chain's back."""
        self._records[position - 1] = msgspec.structs.replace(self._records[position - 1], payload=payload)
