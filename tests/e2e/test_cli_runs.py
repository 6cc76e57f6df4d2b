"""``stagebus runs abandon``: a run its producer will never finish stops being processed and pending."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from stagebus.actors.gate import Gate, TaskRef
from stagebus.cli import app
from stagebus.events import ManifestWritten, RunAbandoned, StageStarted
from stagebus.pipeline.registry import load_pipelines
from stagebus.store import SqliteEventStore


def stagebus(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args])


def log_events(home: Path) -> list[object]:
    with SqliteEventStore(home / "log.db", readonly=True) as store:
        return [r.event() for r in store.read()]


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stagebus: error: "), result.stderr
    return lines[0]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """Two runs: r1 (dataset 'left', never sealed by its producer) and r2 (dataset 'kept', sealed)."""
    home = tmp_path / "home"
    for run_id, dataset, seal in (("r1", "left", ()), ("r2", "kept", ("--seal",))):
        path = tmp_path / f"{dataset}.csv"
        path.write_text("id,name\n1,Ann\n2,Bob\n")
        result = stagebus(home, "publish", "--dataset", dataset, "--partition", "p", "--file", str(path),
                          "--run-id", run_id, *seal)
        assert result.exit_code == 0, result.output
    return home


def test_an_abandoned_run_is_not_processed_and_its_partitions_are_not_pending(home: Path) -> None:
    # Given two open runs, When r1 is abandoned with a reason
    result = stagebus(home, "runs", "abandon", "r1", "--reason", "producer retired")
    assert result.exit_code == 0, result.output
    assert "abandoned run r1" in result.stderr
    # And the embedded runner runs
    assert stagebus(home, "run").exit_code == 0
    # Then r2 was processed and nothing at all of r1
    events = log_events(home)
    assert any(isinstance(e, ManifestWritten) and e.run_id == "r2" for e in events)
    assert not [e for e in events if isinstance(e, StageStarted | ManifestWritten) and e.run_id == "r1"]
    # And the ledger shows r1's partition with the reason, not as pending
    ledger = json.loads(stagebus(home, "state", "inspect", "--format", "json").stdout)
    rows = {row["dataset"]: row for row in ledger}
    assert rows["kept"]["status"] == "valid"
    assert rows["left"]["status"] != "pending" and rows["left"]["run_id"] == "r1"
    assert "abandoned" in rows["left"]["reason"] and "producer retired" in rows["left"]["reason"]
    assert stagebus(home, "state", "inspect", "--status", "pending", "--format", "json").stdout.strip() == "[]"
    # And replaying the log gives the same state
    assert stagebus(home, "replay", "--verify").exit_code == 0


def test_abandoning_twice_stores_one_event_and_says_so(home: Path) -> None:
    # Given an abandoned run, When it is abandoned again
    stagebus(home, "runs", "abandon", "r1")
    again = stagebus(home, "runs", "abandon", "r1", "--reason", "other")
    # Then it succeeds, says nothing was stored, and the log holds one abandonment
    assert again.exit_code == 0, again.output
    assert "already abandoned" in again.stderr and "nothing stored" in again.stderr
    assert sum(isinstance(e, RunAbandoned) for e in log_events(home)) == 1


def test_abandoning_an_unknown_run_is_refused_and_stores_nothing(home: Path) -> None:
    before = log_events(home)
    result = stagebus(home, "runs", "abandon", "nope")
    assert result.exit_code == 2
    assert "nope" in one_error_line(result)
    assert log_events(home) == before


def test_the_gate_refuses_and_publish_refuses_an_abandoned_run(home: Path, tmp_path: Path) -> None:
    # Given an abandoned run
    stagebus(home, "runs", "abandon", "r1")
    # Then the gate stays closed for its tasks, saying why
    with SqliteEventStore(home / "log.db", readonly=True) as store:
        verdict = Gate(store).check(TaskRef("r1", "ingest", "left/p"), load_pipelines("").get("reference"))
    assert not verdict.open and "abandoned" in verdict.reason
    # And publishing into it is refused, storing nothing
    before = log_events(home)
    result = stagebus(home, "publish", "--dataset", "left", "--partition", "q", "--file", str(tmp_path / "left.csv"),
                      "--run-id", "r1")
    assert result.exit_code == 2 and "abandoned" in one_error_line(result)
    assert log_events(home) == before


def test_runs_tables_keep_a_long_run_id_whole_when_piped(tmp_path: Path) -> None:
    # Given a run whose id is as long as a generated one, processed
    home, run_id = tmp_path / "home", "20261202T235118-0537d330-resumed"
    path = tmp_path / "airports.csv"
    path.write_text("code,name\nSFO,San Francisco\n")
    assert stagebus(home, "publish", "--dataset", "airports", "--partition", "us", "--file", str(path),
                    "--run-id", run_id, "--seal").exit_code == 0
    assert stagebus(home, "run").exit_code == 0
    # When the runs are listed and the run is shown to a pipe (80 columns, not a terminal)
    listed, shown = stagebus(home, "runs"), stagebus(home, "runs", "show", run_id)
    # Then the run id, the opening time and the column headers can be read and copied whole
    assert listed.exit_code == 0 and shown.exit_code == 0, listed.output + shown.output
    opened = json.loads(stagebus(home, "runs", "--format", "json").stdout)[0]["opened_at"]
    assert run_id in listed.stdout and opened in listed.stdout
    assert f"run {run_id} " in shown.stdout.splitlines()[0] and opened in shown.stdout.splitlines()[0]
    header = next(line for line in shown.stdout.splitlines() if "stage" in line)
    for column in ("pending", "running", "complete", "records", "rejected", "duration_s"):
        assert column in header
    assert "normalize" in shown.stdout
