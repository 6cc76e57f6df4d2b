"""Reading raw partitions: one error per malformed row, row numbers, format detection."""

from __future__ import annotations

import io

import pytest

from stagebus.errors import PermanentStageError
from stagebus.stages.parsing import Dialect, dialect_of, parse_csv, parse_jsonl


def csv_rows(data: bytes) -> list[tuple[int, dict | None, str | None]]:  # type: ignore[type-arg]
    return [(r.index, r.record, r.error) for r in parse_csv(io.BytesIO(data))]


def test_csv_rows_become_records_keyed_by_header_with_line_numbers() -> None:
    # Given a header and two rows
    data = b"id,name\n1,Ann\n2,Bob\n"
    # When parsed
    rows = csv_rows(data)
    # Then each row is a record numbered by its line in the file
    assert rows == [(2, {"id": "1", "name": "Ann"}, None), (3, {"id": "2", "name": "Bob"}, None)]


def test_csv_row_with_wrong_field_count_is_an_error_and_parsing_goes_on() -> None:
    # Given a row with one field missing between good rows
    data = b"id,name\n1,Ann\n2\n3,Cy\n"
    # When parsed
    rows = csv_rows(data)
    # Then that row alone is an error naming the counts
    assert rows[1] == (3, None, "line 3: 1 fields, the header has 2")
    assert [r[0] for r in rows if r[1] is not None] == [2, 4]


def test_csv_quoted_field_may_span_lines() -> None:
    # Given a quoted field with a newline and an escaped quote
    data = b'id,note\n1,"two\nlines, ""quoted"""\n2,x\n'
    # When parsed
    rows = csv_rows(data)
    # Then it is one record, and the next row keeps its own line number
    assert rows == [(2, {"id": "1", "note": 'two\nlines, "quoted"'}, None), (4, {"id": "2", "note": "x"}, None)]


def test_csv_never_closed_quote_rejects_only_its_row() -> None:
    # Given a stray opening quote that is never closed
    data = b'id,note\n1,"open\n2,fine\n3,also fine\n'
    # When parsed
    rows = csv_rows(data)
    # Then the broken row is an error and the rows after it still come out
    assert rows[0][0] == 2 and rows[0][1] is None and "broken quoting" in (rows[0][2] or "")
    assert [r[1] for r in rows[1:]] == [{"id": "2", "note": "fine"}, {"id": "3", "note": "also fine"}]


def test_csv_text_after_a_closing_quote_is_broken_quoting() -> None:
    # Given a field with text after its closing quote
    data = b'id,note\n1,"a"b\n2,ok\n'
    # When parsed
    rows = csv_rows(data)
    # Then it is a quoting error
    assert rows[0][1] is None and "broken quoting" in (rows[0][2] or "")
    assert rows[1] == (3, {"id": "2", "note": "ok"}, None)


def test_csv_quote_inside_an_unquoted_field_is_literal() -> None:
    # Given a size in inches, unquoted, followed by a normal row
    data = b'id,size\n1,15" screen\n2,small\n'
    # When parsed
    rows = csv_rows(data)
    # Then the quote is part of the value and the next row is unaffected
    assert rows == [(2, {"id": "1", "size": '15" screen'}, None), (3, {"id": "2", "size": "small"}, None)]


def test_csv_undecodable_row_is_an_error_with_its_raw_text() -> None:
    # Given a row that is not UTF-8
    data = b"id,name\n1,\xff\xfe\n2,Bo\n"
    # When parsed
    rows = list(parse_csv(io.BytesIO(data)))
    # Then it is an error whose raw text shows the bytes
    assert rows[0].error == "line 2: text is not valid utf-8"
    assert rows[0].raw == "1,\\xff\\xfe"
    assert rows[1].record == {"id": "2", "name": "Bo"}


def test_csv_header_with_repeated_names_fails_the_whole_file() -> None:
    # Given a header naming a column twice
    data = b"id,id\n1,2\n"
    # When parsed, Then the file is refused for good
    with pytest.raises(PermanentStageError, match="repeats column"):
        csv_rows(data)


def test_csv_utf8_byte_order_mark_is_not_part_of_the_first_column_name() -> None:
    # Given a CSV saved with a BOM
    data = b"\xef\xbb\xbfid,name\n1,Ann\n"
    # When parsed, Then the first column is plainly "id"
    assert csv_rows(data) == [(2, {"id": "1", "name": "Ann"}, None)]


@pytest.mark.parametrize(("line", "message"), [
    (b"{broken", "invalid JSON"),
    (b"[1, 2]", "must be a JSON object, not an array"),
    (b'"text"', "must be a JSON object, not a string"),
    (b"\xff{}", "not valid utf-8"),
])
def test_jsonl_malformed_line_is_an_error_and_parsing_goes_on(line: bytes, message: str) -> None:
    # Given a bad line between two good ones
    data = b'{"a": 1}\n' + line + b'\n{"a": 2}\n'
    # When parsed
    rows = list(parse_jsonl(io.BytesIO(data)))
    # Then the bad line alone is an error, numbered
    assert [r.record for r in rows] == [{"a": 1}, None, {"a": 2}]
    assert rows[1].index == 2 and message in (rows[1].error or "")


def test_jsonl_blank_lines_are_skipped() -> None:
    # Given blank lines
    rows = list(parse_jsonl(io.BytesIO(b'\n{"a": 1}\n  \n')))
    # Then only the record comes out
    assert [(r.index, r.record) for r in rows] == [(2, {"a": 1})]


def test_format_comes_from_the_extension() -> None:
    # Given URIs with known extensions, Then their formats are told apart
    assert dialect_of("file:///d/p.csv", {}) == Dialect("csv")
    assert dialect_of("file:///d/p.tsv", {}) == Dialect("csv", "\t")
    assert dialect_of("file:///d/p.ndjson", {}).format == "jsonl"


def test_format_metadata_overrides_the_extension() -> None:
    # Given a .txt file announced as CSV with semicolons
    dialect = dialect_of("file:///d/p.txt", {"format": "csv", "delimiter": ";"})
    # Then the metadata decides
    assert dialect == Dialect("csv", ";")


def test_unknown_format_is_a_permanent_error_that_says_how_to_fix_it() -> None:
    # Given a file with no known extension and no format metadata
    with pytest.raises(PermanentStageError, match="metadata format=csv"):
        dialect_of("file:///d/p.xlsx", {})


def _nesting_exceeds_reference(value: object, limit: int) -> bool:
    """The plain recursive definition: depth of a scalar is 0, of a container 1 + its deepest child."""
    def depth(v: object) -> int:
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        return 0 if children is None else 1 + max((depth(c) for c in children), default=0)

    return depth(value) > limit


def test_nesting_exceeds_agrees_with_the_recursive_definition() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from stagebus.stages.parsing import nesting_exceeds

    class Mapping(dict):  # type: ignore[type-arg]
        """A dict subclass: the flat-record shortcut must not take it for a scalar."""

    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3))
    values = st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=2), inner, max_size=3),
        st.dictionaries(st.text(max_size=2), inner, max_size=2).map(Mapping)), max_leaves=12)

    @settings(max_examples=400, deadline=None)
    @given(value=values, limit=st.integers(min_value=0, max_value=4))
    def check(value: object, limit: int) -> None:
        assert nesting_exceeds(value, limit) == _nesting_exceeds_reference(value, limit)

    check()
