"""Warehouse columns: from a pydantic model or inferred from records, and rows in column order."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from stagebus.errors import InvalidInput
from stagebus.warehouse.columns import Column, from_model, infer, rows

SYSTEM = [Column("_partition", "text"), Column("_run_id", "text")]


def test_inferred_kinds_follow_the_values_and_widen_on_a_mix() -> None:
    # Given records whose fields are one kind, int and float mixed, str and int mixed, nested, null
    records = [{"a": 1, "b": 1, "c": "x", "d": {"k": [1]}, "e": None, "f": True},
               {"a": 2, "b": 2.5, "c": 3, "d": [1], "e": None, "f": False}]
    # When the columns are inferred / Then each field gets the kind that holds all its values
    assert infer(records) == [*SYSTEM, Column("a", "int"), Column("b", "float"), Column("c", "text"),
                              Column("d", "json"), Column("e", "text"), Column("f", "bool")]


def test_indexed_records_give_their_row_number_and_the_row_fields() -> None:
    records = [{"index": 2, "record": {"code": "SFO"}}, {"index": 3, "record": {"code": "LAX", "n": 1}}]
    columns = infer(records)
    assert columns == [*SYSTEM, Column("_index", "int"), Column("code", "text"), Column("n", "int")]
    assert list(rows(records, columns, "CA", "r1")) == [("CA", "r1", 2, "SFO", None), ("CA", "r1", 3, "LAX", 1)]


def test_rows_encode_nested_values_and_convert_other_kinds_to_text() -> None:
    columns = [*SYSTEM, Column("d", "json"), Column("c", "text"), Column("b", "float")]
    assert list(rows([{"d": {"k": [1]}, "c": 3, "b": 2}], columns, "p", "r")) == [("p", "r", '{"k":[1]}', "3", 2)]


def test_columns_from_a_model_follow_its_json_schema() -> None:
    class Inner(BaseModel):
        x: int

    class Record(BaseModel):
        n: int
        score: float | None = None
        name: str
        tags: list[str]
        inner: Inner
        either: int | str

    assert from_model(Record, indexed=False) == [
        *SYSTEM, Column("n", "int"), Column("score", "float"), Column("name", "text"), Column("tags", "json"),
        Column("inner", "json"), Column("either", "text")]


def test_a_record_that_fails_the_model_names_its_partition_and_row() -> None:
    class Record(BaseModel):
        n: int

    columns = from_model(Record, indexed=False)
    with pytest.raises(InvalidInput, match=r"partition 'p' row 1: n: Input should be a valid integer"):
        list(rows([{"n": 1}, {"n": "x"}], columns, "p", "r", Record))


@pytest.mark.parametrize("name", ["_partition", "", "x" * 64])
def test_field_names_the_load_cannot_use_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        infer([{name: 1}])
