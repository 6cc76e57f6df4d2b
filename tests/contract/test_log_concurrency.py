"""Appenders racing for the same keys: one winner per key, no gaps, an intact chain.

Threads for backends that live in one process; real processes for SQLite and Redis, whose
guarantees must hold across machines' worth of writers, not only across threads.
"""

from __future__ import annotations

import multiprocessing
from collections import defaultdict

from stagebus.events import RunOpened
from stagebus.store import EventStore

from .backends import Backend
from .racers import KEYS, RACERS, STORED, Outcome, race_key, race_process, race_threads


def race(backend: Backend) -> dict[int, list[Outcome]]:
    if backend.racers == "threads":
        return race_threads([backend.open() for _ in range(RACERS)])
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(RACERS, timeout=60)
    results = context.Queue()
    processes = [context.Process(target=race_process, args=(backend.spec(), racer, start, results))
                 for racer in range(RACERS)]
    for process in processes:
        process.start()
    answers = dict(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=30)
    failed = {racer: answer for racer, answer in answers.items() if isinstance(answer, str)}
    assert not failed, f"racers failed: {failed}"
    return answers


def test_racing_appenders_get_one_winner_per_key_and_no_gaps(backend: Backend) -> None:
    # Given 8 appenders, each trying to store the same 12 keys (plus unkeyed events)
    # When they race
    outcomes = race(backend)
    store: EventStore = backend.open()

    # Then each key has exactly one winner, and every loser was told the winner's position
    winners: dict[int, list[int]] = defaultdict(list)
    for answers in outcomes.values():
        for index, batch in answers:
            if batch[0][1]:
                winners[index].append(batch[0][0])  # type: ignore[arg-type]
    assert sorted(winners) == list(range(KEYS))
    assert all(len(positions) == 1 for positions in winners.values())
    for answers in outcomes.values():
        for index, batch in answers:
            if not batch[0][1]:
                assert batch == [(winners[index][0], False), (None, False)]

    # And the log holds every stored event at positions 1..N with no gap and an intact chain
    assert [r.position for r in store.read()] == list(range(1, STORED + 1))
    assert store.head() == STORED
    assert store.verify().ok

    # And get() names the winner's event
    for index, (position,) in winners.items():
        record = store.get(race_key(index))
        assert record is not None and record.position == position
        assert isinstance(record.event(), RunOpened)
