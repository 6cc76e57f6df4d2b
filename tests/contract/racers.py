"""Appenders that race for the same keys, as threads or as separate processes.

Lives in its own module so that spawned processes can import it by name.
"""

from __future__ import annotations

import threading
from multiprocessing.queues import Queue
from typing import Any

from stagebus.events import PipelineStarted, RunOpened
from stagebus.store import EventStore, SqliteEventStore
from stagebus.store.redis import RedisEventStore

RACERS = 8
KEYS = 12
# Per racer: one keyed batch (a keyed and an unkeyed event) and one unkeyed event per key.
STORED = KEYS * 2 + RACERS * KEYS

Outcome = tuple[int, list[tuple[int | None, bool]]]  # key index, (position, stored) per event


def race_key(index: int) -> str:
    return f"run/race-{index}"


def run_racer(store: EventStore, racer: int, start: Any) -> list[Outcome]:
    """Append every key's batch, half the racers walking the keys backwards so that they meet."""
    order = range(KEYS) if racer % 2 == 0 else reversed(range(KEYS))
    pipeline = f"racer-{racer}"
    start.wait()
    outcomes = []
    for index in order:
        batch = [RunOpened(run_id=f"race-{index}", pipeline=pipeline), PipelineStarted(pipeline=pipeline)]
        answers = store.append(batch)
        outcomes.append((index, [(a.position, a.stored) for a in answers]))
        # An unkeyed event always lands: it makes racers fight over the head, not just keys.
        store.append([PipelineStarted(pipeline=pipeline)])
    return outcomes


def race_threads(stores: list[EventStore]) -> dict[int, list[Outcome]]:
    start = threading.Barrier(len(stores))
    results: dict[int, list[Outcome]] = {}
    errors: list[BaseException] = []

    def run(racer: int) -> None:
        try:
            results[racer] = run_racer(stores[racer], racer, start)
        except BaseException as exc:  # surfaced by the caller, a thread cannot fail the test
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=run, args=(racer,)) for racer in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def open_spec(kind: str, location: str, namespace: str) -> EventStore:
    if kind == "sqlite":
        return SqliteEventStore(location)
    return RedisEventStore.from_url(location, namespace=namespace)


def race_process(spec: tuple[str, str, str], racer: int, start: Any, results: Queue[Any]) -> None:
    """Entry point of one racing process: its own connection, its own interpreter."""
    try:
        with open_spec(*spec) as store:
            results.put((racer, run_racer(store, racer, start)))
    except BaseException as exc:
        results.put((racer, f"{type(exc).__name__}: {exc}"))
        raise
