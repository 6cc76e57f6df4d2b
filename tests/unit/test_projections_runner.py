"""The checkpointed runner and the generations directory: atomic batches, concurrent catch-up,
the log a file was built from, and swapping generations."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from stagebus.errors import StoreError
from stagebus.events import AnyEvent, Event, PartitionIngested
from stagebus.projections import ProjectionDB, Projections, builtin_projections
from stagebus.store import MemoryEventStore, RecordedEvent, SqliteEventStore
from stagebus.store.keys import PROJECTIONS_CURRENT

from .conftest import LogWriter


def busy_log(writer: LogWriter, runs: int = 3, partitions: int = 20) -> None:
    for r in range(runs):
        refs = tuple(f"ds{p % 3}/p{p}" for p in range(partitions))
        writer.full_run(f"r{r}", refs)


class Exploding:
    """A projection that fails on one position, to show a failed batch leaves nothing behind."""

    name = "exploding"
    tables: tuple[str, ...] = ()
    schema = ""
    handles: tuple[type[Event], ...] = (Event,)

    def __init__(self, at: int = 3) -> None:
        self.at = at

    def apply(self, conn: sqlite3.Connection, record: RecordedEvent, event: AnyEvent) -> None:
        if record.position == self.at:
            raise RuntimeError("boom")

    def flush(self, conn: sqlite3.Connection) -> None:
        pass


def test_catch_up_moves_the_checkpoint_to_the_last_applied_position(log: LogWriter, projections: Projections) -> None:
    # Given a log of 9 events
    log.full_run("r1", ("a/1",))
    # When the projections catch up
    applied = projections.catch_up()
    # Then all were applied and the checkpoint is the log head, with no lag
    assert (applied, projections.checkpoint(), projections.lag()) == (9, 9, 0)


def test_a_failed_batch_applies_nothing_and_keeps_the_checkpoint(log: LogWriter, tmp_path: Path) -> None:
    # Given a projections file whose batch fails on its third event
    log.full_run("r1", ("a/1",))
    conn = sqlite3.connect(tmp_path / "p.db", isolation_level=None)
    db = ProjectionDB(conn, [*builtin_projections(), Exploding(at=3)])
    db.initialize()
    # When catching up in one batch
    with pytest.raises(RuntimeError):
        db.catch_up(log.store)
    # Then no event of the batch is visible and every checkpoint is still 0
    assert db.checkpoints() == dict.fromkeys([*(p.name for p in builtin_projections()), "exploding"], 0)
    assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)


def test_batches_before_a_failure_stay_committed(log: LogWriter, tmp_path: Path) -> None:
    # Given a projections file that fails on event 5, caught up two events per batch
    log.full_run("r1", ("a/1",))
    db = ProjectionDB(sqlite3.connect(tmp_path / "p.db", isolation_level=None), [*builtin_projections(), Exploding(5)])
    db.initialize()
    # When catching up
    with pytest.raises(RuntimeError):
        db.catch_up(log.store, batch_size=2)
    # Then the batches ending at positions 2 and 4 stayed
    assert db.checkpoint() == 4


def test_threads_catching_up_one_file_apply_each_event_once(tmp_path: Path) -> None:
    # Given a SQLite log and four threads sharing a projections directory
    store = SqliteEventStore(tmp_path / "log.db")
    busy_log(LogWriter(store))
    projections = Projections(store, tmp_path / "projections")
    # When they all catch up at once, in small batches
    threads = [threading.Thread(target=projections.catch_up, kwargs={"batch_size": 37}) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then the state equals a single-threaded rebuild of the same log
    with Projections(store) as rebuilt:
        rebuilt.catch_up()
        assert projections.digest() == rebuilt.digest()
    assert {e.attempts for e in projections.ledger()} == {3}
    projections.close()


CHILD = """
import sys
from pathlib import Path
from stagebus.projections import Projections
from stagebus.store import SqliteEventStore
home = Path(sys.argv[1])
Projections(SqliteEventStore(home / "log.db"), home / "projections").catch_up(batch_size=41)
"""


def test_processes_catching_up_one_file_apply_each_event_once(tmp_path: Path) -> None:
    # Given a SQLite log
    store = SqliteEventStore(tmp_path / "log.db")
    busy_log(LogWriter(store))
    # When three processes catch up the same projections directory at once
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)]) for _ in range(3)]
    assert [c.wait(timeout=60) for c in children] == [0, 0, 0]
    # Then the state equals a rebuild of the same log
    with Projections(store, tmp_path / "projections") as shared, Projections(store) as rebuilt:
        rebuilt.catch_up()
        assert (shared.lag(), shared.digest()) == (0, rebuilt.digest())


def test_projections_refuse_to_follow_a_different_log(log: LogWriter, tmp_path: Path) -> None:
    # Given projections built from one log
    log.full_run("r1", ("a/1",))
    with Projections(log.store, tmp_path / "projections") as projections:
        projections.catch_up()
    # When another log with as many events is followed with the same directory
    other = MemoryEventStore()
    LogWriter(other).full_run("r9", ("b/1",))
    other.append_one(PartitionIngested(run_id="r9", dataset="b", partition="2", uri="file:///x", content_hash="h",
                                       size=1))
    # Then catching up fails with a clear error instead of mixing the logs
    with Projections(other, tmp_path / "projections") as projections, pytest.raises(StoreError, match="another log"):
        projections.catch_up()


def test_projections_ahead_of_the_log_are_refused(log: LogWriter, tmp_path: Path) -> None:
    # Given projections built from a log of 9 events
    log.full_run("r1", ("a/1",))
    with Projections(log.store, tmp_path / "projections") as projections:
        projections.catch_up()
    # When following an empty log with the same directory
    # Then catching up says the projections were built from another log
    with Projections(MemoryEventStore(), tmp_path / "projections") as projections, \
            pytest.raises(StoreError, match="another log"):
        projections.catch_up()


def test_the_first_catch_up_creates_a_live_generation(log: LogWriter, projections: Projections,
                                                      tmp_path: Path) -> None:
    # Given a home with no projections yet
    log.open("r1")
    # When the projections catch up
    projections.catch_up()
    # Then CURRENT names a generation file that exists
    live = (tmp_path / "projections" / PROJECTIONS_CURRENT).read_text().strip()
    assert (tmp_path / "projections" / f"{live}.db").is_file()


def test_a_reader_follows_a_swap_made_by_another_instance(log: LogWriter, tmp_path: Path) -> None:
    # Given two instances on one directory, the first caught up
    log.full_run("r1", ("a/1",))
    first = Projections(log.store, tmp_path / "projections")
    second = Projections(log.store, tmp_path / "projections")
    first.catch_up()
    before = second.generation
    assert second.checkpoint() == 9
    # When the second replays into a new generation after more events
    log.open("r2")
    second.replay()
    # Then the first reads the new generation on its next call
    assert first.generation != before
    assert first.run("r2") is not None
    first.close()
    second.close()


def test_a_swap_keeps_the_new_and_previous_generations_only(log: LogWriter, projections: Projections,
                                                             tmp_path: Path) -> None:
    # Given a live generation
    log.open("r1")
    projections.catch_up()
    # When replaying three times
    names = [projections.replay().generation for _ in range(3)]
    # Then only the last two generation files remain
    files = sorted(p.name for p in (tmp_path / "projections").glob("*.db"))
    assert files == [f"{names[-2]}.db", f"{names[-1]}.db"]


def test_a_file_with_other_tables_is_rebuilt_when_opened(log: LogWriter, projections: Projections,
                                                         tmp_path: Path) -> None:
    # Given a live generation whose shape this code does not know (an older version wrote it)
    log.full_run("r1", ("a/1",))
    projections.catch_up()
    live = tmp_path / "projections" / f"{projections.generation}.db"
    projections.close()
    with sqlite3.connect(live) as conn:
        conn.execute("UPDATE projection_meta SET value = 'older' WHERE key = 'fingerprint'")
    # When projections are opened again
    with Projections(log.store, tmp_path / "projections") as reopened:
        status = reopened.partition("a", "1").status
        # Then they were rebuilt from the log into a new generation
        assert (status, reopened.generation != live.stem) == ("valid", True)


def test_in_memory_projections_serve_an_in_memory_log(log: LogWriter) -> None:
    # Given an in-memory log
    log.full_run("r1", ("a/1",))
    # When projections without a directory catch up
    with Projections(log.store) as projections:
        projections.catch_up()
        # Then they read like file-backed ones
        assert projections.partition("a", "1").status == "valid"


@pytest.mark.timeout(20)
def test_catching_up_with_nothing_new_takes_no_write_lock(log: LogWriter, projections: Projections,
                                                          tmp_path: Path) -> None:
    # Given caught-up projections, and another process holding the file's write lock
    log.open("r1")
    projections.catch_up()
    holder = sqlite3.connect(tmp_path / "projections" / f"{projections.generation}.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    # When catching up again with nothing new in the log
    applied = projections.catch_up()
    holder.execute("ROLLBACK")
    # Then it returns at once instead of waiting for the lock
    assert applied == 0
