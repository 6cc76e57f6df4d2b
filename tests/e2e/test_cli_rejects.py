"""``stagebus rejects``: rejected records from the manifests' rejects artifacts, verified, filtered,
bounded, redacted where the pipeline marks fields sensitive, and strictly read-only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from stagebus.cli import app
from tests.support.files import snapshot

CARDS = {"STAGEBUS_PIPELINES": "support.cards:pipeline"}


def stagebus(home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args], env=env)


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stagebus: error: "), result.stderr
    return lines[0]


def publish_and_run(home: Path, files: dict[str, str], run_id: str, *, dataset: str = "airports",
                    pipeline: str = "reference", env: dict[str, str] | None = None) -> None:
    folder = home.parent / f"drop-{run_id}"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    published = stagebus(home, "publish", "--pipeline", pipeline, "--dataset", dataset, "--dir", str(folder),
                         "--run-id", run_id, "--seal", env=env)
    assert published.exit_code == 0, published.output
    ran = stagebus(home, "run", env=env)
    assert ran.exit_code in (0, 1), ran.output


US = "iata,name\nSFO,San Francisco\nJFK\nLAX,\"Los Angeles\nORD,Chicago,extra\n"
CA = "iata,name\nYVR,Vancouver\n"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs: r1 with three bad rows in airports/us, r2 (later) with a clean partition of another dataset."""
    home = tmp_path_factory.mktemp("rejects") / "home"
    publish_and_run(home, {"us.csv": US, "ca.csv": CA}, "r1")
    publish_and_run(home, {"eu.csv": "iata,name\nLHR,Heathrow\nCDG\n"}, "r2", dataset="europe")
    return home


def test_rejects_of_a_run_list_row_stage_error_and_the_raw_record(home: Path) -> None:
    # Given run r1, whose us partition had three malformed rows
    # When listing its rejects as JSON
    result = stagebus(home, "rejects", "r1", "--format", "json")
    # Then each names run, dataset, partition, stage, row number, error and the raw line
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["run_id"], doc["total"], doc["shown"]) == ("r1", 3, 3)
    assert [(r["dataset"], r["partition"], r["stage"], r["row"]) for r in doc["rejects"]] == [
        ("airports", "us", "ingest", 3), ("airports", "us", "ingest", 4), ("airports", "us", "ingest", 5)]
    first = doc["rejects"][0]
    assert first == {"run_id": "r1", "dataset": "airports", "partition": "us", "stage": "ingest", "task": "complete",
                     "row": 3, "error": "line 3: 1 fields, the header has 2", "record": "JFK"}
    # And the table shows the same rows, with a caption counting them
    table = stagebus(home, "rejects", "r1")
    assert table.exit_code == 0 and "3 reject(s) in run r1" in table.stdout and "JFK" in table.stdout


def test_without_a_run_the_latest_is_shown_and_stderr_says_so(home: Path) -> None:
    # When no run is named, Then the latest run (r2) is used, and stderr says which
    result = stagebus(home, "rejects", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["run_id"] == "r2"
    assert "rejects of run r2, the latest" in result.stderr
    # And with a dataset, the latest run holding it
    airports = stagebus(home, "rejects", "--dataset", "airports", "--format", "json")
    assert json.loads(airports.stdout)["run_id"] == "r1" and "the latest holding airports/*" in airports.stderr


def test_filters_by_dataset_partition_and_stage(home: Path) -> None:
    def rows(*args: str) -> list[tuple[str, str]]:
        result = stagebus(home, "rejects", "r1", *args, "--format", "json")
        assert result.exit_code == 0, result.output
        return [(r["partition"], r["stage"]) for r in json.loads(result.stdout)["rejects"]]

    assert rows("--partition", "ca") == []
    assert rows("--dataset", "airports", "--partition", "us") == [("us", "ingest")] * 3
    assert rows("--stage", "normalize") == []


def test_limit_bounds_the_output_and_says_how_many_more(home: Path) -> None:
    # When at most two are asked for
    result = stagebus(home, "rejects", "r1", "--limit", "2")
    doc = json.loads(stagebus(home, "rejects", "r1", "--limit", "2", "--format", "json").stdout)
    # Then two are shown and the rest is counted
    assert (doc["total"], doc["shown"]) == (3, 2)
    assert "1 more not shown (--limit 2" in " ".join(result.stdout.split())


@pytest.mark.parametrize(("args", "message"), [
    (("nope",), "no run 'nope'"),
    (("r1", "--stage", "nope"), "unknown stage 'nope'"),
    (("r1", "--dataset", "nope"), "has no partition nope/*"),
    (("--dataset", "nope"), "no run in the log has a partition nope/*"),
    (("r1", "--format", "xml"), "unknown format"),
    (("r1", "--limit", "-1"), "--limit"),
])
def test_unknown_run_stage_or_partition_is_one_line_exit_2(home: Path, args: tuple[str, ...], message: str) -> None:
    result = stagebus(home, "rejects", *args)
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)


