"""Record schemas of the reference stages' outputs (validated by ``ctx.emit``).

A user record travels between stages inside an :class:`IndexedRecord`, whose ``index`` is the
1-based line where the row starts in the raw file: it names the record in rejects, entity
references and the search index, so a user can always go back to the line it came from.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from stagebus.pipeline.contract import FileOutput

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def record_ref(partition: str, index: int) -> str:
    """``dataset/partition#index``: one record of one partition, as entity references name it."""
    return f"{partition}#{index}"


class IndexedRecord(BaseModel):
    model_config = _FROZEN
    index: int
    record: dict[str, Any]


class RawPayload(FileOutput):
    """The partition's bytes exactly as the producer published them."""


class RawMetadata(BaseModel):
    """What is known about the raw payload, stored beside it as an immutable pair."""

    model_config = _FROZEN
    dataset: str
    partition: str
    uri: str
    content_hash: str
    size: int
    format: Literal["csv", "jsonl", "json"]
    metadata: dict[str, str]
    schema_version: int
    records: int
    rejected: int


class Entity(BaseModel):
    """One entity of one partition and the records (by index) that define or mention it."""

    model_config = _FROZEN
    value: str
    kind: str
    role: Literal["defines", "mentions"]
    records: list[int]


class Node(BaseModel):
    """Every occurrence of one entity identity across the run's partitions."""

    model_config = _FROZEN
    value: str
    kinds: list[str]
    defined_in: list[str]  # record refs
    mentioned_by: int  # records that mention it (after resolution)
    partitions: list[str]


class Edge(BaseModel):
    """A record defining ``source`` mentions ``target``; ``weight`` counts such records."""

    model_config = _FROZEN
    source: str
    target: str
    weight: int
    cross_partition: bool  # the mention and the target's definition live in different partitions


class RecordLinks(BaseModel):
    model_config = _FROZEN
    partition: str
    index: int
    links_in: int  # records that mention an entity this record defines
    links_out: int  # entities this record mentions that are defined by another record


class LinkCounts(BaseModel):
    model_config = _FROZEN
    partitions: int
    nodes: int
    edges: int
    cross_partition_edges: int
    definitions: int
    references: int
    resolved_references: int
    ambiguous_references: int
    unresolved_references: int
    unresolved_entities: int  # entities referenced but defined nowhere


class SearchIndex(FileOutput):
    """A SQLite FTS5 database over every normalized record of a run."""


class ServedSwitch(BaseModel):
    """What a run's serve task changed in the served database (``path``, relative to the
    artifact root): partitions replaced, unchanged (run updated only), kept (a newer run serves them)."""

    model_config = _FROZEN
    path: str
    index_sha256: str
    partitions: int
    replaced: int
    unchanged: int
    kept_newer: int
    records: int
