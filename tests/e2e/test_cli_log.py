"""``stagebus log verify`` and ``stagebus log tail``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from stagebus.cli import app


def stagebus(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A log of five events: run r1 opened with partitions p1..p3, then sealed."""
    home = tmp_path / "home"
    for name in ("p1", "p2", "p3"):
        data = tmp_path / f"{name}.csv"
        data.write_text(f"id\n{name}\n")
        stagebus(home, "publish", "--dataset", "ds", "--partition", name, "--file", str(data), "--run-id", "r1")
    stagebus(home, "publish", "--dataset", "ds", "--partition", "p1", "--file", str(tmp_path / "p1.csv"),
             "--run-id", "r1", "--seal")
    return home


def test_log_verify_accepts_an_intact_chain(home: Path) -> None:
    # Given an untouched log
    # When verifying it
    result = stagebus(home, "log", "verify")
    # Then it reports every event checked
    assert result.exit_code == 0
    assert result.stdout.strip() == "ok: 5 event(s), hash chain intact, checkpoint 5 held"


def test_log_verify_names_the_first_broken_position(home: Path) -> None:
    # Given a log whose third event was edited behind the log's back
    with sqlite3.connect(home / "log.db") as conn:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET payload = CAST(replace(CAST(payload AS TEXT), 'p2', 'pX') AS BLOB) "
                     "WHERE position = 3")
    # When verifying it
    result = stagebus(home, "log", "verify")
    # Then it fails with one line naming position 3
    assert result.exit_code == 1
    assert result.stderr.startswith("stagebus: error: the log is broken at position 3:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_log_tail_json_prints_one_event_per_line_with_log_stamps(home: Path) -> None:
    # Given a log of five events
    # When tailing the last two as JSON
    result = stagebus(home, "log", "tail", "-n", "2", "--format", "json")
    # Then there are two JSON lines, oldest first, with position, type, key, recorded_at and the fields
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["position"] for e in events] == [4, 5]
    assert list(events[0])[:4] == ["position", "type", "key", "recorded_at"]
    assert (events[0]["type"], events[0]["key"], events[0]["partition"]) == (
        "partition_ingested", "ingest/r1/ds/p3", "p3")
    assert (events[1]["type"], events[1]["partitions"]) == ("run_sealed", ["ds/p1", "ds/p2", "ds/p3"])


def test_log_tail_table_defaults_to_the_last_ten(home: Path) -> None:
    # Given a log of five events
    # When tailing as a table
    result = stagebus(home, "log", "tail")
    # Then every event type appears
    assert result.exit_code == 0
    assert "run_opened" in result.stdout and "run_sealed" in result.stdout


@pytest.mark.parametrize(("args", "message"), [(("-n", "0"), "-n must be at least 1"),
                                               (("--format", "csv"), "unknown format 'csv'")])
def test_log_tail_refuses_bad_options(home: Path, args: tuple[str, ...], message: str) -> None:
    # Given a log
    # When tailing with a bad option
    result = stagebus(home, "log", "tail", *args)
    # Then one error line, exit 2
    assert result.exit_code == 2 and message in result.stderr
