"""A warehouse table's columns: from a pydantic model, or inferred from the records.

A column has a name and a *kind* (``bool``, ``int``, ``float``, ``text``, ``json``); each target
spells kinds in its own types (:mod:`.targets`). Every table starts with ``_partition`` and
``_run_id`` (the partition a row came from and the run that made it valid), then ``_index`` (the
row number) when the records are the indexed kind the reference stages write
(``{"index": n, "record": {...}}``, whose fields become the columns), then the record's fields.
Nested values (objects, arrays) are ``json``: JSONB in PostgreSQL, JSON text in SQLite.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Generator, Iterable
from typing import Any, Literal, NamedTuple

import msgspec
import pydantic

from stagebus.errors import InvalidInput

Kind = Literal["bool", "int", "float", "text", "json"]
PARTITION, RUN_ID, INDEX = "_partition", "_run_id", "_index"
RESERVED = (PARTITION, RUN_ID, INDEX)
NAME_BYTES_MAX = 63  # PostgreSQL silently truncates longer identifiers: refuse them instead

_JSON = msgspec.json.Encoder()
_SCHEMA_KINDS: dict[str, Kind] = {"boolean": "bool", "integer": "int", "number": "float", "string": "text",
                                  "object": "json", "array": "json"}


class Column(NamedTuple):
    name: str
    kind: Kind


def is_indexed(record: dict[str, Any]) -> bool:
    """A record of the reference stages: its row number and the row."""
    return len(record) == 2 and "index" in record and isinstance(record.get("record"), dict)


def fields_of(record: dict[str, Any]) -> dict[str, Any]:
    """The fields that become columns: the inner row of an indexed record, else the record."""
    return record["record"] if is_indexed(record) else record


def from_model(model: type[pydantic.BaseModel], indexed: bool) -> list[Column]:
    """Columns from ``model``'s JSON schema, in field order: an optional field takes the kind of
    its non-null type; a union of several types is ``text``, a nested model ``json``."""
    properties = model.model_json_schema().get("properties", {})
    fields = [Column(name, _schema_kind(spec)) for name, spec in properties.items()]
    return _with_system_columns(fields, indexed)


def infer(records: Iterable[dict[str, Any]]) -> list[Column]:
    """Columns from the records themselves, in first-seen order: a field whose values are all
    one kind (nulls aside) gets it; ints mixed with floats are ``float``; any other mix is
    ``text``; a field that is only ever null is ``text``."""
    types: dict[str, set[type]] = {}  # the Python types seen: cheaper per value than kinds
    shapes: set[tuple[tuple[str, ...], tuple[type, ...]]] = set()  # most records share one shape
    indexed = True
    seen = False
    for record in records:
        seen = True
        if indexed and not is_indexed(record):
            indexed = False
        fields = fields_of(record)
        shape = (tuple(fields), tuple(map(type, fields.values())))
        if shape in shapes:
            continue
        shapes.add(shape)
        for name, cls in zip(*shape, strict=True):
            types.setdefault(name, set()).add(cls)
    found_columns = [Column(name, _merge({_kind_of_type(t) for t in found if t is not type(None)}))
                     for name, found in types.items()]
    return _with_system_columns(found_columns, indexed and seen)


def _kind_of_type(cls: type) -> Kind:
    for base, kind in _KIND_BY_TYPE:
        if issubclass(cls, base):
            return kind
    return "text"


_KIND_BY_TYPE: tuple[tuple[type, Kind], ...] = ((bool, "bool"), (int, "int"), (float, "float"), (dict, "json"),
                                                (list, "json"))  # bool before int: it is one
# The Python types a column of each kind takes as they are; any other value is converted.
_TAKES: dict[Kind, frozenset[type]] = {"bool": frozenset({bool}), "int": frozenset({int}),
                                       "float": frozenset({float, int}), "text": frozenset({str}),
                                       "json": frozenset()}


def value_kind(value: Any) -> Kind:
    return _kind_of_type(type(value))


def _merge(kinds: set[Kind]) -> Kind:
    if not kinds:
        return "text"
    if len(kinds) == 1:
        return next(iter(kinds))
    if kinds == {"int", "float"}:
        return "float"
    return "text"


def _schema_kind(spec: dict[str, Any]) -> Kind:
    if "$ref" in spec or "allOf" in spec:
        return "json"
    options = spec.get("anyOf") or spec.get("oneOf")
    if options:
        kinds = {_schema_kind(o) for o in options if o.get("type") != "null"}
        return _merge(kinds) if kinds else "text"
    kind = spec.get("type")
    return _SCHEMA_KINDS.get(kind, "text") if isinstance(kind, str) else "text"


def _with_system_columns(fields: list[Column], indexed: bool) -> list[Column]:
    for column in fields:
        if column.name in RESERVED:
            raise InvalidInput(f"a record field is named {column.name!r}, which the load keeps for itself")
        if not column.name or len(column.name.encode("utf-8")) > NAME_BYTES_MAX or "\x00" in column.name:
            raise InvalidInput(f"field name {column.name!r} cannot be a column: it must be 1 to "
                               f"{NAME_BYTES_MAX} bytes of UTF-8 without NUL")
    system = [Column(PARTITION, "text"), Column(RUN_ID, "text")]
    if indexed:
        system.append(Column(INDEX, "int"))
    return system + fields


def rows(records: Iterable[dict[str, Any]], columns: list[Column], partition: str, run_id: str,
         model: type[pydantic.BaseModel] | None = None) -> Generator[tuple[Any, ...], None, None]:
    """Each record as a tuple in ``columns`` order: nested values JSON-encoded, a value of
    another kind than its column's as text (ints widen to floats). With ``model`` every record
    is validated first; a record that fails is a clear error naming its row."""
    indexed = len(columns) > 2 and columns[2].name == INDEX
    data = columns[3:] if indexed else columns[2:]
    names = [c.name for c in data]
    takes = [(_TAKES[c.kind] | {type(None)}, c.kind) for c in data]
    pick = _picker(names)
    fits: set[tuple[type, ...]] = set()  # shapes of value types the columns take as they are
    fixed = (partition, run_id)
    for number, record in enumerate(records):
        fields = record["record"] if indexed else record
        if model is not None:
            fields = _validated(model, fields, partition, number)
        values = pick(fields)
        shape = tuple(map(type, values))
        if shape not in fits:
            if all(cls in ok for cls, (ok, _) in zip(shape, takes, strict=True)):
                fits.add(shape)
            else:
                values = tuple(v if type(v) in ok else _cell(v, kind)
                               for v, (ok, kind) in zip(values, takes, strict=True))
        yield (*fixed, record.get("index"), *values) if indexed else (*fixed, *values)


def _picker(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """The values of ``names`` from a record, None for a missing one; a C-level itemgetter while
    the record has them all (the usual case)."""
    getter = operator.itemgetter(*names) if names else None

    def pick(fields: dict[str, Any]) -> tuple[Any, ...]:
        if getter is None:
            return ()
        try:
            values = getter(fields)
        except KeyError:
            return tuple(fields.get(n) for n in names)
        return (values,) if len(names) == 1 else values

    return pick


def _validated(model: type[pydantic.BaseModel], fields: dict[str, Any], partition: str,
               number: int) -> dict[str, Any]:
    try:
        return model.model_validate(fields).model_dump(mode="json")
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"partition {partition!r} row {number}: {where}: {first['msg']}") from None


def _cell(value: Any, kind: Kind) -> Any:
    if kind == "json":
        return _JSON.encode(value).decode()
    actual = value_kind(value)
    if actual == kind or (kind == "float" and actual == "int"):
        return value
    return _JSON.encode(value).decode() if actual == "json" else str(value)
