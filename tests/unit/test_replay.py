"""Replay: rebuild into a new generation, byte-identical twice, one projection alone, verify."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stagebus.errors import InvalidInput
from stagebus.projections import Projections
from stagebus.store import SqliteEventStore

from .conftest import LogWriter


def test_replay_swaps_in_a_generation_equal_to_the_caught_up_one(log: LogWriter, projections: Projections) -> None:
    # Given caught-up projections
    log.full_run("r1", ("a/1", "a/2"))
    projections.catch_up()
    before, digest = projections.generation, projections.digest()
    # When replaying
    result = projections.replay()
    # Then a new generation is live, with the same state
    assert result.generation != before and projections.generation == result.generation
    assert (result.events, result.checkpoint, result.digest) == (13, 13, digest)
    assert projections.digest() == digest


def test_replaying_the_same_log_twice_gives_byte_identical_files(tmp_path: Path) -> None:
    # Given one SQLite log, replayed into two homes
    store = SqliteEventStore(tmp_path / "log.db")
    writer = LogWriter(store)
    writer.full_run("r1", ("a/1", "a/2", "b/1"))
    writer.open("r2")
    writer.ingest("r2", "a/1")
    writer.failed("r2", "ingest", "a/1")
    files = []
    for home in ("one", "two"):
        # When each home replays the log
        with Projections(store, tmp_path / home) as projections:
            files.append(tmp_path / home / f"{projections.replay().generation}.db")
    # Then the two files hold the same bytes
    assert files[0].read_bytes() == files[1].read_bytes()


def test_replay_of_one_projection_rebuilds_it_and_copies_the_others(log: LogWriter, projections: Projections,
                                                                    tmp_path: Path) -> None:
    # Given live projections where both a ledger row and a runs row were damaged by hand
    log.full_run("r1", ("a/1",))
    projections.catch_up()
    live = tmp_path / "projections" / f"{projections.generation}.db"
    with sqlite3.connect(live) as conn:
        conn.execute("UPDATE partition_ledger SET status = 'invalid'")
        conn.execute("UPDATE runs SET pipeline = 'damaged'")
    # When replaying only the ledger
    projections.replay(projection="ledger")
    run = projections.run("r1")
    # Then the ledger is rebuilt and the runs table is the copied, damaged one
    assert projections.partition("a", "1").status == "valid"
    assert run is not None and run.pipeline == "damaged"


def test_replay_of_one_projection_catches_everything_up(log: LogWriter, projections: Projections) -> None:
    # Given live projections that lag the log
    log.full_run("r1", ("a/1",))
    projections.catch_up()
    log.open("r2")
    # When replaying only the manifests projection
    projections.replay(projection="manifests")
    # Then every projection reflects the new event
    assert (projections.lag(), projections.run("r2") is not None) == (0, True)


def test_replay_of_an_unknown_projection_is_refused(projections: Projections) -> None:
    # Given projections
    # When replaying a projection that does not exist
    # Then it is refused as bad input, naming the known ones
    with pytest.raises(InvalidInput, match="ledger"):
        projections.replay(projection="nope")


def test_replay_reports_progress(log: LogWriter, projections: Projections) -> None:
    # Given a log of 9 events
    log.full_run("r1", ("a/1",))
    seen: list[tuple[int, int]] = []
    # When replaying with a progress callback
    projections.replay(progress=lambda done, total: seen.append((done, total)))
    # Then it hears about every event
    assert seen[-1] == (9, 9)


def test_verify_agrees_with_honest_projections(log: LogWriter, projections: Projections) -> None:
    # Given caught-up projections
    log.full_run("r1", ("a/1", "a/2"))
    projections.catch_up()
    # When verifying
    result = projections.verify()
    # Then the rebuilt digest equals the live one
    assert result.ok and result.live_digest == result.rebuilt_digest and result.checkpoint == 13


def test_verify_catches_a_damaged_row(log: LogWriter, projections: Projections, tmp_path: Path) -> None:
    # Given live projections with a damaged manifest row
    log.full_run("r1", ("a/1",))
    projections.catch_up()
    with sqlite3.connect(tmp_path / "projections" / f"{projections.generation}.db") as conn:
        conn.execute("UPDATE manifests SET records_in = 999 WHERE stage = 'ingest'")
    # When verifying
    result = projections.verify()
    # Then the digests differ, and the live generation was not replaced
    assert not result.ok and result.live_digest != result.rebuilt_digest


def test_verify_leaves_no_scratch_file(log: LogWriter, projections: Projections, tmp_path: Path) -> None:
    # Given caught-up projections
    log.full_run("r1", ("a/1",))
    projections.catch_up()
    before = sorted(p.name for p in (tmp_path / "projections").iterdir())
    # When verifying
    projections.verify()
    # Then the directory holds the same files as before
    assert sorted(p.name for p in (tmp_path / "projections").iterdir()) == before
