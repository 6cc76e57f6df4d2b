"""The relay process's view of the log: one read of each event for the projections and the relay."""

from __future__ import annotations

from collections.abc import Iterator

from stagebus.actors.relay_process import StepLog
from stagebus.events import PipelineStarted
from stagebus.store import MemoryEventStore, RecordedEvent


class CountingStore(MemoryEventStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def read(self, after: int = 0, limit: int | None = None) -> Iterator[RecordedEvent]:
        self.reads += 1
        return super().read(after, limit)


def append(store: MemoryEventStore, *names: str) -> None:
    store.append([PipelineStarted(pipeline=name) for name in names])


def test_reads_end_at_the_head_last_asked_for() -> None:
    # Given three events, the head asked, then two more appended
    store = CountingStore()
    log = StepLog(store)
    append(store, "a", "b", "c")
    assert log.head() == 3
    append(store, "d", "e")
    # When the log is read from the start
    # Then it ends at the head the step asked for; the later events wait for the next head()
    assert [r.position for r in log.read()] == [1, 2, 3]
    log.next_step()
    log.head()
    assert [r.position for r in log.read(after=3)] == [4, 5]


def test_the_head_is_asked_once_per_step() -> None:
    class CountingHeads(MemoryEventStore):
        heads = 0

        def head(self) -> int:
            CountingHeads.heads += 1
            return super().head()

    # Given a step that asked the head, and an event appended since
    store = CountingHeads()
    log = StepLog(store)
    append(store, "a")
    assert log.head() == 1
    append(store, "b")
    # When the step asks again, then the next step does
    during, after = log.head(), (log.next_step(), log.head())[1]
    # Then the step kept the head it had asked (one request); the next one asked anew
    assert (during, after, CountingHeads.heads) == (1, 2, 2)


def test_events_read_once_are_served_again_from_memory() -> None:
    # Given a step that read the new events (the projections' catch-up)
    store = CountingStore()
    log = StepLog(store)
    append(store, "a", "b", "c", "d")
    log.head()
    assert len(list(log.read(after=1))) == 3
    reads = store.reads
    # When the relay reads the same positions again, in part and in full
    again = [r.position for r in log.read(after=2, limit=1)] + [r.position for r in log.read(after=1)]
    # Then they come from memory, and an idle read past the head costs nothing either
    assert again == [3, 2, 3, 4] and list(log.read(after=4)) == []
    assert store.reads == reads


def test_a_head_that_went_back_drops_what_was_remembered() -> None:
    # Given events read through the log, whose server then comes back without them
    store = CountingStore()
    log = StepLog(store)
    append(store, "a", "b")
    log.head()
    list(log.read())
    fresh = CountingStore()
    append(fresh, "x")
    log.store = fresh
    # When the next step asks the head and reads
    log.next_step()
    assert log.head() == 1
    # Then what is read is the log's event at that position, not the remembered one
    assert [r.event().pipeline for r in log.read()] == ["x"]  # type: ignore[union-attr]
