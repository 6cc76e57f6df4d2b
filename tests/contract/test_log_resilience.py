"""Reading a long log in constant memory, and riding out (or reporting) a backend outage."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from stagebus.errors import StoreUnavailable
from stagebus.store import EventStore

from .backends import Backend
from .samples import unkeyed, unkeyed_batch

MEMORY_BOUND = 20 * 1024 * 1024
FILL_BATCH = 5_000


def fill_to(store: EventStore, count: int) -> None:
    while (missing := count - store.head()) > 0:
        store.append(unkeyed_batch(min(FILL_BATCH, missing)))


def peak_while_reading(store: EventStore) -> tuple[int, int]:
    """(events read, peak bytes traced) over one full read of the log, nothing kept."""
    tracemalloc.start()
    try:
        count = sum(1 for _ in store.read())
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_read_streams_a_long_log_in_bounded_memory(backend: Backend) -> None:
    small, large = backend.stream_sizes
    store = backend.open()
    # Given a log of the small size, read once
    fill_to(store, small)
    read_small, peak_small = peak_while_reading(store)

    # When it has grown five times and is read again
    fill_to(store, large)
    read_large, peak_large = peak_while_reading(store)

    # Then every event came by, and the peak stayed under the bound without growing with the log
    assert (read_small, read_large) == (small, large)
    assert peak_large < MEMORY_BOUND
    assert peak_large < 1.5 * peak_small + 256 * 1024, (peak_small, peak_large)


def test_short_outage_is_retried_and_absorbed(backend: Backend) -> None:
    # Given a backend that stops answering for a moment (locked, disconnected, restarting)
    with backend.outage(heal_after_s=0.15) as store:
        # When an append is attempted during the outage
        answer = store.append_one(unkeyed())

    # Then the retries carry it through once the backend is back, and it is stored once
    assert answer.stored
    assert [r.position for r in store.read()] == [answer.position]


def test_outage_past_the_retry_budget_raises_store_unavailable(backend: Backend) -> None:
    # Given a backend that stays unreachable for longer than the store's retry budget
    with backend.outage(heal_after_s=None) as store:
        started = time.monotonic()

        # When an append is attempted, Then one clear, one-line StoreUnavailable comes back
        with pytest.raises(StoreUnavailable) as failure:
            store.append_one(unkeyed())

    message = str(failure.value)
    assert "\n" not in message and "after" in message
    assert time.monotonic() - started < 15
