"""ingest through the real Executor: verified raw payload, metadata, records and rejects."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagebus.artifacts.local import sha256_file
from stagebus.errors import PermanentStageError
from support.reference import ReferenceRun

CSV = b"id,name,city\n1,Ann,Oslo\n2,Bob\n3,Cy,Rome\n"


@pytest.fixture
def run(tmp_path: Path) -> ReferenceRun:
    return ReferenceRun(tmp_path / "artifacts").open()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_ingest_keeps_the_raw_bytes_exactly(run: ReferenceRun, tmp_path: Path) -> None:
    # Given a published CSV
    source = write(tmp_path, "people.csv", CSV)
    ref = run.publish("people", "2024", source)
    # When ingested
    run.execute("ingest", ref)
    # Then the raw output holds the same bytes under the published hash
    raw = run.artifact_path("ingest", "raw", ref)
    assert raw.read_bytes() == CSV
    assert sha256_file(raw) == sha256_file(source)


def test_ingest_stores_metadata_beside_the_raw_payload(run: ReferenceRun, tmp_path: Path) -> None:
    # Given a published CSV with producer metadata
    ref = run.publish("people", "2024", write(tmp_path, "people.csv", CSV), metadata={"owner": "hr"})
    # When ingested
    run.execute("ingest", ref)
    # Then the metadata record describes the payload and what parsing made of it
    (meta,) = run.records("ingest", "metadata", ref)
    assert meta["format"] == "csv" and meta["size"] == len(CSV) and meta["metadata"] == {"owner": "hr"}
    assert (meta["records"], meta["rejected"]) == (2, 1)


def test_ingest_emits_parsed_records_with_their_line_numbers(run: ReferenceRun, tmp_path: Path) -> None:
    # Given a published CSV
    ref = run.publish("people", "2024", write(tmp_path, "people.csv", CSV))
    # When ingested
    run.execute("ingest", ref)
    # Then good rows are records indexed by their line
    records = run.records("ingest", "records", ref)
    assert records == [{"index": 2, "record": {"id": "1", "name": "Ann", "city": "Oslo"}},
                       {"index": 4, "record": {"id": "3", "name": "Cy", "city": "Rome"}}]


def test_ingest_rejects_malformed_rows_with_error_and_row_number(run: ReferenceRun, tmp_path: Path) -> None:
    # Given a CSV with a short row
    ref = run.publish("people", "2024", write(tmp_path, "people.csv", CSV))
    # When ingested
    run.execute("ingest", ref)
    # Then the row is in rejects, and counted in the manifest
    (reject,) = run.records("ingest", "rejects", ref)
    assert reject == {"index": 3, "error": "line 3: 2 fields, the header has 3", "record": "2,Bob"}
    metrics = run.manifest("ingest", ref).metrics
    assert (metrics.records_in, metrics.records_rejected) == (3, 1)


def test_ingest_parses_jsonl_and_rejects_non_objects(run: ReferenceRun, tmp_path: Path) -> None:
    # Given JSON lines with an array among objects
    ref = run.publish("events", "day1", write(tmp_path, "events.jsonl", b'{"a": 1}\n[2]\n{"a": 3}\n'))
    # When ingested
    run.execute("ingest", ref)
    # Then objects flow on and the array is rejected
    assert [r["record"] for r in run.records("ingest", "records", ref)] == [{"a": 1}, {"a": 3}]
    assert [r["index"] for r in run.records("ingest", "rejects", ref)] == [2]


def test_format_metadata_overrides_the_file_extension(run: ReferenceRun, tmp_path: Path) -> None:
    # Given a .txt file announced as JSON lines
    ref = run.publish("events", "day1", write(tmp_path, "events.txt", b'{"a": 1}\n'), metadata={"format": "jsonl"})
    # When ingested
    run.execute("ingest", ref)
    # Then it is parsed as JSON lines
    assert [r["record"] for r in run.records("ingest", "records", ref)] == [{"a": 1}]


def test_sha_mismatch_is_a_final_failure_without_retry(run: ReferenceRun, tmp_path: Path) -> None:
    # Given a partition whose file no longer matches its published hash
    ref = run.publish("people", "2024", write(tmp_path, "people.csv", CSV), content_hash="0" * 64)
    # When ingest runs as a first attempt that could still be retried
    with pytest.raises(PermanentStageError, match="changed after it was published"):
        run.execute("ingest", ref, attempt=1, final=False)
    # Then the failure is recorded as final, and no manifest exists
    (failure,) = run.failures()
    assert failure.final and failure.error_type == "PermanentStageError"
    assert run.store.get(f"manifest/{run.run_id}/ingest/{ref}") is None


def test_unknown_format_fails_for_good(run: ReferenceRun, tmp_path: Path) -> None:
    # Given a file ingest cannot tell the format of
    ref = run.publish("sheets", "q1", write(tmp_path, "q1.xlsx", b"PK\x03\x04"))
    # When ingested
    with pytest.raises(PermanentStageError):
        run.execute("ingest", ref, attempt=1, final=False)
    # Then the failure is final
    assert [f.final for f in run.failures()] == [True]



def test_ingest_reads_a_json_array_file_into_records_and_element_rejects(run: ReferenceRun, tmp_path: Path) -> None:
    # Given a published .json file holding an array with one bad element
    data = b'[{"iata": "SFO", "name": "San Francisco"}, 42, {"iata": "JFK"}]'
    ref = run.publish("airports", "us", write(tmp_path, "us.json", data))
    # When ingested
    run.execute("ingest", ref)
    # Then the objects are records numbered by their position, the bad element a reject
    assert run.records("ingest", "records", ref) == [
        {"index": 1, "record": {"iata": "SFO", "name": "San Francisco"}}, {"index": 3, "record": {"iata": "JFK"}}]
    (reject,) = run.records("ingest", "rejects", ref)
    assert reject == {"index": 2, "error": "element 2: a record must be a JSON object, not a number", "record": "42"}
    (meta,) = run.records("ingest", "metadata", ref)
    assert (meta["format"], meta["records"], meta["rejected"]) == ("json", 2, 1)
