"""extract through the real Executor: definitions, mentions, rules and their config errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagebus.errors import InvalidInput
from stagebus.stages import build_reference_pipeline
from stagebus.stages.extract import EntityExtractor, ExtractConfig
from support.reference import ReferenceRun

DOCS = [
    {"module": "json.decoder", "qualname": "JSONDecoder", "kind": "class",
     "doc": "Simple JSON decoder, e.g. for json.loads(); see also os.path.join and self.parse_object."},
    {"module": "json.decoder", "qualname": "", "kind": "module", "doc": "Implementation of JSONDecoder."},
]


def extracted(tmp_path: Path, records: list[dict[str, Any]], name: str = "data.jsonl",
              data: bytes | None = None, **config: Any) -> list[dict[str, Any]]:
    run = ReferenceRun(tmp_path / "artifacts", config={"extract": config}).open()
    source = tmp_path / name
    source.write_bytes(data if data is not None else "".join(json.dumps(r) + "\n" for r in records).encode())
    ref = run.publish("data", "p1", source)
    run.run_partition_stages()
    return run.records("extract", "entities", ref)


def by_role(entities: list[dict[str, Any]], role: str) -> list[tuple[str, str, list[int]]]:
    return [(e["value"], e["kind"], e["records"]) for e in entities if e["role"] == role]


def test_docstring_record_defines_its_dotted_name(tmp_path: Path) -> None:
    # Given stdlib-style docstring records
    entities = extracted(tmp_path, DOCS)
    # Then a class defines module.qualname and a module record its module name
    assert by_role(entities, "defines") == [("json.decoder", "record", [2]),
                                            ("json.decoder.JSONDecoder", "record", [1])]


def test_dotted_names_in_text_are_mentions_but_not_abbreviations_or_self(tmp_path: Path) -> None:
    # Given a docstring naming functions, an "e.g." and an attribute of self
    entities = extracted(tmp_path, DOCS)
    # Then only the dotted names are mentioned
    assert by_role(entities, "mentions") == [("json.loads", "name", [1]), ("os.path.join", "name", [1])]


def test_csv_id_defines_and_star_id_fields_mention(tmp_path: Path) -> None:
    # Given an orders CSV with its own id and a customer reference
    data = b"id,customer_id,note\nO1,C7,first\nO2,C7,second\n"
    entities = extracted(tmp_path, [], name="orders.csv", data=data)
    # Then each order defines its id and mentions the customer, listing both records
    assert by_role(entities, "defines") == [("O1", "record", [2]), ("O2", "record", [3])]
    assert by_role(entities, "mentions") == [("C7", "customer_id", [2, 3])]


def test_keyword_terms_are_matched_as_whole_words_in_their_configured_spelling(tmp_path: Path) -> None:
    # Given a keyword rule and text using the terms in another case, and inside a longer word
    records = [{"id": "1", "text": "The GIL and AsyncIO; not gilded."}]
    keywords = [{"kind": "topic", "terms": ["gil", "asyncio"]}]
    # When extracted
    entities = extracted(tmp_path, records, keywords=keywords, patterns=[])
    # Then each whole-word term is one mention, spelled as configured
    assert by_role(entities, "mentions") == [("asyncio", "topic", [1]), ("gil", "topic", [1])]


def test_pattern_rule_may_pick_a_group(tmp_path: Path) -> None:
    # Given ticket references and a regex whose group is the ticket number
    records = [{"id": "a", "text": "fixes #12 and #7"}]
    patterns = [{"kind": "ticket", "regex": r"#(\d+)", "group": 1}]
    # When extracted
    entities = extracted(tmp_path, records, patterns=patterns)
    # Then the group is the entity
    assert by_role(entities, "mentions") == [("12", "ticket", [1]), ("7", "ticket", [1])]


def test_invalid_regex_is_a_clear_config_error() -> None:
    # Given a pattern that does not compile
    config = {"extract": {"patterns": [{"regex": "(unclosed"}]}}
    # When the pipeline is built, Then the error names the place and the regex problem
    with pytest.raises(InvalidInput, match=r"stage 'extract' config: patterns\.0\.regex: .*invalid regular "
                                           r"expression '\(unclosed': missing \)"):
        build_reference_pipeline(config)


def test_identity_template_without_a_field_is_a_config_error() -> None:
    # Given an identity template naming no field
    with pytest.raises(InvalidInput, match="names no field"):
        build_reference_pipeline({"extract": {"identity": ["constant"]}})


TEXT = st.text(alphabet=st.sampled_from("ab_Z9. \n\t|-"), max_size=30) | st.sampled_from(
    ["self.x.y", "a.b", "os.path.join", "e.g. x", "ab.cd.", ".ab.cd", "ab.cd\nef.gh", "ab.\ncd", "x" * 250])
RECORDS = st.dictionaries(st.sampled_from(["id", "doc", "summary", "module", "qualname", "owner_id", "notes"]),
                          TEXT | st.none() | st.integers() | st.lists(TEXT, max_size=2), max_size=6)


@settings(max_examples=400, deadline=None)
@given(record=RECORDS)
def test_dotted_names_found_in_the_joined_text_are_those_found_field_by_field(record: dict[str, Any]) -> None:
    # Given the default extractor (DOTTED_NAME runs once over the text fields joined by newlines)
    # and the same extractor made to run it per field, the way every other regex runs
    joined = EntityExtractor(ExtractConfig())
    per_field = EntityExtractor(ExtractConfig())
    per_field._patterns = [(rule, regex, False) for rule, regex, _ in per_field._patterns]
    # Then both find the same entities, in the same order
    assert list(joined.entities(record)) == list(per_field.entities(record))
