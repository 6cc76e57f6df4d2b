"""normalize through the real Executor: processors in order, rejects, config errors, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import stagebus.stages.normalize as normalize_module
from stagebus.errors import InvalidInput
from stagebus.stages import build_reference_pipeline
from support.reference import ReferenceRun


def normalized(tmp_path: Path, records: list[dict[str, Any]], processors: list[dict[str, Any]] | None = None,
               **config: Any) -> ReferenceRun:
    """Ingest and normalize one JSON-lines partition holding ``records``."""
    if processors is not None:
        config["processors"] = processors
    run = ReferenceRun(tmp_path / "artifacts", config={"normalize": config}).open()
    source = tmp_path / "data.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    run.publish("data", "p1", source)
    run.run_partition_stages(("ingest", "normalize"))
    return run


def out(run: ReferenceRun) -> list[dict[str, Any]]:
    return [r["record"] for r in run.records("normalize", "records", "data/p1")]


def rejects(run: ReferenceRun) -> list[dict[str, Any]]:
    return run.records("normalize", "rejects", "data/p1")


def test_default_config_strips_collapses_whitespace_and_applies_nfc(tmp_path: Path) -> None:
    # Given a string with padding, inner runs of whitespace and a decomposed accent
    records = [{"name": "  Jose\u0301   da \n Silva ", "n": 3}]
    # When normalized with no configuration
    run = normalized(tmp_path, records)
    # Then the string is trimmed, collapsed and composed; other values untouched
    assert out(run) == [{"name": "Jos\u00e9 da Silva", "n": 3}]


def test_processors_apply_in_order(tmp_path: Path) -> None:
    # Given a rename followed by a lowercase of the new name
    processors = [{"op": "rename", "fields": {"Name": "name"}}, {"op": "lowercase", "fields": ["name"]}]
    # When normalized
    run = normalized(tmp_path, [{"Name": "ANN"}], processors)
    # Then the lowercase saw the renamed field
    assert out(run) == [{"name": "ann"}]


def test_cast_converts_int_float_bool_and_date(tmp_path: Path) -> None:
    # Given string values as a CSV gives them
    record = {"age": " 42 ", "score": "1.5", "active": "yes", "joined": "2024-03-01", "left": ""}
    processors = [{"op": "cast", "fields": {"age": "int", "score": "float", "active": "bool",
                                            "joined": "date", "left": "date"}}]
    # When cast
    run = normalized(tmp_path, [record], processors)
    # Then each has its type, and an empty value becomes null
    assert out(run) == [{"age": 42, "score": 1.5, "active": True, "joined": "2024-03-01", "left": None}]


def test_cast_date_tries_the_configured_formats(tmp_path: Path) -> None:
    # Given a day-first date and a format for it
    processors = [{"op": "cast", "fields": {"d": "date"}, "date_formats": ["%d/%m/%Y"]}]
    # When cast
    run = normalized(tmp_path, [{"d": "31/12/2023"}], processors)
    # Then it is an ISO date
    assert out(run) == [{"d": "2023-12-31"}]


def test_record_failing_a_cast_is_rejected_with_index_and_error(tmp_path: Path) -> None:
    # Given one record whose age is not a number
    records = [{"age": "7"}, {"age": "seven"}, {"age": "9"}]
    # When cast to int
    run = normalized(tmp_path, records, [{"op": "cast", "fields": {"age": "int"}}])
    # Then it is rejected with its line and why, and the others continue
    assert rejects(run) == [{"index": 2, "error": "cast: field 'age': 'seven' is not an int",
                             "record": {"age": "seven"}}]
    assert out(run) == [{"age": 7}, {"age": 9}]


def test_require_rejects_records_missing_a_field(tmp_path: Path) -> None:
    # Given a record with an empty required field
    run = normalized(tmp_path, [{"id": "1"}, {"id": ""}], [{"op": "require", "fields": ["id"]}])
    # Then it is rejected, naming the field
    assert [r["error"] for r in rejects(run)] == ["require: missing 'id'"]


def test_drop_and_default_shape_the_record(tmp_path: Path) -> None:
    # Given a field to drop and one to default
    processors = [{"op": "drop", "fields": ["secret"]}, {"op": "default", "values": {"country": "NO"}}]
    # When normalized
    run = normalized(tmp_path, [{"secret": "x", "country": None}, {"country": "SE"}], processors)
    # Then the field is gone and only the missing value got the default
    assert out(run) == [{"country": "NO"}, {"country": "SE"}]


def test_max_length_rejects_or_truncates(tmp_path: Path) -> None:
    # Given a long value, a rejecting limit on one field and a truncating one on another
    processors = [{"op": "max_length", "limit": 3, "fields": ["code"]},
                  {"op": "max_length", "limit": 2, "fields": ["name"], "action": "truncate"}]
    # When normalized
    run = normalized(tmp_path, [{"code": "ab", "name": "Annie"}, {"code": "abcd", "name": "B"}], processors)
    # Then the short code is truncated by name, the long code rejected
    assert out(run) == [{"code": "ab", "name": "An"}]
    assert [r["index"] for r in rejects(run)] == [2]


def test_unknown_processor_is_a_clear_config_error() -> None:
    # Given a processor op that does not exist
    config = {"normalize": {"processors": [{"op": "uppercase"}]}}
    # When the pipeline is built, Then the error names the stage, the place and the known ops
    with pytest.raises(InvalidInput, match=r"stage 'normalize' config: processors\.0: .*'uppercase'.*'rename'"):
        build_reference_pipeline(config)


def test_bad_cast_type_is_a_clear_config_error() -> None:
    # Given a cast to a type normalize does not know
    config = {"normalize": {"processors": [{"op": "cast", "fields": {"age": "integer"}}]}}
    # When the pipeline is built, Then the error names the field and the allowed types
    with pytest.raises(InvalidInput, match=r"processors\.0\.cast\.fields\.age: Input should be 'int'"):
        build_reference_pipeline(config)


def test_misspelled_processor_option_is_refused() -> None:
    # Given a processor with a typo in its option
    config = {"normalize": {"processors": [{"op": "whitespace", "feilds": ["name"]}]}}
    # When the pipeline is built, Then the unknown option is named
    with pytest.raises(InvalidInput, match=r"whitespace\.feilds: Extra inputs are not permitted"):
        build_reference_pipeline(config)


def test_rejects_inside_chunks_are_counted_once(tmp_path: Path) -> None:
    # Given three chunks of two records, with one bad record in each of two chunks
    records = [{"n": "1"}, {"n": "x"}, {"n": "3"}, {"n": "4"}, {"n": "y"}, {"n": "6"}]
    # When normalized
    run = normalized(tmp_path, records, [{"op": "cast", "fields": {"n": "int"}}], chunk_size=2)
    # Then the manifest counts each reject once, and every record in
    metrics = run.manifest("normalize", "data/p1").metrics
    assert (metrics.records_in, metrics.records_out, metrics.records_rejected) == (6, 4, 2)


def test_retry_resumes_after_the_last_finished_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a normalize task whose third record fails transiently once, with chunks of two records
    run = ReferenceRun(tmp_path / "artifacts", config={"normalize": {"chunk_size": 2}}).open()
    source = tmp_path / "data.jsonl"
    source.write_text("".join(json.dumps({"n": f" {i} "}) + "\n" for i in range(6)))
    ref = run.publish("data", "p1", source)
    run.execute("ingest", ref)
    seen: list[str] = []
    real_apply = normalize_module.apply

    def flaky_apply(steps, record):  # type: ignore[no-untyped-def]
        seen.append(record["n"])
        if record["n"] == " 2 " and seen.count(" 2 ") == 1:
            raise ConnectionError("lost the disk for a moment")
        return real_apply(steps, record)

    monkeypatch.setattr(normalize_module, "apply", flaky_apply)
    with pytest.raises(ConnectionError):
        run.execute("normalize", ref, attempt=1, final=False)
    # When the task is retried
    run.execute("normalize", ref, attempt=2)
    # Then the first chunk was not processed again, and the output is complete and in order
    assert seen == [" 0 ", " 1 ", " 2 ", " 2 ", " 3 ", " 4 ", " 5 "]
    assert out(run) == [{"n": str(i)} for i in range(6)]


def test_whitespace_collapses_exactly_as_the_regex_did() -> None:
    # The fast str.split() form must agree with re.sub(r"\s+", " ").strip() on every code point.
    import re

    from stagebus.stages.normalize import _collapse_whitespace

    spaces = re.compile(r"\s+")
    for cp in range(0x110000):
        c = chr(cp)
        text = f"{c}a{c}{c}b{c}"
        assert _collapse_whitespace(text) == spaces.sub(" ", text).strip(), hex(cp)


def test_fused_string_processors_give_the_same_records_as_one_step_each() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from stagebus.stages.normalize import NormalizeConfig, apply, compile_processor, compile_processors

    ops = st.sampled_from([{"op": "nfc"}, {"op": "whitespace"}, {"op": "lowercase"},
                           {"op": "whitespace", "fields": ["a"]}, {"op": "lowercase", "fields": ["a", "b"]},
                           {"op": "drop", "fields": ["c"]}, {"op": "rename", "fields": {"a": "c"}}])
    values = st.one_of(st.text(alphabet=" \tAbé\u0301\u00a0x", max_size=6), st.integers(), st.none())

    @settings(max_examples=200, deadline=None)
    @given(processors=st.lists(ops, max_size=5), record=st.dictionaries(st.sampled_from("abcd"), values))
    def check(processors: list[dict], record: dict) -> None:  # type: ignore[type-arg]
        config = NormalizeConfig.model_validate({"processors": processors})
        one_each = [compile_processor(p) for p in config.processors]
        assert apply(compile_processors(config.processors), record) == apply(one_each, record)

    check()


def test_no_whitespace_but_the_space_is_printable() -> None:
    # The whitespace processor's settled check relies on str.isprintable() refusing every other
    # character str.split() splits on; a new Unicode version must not break that silently.
    offenders = [hex(cp) for cp in range(0x110000) if chr(cp).isspace() and chr(cp) != " " and chr(cp).isprintable()]
    assert offenders == []


def test_settled_records_skip_no_change_the_string_processors_would_make() -> None:
    from hypothesis import example, given, settings
    from hypothesis import strategies as st

    from stagebus.stages.normalize import _collapse_whitespace, _nfc, _strings, compile_processors

    # Given every run of nfc/whitespace the config can fuse, with and without the settled check
    runs = [[_nfc, _collapse_whitespace], [_collapse_whitespace], [_nfc], [_collapse_whitespace, _nfc]]
    fused = [compile_processors(normalize_module.NormalizeConfig.model_validate(
        {"processors": [{"op": "nfc" if fn is _nfc else "whitespace"} for fn in run]}).processors)[0] for run in runs]
    reference = [_strings(None, _composed_reference(run)) for run in runs]
    # Text near every edge of the check: the separator, spaces at ends and beside it, other
    # whitespace (tab, unit separator, no-break space, line separator), decomposed accents; and
    # plain text, so that most records pass the check and a wrong pass would show.
    plain = st.text(alphabet=" |ab", max_size=6)
    rich = st.text(alphabet=" |a\t\x1f\u00a0\u2028e\u0301\u00e9", max_size=8)
    values = st.one_of(plain, plain, plain, rich, st.integers(), st.none())

    @settings(max_examples=500, deadline=None)
    @given(record=st.dictionaries(st.sampled_from("abcdef"), values))
    @example(record={"a": "x ", "b": "y"})  # spaces beside the separator
    @example(record={"a": "x", "b": " y"})
    def check(record: dict) -> None:  # type: ignore[type-arg]
        for step, ref in zip(fused, reference, strict=True):
            # When each is applied to a copy
            fast, slow = dict(record), dict(record)
            step(fast)
            ref(slow)
            # Then the records are the same, values and key order
            assert list(fast.items()) == list(slow.items())

    check()


def _composed_reference(fns: list[Any]) -> Any:
    def composed(text: str) -> str:
        for fn in fns:
            text = fn(text)
        return text

    return composed
