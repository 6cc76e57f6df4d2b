"""Reading ``.json`` partitions: an array of objects, streamed element by element, or one object."""

from __future__ import annotations

import io
import tracemalloc

import pytest

from stagebus.errors import PermanentStageError
from stagebus.stages import json_arrays
from stagebus.stages.json_arrays import parse_json
from stagebus.stages.parsing import MAX_RECORD_DEPTH, Dialect, dialect_of, parse


def rows(data: bytes, limit: int = 1 << 20) -> list[tuple[int, dict | None, str | None]]:  # type: ignore[type-arg]
    return [(r.index, r.record, r.error) for r in parse_json(io.BytesIO(data), max_element_bytes=limit)]


def test_every_element_of_an_array_is_a_record_numbered_by_its_position() -> None:
    # Given an array of two objects, with strings holding brackets, commas and escaped quotes
    data = b'[\n {"name": "a, [b]", "q": "say \\"hi\\" }"},\n {"n": 2, "tags": [1, {"x": []}]}\n]\n'
    # When parsed, Then each element is a record, numbered 1, 2
    assert rows(data) == [(1, {"name": "a, [b]", "q": 'say "hi" }'}, None),
                          (2, {"n": 2, "tags": [1, {"x": []}]}, None)]


def test_a_single_top_level_object_is_one_record() -> None:
    assert rows(b'\xef\xbb\xbf  {"a": 1}\n') == [(1, {"a": 1}, None)]


def test_a_bad_element_is_a_reject_with_its_number_and_parsing_goes_on() -> None:
    # Given an array with a non-object, a broken object and a good one
    data = b'[{"a": 1}, 7, {"b": }, "s", {"c": 3}]'
    # When parsed
    result = rows(data)
    # Then the bad elements are rejects naming their position and problem; the good ones records
    assert [(i, r) for i, r, _ in result if r is not None] == [(1, {"a": 1}), (5, {"c": 3})]
    errors = {i: e for i, _, e in result if e is not None}
    assert errors[2] == "element 2: a record must be a JSON object, not a number"
    assert errors[3].startswith("element 3: invalid JSON")
    assert errors[4] == "element 4: a record must be a JSON object, not a string"


def test_empty_arrays_and_a_trailing_comma_give_nothing_extra() -> None:
    assert rows(b"[]") == [] and rows(b"  \n") == []
    assert rows(b'[{"a": 1},\n]') == [(1, {"a": 1}, None)]


def test_a_truncated_array_says_so_in_a_reject() -> None:
    # Given an array cut off inside its second element
    result = rows(b'[{"a": 1}, {"b": "tru')
    # Then the first element is a record, and the rest is one reject saying the file ended early
    assert result[0] == (1, {"a": 1}, None)
    assert result[1][0] == 2 and "ends before the array is closed" in (result[1][2] or "")


def test_data_after_the_array_is_one_reject() -> None:
    result = rows(b'[{"a": 1}] {"b": 2}')
    assert result == [(1, {"a": 1}, None), (2, None, "data after the array's closing ]")]


def test_an_element_over_the_limit_is_a_reject_and_the_next_one_still_comes() -> None:
    # Given a long element between two short ones, and a limit below its length
    big = b'{"text": "' + b"x" * 5000 + b'"}'
    result = rows(b'[{"a": 1}, ' + big + b', {"b": 2}]', limit=1000)
    # Then it alone is a reject naming the limit
    assert result == [(1, {"a": 1}, None), (2, None, "element 2: longer than 1000 bytes"), (3, {"b": 2}, None)]


def test_elements_cut_by_block_boundaries_come_out_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given tiny read blocks, so strings, escapes and brackets straddle block ends
    monkeypatch.setattr(json_arrays, "_BLOCK", 3)
    records = [{"s": 'a\\"b,]}' * (i % 3), "n": [i, {"k": "v"}]} for i in range(20)]
    import json

    data = json.dumps(records).encode()
    # When parsed, Then every element is decoded exactly as the whole file would be
    assert [r for _, r, _ in rows(data)] == records


def test_nesting_past_the_record_depth_is_a_reject() -> None:
    deep = b"[" * (MAX_RECORD_DEPTH + 5) + b"]" * (MAX_RECORD_DEPTH + 5)
    result = rows(b'[{"d": ' + deep + b'}, {"ok": 1}]')
    assert result[0][1] is None and "nest at most" in (result[0][2] or "")
    assert result[1] == (2, {"ok": 1}, None)


def test_a_top_level_scalar_cannot_be_read_at_all() -> None:
    with pytest.raises(PermanentStageError, match="array of objects or one object"):
        rows(b'"just a string"')


def test_memory_is_bounded_by_the_largest_element_not_the_file() -> None:
    # Given a 20 MB array of small objects
    element = b'{"name": "' + b"n" * 180 + b'", "n": 1}'
    data = b"[" + b",".join([element] * 100_000) + b"]"
    # When parsed, counting records as they come
    tracemalloc.start()
    count = sum(1 for r in parse_json(io.BytesIO(data)) if r.record is not None)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Then every record came out, and the parser held a few blocks, never the file
    assert count == 100_000 and peak < 8 * (1 << 20) < len(data)


def test_dot_json_is_a_known_extension_and_parse_dispatches_to_it() -> None:
    assert dialect_of("file:///d/p.json", {}) == Dialect("json")
    assert [r.record for r in parse(io.BytesIO(b'[{"a": 1}]'), Dialect("json"))] == [{"a": 1}]
