"""``stagebus query`` over the cumulative served view: every dataset stays served across runs,
and a partition a newer run failed keeps its last valid data, marked stale."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from stagebus.cli import app


def stagebus(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args])


def publish_and_run(home: Path, dataset: str, partition: str, source: Path) -> str:
    published = stagebus(home, "publish", "--dataset", dataset, "--partition", partition, "--file", str(source),
                         "--seal")
    assert published.exit_code == 0, published.output
    done = stagebus(home, "run")
    assert done.exit_code == 0, done.output
    rows = json.loads(stagebus(home, "state", "inspect", "--dataset", dataset, "--format", "json").stdout)
    return str(rows[0]["run_id"])


def hits(home: Path, text: str) -> list[dict]:  # type: ignore[type-arg]
    result = stagebus(home, "query", text, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_two_datasets_published_in_two_runs_are_both_queryable(tmp_path: Path) -> None:
    # Given airports served by one run, then runways by another
    home = tmp_path / "home"
    (tmp_path / "airports.csv").write_text("ident,name\nEGLL,London Heathrow Airport\n")
    (tmp_path / "runways.csv").write_text("airport,name\nEGLL,Heathrow 09L\n")
    first = publish_and_run(home, "airports", "gb", tmp_path / "airports.csv")
    second = publish_and_run(home, "runways", "gb", tmp_path / "runways.csv")
    # When searching, Then both datasets answer, each from the run that served it
    assert first != second
    assert sorted((h["dataset"], h["run_id"], h["stale"]) for h in hits(home, "heathrow")) == [
        ("airports", first, False), ("runways", second, False)]
    # And the table shows each snippet's fields and marked match as text, not as markup
    table = CliRunner().invoke(app, ["--home", str(home), "query", "heathrow"], env={"COLUMNS": "250"})
    assert "name: London [Heathrow] Airport" in table.stdout and "name: [Heathrow] 09L" in table.stdout


def test_a_partition_a_newer_run_failed_is_served_stale(tmp_path: Path) -> None:
    # Given a partition served by run 1, and run 2 republishing it with other content
    home = tmp_path / "home"
    source = tmp_path / "gb.csv"
    source.write_text("ident,name\nEGLL,London Heathrow Airport\n")
    first = publish_and_run(home, "airports", "gb", source)
    source.write_text("ident,name\nEGLL,London Heathrow Airport (renamed)\n")
    assert stagebus(home, "publish", "--dataset", "airports", "--partition", "gb", "--file", str(source),
                    "--seal").exit_code == 0
    # When run 2 fails for it (the file changed after it was published: ingest refuses it)
    source.write_text("ident,name\nEGLL,changed behind the producer's back\n")
    stagebus(home, "run")
    (row,) = json.loads(stagebus(home, "state", "inspect", "--format", "json").stdout)
    assert row["status"] == "invalid" and row["run_id"] != first
    # Then query still serves run 1's record, marked stale with the run that failed
    (hit,) = hits(home, "heathrow")
    assert (hit["record"]["name"], hit["run_id"], hit["stale"], hit["failed_run"]) == (
        "London Heathrow Airport", first, True, row["run_id"])
    table = CliRunner().invoke(app, ["--home", str(home), "query", "heathrow"], env={"COLUMNS": "250"})
    assert f"(stale: run {row['run_id']} failed)" in table.stdout


def test_query_of_a_home_with_nothing_served_says_so_and_creates_nothing(tmp_path: Path) -> None:
    # Given a home that does not exist, When querying it
    result = stagebus(tmp_path / "home", "query", "heathrow")
    # Then one clear line, exit 2, and no home was created
    assert result.exit_code == 2 and "nothing is served" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "home").exists()


def test_an_abandoned_run_changes_nothing_served(tmp_path: Path) -> None:
    # Given a partition served by run 1, and run 2 republishing it and a new partition, never run
    home = tmp_path / "home"
    source = tmp_path / "gb.csv"
    source.write_text("ident,name\nEGLL,London Heathrow Airport\n")
    first = publish_and_run(home, "airports", "gb", source)
    (tmp_path / "gb2.csv").write_text("ident,name\nEGLL,London Heathrow Airport (renamed)\n")
    (tmp_path / "fr.csv").write_text("ident,name\nLFPG,Paris Charles de Gaulle Airport\n")
    for partition, path in (("gb", tmp_path / "gb2.csv"), ("fr", tmp_path / "fr.csv")):
        assert stagebus(home, "publish", "--dataset", "airports", "--partition", partition, "--file", str(path),
                        "--run-id", "r2").exit_code == 0
    # When run 2 is abandoned
    assert stagebus(home, "runs", "abandon", "r2", "--reason", "producer gone").exit_code == 0
    # Then the ledger still names run 1 for gb, and run 1's record is served, not stale
    (hit,) = hits(home, "airport")
    assert (hit["record"]["name"], hit["run_id"], hit["stale"], hit["failed_run"]) == (
        "London Heathrow Airport", first, False, None)
    # And fr, never valid, is not served
    assert hits(home, "paris") == []
