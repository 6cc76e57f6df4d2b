"""index (run-level): the run's normalized records, ready to serve, in one SQLite file.

Per record: dataset, partition, record index, the record as JSON, its link counts from ``link``,
a sha256 ``digest`` of those, and its searchable text split in two: ``name`` (the values of the
name-like fields, ``name_fields`` in the config) and ``body`` (every other string, nested ones
too). Per partition: its record count and a ``content_hash`` over its records' digests in order,
so serve can tell a partition whose content changed from one served before.

The file is built to be byte-identical for identical inputs and config: a fixed page size, no
timestamps or run ids inside, rows inserted in sorted (partition, index) order and the file
rebuilt with ``VACUUM`` so no free pages or insertion history remain. The same SQLite library is
assumed; another SQLite version may lay pages out differently. The full-text index itself lives
in the served database (see :mod:`stagebus.stages.served`), where partitions come and go.
"""

from __future__ import annotations

import hashlib
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

INDEX_SCHEMA_VERSION = 2
PAGE_SIZE = 4096
_JSON = msgspec.json.Encoder(order="deterministic")

SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE partitions (dataset TEXT NOT NULL, partition TEXT NOT NULL, records INTEGER NOT NULL, "
    "content_hash TEXT NOT NULL, PRIMARY KEY (dataset, partition))",
    "CREATE TABLE records (id INTEGER PRIMARY KEY, dataset TEXT NOT NULL, partition TEXT NOT NULL, "
    "record_index INTEGER NOT NULL, record TEXT NOT NULL, links_in INTEGER NOT NULL, links_out INTEGER NOT NULL, "
    "digest TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL)",
    "CREATE INDEX records_by_partition ON records (dataset, partition, id)",
)


DEFAULT_NAME_FIELDS = ("name", "title", "label")


class IndexConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # Top-level fields whose values are a record's name: matches there rank first.
    name_fields: tuple[str, ...] = DEFAULT_NAME_FIELDS


class IndexSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    records: int
    partitions: int
    datasets: list[str]


@stage("index", after=["normalize", "link"], reads=["normalize.records", "link.record_links"], scope="run",
       outputs={"index": SearchIndex, "summary": IndexSummary}, config=IndexConfig)
def index(ctx: StageContext) -> None:
    links = {(r["partition"], r["index"]): (r["links_in"], r["links_out"])
             for r in ctx.read("link", "record_links")}
    partitions = sorted(ctx.partitions)
    config = ctx.config
    assert isinstance(config, IndexConfig)
    rows = _rows(ctx, partitions, links, config.name_fields)
    count = build_index(ctx.output_path("index"), rows, partitions, config.name_fields)
    ctx.emit("summary", IndexSummary(records=count, partitions=len(partitions),
                                     datasets=sorted({split_partition_ref(p)[0] for p in partitions})))


# dataset, partition, index, json, links in, links out, digest, name text, body text
Row = tuple[str, str, int, str, int, int, str, str, str]


def _rows(ctx: StageContext, partitions: list[str], links: dict[tuple[str, int], tuple[int, int]],
          name_fields: tuple[str, ...]) -> Iterator[Row]:
    for ref in partitions:
        dataset, partition = split_partition_ref(ref)
        for row in ctx.read("normalize", "records", partition=ref):
            record = row["record"]
            links_in, links_out = links.get((ref, row["index"]), (0, 0))
            as_json = _JSON.encode(record).decode()
            name, body = split_text(record, name_fields)
            yield (dataset, partition, row["index"], as_json, links_in, links_out,
                   record_digest(row["index"], as_json, links_in, links_out), name, body)


def record_digest(index: int, record_json: str, links_in: int, links_out: int) -> str:
    """What a served record is checked against: its index, JSON and link counts."""
    return hashlib.sha256(f"{index}\t{links_in}\t{links_out}\t{record_json}".encode()).hexdigest()


def name_keys(record: dict[str, Any], name_fields: tuple[str, ...]) -> list[str]:
    """The record's top-level keys that are name-like (compared case-insensitively)."""
    wanted = {f.casefold() for f in name_fields}
    return [key for key in sorted(record) if key.casefold() in wanted]


def split_text(record: dict[str, Any], name_fields: tuple[str, ...]) -> tuple[str, str]:
    """(name text, body text): the strings of the name-like fields, and every other string."""
    names, others = _layout(record, name_fields)
    return _joined(record, names), _joined(record, others)


_LAYOUTS: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[list[str], list[str]]] = {}


def _layout(record: dict[str, Any], name_fields: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(name keys, other keys), each sorted: the same for every record with the same keys, so
    worked out once per key sequence (bounded), not per record."""
    cache_key = (name_fields, tuple(record))
    known = _LAYOUTS.get(cache_key)
    if known is None:
        names = name_keys(record, name_fields)
        known = (names, [key for key in sorted(record) if key not in set(names)])
        if len(_LAYOUTS) < 1024:
            _LAYOUTS[cache_key] = known
    return known


def _joined(record: dict[str, Any], keys: list[str]) -> str:
    try:
        return "\n".join([record[key] for key in keys])  # every value a string: the common case
    except TypeError:
        return "\n".join(s for key in keys for s in searchable_text(record[key]))


def searchable_text(value: Any) -> Iterator[str]:
    """Every string in a value, depth first, keys in sorted order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key in sorted(value):
            yield from searchable_text(value[key])
    elif isinstance(value, list):
        for item in value:
            yield from searchable_text(item)


def build_index(path: Path, rows: Iterator[Row], partitions: list[str], name_fields: tuple[str, ...]) -> int:
    """Write the index at ``path`` (which must not exist yet); return the number of records."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        # No journal: the file is a temp file, published (and fsynced) only once built, thrown away
        # on any failure. A MEMORY journal held a copy of every page during the VACUUM: 866 MB
        # of a 1M-row run's index stage; without, its memory stays flat.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        for statement in SCHEMA:
            conn.execute(statement)
        content: dict[tuple[str, str], Any] = {split_partition_ref(p): hashlib.sha256() for p in partitions}
        counts = dict.fromkeys(content, 0)

        def numbered() -> Iterator[tuple[Any, ...]]:
            for rowid, row in enumerate(rows, start=1):
                content[(row[0], row[1])].update(row[6].encode())
                counts[(row[0], row[1])] += 1
                yield (rowid, *row)

        # One executemany over a generator: the rows still stream, without a call per row.
        conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", numbered())
        count = sum(counts.values())
        conn.executemany("INSERT INTO partitions VALUES (?, ?, ?, ?)",
                         [(*key, counts[key], digest.hexdigest()) for key, digest in sorted(content.items())])
        conn.executemany("INSERT INTO meta VALUES (?, ?)", sorted({
            "schema_version": str(INDEX_SCHEMA_VERSION),
            "records": str(count),
            "name_fields": _JSON.encode(list(name_fields)).decode(),
        }.items()))
        conn.execute("COMMIT")
        conn.execute("VACUUM")
    finally:
        conn.close()
    return count
