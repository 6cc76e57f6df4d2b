"""A JSON row nested far deeper than any record needs is a reject of its row, never of its run."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from stagebus.stages import parsing, query
from stagebus.stages.parsing import parse_jsonl
from support.reference import ReferenceRun

DEEP = 1000


def deep_row(depth: int = DEEP) -> bytes:
    return b'{"name":"deep","nest":' + b"[" * depth + b"]" * depth + b"}"


def test_deep_jsonl_row_is_a_reject_and_parsing_goes_on() -> None:
    # Given a deep row between two good rows
    data = b'{"name":"a"}\n' + deep_row() + b'\n{"name":"b"}\n'
    # When parsed
    rows = list(parse_jsonl(io.BytesIO(data)))
    # Then the deep row is a reject naming its line, the good rows are records
    assert [r.index for r in rows if r.record is not None] == [1, 3]
    (bad,) = [r for r in rows if r.record is None]
    assert bad.index == 2
    assert bad.error is not None and bad.error.startswith("line 2: ") and "deep" in bad.error


def test_partition_with_a_deep_row_is_valid_and_the_run_completes(tmp_path: Path) -> None:
    # Given a JSONL partition with one 1000-deep row and two good rows
    source = tmp_path / "things.jsonl"
    source.write_bytes(b'{"name":"alpha tea"}\n' + deep_row() + b'\n{"name":"beta tea"}\n')
    run = ReferenceRun(tmp_path / "art").open()
    run.publish("things", "p1", source)
    # When every stage runs (run_all asserts each one completes)
    run.run_all()
    # Then ingest kept one reject, the good rows flowed through to the served index
    assert run.manifest("ingest", "things/p1").metrics.records_rejected == 1
    assert run.manifest("ingest", "things/p1").status == "complete"
    (reject,) = run.records("ingest", "rejects", "things/p1")
    assert reject["index"] == 2
    assert sorted(h.index for h in query.search(run.artifacts.root, "tea")) == [1, 3]
    assert run.failures() == []


def test_normalize_rejects_a_deep_record_an_upstream_let_through(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an ingest that allowed deeper records than the rest of the pipeline (200 levels)
    source = tmp_path / "things.jsonl"
    source.write_bytes(b'{"name":"a"}\n' + deep_row(200) + b'\n{"name":"b"}\n')
    run = ReferenceRun(tmp_path / "art").open()
    run.publish("things", "p1", source)
    monkeypatch.setattr(parsing, "MAX_RECORD_DEPTH", 10_000)
    run.run_partition_stages(("ingest",))
    assert run.manifest("ingest", "things/p1").metrics.records_rejected == 0
    monkeypatch.undo()
    # When normalize re-encodes its records
    run.run_partition_stages(("normalize",))
    # Then the deep record is its reject and the others flow on
    (reject,) = run.records("normalize", "rejects", "things/p1")
    assert reject["index"] == 2 and "nest" in reject["error"]
    assert [r["index"] for r in run.records("normalize", "records", "things/p1")] == [1, 3]
