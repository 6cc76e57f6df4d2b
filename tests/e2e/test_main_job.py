"""The main job and a user's own data, through the real ``stagebus`` console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

STAGEBUS = [str(Path(sys.executable).parent / "stagebus")]


def stagebus(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEBUS_")}
    done = subprocess.run([*STAGEBUS, "--home", str(home), *args], capture_output=True, text=True, timeout=300,
                          env=env)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def inspect(home: Path, *args: str) -> list[dict]:  # type: ignore[type-arg]
    return json.loads(stagebus(home, "state", "inspect", "--format", "json", *args).stdout)


def test_demo_runs_then_reuses_everything(tmp_path: Path) -> None:
    # Given a fresh home, When the demo runs on its small slice
    first = stagebus(tmp_path, "demo", "--small")
    # Then every partition is valid, and the example queries found hits in the served index
    ledger = inspect(tmp_path)
    assert len(ledger) == 4 and {row["status"] for row in ledger} == {"valid"}
    assert "stagebus query 'json decoder'" in first.stdout and "json" in first.stdout
    # When it runs a second time, Then it says what it reused and executed nothing but serve
    second = stagebus(tmp_path, "demo", "--small")
    assert "reused 14 of 15 stage tasks" in " ".join(second.stdout.split())
    hits = json.loads(stagebus(tmp_path, "query", "json decoder", "--format", "json").stdout)
    assert hits and all(hit["dataset"] == "stdlib" for hit in hits)
    assert stagebus(tmp_path, "replay", "--verify").returncode == 0
    assert stagebus(tmp_path, "log", "verify").returncode == 0


CSV = """id,name,city,population
1,  San   Francisco ,CA,808437
2,"Oakland",CA,433031
3,"broken quote,CA,1
4,Fresno,CA
5,Sacramento,CA,524943
"""


def test_users_csv_with_bad_rows_is_served_and_rejects_are_readable(tmp_path: Path) -> None:
    # Given a folder with a CSV that has a broken quote and a short row, and a JSONL file
    data = tmp_path / "data"
    data.mkdir()
    (data / "cities.csv").write_text(CSV)
    (data / "more.jsonl").write_text('{"id": 6, "name": "Berkeley"}\nnot json\n')
    home = tmp_path / "home"
    # When it is published as a sealed run and run
    run_id = stagebus(home, "publish", "--dataset", "places", "--dir", str(data), "--seal").stdout.strip()
    stagebus(home, "run")
    # Then both partitions are valid and the bad rows are counted in ingest's manifests
    assert {row["status"] for row in inspect(home, "--dataset", "places")} == {"valid"}
    manifests = json.loads(stagebus(home, "manifest", "show", run_id, "--stage", "ingest", "--format", "json").stdout)
    rejected = {m["partition"]: m["metrics"]["records_rejected"] for m in manifests}
    assert rejected["places/cities"] == 2 and rejected["places/more"] == 1
    # And each reject is readable with its row number and error
    cities = next(m for m in manifests if m["partition"] == "places/cities")
    rejects = next(a for a in cities["artifacts"] if a["name"] == "rejects")
    lines = [json.loads(line) for line in (home / "artifacts" / rejects["path"]).read_text().splitlines()]
    assert sorted(line["index"] for line in lines) == [4, 5] and all(line["error"] for line in lines)
    # And the good rows are served: whitespace collapsed, searchable in every text field
    hits = json.loads(stagebus(home, "query", "san francisco", "--format", "json").stdout)
    assert [h["record"]["name"] for h in hits] == ["San Francisco"]
    assert json.loads(stagebus(home, "query", "Berkeley", "--format", "json").stdout)
    # And every task left NDJSON telemetry: a start and an end with its counts
    lines = [json.loads(line) for line in (home / "logs" / "tasks.ndjson").read_text().splitlines()]
    ends = [line for line in lines if line["event"] == "end"]
    assert len(ends) == 2 * 3 + 3 and {"duration_s", "records_in", "records_out", "records_rejected"} <= ends[0].keys()
    assert sum(1 for line in lines if line["event"] == "start") == len(ends)
    # And every line says when, in UTC, in order
    stamps = [datetime.fromisoformat(line["ts"]) for line in lines]
    assert all(s.utcoffset() == timedelta(0) for s in stamps) and stamps == sorted(stamps)


def test_stage_subset_without_its_upstream_is_refused(tmp_path: Path) -> None:
    # Given a published run that has not run yet
    (tmp_path / "a.jsonl").write_text('{"x": 1}\n')
    run_id = stagebus(tmp_path, "publish", "--dataset", "d", "--partition", "a", "--file",
                      str(tmp_path / "a.jsonl"), "--seal").stdout.strip()
    # When only "extract" is asked for
    done = stagebus(tmp_path, "run", "--run-id", run_id, "--stages", "extract", check=False)
    # Then it is refused in one line, exit 2, and nothing ran
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "'extract' needs 'normalize'" in done.stderr
    assert json.loads(stagebus(tmp_path, "manifest", "show", run_id, "--format", "json").stdout) == []


def test_changed_file_fails_ingest_finally_and_exits_nonzero(tmp_path: Path) -> None:
    # Given a partition whose file changed after it was published
    path = tmp_path / "a.jsonl"
    path.write_text('{"x": 1}\n')
    stagebus(tmp_path, "publish", "--dataset", "d", "--partition", "a", "--file", str(path), "--seal")
    path.write_text('{"x": 2}\n')
    # When the pipeline runs
    done = stagebus(tmp_path, "run", check=False)
    # Then it exits 1 naming the failure, and the ledger says invalid with the reason
    assert done.returncode == 1 and "failed" in done.stderr
    (row,) = inspect(tmp_path)
    assert row["status"] == "invalid" and "sha256" in row["reason"]


@pytest.mark.parametrize("args", [["run", "--run-id", "nope"], ["run", "--resume-from", "normalize"],
                                  ["run", "--stages", ""], ["run", "--stages", " , "],
                                  ["query", "x", "--format", "xml"]])
def test_bad_run_and_query_input_is_one_line(tmp_path: Path, args: list[str]) -> None:
    done = stagebus(tmp_path, *args, check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith("stagebus: error:")


def test_users_own_stage_from_the_readme_runs(tmp_path: Path) -> None:
    # Given the README's example pipeline (reference stages plus "prices"), named by STAGEBUS_PIPELINES
    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "catalog.csv").write_text("sku,price\nA1,1.50\nB2,oops\n")
    env = {**os.environ, "PYTHONPATH": str(repo), "STAGEBUS_PIPELINES": "examples.prices:pipeline"}
    home = tmp_path / "home"

    def cli(*args: str) -> str:
        done = subprocess.run([*STAGEBUS, "--home", str(home), *args], capture_output=True, text=True, env=env,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    # When a run of pipeline "shop" is published and run
    run_id = cli("publish", "--pipeline", "shop", "--dataset", "catalog", "--file", str(tmp_path / "catalog.csv"),
                 "--partition", "all", "--seal").strip()
    cli("run")
    # Then the custom stage priced the good row and kept the bad one as a reject
    (manifest,) = json.loads(cli("manifest", "show", run_id, "--stage", "prices", "--format", "json"))
    assert manifest["metrics"]["records_out"] == 1 and manifest["metrics"]["records_rejected"] == 1
    prices = next(a for a in manifest["artifacts"] if a["name"] == "prices")
    assert json.loads((home / "artifacts" / prices["path"]).read_text()) == {"sku": "A1", "cents": 150,
                                                                              "currency": "USD"}
    assert "shop" in cli("pipeline", "list")
