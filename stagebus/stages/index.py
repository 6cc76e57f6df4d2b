"""index (run-level): a SQLite FTS5 search index over the normalized records of every partition.

Every string in a record (nested ones too) is searchable; each row keeps its dataset, partition,
record index, the record as JSON, and its link counts from ``link``.

The file is built to be byte-identical for identical inputs and config: a fixed page size, no
timestamps or run ids inside, rows inserted in sorted (partition, index) order, FTS segments
merged (``optimize``) and the file rebuilt with ``VACUUM`` so no free pages or insertion history
remain. The same SQLite library is assumed; another SQLite version may lay pages out differently.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict

from stagebus.events import split_partition_ref
from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import stage
from stagebus.stages.records import SearchIndex

INDEX_SCHEMA_VERSION = 1
PAGE_SIZE = 4096
_JSON = msgspec.json.Encoder(order="deterministic")

SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE records (id INTEGER PRIMARY KEY, dataset TEXT NOT NULL, partition TEXT NOT NULL, "
    "record_index INTEGER NOT NULL, record TEXT NOT NULL, links_in INTEGER NOT NULL, links_out INTEGER NOT NULL)",
    "CREATE INDEX records_by_dataset ON records (dataset, id)",
    # Contentless: the text lives in records.record already; FTS keeps only what ranking needs.
    "CREATE VIRTUAL TABLE records_fts USING fts5(body, content='', tokenize='unicode61 remove_diacritics 2')",
)


class IndexSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    records: int
    partitions: int
    datasets: list[str]


@stage("index", after=["normalize", "link"], reads=["normalize.records", "link.record_links"], scope="run",
       outputs={"index": SearchIndex, "summary": IndexSummary})
def index(ctx: StageContext) -> None:
    links = {(r["partition"], r["index"]): (r["links_in"], r["links_out"])
             for r in ctx.read("link", "record_links")}
    partitions = sorted(ctx.partitions)
    rows = _rows(ctx, partitions, links)
    count = build_index(ctx.output_path("index"), rows, partitions)
    ctx.emit("summary", IndexSummary(records=count, partitions=len(partitions),
                                     datasets=sorted({split_partition_ref(p)[0] for p in partitions})))


Row = tuple[str, str, int, str, int, int, str]  # dataset, partition, index, json, in, out, body


def _rows(ctx: StageContext, partitions: list[str], links: dict[tuple[str, int], tuple[int, int]]) -> Iterator[Row]:
    for ref in partitions:
        dataset, partition = split_partition_ref(ref)
        for row in ctx.read("normalize", "records", partition=ref):
            record = row["record"]
            links_in, links_out = links.get((ref, row["index"]), (0, 0))
            yield (dataset, partition, row["index"], _JSON.encode(record).decode(), links_in, links_out,
                   "\n".join(searchable_text(record)))


def searchable_text(value: Any) -> Iterator[str]:
    """Every string in a record, depth first, keys in sorted order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key in sorted(value):
            yield from searchable_text(value[key])
    elif isinstance(value, list):
        for item in value:
            yield from searchable_text(item)


def build_index(path: Path, rows: Iterator[Row], partitions: list[str]) -> int:
    """Write the index at ``path`` (which must not exist yet); return the number of records."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode = MEMORY")  # the file is fsynced when published
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        for statement in SCHEMA:
            conn.execute(statement)
        count = 0
        for rowid, row in enumerate(rows, start=1):
            conn.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", (rowid, *row[:6]))
            conn.execute("INSERT INTO records_fts (rowid, body) VALUES (?, ?)", (rowid, row[6]))
            count = rowid
        conn.executemany("INSERT INTO meta VALUES (?, ?)", sorted({
            "schema_version": str(INDEX_SCHEMA_VERSION),
            "records": str(count),
            "partitions": _JSON.encode(partitions).decode(),
        }.items()))
        conn.execute("INSERT INTO records_fts (records_fts) VALUES ('optimize')")
        conn.execute("COMMIT")
        conn.execute("VACUUM")
    finally:
        conn.close()
    return count
