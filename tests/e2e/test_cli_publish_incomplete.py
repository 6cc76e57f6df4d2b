"""``publish`` that fails after storing says exactly what is stored and how to finish."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from stagebus.cli import app
from stagebus.events import PartitionIngested, RunOpened, RunSealed
from stagebus.store import SqliteEventStore


def stagebus(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args])


def log_events(home: Path) -> list[object]:
    with SqliteEventStore(home / "log.db", readonly=True) as store:
        return [r.event() for r in store.read()]


def corrupt_projections(home: Path, tmp_path: Path) -> None:
    for db in (home / "projections").glob("*.db"):
        db.write_bytes(b"this is not a sqlite file" * 100)


def projections_of_another_log(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    data = tmp_path / "other.csv"
    data.write_text("id\nX\n")
    for name in ("a", "b", "c"):
        assert stagebus(other, "publish", "--dataset", "o", "--partition", name, "--file", str(data)).exit_code == 0
    shutil.rmtree(home / "projections")
    shutil.copytree(other / "projections", home / "projections")


@pytest.mark.parametrize("breakage", [corrupt_projections, projections_of_another_log])
def test_a_publish_failing_after_its_append_names_the_run_and_the_command_that_finishes_it(
        tmp_path: Path, breakage: object) -> None:
    # Given a home with projections that will fail to catch up after the next append
    home = tmp_path / "home"
    folder = tmp_path / "drop"
    folder.mkdir()
    for name in ("p1", "p2"):
        (folder / f"{name}.csv").write_text(f"id\n{name}\n")
    seed = tmp_path / "seed.csv"
    seed.write_text("id\nS\n")
    assert stagebus(home, "publish", "--dataset", "seed", "--partition", "s", "--file", str(seed)).exit_code == 0
    breakage(home, tmp_path)  # type: ignore[operator]
    before = len(log_events(home))
    # When publishing a folder with --seal
    result = stagebus(home, "publish", "--dataset", "a", "--dir", str(folder), "--seal")
    # Then it fails, and prints the run id on stdout even so
    assert result.exit_code != 0
    run_id = result.stdout.strip()
    assert run_id, result.output
    # And one line says what is stored (the run and p1), what is not (p2, the seal), and the exact command
    (line,) = result.stderr.strip().splitlines()
    assert f"run {run_id}" in line and "stored: a/p1" in line and "not stored: a/p2" in line
    assert "not sealed" in line
    command = re.search(r"finish with: `([^`]+)`", line)
    assert command is not None, line
    assert command.group(1) == (f"stagebus --home {home} publish --pipeline reference --dataset a "
                                f"--dir {folder} --run-id {run_id} --seal")
    # And the log holds exactly that: the run opened with p1, nothing else
    new = log_events(home)[before:]
    assert [type(e) for e in new] == [RunOpened, PartitionIngested]
    assert all(getattr(e, "run_id", None) == run_id for e in new)
    assert isinstance(new[1], PartitionIngested) and new[1].partition == "p1"
    # When the projections are rebuilt and the command it gave is run
    assert stagebus(home, "replay").exit_code == 0
    finish = stagebus(home, *command.group(1).split()[3:])
    # Then the run is complete and sealed, still one run
    assert finish.exit_code == 0, finish.output
    events = log_events(home)[before:]
    assert [type(e) for e in events] == [RunOpened, PartitionIngested, PartitionIngested, RunSealed]
    assert {getattr(e, "run_id", None) for e in events} == {run_id}
