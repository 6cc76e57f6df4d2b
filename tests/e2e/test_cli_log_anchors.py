"""``log verify`` holds the log's head to every anchor it has: the projections' checkpoints and an
operator's ``--expect POSITION:HASH`` (from ``log head``). Damage that keeps the chain intact —
a deleted tail, a re-chained forgery, an older copy restored — must fail it."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from stagebus.cli import app
from stagebus.store.base import GENESIS_HASH, chain_hash


def stagebus(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args])


def publish(home: Path, tmp_path: Path, name: str, *extra: str, run: str = "r1") -> None:
    data = tmp_path / f"{name}.csv"
    data.write_text(f"id\n{name}\n")
    result = stagebus(home, "publish", "--dataset", "ds", "--partition", name, "--file", str(data),
                      "--run-id", run, *extra)
    assert result.exit_code == 0, result.stderr


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A log of five events (run r1 opened with p1..p3, then sealed), projections caught up."""
    home = tmp_path / "home"
    for name in ("p1", "p2", "p3"):
        publish(home, tmp_path, name)
    publish(home, tmp_path, "p1", "--seal")
    return home


def head_anchor(home: Path) -> str:
    result = stagebus(home, "log", "head")
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def delete_tail(home: Path, tmp_path: Path) -> None:
    with sqlite3.connect(home / "log.db") as conn:
        conn.execute("DROP TRIGGER events_no_delete")  # damage from outside stagebus
        conn.execute("DELETE FROM events WHERE position > 3")


def rechain_forgery(home: Path, tmp_path: Path) -> None:
    """Rewrite event 3's payload and recompute every later hash: the chain is intact again."""
    with sqlite3.connect(home / "log.db") as conn:
        conn.execute("DROP TRIGGER events_no_update")
        rows = conn.execute("SELECT position, key, type, version, payload, recorded_at FROM events "
                            "ORDER BY position").fetchall()
        prev = GENESIS_HASH
        for position, key, type_name, version, payload, recorded_at in rows:
            if position == 3:
                payload = bytes(payload).replace(b"p2", b"pX")
            digest = chain_hash(prev, position, key, type_name, version, recorded_at, bytes(payload))
            conn.execute("UPDATE events SET payload = ?, hash = ? WHERE position = ?", (payload, digest, position))
            prev = digest


def restore_older_copy(home: Path, tmp_path: Path) -> None:
    """Put back a copy of the log taken at position 3, under projections that saw position 5."""
    older = tmp_path / "older.db"
    with sqlite3.connect(home / "log.db") as conn:
        conn.execute("DROP TRIGGER events_no_delete")
        conn.execute("DELETE FROM events WHERE position > 3")  # stand-in for a backup taken earlier
        conn.execute("CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
                     "BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END")
    with sqlite3.connect(home / "log.db") as conn, sqlite3.connect(older) as copy:
        conn.backup(copy)
    for sidecar in ("log.db-wal", "log.db-shm"):
        (home / sidecar).unlink(missing_ok=True)
    shutil.copyfile(older, home / "log.db")


DAMAGE: dict[str, Callable[[Path, Path], None]] = {
    "tail-deleted": delete_tail, "rechained-forgery": rechain_forgery, "older-copy-restored": restore_older_copy,
}


def test_an_untouched_log_verifies_against_its_checkpoint_and_its_head(home: Path) -> None:
    anchor = head_anchor(home)
    result = stagebus(home, "log", "verify", "--expect", anchor)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ok: 5 event(s), hash chain intact")
    assert "checkpoint" in result.stdout and f"--expect {anchor.split(':')[0]}" in result.stdout


def test_log_head_prints_position_and_hash(home: Path) -> None:
    anchor = head_anchor(home)
    position, digest = anchor.split(":")
    as_json = json.loads(stagebus(home, "log", "head", "--format", "json").stdout)
    with sqlite3.connect(home / "log.db") as conn:
        last = conn.execute("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1").fetchone()
    assert (int(position), digest) == last and as_json == {"position": last[0], "hash": last[1]}


def test_an_older_anchor_still_verifies_after_more_events(home: Path, tmp_path: Path) -> None:
    anchor = head_anchor(home)
    publish(home, tmp_path, "p4", run="r2")
    assert stagebus(home, "log", "verify", "--expect", anchor).exit_code == 0


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("anchor", ["checkpoint", "expect"])
def test_damage_that_keeps_the_chain_intact_fails_verify(damage: str, anchor: str, home: Path,
                                                         tmp_path: Path) -> None:
    # Given the head recorded by an operator, and then damage the hash chain alone cannot show
    expected = head_anchor(home)
    DAMAGE[damage](home, tmp_path)
    args = ["log", "verify"]
    if anchor == "expect":  # the operator's anchor alone: no projections left to compare with
        shutil.rmtree(home / "projections")
        args += ["--expect", expected]
    # When verifying the log
    result = stagebus(home, *args)
    # Then it fails in one line that names the position, says to restore, and warns off replay
    assert result.exit_code == 1, result.stdout
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "the log lost or rewrote events" in message
    assert "restore the log from a backup" in message and "do not run `stagebus replay`" in message
    if damage != "rechained-forgery":
        assert "after position 3" in message


def test_a_malformed_expect_is_bad_input(home: Path) -> None:
    for bad in ("5", "x:abc", "5:", "-1:" + "0" * 64, "5:XYZ"):
        result = stagebus(home, "log", "verify", "--expect", bad)
        assert result.exit_code == 2, (bad, result.stdout)
        assert "--expect" in result.stderr


def test_an_expect_beyond_an_empty_log_fails(tmp_path: Path) -> None:
    home = tmp_path / "home"
    publish(home, tmp_path, "p1")
    anchor = head_anchor(home)
    (home / "log.db").unlink()
    with sqlite3.connect(home / "log.db") as conn:
        conn.execute("CREATE TABLE events (position INTEGER PRIMARY KEY, key TEXT UNIQUE, type TEXT NOT NULL, "
                     "version INTEGER NOT NULL, payload BLOB NOT NULL, recorded_at TEXT NOT NULL, hash TEXT NOT NULL)")
    result = stagebus(home, "log", "verify", "--expect", anchor)
    assert result.exit_code == 1 and "after position 0" in result.stderr
