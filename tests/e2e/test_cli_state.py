"""``stagebus state inspect``: the ledger as table and JSON, filters, and a strictly read-only home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from stagebus.cli import app
from stagebus.cli._context import resolve_plan
from stagebus.events import RUN_SCOPE, Manifest, ManifestWritten, StageFailed
from stagebus.store import SqliteEventStore
from tests.support.files import become_nobody, snapshot

KEYS = ["dataset", "partition", "status", "run_id", "attempts", "updated_at", "reason", "records", "rejected"]


def stagebus(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args])


def complete(home: Path, run_id: str, refs: list[str]) -> None:
    """Append every stage's manifest of a run, as the executor would."""
    events = []
    for stage in resolve_plan("reference").plan:
        for ref in refs if stage.scope == "partition" else [RUN_SCOPE]:
            events.append(ManifestWritten(run_id=run_id, stage=stage.name, partition=ref, manifest=Manifest(
                stage=stage.name, run_id=run_id, partition=ref, input_hash="i", output_hash="o", config_hash="c",
                status="complete", started_at="s", ended_at="e")))
    with SqliteEventStore(home / "log.db") as store:
        store.append(events)


def fail(home: Path, run_id: str, stage: str, ref: str) -> None:
    with SqliteEventStore(home / "log.db") as store:
        store.append_one(StageFailed(run_id=run_id, stage=stage, partition=ref, attempt=3, error_type="ValueError",
                                     message="bad row", final=True))


def build_home(home: Path, data: Path) -> None:
    """airports: CA and NY valid in r1; runways: 09L invalid in r2."""
    data.mkdir(exist_ok=True)
    for name in ("CA", "NY", "09L"):
        (data / f"{name}.csv").write_text(f"id\n{name}\n")
    for ref in ("CA", "NY"):
        stagebus(home, "publish", "--dataset", "airports", "--partition", ref, "--file", str(data / f"{ref}.csv"),
                 "--run-id", "r1")
    complete(home, "r1", ["airports/CA", "airports/NY"])
    stagebus(home, "publish", "--dataset", "runways", "--partition", "09L", "--file", str(data / "09L.csv"),
             "--run-id", "r2")
    fail(home, "r2", "ingest", "runways/09L")
    assert stagebus(home, "replay").exit_code == 0  # projections on disk, caught up


@pytest.fixture
def home(tmp_path: Path) -> Path:
    build_home(tmp_path / "home", tmp_path / "data")
    return tmp_path / "home"


def test_inspect_json_is_a_list_of_ledger_rows(home: Path) -> None:
    # Given a home with valid and invalid partitions
    # When inspecting as JSON
    result = stagebus(home, "state", "inspect", "--format", "json")
    # Then stdout is a JSON list of objects with exactly the ledger keys
    rows = json.loads(result.stdout)
    assert result.exit_code == 0
    assert [list(row) for row in rows] == [KEYS] * 3
    assert [(r["dataset"], r["partition"], r["status"], r["run_id"]) for r in rows] == [
        ("airports", "CA", "valid", "r1"), ("airports", "NY", "valid", "r1"), ("runways", "09L", "invalid", "r2")]
    assert rows[2]["reason"] == "ingest: ValueError: bad row"


def test_inspect_filters_by_dataset_status_and_run(home: Path) -> None:
    # Given a home with valid and invalid partitions
    # When filtering
    by_dataset = json.loads(stagebus(home, "state", "inspect", "--dataset", "runways", "--format", "json").stdout)
    by_status = json.loads(stagebus(home, "state", "inspect", "--status", "valid", "--format", "json").stdout)
    by_run = json.loads(stagebus(home, "state", "inspect", "--run-id", "r2", "--format", "json").stdout)
    # Then each filter narrows the rows
    assert [r["partition"] for r in by_dataset] == ["09L"]
    assert [r["partition"] for r in by_status] == ["CA", "NY"]
    assert [r["partition"] for r in by_run] == ["09L"]


def test_inspect_table_shows_rows_and_the_log_head(home: Path) -> None:
    # Given a home with three partitions
    # When inspecting as a table
    result = stagebus(home, "state", "inspect")
    # Then every partition and the footer appear
    assert result.exit_code == 0
    assert "airports" in result.stdout and "09L" in result.stdout and "invalid" in result.stdout
    assert "3 partition(s)" in result.stdout


@pytest.mark.parametrize(("option", "value"), [("--status", "done"), ("--format", "yaml")])
def test_an_unknown_status_or_format_is_one_line_exit_2(home: Path, option: str, value: str) -> None:
    # Given a home
    # When inspecting with an unknown choice
    result = stagebus(home, "state", "inspect", option, value)
    # Then one error line names the choices, exit 2
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"stagebus: error: unknown {option[2:]} {value!r} (use one of "
        + ("pending, valid, invalid)" if option == "--status" else "table, json)")]


