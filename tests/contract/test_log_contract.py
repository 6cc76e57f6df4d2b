"""The EventStore contract: ordering, atomicity, keys, lookups, paging. Every backend, same rules."""

from __future__ import annotations

import re

import pytest

from stagebus.errors import InvalidInput
from stagebus.events import RunOpened
from stagebus.store import Appended, EventStore

from .backends import Backend
from .samples import keyed, unkeyed, unkeyed_batch

# --- ordering -------------------------------------------------------------------------------


def test_positions_start_at_one_in_append_order(store: EventStore) -> None:
    # Given an empty log
    # When three events are appended one at a time
    answers = [store.append_one(unkeyed(f"p{i}")) for i in range(3)]

    # Then they hold positions 1, 2, 3 and read back in that order
    assert answers == [Appended(1, True), Appended(2, True), Appended(3, True)]
    assert [r.event().pipeline for r in store.read()] == ["p0", "p1", "p2"]  # type: ignore[union-attr]


def test_positions_stay_gap_free_across_batches(store: EventStore) -> None:
    # Given a log with a batch in it and a refused batch after it
    store.append(unkeyed_batch(3))
    store.append([keyed("a")])
    store.append([keyed("a"), unkeyed()])

    # When another batch is appended
    answers = store.append(unkeyed_batch(2))

    # Then the refusal used up no position
    assert [a.position for a in answers] == [5, 6]
    assert [r.position for r in store.read()] == [1, 2, 3, 4, 5, 6]


# --- atomicity and keys ---------------------------------------------------------------------


def test_batch_with_a_taken_key_stores_nothing(store: EventStore) -> None:
    # Given a log where key run/a is taken at position 2
    store.append([unkeyed(), keyed("a")])

    # When a batch of a free key, an unkeyed event and the taken key is appended
    answers = store.append([keyed("b"), unkeyed(), keyed("a")])

    # Then nothing of the batch is stored, and only the taken key names its holder
    assert answers == [Appended(None, False), Appended(None, False), Appended(2, False)]
    assert [a.conflict for a in answers] == [False, False, True]
    assert store.head() == 2
    assert store.get("run/b") is None


def test_duplicate_key_is_answered_with_the_existing_position(store: EventStore) -> None:
    # Given an event holding run/a
    first = store.append_one(keyed("a"))

    # When a second event with the same key arrives (a producer retry)
    second = store.append_one(keyed("a"))

    # Then it is not stored a second time; the answer says where the first one is
    assert first == Appended(1, True)
    assert second == Appended(1, False) and second.conflict
    assert [r.position for r in store.read()] == [1]


def test_batch_naming_a_key_twice_is_refused_as_input(store: EventStore) -> None:
    # Given a batch that names run/a twice
    batch = [keyed("a"), keyed("a")]

    # When it is appended, Then it is refused before anything is stored
    with pytest.raises(InvalidInput):
        store.append(batch)
    assert store.head() == 0


def test_empty_batch_is_refused_as_input(store: EventStore) -> None:
    with pytest.raises(InvalidInput):
        store.append([])


# --- lookups ---------------------------------------------------------------------------------


def test_get_sees_an_append_from_another_handle_at_once(backend: Backend) -> None:
    # Given two handles onto the same log (two connections where the backend has them)
    writer, reader = backend.open(), backend.open()
    reader.head()  # the reader is connected and has looked before the write

    # When the writer appends a keyed event
    writer.append([unkeyed(), keyed("a")])

    # Then the reader's very next get() returns it: gates rely on this
    found = reader.get("run/a")
    assert found is not None and found.position == 2 and found.key == "run/a"


def test_get_of_an_absent_key_is_none(store: EventStore) -> None:
    store.append([keyed("a")])
    assert store.get("run/nope") is None


def test_get_many_returns_present_keys_only(store: EventStore) -> None:
    # Given keys a and c taken, b free
    store.append([keyed("a"), unkeyed(), keyed("c")])

    # When looking up a, b and c together
    found = store.get_many(["run/a", "run/b", "run/c"])

    # Then a and c come back with their positions, b is left out
    assert {key: r.position for key, r in found.items()} == {"run/a": 1, "run/c": 3}


def test_get_many_sees_a_key_taken_after_it_was_looked_up_absent(backend: Backend) -> None:
    # Given a reader that looked a key up while it was free (absence is never remembered)
    writer, reader = backend.open(), backend.open()
    assert reader.get_many(["run/a", "run/b"]) == {}

    # When another handle takes it
    writer.append([keyed("a")])

    # Then the reader's next lookups find it, alone or beside keys it has seen before
    assert reader.get("run/a") is not None
    assert set(reader.get_many(["run/a", "run/b"])) == {"run/a"}


def test_get_many_answers_a_repeated_key_once(store: EventStore) -> None:
    store.append([keyed("a")])
    found = store.get_many(["run/a", "run/a", "run/zz"])
    assert list(found) == ["run/a"] and found["run/a"].position == 1


def test_head_is_zero_for_an_empty_log(store: EventStore) -> None:
    assert store.head() == 0


def test_head_is_the_last_position(store: EventStore) -> None:
    store.append(unkeyed_batch(4))
    store.append([keyed("a")])
    assert store.head() == 5


# --- reading ---------------------------------------------------------------------------------


def test_read_after_starts_past_the_given_position(store: EventStore) -> None:
    # Given five events
    store.append(unkeyed_batch(5))

    # When reading after position 3
    # Then positions 4 and 5 come back, and nothing after the head
    assert [r.position for r in store.read(after=3)] == [4, 5]
    assert list(store.read(after=5)) == []


def test_read_limit_pages_through_the_whole_log(store: EventStore) -> None:
    # Given more events than one internal read page
    store.append(unkeyed_batch(2345))

    # When paging with read(after, limit=700) from the last position seen
    pages, after = [], 0
    while page := [r.position for r in store.read(after=after, limit=700)]:
        pages.append(page)
        after = page[-1]

    # Then the pages are full but the last, and together they are 1..2345 exactly once
    assert [len(p) for p in pages] == [700, 700, 700, 245]
    assert [pos for page in pages for pos in page] == list(range(1, 2346))


def test_recorded_event_decodes_to_the_appended_event(store: EventStore) -> None:
    # Given an appended event
    event = keyed("a")
    store.append([event])

    # When it is read back and decoded
    record = next(iter(store.read()))
    decoded = record.event()

    # Then it equals the original, with the log's stamps beside it
    assert isinstance(decoded, RunOpened) and decoded == event
    assert (record.key, record.type, record.version) == ("run/a", "run_opened", RunOpened.VERSION)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record.recorded_at)
    assert re.fullmatch(r"[0-9a-f]{64}", record.hash)


def test_get_returns_the_same_record_as_read(store: EventStore) -> None:
    store.append([unkeyed(), keyed("a")])
    assert store.get("run/a") == list(store.read())[1]