def test_rejects_never_change_the_home_and_never_create_one(home: Path, tmp_path: Path) -> None:
    # Given a populated home
    before = snapshot(home)
    # When listing rejects in every form
    for args in (("r1",), ("--format", "json"), ("r1", "--stage", "ingest")):
        assert stagebus(home, "rejects", *args).exit_code == 0
    # Then nothing under it changed
    assert snapshot(home) == before
    # And in an empty directory it fails without creating a store
    empty = tmp_path / "empty"
    empty.mkdir()
    result = stagebus(empty / "home", "rejects")
    assert result.exit_code != 0 and list(empty.iterdir()) == []


def test_a_tampered_rejects_artifact_is_an_error_not_shown(home: Path, tmp_path: Path) -> None:
    # Given a copy of the home whose rejects object was changed on disk
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    doc = json.loads(stagebus(copy, "manifest", "show", "r1", "--stage", "ingest", "--format", "json").stdout)
    (artifact,) = [a for m in doc if m["partition"] == "airports/us" for a in m["artifacts"] if a["name"] == "rejects"]
    path = copy / "artifacts" / artifact["path"]
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b"JFK", b"XXX"))
    # When listing rejects, Then it fails with one line naming the corrupted artifact
    result = stagebus(copy, "rejects", "r1")
    assert result.exit_code == 1 and "corrupted" in one_error_line(result)
    assert "XXX" not in result.stdout


def test_sensitive_fields_are_redacted_and_unparsable_raw_text_hidden(tmp_path: Path) -> None:
    # Given the cards pipeline (charges marks card_number sensitive): one charge without an amount,
    # and one line ingest cannot parse that holds a card number
    home = tmp_path / "home"
    data = "card_number,amount\n4111111111111111,12.50\n5500000000000004,\n4000000000000002\n"
    publish_and_run(home, {"charges.csv": data}, "r1", dataset="charges", pipeline="cards", env=CARDS)
    # When listing the run's rejects
    result = stagebus(home, "rejects", "r1", "--format", "json", env=CARDS)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    by_stage = {r["stage"]: r for r in doc["rejects"]}
    # Then the record's sensitive value is ***, other fields shown; the raw line is hidden whole
    assert by_stage["charges"]["record"] == {"card_number": "***", "amount": ""}
    assert by_stage["ingest"]["record"].startswith("*** (raw text of 16 characters hidden")
    assert doc["sensitive"] == ["card_number"]
    table = stagebus(home, "rejects", "r1", env=CARDS)
    assert "5500000000000004" not in result.stdout + table.stdout and "4000000000000002" not in table.stdout
    # And without the pipeline loaded, the rejects are refused rather than shown unredacted
    unknown = stagebus(home, "rejects", "r1")
    assert unknown.exit_code == 2 and "STAGEBUS_PIPELINES" in one_error_line(unknown)


def test_the_rejects_of_a_task_its_quality_policy_failed_are_shown(tmp_path: Path) -> None:
    # Given a pipeline whose ingest allows no reject, and a partition with three bad rows
    env = {"STAGEBUS_PIPELINES": "support.cards:strict"}
    home = tmp_path / "home"
    publish_and_run(home, {"us.csv": US}, "r1", pipeline="strict", env=env)
    # When listing the run's rejects
    result = stagebus(home, "rejects", "r1", "--format", "json", env=env)
    # Then the failed attempt's rejects are there, marked as from a failed task
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["total"] == 3
    assert [(r["stage"], r["task"], r["row"]) for r in doc["rejects"]] == [("ingest", "failed", n) for n in (3, 4, 5)]