def test_inspect_of_a_home_without_a_log_is_one_line_exit_1(tmp_path: Path) -> None:
    # Given an empty directory
    # When inspecting it
    result = stagebus(tmp_path / "nothing", "state", "inspect")
    # Then it fails with one line, creating nothing
    assert result.exit_code == 1 and result.stderr.startswith("stagebus: error: no store at")
    assert not (tmp_path / "nothing").exists()


def test_inspect_shows_records_and_rejected(home: Path) -> None:
    # Given a home whose manifests counted no records (the helper writes default metrics)
    rows = json.loads(stagebus(home, "state", "inspect", "--format", "json").stdout)
    table_out = stagebus(home, "state", "inspect").stdout
    # Then JSON has the counts of each verdict and the table has the columns
    assert [(r["records"], r["rejected"]) for r in rows] == [(0, 0), (0, 0), (None, 0)]
    assert "rec/rej" in table_out and "0/0" in table_out


def test_inspect_as_of_shows_the_ledger_at_a_position(home: Path) -> None:
    # Given a home: positions 1-2 publish airports in r1 (RunOpened + first partition), 3 the second
    # When inspecting as of position 2, and as of the head
    early = json.loads(stagebus(home, "state", "inspect", "--as-of", "2", "--format", "json").stdout)
    now = json.loads(stagebus(home, "state", "inspect", "--format", "json").stdout)
    with SqliteEventStore(home / "log.db") as store:
        head = store.head()
    at_head = json.loads(stagebus(home, "state", "inspect", "--as-of", str(head), "--format", "json").stdout)
    # Then the early view has only the first partition, pending; the head view is today's ledger
    assert [(r["partition"], r["status"]) for r in early] == [("CA", "pending")]
    assert at_head == now


@pytest.mark.parametrize("position", ["-1", "10000"])
def test_inspect_as_of_outside_the_log_is_one_line_exit_2(home: Path, position: str) -> None:
    # When asking for a position before the start or beyond the head
    result = stagebus(home, "state", "inspect", "--as-of", position)
    # Then one error line, exit 2
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "outside the log" in result.stderr


# --- read-only -------------------------------------------------------------------------------


def make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


@pytest.fixture
def lagging_read_only_home(tmp_path: Path) -> Iterator[Path]:
    """A home whose projections lag the log by one event (NY failed later), then made read-only,
    inside a world-readable directory so another user can reach it."""
    shared = Path(tempfile.mkdtemp(prefix="stagebus-ro-"))
    shared.chmod(0o755)
    home = shared / "home"
    build_home(home, tmp_path / "data")
    fail(home, "r1", "link", RUN_SCOPE)  # after the projections were written: they lag by one event
    make_read_only(home)
    yield home
    for path in [home, *home.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    subprocess.run(["rm", "-rf", str(shared)], check=True)


def test_inspect_reads_a_read_only_lagging_home_and_changes_nothing(lagging_read_only_home: Path) -> None:
    # Given a read-only home whose projections lag the log
    home = lagging_read_only_home
    before = snapshot(home)
    # When inspecting it
    result = stagebus(home, "state", "inspect")
    as_json = stagebus(home, "state", "inspect", "--format", "json")
    # Then the view includes the newest event (applied in memory) and says the projections lag
    assert result.exit_code == 0, result.stderr
    assert "lag the log by 1 event(s)" in " ".join(result.stdout.split())
    assert {r["status"] for r in json.loads(as_json.stdout) if r["dataset"] == "airports"} == {"valid"}
    # and not one file, directory, mode or mtime changed
    assert snapshot(home) == before


def nobody_can_run(interpreter: str) -> bool:
    """The virtualenv's interpreter may live under a directory only root may enter."""
    try:
        done = subprocess.run([interpreter, "-c", "pass"], preexec_fn=become_nobody, capture_output=True, timeout=30)
    except OSError:
        return False
    return done.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can switch to user nobody")
def test_inspect_works_as_a_user_who_cannot_write_to_the_home(lagging_read_only_home: Path) -> None:
    # Given a read-only home, and user nobody, who could not write to it even if the code tried
    home = lagging_read_only_home
    before = snapshot(home)
    candidates = [sys.executable, f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"]
    interpreter = next((c for c in candidates if Path(c).exists() and nobody_can_run(c)), None)
    if interpreter is None:
        pytest.skip("no Python interpreter that user nobody may run")
    boot = ("import site, sys; site.addsitedir(sys.argv.pop(1)); from stagebus.cli import main; main()")
    # When nobody runs the console entry point on it
    result = subprocess.run(
        [interpreter, "-B", "-c", boot, sysconfig.get_paths()["purelib"], "--home", str(home), "state", "inspect",
         "--format", "json"],
        preexec_fn=become_nobody, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home.parent)}, cwd=home.parent,
    )
    # Then it succeeds, and nothing under the home changed
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in json.loads(result.stdout)] == ["valid", "valid", "invalid"]
    assert snapshot(home) == before
