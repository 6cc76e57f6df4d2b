"""extract: the entities each record defines or mentions, with the records that do so.

- A record **defines** one entity: the first ``identity`` template whose fields all have values
  (default ``{id}``, then ``{module}.{qualname}``, then ``{module}``).
- It **mentions** the values of fields named like ``reference_fields`` (default ``*_id``), the
  matches of ``patterns`` (default: dotted names such as ``os.path.join``) and ``keywords`` terms
  in its text fields.

The defaults give entities for the demo corpus (functions and modules by dotted name) and for any
CSV with ``id`` / ``customer_id``-style columns. Entity identity is the value; ``kind`` says how
it was found. Output: one record per (value, role, kind) of the partition, sorted.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import stage
from stagebus.stages.grouping import IndexGroups
from stagebus.stages.records import Entity

# Dotted identifiers of two or more parts, each at least two characters long (so "e.g" and
# "i.e" are not names), not attribute access on self/cls, not inside a longer dotted run.
DOTTED_NAME = r"(?<![\w.])(?!(?:self|cls)\.)[A-Za-z_]\w+(?:\.[A-Za-z_]\w+)+(?![\w.]*\w)"


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


class PatternRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str = Field(default="name", min_length=1)
    regex: str
    group: int | str = 0  # which group of a match is the entity
    fields: list[str] | None = None  # None: every text field (not identity or reference fields)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return _regex(value)


class KeywordRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str = Field(min_length=1)
    terms: list[str] = Field(min_length=1)
    fields: list[str] | None = None
    case_sensitive: bool = False


class ExtractConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    identity: list[str] = ["{id}", "{module}.{qualname}", "{module}"]
    reference_fields: str = r"(?i)^.+_id$"
    patterns: list[PatternRule] = [PatternRule(regex=DOTTED_NAME)]
    keywords: list[KeywordRule] = []
    max_value_length: int = Field(default=200, ge=1)

    @field_validator("identity")
    @classmethod
    def _templates(cls, value: list[str]) -> list[str]:
        for template in value:
            if not template_fields(template):
                raise ValueError(f"identity template {template!r} names no field, e.g. '{{id}}'")
        return value

    @field_validator("reference_fields")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return _regex(value)


def template_fields(template: str) -> list[str]:
    try:
        return [name for _, name, spec, _ in string.Formatter().parse(template) if name is not None and not spec]
    except ValueError as exc:
        raise ValueError(f"identity template {template!r}: {exc}") from None


@stage("extract", after=["normalize"], reads=["normalize.records"], outputs={"entities": Entity},
       config=ExtractConfig)
def extract(ctx: StageContext) -> None:
    extractor = EntityExtractor(ctx.config)  # type: ignore[arg-type]
    with IndexGroups(ctx.scratch_file) as found:  # on disk past SPILL_AT pairs: bounded memory
        for row in ctx.read("normalize", "records"):
            for entity in extractor.entities(row["record"]):
                found.add(entity, row["index"])
        for (value, role, kind), records in found.groups():
            ctx.emit("entities", {"value": value, "kind": kind, "role": role, "records": records})


class EntityExtractor:
    def __init__(self, config: ExtractConfig) -> None:
        self.config = config
        self._templates = [(t, template_fields(t)) for t in config.identity]
        self._reference = re.compile(config.reference_fields)
        self._identity_fields = {f for _, names in self._templates for f in names}
        # DOTTED_NAME neither matches nor looks across a newline, so it runs once over a record's
        # text fields joined by newlines, with the same matches in the same order as field by
        # field (a property test checks this); another regex might, so it runs per field.
        self._patterns = [(p, re.compile(p.regex), p.regex == DOTTED_NAME) for p in config.patterns]
        self._keywords = [(k, _keyword_regex(k)) for k in config.keywords]
        self._layouts: dict[tuple[str, ...], tuple[list[str], list[str]]] = {}

    def _fields_of(self, record: dict[str, Any]) -> tuple[list[str], list[str]]:
        """(reference fields in name order, text fields in record order): the same for every record
        with the same keys, so worked out once per key sequence, not per record."""
        names = tuple(record)
        known = self._layouts.get(names)
        if known is None:
            references = {f for f in names if self._reference.search(f)}
            known = (sorted(references), [f for f in names if f not in references and f not in self._identity_fields])
            if len(self._layouts) < 1024:  # bounded: records of a thousand shapes are no common case
                self._layouts[names] = known
        return known

    def identity(self, record: dict[str, Any]) -> str | None:
        for template, names in self._templates:
            values = {n: record.get(n) for n in names}
            if all(v is not None and v != "" and not isinstance(v, dict | list) for v in values.values()):
                return template.format_map({n: str(v) for n, v in values.items()})
        return None

    def entities(self, record: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
        """(value, role, kind) for what the record defines and mentions; a record never
        mentions what it defines."""
        defined = self.identity(record)
        if defined is not None and len(defined) <= self.config.max_value_length:
            yield defined, "defines", "record"
        references, text_fields = self._fields_of(record)
        for name in references:
            value = record[name]
            if value is not None and value != "" and not isinstance(value, dict | list | bool):
                yield from self._mention(str(value), name, defined)
        for rule, regex, joinable in self._patterns:
            fields = rule.fields or text_fields
            for text in (_joined_texts(record, fields),) if joinable else _texts(record, fields):
                for match in regex.finditer(text):
                    yield from self._mention(match.group(rule.group), rule.kind, defined)
        for keyword_rule, regex in self._keywords:
            canonical = {t if keyword_rule.case_sensitive else t.lower(): t for t in keyword_rule.terms}
            for text in _texts(record, keyword_rule.fields or text_fields):
                for match in regex.finditer(text):
                    term = match.group(0) if keyword_rule.case_sensitive else match.group(0).lower()
                    yield from self._mention(canonical.get(term, term), keyword_rule.kind, defined)

    def _mention(self, value: str | None, kind: str, defined: str | None) -> Iterator[tuple[str, str, str]]:
        if value and value != defined and len(value) <= self.config.max_value_length:
            yield value, "mentions", kind


def _texts(record: dict[str, Any], fields: list[str]) -> Iterator[str]:
    for name in fields:
        value = record.get(name)
        if isinstance(value, str):
            yield value


def _joined_texts(record: dict[str, Any], fields: list[str]) -> str:
    try:
        return "\n".join([record[name] for name in fields])  # every field there and a string: the common case
    except (KeyError, TypeError):
        return "\n".join(_texts(record, fields))


def _keyword_regex(rule: KeywordRule) -> re.Pattern[str]:
    # Longest terms first, so "asyncio.run" wins over "asyncio" at the same position.
    terms = sorted(rule.terms, key=lambda t: (-len(t), t))
    alternation = "|".join(re.escape(t) for t in terms)
    return re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", 0 if rule.case_sensitive else re.IGNORECASE)
