"""Records on their way into an artifact: validated against the declared schema, encoded as one
JSON line, at msgspec's speed where the schema allows it.

A declared output schema is a pydantic model. Building a pydantic model per record costs ~5 µs
and dumping it another ~5 µs, which capped every stage near 100k records/s before it did any
work. So each schema gets a :class:`RecordCodec`: when the model is *plain* (fields of builtin
types, ``Any``, ``Literal``, optional/list/dict/tuple of those, nested plain models; no
constraints, validators, serializers or aliases), a msgspec ``Struct`` mirror of it validates in
**strict** mode and encodes in one C call. Strict msgspec accepts only values that pydantic
accepts unchanged, so a record it takes is one pydantic would take as it is; anything it refuses
goes to pydantic, which decides: it coerces what lax pydantic coerces (``"3"`` for an ``int``) or
raises its ``ValidationError``, exactly as before. Schemas that are not plain always go through
pydantic (validate, then ``to_json``).
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

import msgspec
from pydantic import BaseModel

_PLAIN = (int, float, str, bool, type(None), Any)
_ENCODER = msgspec.json.Encoder()
_CODECS: dict[type[BaseModel], RecordCodec] = {}


def codec_for(schema: type[BaseModel]) -> RecordCodec:
    """The codec of ``schema``, built once per schema class."""
    codec = _CODECS.get(schema)
    if codec is None:
        codec = _CODECS[schema] = RecordCodec(schema)
    return codec


class RecordCodec:
    """Validate and encode records of one schema; see the module docstring."""

    def __init__(self, schema: type[BaseModel]) -> None:
        self.schema = schema
        self.mirror: type[msgspec.Struct] | None = mirror_of(schema)

    def encode_line(self, record: dict[str, Any] | BaseModel) -> bytes:
        """The record as one JSON line. Raises pydantic's ``ValidationError`` when it violates the
        schema."""
        if isinstance(record, self.schema):
            return self.schema.__pydantic_serializer__.to_json(record) + b"\n"
        if self.mirror is not None and isinstance(record, dict):
            try:
                return _ENCODER.encode(msgspec.convert(record, self.mirror, strict=True)) + b"\n"
            except (msgspec.ValidationError, TypeError):
                pass  # pydantic decides: it may coerce what strict msgspec refused, or raise
        model = self.schema.__pydantic_validator__.validate_python(record)
        return self.schema.__pydantic_serializer__.to_json(model) + b"\n"


def mirror_of(schema: type[BaseModel], _seen: dict[type, Any] | None = None) -> type[msgspec.Struct] | None:
    """A msgspec Struct with ``schema``'s fields, or None when the schema is not plain."""
    seen = {} if _seen is None else _seen
    if schema in seen:
        return seen[schema]  # type: ignore[no-any-return]
    seen[schema] = None  # a recursive schema is not plain
    decorators = schema.__pydantic_decorators__
    if any((decorators.validators, decorators.field_validators, decorators.root_validators,
            decorators.field_serializers, decorators.model_serializers, decorators.model_validators,
            decorators.computed_fields)):
        return None
    config = schema.model_config
    if config.get("extra") not in (None, "forbid", "ignore") or config.get("strict") or config.get("alias_generator"):
        return None
    fields: list[tuple[str, Any, Any]] = []
    for name, info in schema.model_fields.items():
        if info.metadata or info.alias or info.validation_alias or info.serialization_alias or info.exclude:
            return None
        kind = _plain(info.annotation, seen)
        if kind is None:
            return None
        if info.is_required():
            fields.append((name, kind, msgspec.NODEFAULT))
        elif info.default_factory is not None:
            fields.append((name, kind, msgspec.field(default_factory=info.default_factory)))  # type: ignore[arg-type]
        elif isinstance(info.default, (int, float, str, bool, type(None))):
            fields.append((name, kind, info.default))
        elif info.default in ([], {}):  # pydantic copies a mutable default per instance; so does this
            fields.append((name, kind, msgspec.field(default_factory=type(info.default))))
        else:
            return None
    # kw_only: defaults may come in any order, and fields stay in the schema's (pydantic's) order.
    struct = msgspec.defstruct(f"{schema.__name__}Wire", [(n, k) if d is msgspec.NODEFAULT else (n, k, d)
                                                          for n, k, d in fields],
                               forbid_unknown_fields=config.get("extra") == "forbid", kw_only=True)
    seen[schema] = struct
    return struct


def _plain(annotation: Any, seen: dict[type, Any]) -> Any:
    """The msgspec type for a plain annotation, or None."""
    if annotation in _PLAIN:
        return annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return mirror_of(annotation, seen)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal and all(isinstance(a, (int, str)) and not isinstance(a, bool) for a in args):
        return annotation
    if origin in (Union, types.UnionType):
        parts = [_plain(a, seen) for a in args]
        if any(p is None for p in parts) or sum(p is not type(None) for p in parts) > 1:
            return None  # msgspec unions of several object-like types differ from pydantic's smart mode
        return Union[tuple(parts)]  # noqa: UP007
    if origin is list and len(args) == 1 and (inner := _plain(args[0], seen)) is not None:
        return list[inner]  # type: ignore[valid-type]
    if origin is dict and len(args) == 2 and args[0] is str and (inner := _plain(args[1], seen)) is not None:
        return dict[str, inner]  # type: ignore[valid-type]
    return None
