"""The CSV reader's batch fast path gives exactly the rows of the line-by-line reader."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from stagebus.stages import parsing
from stagebus.stages.parsing import _header, _lines, _PushbackLines, _rows, parse_csv

FIELD = st.text(alphabet=st.sampled_from(list('ab ,"\r\né\t')), max_size=6)
LINE = st.lists(FIELD, min_size=1, max_size=4).map(",".join)


def line_by_line(data: bytes, limit: int) -> list[parsing.Row]:
    lines = _PushbackLines(_lines(io.BytesIO(data), "utf-8", limit))
    header = _header(lines, ",", "utf-8", limit)
    return [] if header is None else list(_rows(lines, header, ",", "utf-8", limit))


@settings(max_examples=300, deadline=None)
@given(body=st.lists(st.one_of(LINE, st.just('x,"open'), st.just(""), st.just("\xff")), max_size=30),
       batch=st.integers(min_value=1, max_value=7), limit=st.sampled_from([8, 1 << 20]))
def test_batches_and_lines_agree(body: list[str], batch: int, limit: int) -> None:
    data = ("a,b\n" + "\n".join(body)).encode("utf-8", "surrogateescape").replace(b"\xc3\xbf", b"\xff")
    original = parsing.CSV_BATCH
    parsing.CSV_BATCH = batch
    try:
        fast = list(parse_csv(io.BytesIO(data), ",", "utf-8", limit))
    finally:
        parsing.CSV_BATCH = original
    assert fast == line_by_line(data, limit)


def test_a_well_quoted_file_takes_the_fast_path() -> None:
    data = b'a,b\n1,"x, y"\n2,z\n\n3\n'
    rows = list(parse_csv(io.BytesIO(data)))
    assert [(r.index, r.record, r.error) for r in rows] == [
        (2, {"a": "1", "b": "x, y"}, None), (3, {"a": "2", "b": "z"}, None),
        (5, None, "line 5: 1 fields, the header has 2")]
