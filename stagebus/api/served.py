"""The ``served`` destination: a batch's delivered records switched into the served view, where
``stagebus query`` and the inspector search them beside the reference pipeline's datasets.

The records are written into an index file of the reference ``index`` stage's format (no links:
an API batch has none) next to the served database, then applied with the reference ``serve``
switch in one transaction: the batch's partition (dataset ``api-<pipeline id>``, partition
``<batch id>``) is inserted or replaced, never by an older run, and a retried deliver task
finds it already served with the same content hash and changes nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from stagebus.artifacts.local import sha256_file
from stagebus.errors import ContractError
from stagebus.events import split_partition_ref
from stagebus.stages.index import DEFAULT_NAME_FIELDS, Row, build_index, record_digest, split_text
from stagebus.stages.served import SERVED_DIR, Switch, open_writer, switch

_JSON = msgspec.json.Encoder(order="deterministic")


def serve_batch(artifact_root: Path, partition_ref: str, rows: Iterable[tuple[int, dict[str, Any]]], *,
                run_id: str, run_position: int | None) -> Switch:
    """Switch the served view's ``partition_ref`` to ``rows`` ((index, record) pairs) of ``run_id``."""
    if run_position is None:
        raise ContractError("a served destination needs the position of its run's RunOpened in the log")
    directory = artifact_root / SERVED_DIR
    directory.mkdir(parents=True, exist_ok=True)
    index_file = directory / f".api-index.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        build_index(index_file, _index_rows(partition_ref, rows), [partition_ref], DEFAULT_NAME_FIELDS)
        conn = open_writer(artifact_root)
        try:
            return switch(conn, index_file, run_id=run_id, run_seq=run_position, index_sha256=sha256_file(index_file))
        finally:
            conn.close()
    finally:
        index_file.unlink(missing_ok=True)


def _index_rows(partition_ref: str, rows: Iterable[tuple[int, dict[str, Any]]]) -> Iterator[Row]:
    dataset, partition = split_partition_ref(partition_ref)
    for index, record in sorted(rows, key=lambda pair: pair[0]):
        as_json = _JSON.encode(record).decode()
        name, body = split_text(record, DEFAULT_NAME_FIELDS)
        yield dataset, partition, index, as_json, 0, 0, record_digest(index, as_json, 0, 0), name, body

