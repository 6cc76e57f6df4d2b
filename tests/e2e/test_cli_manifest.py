"""``stagebus manifest show``: a run's manifests as table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from stagebus.cli import app
from stagebus.events import RUN_SCOPE, Artifact, Manifest, ManifestWritten, StageMetrics
from stagebus.store import SqliteEventStore

DESIGN_FIELDS = {"stage", "run_id", "partition", "input_hash", "output_hash", "config_hash", "status", "started_at",
                 "ended_at", "attempt", "worker", "pipeline_version", "schema_version", "artifacts", "metrics",
                 "reused_from"}


def stagebus(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args])


def manifest(run_id: str, stage: str, ref: str, status: str = "complete") -> ManifestWritten:
    return ManifestWritten(run_id=run_id, stage=stage, partition=ref, manifest=Manifest(
        stage=stage, run_id=run_id, partition=ref, input_hash="in", output_hash="out", config_hash="cfg",
        status=status, started_at="2026-01-01T00:00:00Z", ended_at="2026-01-01T00:00:02Z",  # type: ignore[arg-type]
        worker="host:1:1", pipeline_version="1",
        artifacts=(Artifact(name="rows", path="objects/ab/cd", sha256="cd" * 32, bytes=12, records=3),),
        metrics=StageMetrics(records_in=4, records_out=3, records_rejected=1, duration_s=2.0),
        reused_from="r0" if status == "reused" else None,
    ))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    data = tmp_path / "CA.csv"
    data.write_text("id\n1\n")
    home = tmp_path / "home"
    CliRunner().invoke(app, ["--home", str(home), "publish", "--dataset", "airports", "--partition", "CA",
                             "--file", str(data), "--run-id", "r1", "--seal"])
    with SqliteEventStore(home / "log.db") as store:
        store.append([manifest("r1", "ingest", "airports/CA"), manifest("r1", "normalize", "airports/CA", "reused"),
                      manifest("r1", "link", RUN_SCOPE)])
    return home


def test_manifest_show_json_lists_every_design_field(home: Path) -> None:
    # Given a run with three manifests
    # When showing them as JSON
    result = stagebus(home, "manifest", "show", "r1", "--format", "json")
    # Then each carries the manifest fields of record, artifacts and metrics included
    manifests = json.loads(result.stdout)
    assert result.exit_code == 0
    assert [(m["stage"], m["status"]) for m in manifests] == [("ingest", "complete"), ("normalize", "reused"),
                                                              ("link", "complete")]
    assert all(set(m) == DESIGN_FIELDS for m in manifests)
    assert manifests[0]["artifacts"] == [{"name": "rows", "path": "objects/ab/cd", "sha256": "cd" * 32, "bytes": 12,
                                          "records": 3}]
    assert manifests[0]["metrics"] == {"records_in": 4, "records_out": 3, "records_rejected": 1, "duration_s": 2.0}
    assert manifests[1]["reused_from"] == "r0"


def test_manifest_show_filters_by_stage(home: Path) -> None:
    # Given a run with manifests of three stages
    # When showing one stage
    result = stagebus(home, "manifest", "show", "r1", "--stage", "link", "--format", "json")
    # Then only its manifest is listed
    assert [m["partition"] for m in json.loads(result.stdout)] == ["*"]


def test_manifest_show_table_has_rows_and_totals(home: Path) -> None:
    # Given a run with manifests
    # When showing them as a table
    result = stagebus(home, "manifest", "show", "r1")
    # Then rows and per-stage totals appear
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "3 manifest(s)" in text and "ingest: 1 complete, 0 reused" in text


@pytest.mark.parametrize(("args", "message"), [
    (("r9",), "no run 'r9'"),
    (("r1", "--stage", "publish"), "unknown stage 'publish'"),
    (("r1", "--format", "xml"), "unknown format 'xml'"),
])
def test_manifest_show_refuses_unknown_runs_stages_and_formats(home: Path, args: tuple[str, ...],
                                                               message: str) -> None:
    # Given a home with run r1
    # When asking for something that does not exist
    result = stagebus(home, "manifest", "show", *args)
    # Then one error line, exit 2
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert message in result.stderr
