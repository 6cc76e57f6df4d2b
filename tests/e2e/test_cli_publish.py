"""``stagebus publish``: run ids, idempotent retries, --dir, --seal, and bad input that stores nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from stagebus.cli import app
from stagebus.events import PartitionIngested, RunOpened, RunSealed
from stagebus.store import SqliteEventStore


def stagebus(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args])


def log_events(home: Path) -> list[object]:
    if not (home / "log.db").exists():
        return []
    with SqliteEventStore(home / "log.db", readonly=True) as store:
        return [r.event() for r in store.read()]


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stagebus: error: "), result.stderr
    return lines[0]


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "state=CA.csv"
    path.write_text("iata,name\nSFO,San Francisco\n")
    return path


def test_publish_prints_a_new_run_id_and_stores_the_partition(tmp_path: Path, csv: Path) -> None:
    # Given an empty home
    # When publishing a partition without a run id
    result = stagebus(tmp_path, "publish", "--dataset", "airports", "--partition", "state=CA", "--file", str(csv))
    # Then stdout is just the generated run id, and the log holds the run and the partition
    assert result.exit_code == 0, result.stderr
    run_id = result.stdout.strip()
    opened, ingested = log_events(tmp_path)
    assert isinstance(opened, RunOpened) and opened.run_id == run_id
    assert isinstance(ingested, PartitionIngested) and ingested.run_id == run_id
    assert "published airports/state=CA" in result.stderr


def test_publishing_the_same_partition_twice_stores_one_event_and_says_so(tmp_path: Path, csv: Path) -> None:
    # Given a published partition
    args = ("publish", "--dataset", "airports", "--partition", "state=CA", "--file", str(csv), "--run-id", "r1")
    stagebus(tmp_path, *args)
    # When it is published again
    again = stagebus(tmp_path, *args)
    # Then it succeeds, says nothing was stored, and the log still holds one partition event
    assert again.exit_code == 0 and again.stdout.strip() == "r1"
    assert "already published" in again.stderr and "nothing stored" in again.stderr
    assert sum(isinstance(e, PartitionIngested) for e in log_events(tmp_path)) == 1


def test_publish_records_metadata(tmp_path: Path, csv: Path) -> None:
    # Given a partition with two metadata pairs, one with '=' in its value
    # When publishing it
    stagebus(tmp_path, "publish", "--dataset", "airports", "--partition", "p", "--file", str(csv),
             "--meta", "source=faa", "--meta", "query=a=b")
    # Then the event carries both
    ingested = log_events(tmp_path)[-1]
    assert isinstance(ingested, PartitionIngested)
    assert ingested.metadata == {"query": "a=b", "source": "faa"}


def test_publish_dir_publishes_every_csv_and_jsonl_file_by_stem_and_seals(tmp_path: Path) -> None:
    # Given a folder with two data files and one other file
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "state=CA.csv").write_text("iata\nSFO\n")
    (folder / "state=NY.jsonl").write_text('{"iata": "JFK"}\n')
    (folder / "README.txt").write_text("not data")
    # When publishing the folder with --seal
    result = stagebus(tmp_path / "home", "publish", "--dataset", "airports", "--dir", str(folder), "--run-id", "r1",
                      "--seal")
    # Then both data files are partitions named by stem, and the seal lists them
    assert result.exit_code == 0, result.stderr
    events = log_events(tmp_path / "home")
    assert [e.partition for e in events if isinstance(e, PartitionIngested)] == ["state=CA", "state=NY"]
    sealed = events[-1]
    assert isinstance(sealed, RunSealed) and sealed.partitions == ("airports/state=CA", "airports/state=NY")


def test_publish_dir_refuses_partition_and_file_options(tmp_path: Path, csv: Path) -> None:
    # Given a folder
    # When --dir is combined with --partition
    result = stagebus(tmp_path, "publish", "--dataset", "a", "--dir", str(tmp_path), "--partition", "p")
    # Then it is refused as bad input and nothing is stored
    assert result.exit_code == 2
    assert "--dir" in one_error_line(result)
    assert log_events(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--partition", "state=CA", "--file", "missing.csv"), "no such file"),
        (("--partition", "..etc", "--file", "CSV"), "'..'"),
        (("--partition", "a/b", "--file", "CSV"), "path separator"),
        (("--partition", "a\x1b[31mb", "--file", "CSV"), "control character"),
        (("--partition", "p", "--file", "CSV", "--meta", "novalue"), "KEY=VALUE"),
        (("--partition", "p", "--file", "CSV", "--pipeline", "nope"), "unknown pipeline"),
        (("--partition", "p", "--file", "CSV", "--run-id", "a/b"), "path separator"),
        (("--partition", "p"), "--partition and --file"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_stores_nothing(tmp_path: Path, csv: Path, args: tuple[str, ...],
                                                         message: str) -> None:
    # Given a home whose log already holds a run
    home = tmp_path / "home"
    stagebus(home, "publish", "--dataset", "airports", "--partition", "ok", "--file", str(csv), "--run-id", "r0")
    before = log_events(home)
    # When publishing with a bad argument
    result = stagebus(home, "publish", "--dataset", "airports", *(str(csv) if a == "CSV" else a for a in args))
    # Then one line names the problem, the exit code is 2, and the log is unchanged
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)
    assert log_events(home) == before


def test_publishing_into_a_sealed_run_is_refused(tmp_path: Path, csv: Path) -> None:
    # Given a sealed run
    stagebus(tmp_path, "publish", "--dataset", "a", "--partition", "p1", "--file", str(csv), "--run-id", "r1",
             "--seal")
    before = log_events(tmp_path)
    # When publishing a new partition into it
    result = stagebus(tmp_path, "publish", "--dataset", "a", "--partition", "p2", "--file", str(csv), "--run-id", "r1")
    # Then it is refused and nothing is stored
    assert result.exit_code == 2 and "sealed" in one_error_line(result)
    assert log_events(tmp_path) == before


@pytest.mark.parametrize(("dataset", "partition"), [(".", "foo"), ("foo", "."), ("a", "...")])
def test_a_dot_only_dataset_or_partition_is_refused(tmp_path: Path, csv: Path, dataset: str, partition: str) -> None:
    # Given an empty home
    # When publishing with a dataset or partition made only of dots
    result = stagebus(tmp_path, "publish", "--dataset", dataset, "--partition", partition, "--file", str(csv))
    # Then one line says so, the exit code is 2, and nothing is stored
    assert result.exit_code == 2, result.output
    assert "only dots" in one_error_line(result)
    assert log_events(tmp_path) == []


def test_publish_dir_refuses_a_file_whose_stem_is_not_a_valid_name_and_names_it(tmp_path: Path) -> None:
    # Given a folder with a good file and '..csv', whose stem would be partition '.'
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "good.csv").write_text("iata\nSFO\n")
    (folder / "..csv").write_text("iata\nJFK\n")
    # When publishing the folder
    result = stagebus(tmp_path / "home", "publish", "--dataset", "airports", "--dir", str(folder))
    # Then one line names the file and why, the exit code is 2, and nothing is stored
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "..csv" in line and "only dots" in line
    assert log_events(tmp_path / "home") == []


def test_a_name_too_long_on_disk_is_refused_at_publish(tmp_path: Path, csv: Path) -> None:
    # Given a partition name of 64 emoji: 64 characters, but 768 bytes once encoded for the disk
    # When publishing it, Then it is refused at once (not at run time), and nothing is stored
    name = "\N{GRINNING FACE}" * 64
    result = stagebus(tmp_path, "publish", "--dataset", "a", "--partition", name, "--file", str(csv))
    assert result.exit_code == 2, result.output
    assert "bytes" in one_error_line(result)
    assert log_events(tmp_path) == []


def test_publish_dir_takes_every_extension_ingest_reads_and_lists_what_it_skipped(tmp_path: Path) -> None:
    # Given a folder with one file of each format ingest reads, and two it does not
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.csv").write_text("iata\nSFO\n")
    (folder / "b.tsv").write_text("iata\tname\nJFK\tKennedy\n")
    (folder / "c.jsonl").write_text('{"iata": "LAX"}\n')
    (folder / "d.ndjson").write_text('{"iata": "ORD"}\n')
    (folder / "e.json").write_text('[{"iata": "SEA"}]')
    (folder / "README.txt").write_text("not data")
    (folder / "notes.md").write_text("not data")
    # When publishing the folder
    result = stagebus(tmp_path / "home", "publish", "--dataset", "airports", "--dir", str(folder), "--run-id", "r1")
    # Then all five are partitions, and one stderr line lists the skipped files
    assert result.exit_code == 0, result.stderr
    events = log_events(tmp_path / "home")
    assert [e.partition for e in events if isinstance(e, PartitionIngested)] == ["a", "b", "c", "d", "e"]
    (skipped,) = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert "README.txt" in skipped and "notes.md" in skipped and "2 file(s)" in skipped


def test_a_json_array_file_publishes_and_runs_to_valid_records(tmp_path: Path) -> None:
    # Given a .json file holding an array of objects
    data = tmp_path / "us.json"
    data.write_text('[{"iata": "SFO", "name": "San Francisco International"}, {"iata": "JFK", "name": "Kennedy"}]')
    home = tmp_path / "home"
    # When it is published and run
    published = stagebus(home, "publish", "--dataset", "airports", "--partition", "us", "--file", str(data),
                         "--run-id", "r1", "--seal")
    assert published.exit_code == 0, published.stderr
    ran = stagebus(home, "run")
    # Then the run succeeds, the partition is valid, and both records went through
    assert ran.exit_code == 0, ran.output
    import json

    (row,) = json.loads(stagebus(home, "state", "inspect", "--format", "json").stdout)
    assert row["status"] == "valid", row
    manifest = json.loads(stagebus(home, "manifest", "show", "r1", "--stage", "ingest", "--format", "json").stdout)
    assert manifest[0]["metrics"]["records_rejected"] == 0
    assert {a["name"]: a["records"] for a in manifest[0]["artifacts"]}["records"] == 2


def test_a_file_whose_format_ingest_cannot_tell_is_refused_at_publish(tmp_path: Path) -> None:
    # Given a file with an extension ingest does not know
    data = tmp_path / "airports.xml"
    data.write_text("<airports/>")
    home = tmp_path / "home"
    # When publishing it, Then it is refused at once, naming the ways to fix it, and nothing is stored
    result = stagebus(home, "publish", "--dataset", "a", "--partition", "p", "--file", str(data))
    assert result.exit_code == 2, result.output
    assert "cannot tell the format" in one_error_line(result) and "format=csv|jsonl|json" in result.stderr
    assert log_events(home) == []
    # And naming its format in metadata makes it publishable
    named = stagebus(home, "publish", "--dataset", "a", "--partition", "p", "--file", str(data), "--meta",
                     "format=jsonl")
    assert named.exit_code == 0, named.stderr


def test_a_conflicting_republish_exits_non_zero_says_what_to_do_and_stores_nothing(tmp_path: Path, csv: Path) -> None:
    # Given a published partition
    home = tmp_path / "home"
    args = ("publish", "--dataset", "airports", "--partition", "state=CA", "--run-id", "r1")
    assert stagebus(home, *args, "--file", str(csv)).exit_code == 0
    before = log_events(home)
    # When the same partition is published into the same run with other content
    other = tmp_path / "other.csv"
    other.write_text("iata,name\nLAX,Los Angeles\n")
    result = stagebus(home, *args, "--file", str(other))
    # Then it fails with exit 2, one line saying the log keeps the first and how to publish the new content
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "other content" in line and "new run" in line
    assert log_events(home) == before
    # And republishing the same content is still a quiet no-op
    assert stagebus(home, *args, "--file", str(csv)).exit_code == 0


def test_a_conflict_in_a_dir_stores_none_of_its_files(tmp_path: Path) -> None:
    # Given a run holding partition a, and a folder with a changed a and a new b
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.csv").write_text("iata\nSFO\n")
    home = tmp_path / "home"
    assert stagebus(home, "publish", "--dataset", "d", "--dir", str(folder), "--run-id", "r1").exit_code == 0
    (folder / "a.csv").write_text("iata\nLAX\n")
    (folder / "b.csv").write_text("iata\nJFK\n")
    before = log_events(home)
    # When publishing the folder into the same run again
    result = stagebus(home, "publish", "--dataset", "d", "--dir", str(folder), "--run-id", "r1")
    # Then it is refused, and b was not stored either
    assert result.exit_code == 2 and "d/a" in one_error_line(result)
    assert log_events(home) == before
