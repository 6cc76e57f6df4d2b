"""A source line longer than the configured limit is a reject with its line number; the rest flows."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from stagebus.errors import PermanentStageError
from stagebus.stages.parsing import parse_csv, parse_jsonl
from support.reference import ReferenceRun

LIMIT = 64


class CountingReader(io.BytesIO):
    """Remembers the largest single read, to show a long line is never read whole."""

    largest = 0

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        self.largest = max(self.largest, len(line))
        return line


def test_jsonl_line_just_over_the_limit_is_a_reject_and_the_rest_flows() -> None:
    # Given a JSON line one byte over the limit between two good lines
    long = b'{"a":"' + b"x" * (LIMIT - 7) + b'"}'
    assert len(long) == LIMIT + 1
    fh = CountingReader(b'{"a":1}\n' + long + b'\n{"a":3}\n' + b'{"a":"' + b"y" * (LIMIT - 8) + b'"}\n')
    # When parsed with that limit
    rows = list(parse_jsonl(fh, max_line_bytes=LIMIT))
    # Then line 2 is a reject naming its row and the limit, and lines 1, 3 and 4 (at the limit) are records
    assert [(r.index, r.error) for r in rows if r.record is None] == [(2, f"line 2: longer than {LIMIT} bytes")]
    assert [r.index for r in rows if r.record is not None] == [1, 3, 4]


def test_a_huge_line_is_read_in_bounded_pieces() -> None:
    # Given a 5 MB line
    fh = CountingReader(b'{"a":1}\n' + b"z" * 5_000_000 + b'\n{"a":3}\n')
    # When parsed with a 1 KiB limit
    rows = list(parse_jsonl(fh, max_line_bytes=1024))
    # Then no single read held the line, and the rows around it are records
    assert fh.largest <= 1 << 20
    assert [r.index for r in rows if r.record is not None] == [1, 3]


def test_csv_long_line_is_a_reject_and_a_long_header_fails_the_file() -> None:
    # Given a CSV with a data line over the limit, even one with an odd number of quotes
    data = b"a,b\n1,2\n" + b'"' + b"q" * LIMIT + b",3\n4,5\n"
    rows = list(parse_csv(io.BytesIO(data), max_line_bytes=LIMIT))
    # Then it is a reject with its line, the next row still parses
    assert [(r.index, r.error) for r in rows if r.record is None] == [(3, f"line 3: longer than {LIMIT} bytes")]
    assert [r.record for r in rows if r.record is not None] == [{"a": "1", "b": "2"}, {"a": "4", "b": "5"}]
    # And a header over the limit cannot be read at all
    with pytest.raises(PermanentStageError, match="header"):
        list(parse_csv(io.BytesIO(b"a" * (LIMIT + 1) + b"\n1\n"), max_line_bytes=LIMIT))


def test_ingest_limit_is_configured_and_the_partition_completes(tmp_path: Path) -> None:
    # Given ingest configured with a 64-byte line limit and a file with a line just over it
    source = tmp_path / "data.jsonl"
    source.write_bytes(b'{"n":1}\n' + b'{"n":"' + b"x" * (LIMIT - 7) + b'"}\n{"n":3}\n')
    run = ReferenceRun(tmp_path / "art", config={"ingest": {"max_line_bytes": LIMIT}}).open()
    run.publish("d", "p", source)
    # When ingested
    run.run_partition_stages(("ingest",))
    # Then the long line is the one reject, with its row number
    (reject,) = run.records("ingest", "rejects", "d/p")
    assert reject["index"] == 2 and reject["error"] == f"line 2: longer than {LIMIT} bytes"
    assert [r["index"] for r in run.records("ingest", "records", "d/p")] == [1, 3]
