"""``stagebus replay``: rebuild, rebuild one projection, verify."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from stagebus.cli import app
from stagebus.store.keys import PROJECTIONS_CURRENT, PROJECTIONS_DIR


def stagebus(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    data = tmp_path / "CA.csv"
    data.write_text("id\n1\n")
    home = tmp_path / "home"
    stagebus(home, "publish", "--dataset", "airports", "--partition", "CA", "--file", str(data), "--run-id", "r1")
    return home


def live_generation(home: Path) -> Path:
    projections = home / PROJECTIONS_DIR
    return projections / f"{(projections / PROJECTIONS_CURRENT).read_text().strip()}.db"


def test_replay_swaps_in_a_new_generation(home: Path) -> None:
    # Given a home with live projections
    before = live_generation(home)
    # When replaying
    result = stagebus(home, "replay")
    # Then a new generation is live and the output names it and the digest
    assert result.exit_code == 0
    after = live_generation(home)
    assert after != before and f"generation {after.stem}" in result.stdout and "digest" in result.stdout


def test_replay_of_one_projection_names_it(home: Path) -> None:
    # Given a home
    # When replaying only the ledger
    result = stagebus(home, "replay", "--projection", "ledger")
    # Then it says so
    assert result.exit_code == 0 and "projection 'ledger'" in result.stdout


def test_replay_verify_passes_on_honest_projections(home: Path) -> None:
    # Given live projections
    # When verifying
    result = stagebus(home, "replay", "--verify")
    # Then both digests are printed, equal, and the exit code is 0
    lines = result.stdout.splitlines()
    assert result.exit_code == 0
    assert lines[0].split()[1] == lines[1].split()[1]


def test_replay_verify_fails_on_damaged_projections_printing_both_digests(home: Path) -> None:
    # Given live projections with a damaged ledger row
    with sqlite3.connect(live_generation(home)) as conn:
        conn.execute("UPDATE partition_ledger SET attempts = 7")
    # When verifying
    result = stagebus(home, "replay", "--verify")
    # Then exit 1, both (different) digests on stdout and one error line
    assert result.exit_code == 1
    live, rebuilt = (line.split()[1] for line in result.stdout.splitlines()[:2])
    assert live != rebuilt
    assert result.stderr.startswith("stagebus: error: the projections differ from a replay")


@pytest.mark.parametrize(("args", "message"), [
    (("--projection", "nope"), "no projection named 'nope'"),
    (("--projection", "ledger", "--verify"), "do not combine"),
])
def test_replay_refuses_bad_options(home: Path, args: tuple[str, ...], message: str) -> None:
    # Given a home
    # When replaying with a bad option
    result = stagebus(home, "replay", *args)
    # Then one error line, exit 2
    assert result.exit_code == 2 and message in result.stderr


def test_replay_draws_a_progress_bar_on_long_replays(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a replay long enough for a bar (the threshold lowered to one event)
    monkeypatch.setattr("stagebus.cli._render.PROGRESS_FROM", 1)
    # When replaying
    result = stagebus(home, "replay")
    # Then the bar went to stderr and the summary to stdout
    assert result.exit_code == 0
    assert "replaying" in result.stderr and "replayed all projections" in result.stdout


@pytest.mark.parametrize("args", [["replay", "--verify"], ["replay"], ["gc", "--dry-run"], ["gc"]])
def test_checks_and_cleanups_in_an_empty_directory_create_nothing(tmp_path: Path, args: list[str]) -> None:
    import subprocess
    import sys

    # Given a directory with no stagebus home in it / When a check or clean-up runs there
    done = subprocess.run([str(Path(sys.executable).parent / "stagebus"), "--home", str(tmp_path / "home"), *args],
                          capture_output=True, text=True, timeout=60)
    # Then it says there is no log, exits non-zero, and creates no state (it once reported "ok")
    assert done.returncode == 1 and done.stderr.strip() == f"stagebus: error: no store at {tmp_path}/home/log.db"
    assert list(tmp_path.iterdir()) == []
