"""The consumer contract end to end: `stagebus.read` and `stagebus.changes` over a home the real
embedded runner filled, and `stagebus export`."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import stagebus
from stagebus.cli import app
from stagebus.store import SqliteEventStore


def cli(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args])


def publish_and_run(home: Path, run_id: str, files: dict[str, str], tmp: Path) -> None:
    for partition, text in files.items():
        path = tmp / f"{run_id}-{partition}.csv"
        path.write_text(text)
        result = cli(home, "publish", "--dataset", "airports", "--partition", partition, "--file", str(path),
                     "--run-id", run_id)
        assert result.exit_code == 0, result.output
    assert cli(home, "publish", "--dataset", "airports", "--partition", next(iter(files)), "--file",
               str(tmp / f"{run_id}-{next(iter(files))}.csv"), "--run-id", run_id, "--seal").exit_code == 0
    result = cli(home, "run", "--run-id", run_id)
    assert result.exit_code == 0, result.output


def head(home: Path) -> int:
    with SqliteEventStore(home / "log.db", readonly=True) as store:
        return store.head()


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """r1: CA (2 rows) and NY (1 row) valid; then r2 replaces CA with 3 rows. Returns the home and
    the log position right after r1."""
    tmp = tmp_path_factory.mktemp("consumer")
    home = tmp / "home"
    publish_and_run(home, "r1", {"CA": "code,name\nSFO,San Francisco\nLAX,Los Angeles\n",
                                 "NY": "code,name\nJFK,Kennedy\n"}, tmp)
    after_r1 = head(home)
    publish_and_run(home, "r2", {"CA": "code,name\nSFO,San Francisco\nLAX,Los Angeles\nSAN,San Diego\n"}, tmp)
    return home, after_r1


def codes(snapshot: stagebus.Snapshot) -> list[str]:
    return [row["record"]["code"] for row in snapshot]


def test_read_yields_valid_partitions_at_their_authoritative_run(homes: tuple[Path, int]) -> None:
    # Given CA replaced by r2 and NY valid in r1
    home, _ = homes
    # When a consumer reads the dataset
    with stagebus.read("airports", home=home) as snapshot:
        rows = codes(snapshot)
        runs = {e.partition: e.run_id for e in snapshot.partitions}
        position = snapshot.position
    # Then it sees r2's CA and r1's NY, at the log's head
    assert rows == ["SFO", "LAX", "SAN", "JFK"]
    assert runs == {"CA": "r2", "NY": "r1"}
    assert position == head(home)


def test_read_as_of_an_earlier_position_sees_the_ledger_then(homes: tuple[Path, int]) -> None:
    # Given the position right after r1
    home, after_r1 = homes
    # When reading as of it
    with stagebus.read("airports", home=home, as_of=after_r1) as snapshot:
        # Then CA is r1's two rows
        assert codes(snapshot) == ["SFO", "LAX", "JFK"]
        assert snapshot.position == after_r1


def test_read_leaves_no_file_behind(homes: tuple[Path, int]) -> None:
    # Given a home, and every file in it
    home, _ = homes
    before = sorted((p, p.stat().st_mtime_ns) for p in home.rglob("*"))
    # When a consumer reads
    with stagebus.read("airports", home=home) as snapshot:
        list(snapshot)
    # Then no file was created or changed
    assert sorted((p, p.stat().st_mtime_ns) for p in home.rglob("*")) == before


def test_read_refuses_an_unknown_dataset_and_positions_outside_the_log(homes: tuple[Path, int]) -> None:
    home, _ = homes
    with pytest.raises(stagebus.InvalidInput, match="no dataset 'runways'"):
        stagebus.read("runways", home=home)
    for position in (-1, head(home) + 1):
        with pytest.raises(stagebus.InvalidInput, match="outside the log"):
            stagebus.read("airports", home=home, as_of=position)
    with pytest.raises(stagebus.InvalidInput, match=r"STAGE\.OUTPUT"):
        stagebus.read("airports", home=home, output="records")


def test_read_verifies_artifacts(homes: tuple[Path, int], tmp_path: Path) -> None:
    # Given a copy of the home whose NY records object was tampered with
    import shutil

    home, _ = homes
    copy = tmp_path / "copy"
    shutil.copytree(home, copy)
    with stagebus.read("airports", home=copy) as snapshot:
        ny = next(e for e in snapshot.partitions if e.partition == "NY")
        path = copy / "artifacts" / snapshot.artifact(ny).path
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b"JFK", b"XXX"))
    # When reading it
    # Then the read fails as corrupted rather than yield altered records unnoticed
    with stagebus.read("airports", home=copy) as snapshot, pytest.raises(stagebus.StagebusError, match="corrupted"):
        list(snapshot)


def test_changes_lists_what_changed_since_a_position(homes: tuple[Path, int]) -> None:
    # Given r1 validated CA and NY, then r2 replaced CA
    home, after_r1 = homes
    # When asking for every change, and for those after r1
    everything = stagebus.changes("airports", home=home)
    since = stagebus.changes("airports", home=home, after=after_r1)
    # Then they come in log order, and the position read up to is the head
    assert [(c.partition, c.change, c.run_id) for c in everything.changes] == [
        ("CA", "valid", "r1"), ("NY", "valid", "r1"), ("CA", "replaced", "r2")]
    assert [(c.partition, c.change) for c in since.changes] == [("CA", "replaced")]
    assert since.position == everything.position == head(home)
    assert stagebus.changes("airports", home=home, after=since.position).changes == []


# --- export ----------------------------------------------------------------------------------


def test_export_jsonl_writes_records_and_a_manifest(homes: tuple[Path, int], tmp_path: Path) -> None:
    # Given the home
    home, _ = homes
    out = tmp_path / "airports.jsonl"
    # When exporting as JSON lines
    result = cli(home, "export", "airports", "--format", "jsonl", "--out", str(out))
    # Then the file holds every valid record with its partition, and the manifest describes it
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["_partition"], r["code"]) for r in rows] == [("CA", "SFO"), ("CA", "LAX"), ("CA", "SAN"), ("NY", "JFK")]
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert manifest["position"] == head(home) and manifest["records"] == 4
    assert [(p["partition"], p["run_id"], p["records"]) for p in manifest["partitions"]] == [
        ("CA", "r2", 3), ("NY", "r1", 1)]


def test_export_csv_as_of_a_position(homes: tuple[Path, int], tmp_path: Path) -> None:
    # Given the position after r1
    home, after_r1 = homes
    out = tmp_path / "airports.csv"
    # When exporting CSV as of it
    result = cli(home, "export", "airports", "--format", "csv", "--out", str(out), "--as-of", str(after_r1))
    # Then the header is the union of keys in first-seen order and the rows are r1's
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(out.open()))
    assert rows[0][:2] == ["_partition", "_index"] and rows[0][2:] == ["code", "name"]
    assert [r[2] for r in rows[1:]] == ["SFO", "LAX", "JFK"]
    assert json.loads(Path(f"{out}.manifest.json").read_text())["position"] == after_r1


def test_export_refuses_bad_input_and_writes_nothing(homes: tuple[Path, int], tmp_path: Path) -> None:
    home, _ = homes
    cases = [
        (["runways", "--format", "jsonl", "--out", str(tmp_path / "x.jsonl")], "no dataset 'runways'"),
        (["airports", "--format", "xml", "--out", str(tmp_path / "x.xml")], "unknown format"),
        (["airports", "--format", "jsonl", "--out", str(tmp_path)], "is a directory"),
        (["airports", "--format", "jsonl", "--out", str(tmp_path / "no" / "x.jsonl")], "does not exist"),
        (["airports", "--format", "jsonl", "--out", str(tmp_path / "x.jsonl"), "--as-of", "-3"], "outside the log"),
    ]
    for args, message in cases:
        result = cli(home, "export", *args)
        # Then one error line, a non-zero exit, and nothing written
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_export_parquet(homes: tuple[Path, int], tmp_path: Path) -> None:
    # Given the home, and pyarrow when the parquet extra is installed
    home, _ = homes
    out = tmp_path / "airports.parquet"
    result = cli(home, "export", "airports", "--format", "parquet", "--out", str(out))
    try:
        import pyarrow.parquet as pq
    except ImportError:
        # Then without the extra: one line naming it, exit 2, nothing written
        assert result.exit_code == 2
        assert "pip install 'stagebus[parquet]'" in result.stderr and not out.exists()
        return
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).column("code").to_pylist() == ["SFO", "LAX", "SAN", "JFK"]


def test_export_parquet_without_the_extra_names_it(homes: tuple[Path, int], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a Python where pyarrow cannot be imported (None in sys.modules makes import fail)
    import sys

    home, _ = homes
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    out = tmp_path / "airports.parquet"
    # When exporting as parquet
    result = cli(home, "export", "airports", "--format", "parquet", "--out", str(out))
    # Then one line names the extra, exit 2, nothing written
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "stagebus: error: parquet export needs pyarrow: pip install 'stagebus[parquet]'"]
    assert list(tmp_path.iterdir()) == []
