"""The SQLite log of record fsyncs every commit (synchronous=FULL) unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagebus.cli import app
from stagebus.errors import InvalidInput
from stagebus.store import SqliteEventStore

LEVELS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def level_of(store: SqliteEventStore) -> str:
    return LEVELS[store._conn.execute("PRAGMA synchronous").fetchone()[0]]


def test_the_log_is_full_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STAGEBUS_SQLITE_SYNCHRONOUS", raising=False)
    with SqliteEventStore(tmp_path / "log.db") as store:
        assert level_of(store) == "FULL"


@pytest.mark.parametrize("value, level", [("normal", "NORMAL"), ("EXTRA", "EXTRA"), ("", "FULL")])
def test_the_environment_chooses_the_level(value: str, level: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGEBUS_SQLITE_SYNCHRONOUS", value)
    with SqliteEventStore(tmp_path / "log.db") as store:
        assert level_of(store) == level


def test_an_unknown_level_is_refused_before_any_file_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGEBUS_SQLITE_SYNCHRONOUS", "OFF")  # OFF would lose commits on a crash
    with pytest.raises(InvalidInput, match="STAGEBUS_SQLITE_SYNCHRONOUS"):
        SqliteEventStore(tmp_path / "log.db")
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "home"), "log", "verify"])
    assert result.exit_code == 2 and "STAGEBUS_SQLITE_SYNCHRONOUS" in result.stderr
    assert not (tmp_path / "log.db").exists()
