"""The served database: every partition at the run that last served it, one SQLite file.

``served/served.db`` under the artifact root holds, per ``(dataset, partition)``, the run that
serves it (``run_id`` and ``run_seq``, the position of that run's ``RunOpened`` in the log), the
content hash of its records, the index object they came from, and the records themselves with a
full-text index (FTS5, columns ``name`` and ``body``) over them.

A switch (:func:`switch`) applies one run's index object in **one transaction**: each of the
run's partitions is replaced only where its content hash differs from what is served and the
run is not older than the one serving it; an unchanged partition only has its run updated; a
partition served by a newer run is left alone. So a switch costs what changed, and a reader sees
the view before or after it, never a mix. Applying the same run twice changes nothing.

The file is in rollback-journal mode (not WAL) so that a reader opens it ``mode=ro`` without
creating any file: a WAL reader would leave ``-wal``/``-shm`` files behind. A reader holds a
shared lock for the length of one query; a switch waits for readers at commit (busy timeout).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec

from stagebus.errors import InvalidInput

SERVED_DIR = "served"
SERVED_DB = "served.db"
SERVED_SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS partitions (dataset TEXT NOT NULL, partition TEXT NOT NULL, run_id TEXT NOT NULL, "
    "run_seq INTEGER NOT NULL, content_hash TEXT NOT NULL, records INTEGER NOT NULL, index_sha256 TEXT NOT NULL, "
    "name_fields TEXT NOT NULL, PRIMARY KEY (dataset, partition)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, dataset TEXT NOT NULL, partition TEXT NOT NULL, "
    "record_index INTEGER NOT NULL, record TEXT NOT NULL, links_in INTEGER NOT NULL, links_out INTEGER NOT NULL, "
    "digest TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS records_by_partition ON records (dataset, partition)",
    # Keeps its own copy of the text (not contentless): SQLite 3.40 cannot delete rows of a
    # contentless FTS5 table, and one partition's rows must go when it is replaced.
    "CREATE VIRTUAL TABLE IF NOT EXISTS records_fts USING fts5(name, body, "
    "tokenize='unicode61 remove_diacritics 2')",
    "CREATE TABLE IF NOT EXISTS switches (run_id TEXT PRIMARY KEY, run_seq INTEGER NOT NULL, "
    "index_sha256 TEXT NOT NULL, replaced INTEGER NOT NULL, unchanged INTEGER NOT NULL, "
    "kept_newer INTEGER NOT NULL) WITHOUT ROWID",
)


class Switch(msgspec.Struct, frozen=True, kw_only=True):
    """What one run's switch did to the served view."""

    replaced: int  # partitions whose records were (re)placed: new, or content changed
    unchanged: int  # same content already served: only their run was updated
    kept_newer: int  # served by a newer run already: left alone
    records: int  # records written


def served_path(root: Path) -> Path:
    return Path(root) / SERVED_DIR / SERVED_DB


def open_writer(root: Path) -> sqlite3.Connection:
    """The served database for a switch, created (with its directory) if absent."""
    path = served_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SERVED_SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        conn.close()
        raise
    return conn


def open_reader(root: Path) -> sqlite3.Connection:
    """A read-only connection that creates no file. Raises :class:`InvalidInput` when nothing is
    served under ``root``."""
    path = served_path(root)
    if not path.is_file():
        raise InvalidInput(f"nothing is served under {root}: run the pipeline to serve its partitions")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                           isolation_level=None)
    conn.execute("PRAGMA query_only = ON")
    return conn


def switch(conn: sqlite3.Connection, index_path: Path, *, run_id: str, run_seq: int, index_sha256: str) -> Switch:
    """Apply the (verified) index file at ``index_path`` of run ``run_id`` in one transaction."""
    conn.execute("ATTACH DATABASE ? AS run", (f"{index_path.resolve().as_uri()}?mode=ro",))
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = _apply(conn, run_id=run_id, run_seq=run_seq, index_sha256=index_sha256)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("DETACH DATABASE run")
    return result


def _apply(conn: sqlite3.Connection, *, run_id: str, run_seq: int, index_sha256: str) -> Switch:
    (name_fields,) = conn.execute("SELECT value FROM run.meta WHERE key = 'name_fields'").fetchone()
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS incoming (dataset TEXT, partition TEXT, records INTEGER, "
                 "content_hash TEXT, action TEXT, PRIMARY KEY (dataset, partition)) WITHOUT ROWID")
    conn.execute("DELETE FROM temp.incoming")
    # Classify every partition of the run against what is served.
    conn.execute(
        "INSERT INTO temp.incoming SELECT i.dataset, i.partition, i.records, i.content_hash, CASE "
        "WHEN s.dataset IS NULL THEN 'replace' "
        "WHEN s.run_seq > :seq THEN 'keep' "
        "WHEN s.content_hash = i.content_hash THEN 'same' ELSE 'replace' END "
        "FROM run.partitions i LEFT JOIN main.partitions s ON s.dataset = i.dataset AND s.partition = i.partition",
        {"seq": run_seq},
    )
    replaced = "SELECT dataset, partition FROM temp.incoming WHERE action = 'replace'"
    conn.execute(f"DELETE FROM records_fts WHERE rowid IN (SELECT r.id FROM records r JOIN ({replaced}) c "
                 "ON r.dataset = c.dataset AND r.partition = c.partition)")
    conn.execute(f"DELETE FROM records WHERE (dataset, partition) IN ({replaced})")
    # New ids above every id in use: the run's own ids are unique, so base + id is too.
    (base,) = conn.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()
    # Driven by the changed partitions (CROSS JOIN fixes the order): cost follows what changed.
    chosen = ("FROM temp.incoming c CROSS JOIN run.records x ON x.dataset = c.dataset AND x.partition = c.partition "
              "WHERE c.action = 'replace'")
    written = conn.execute(
        "INSERT INTO records SELECT :base + x.id, x.dataset, x.partition, x.record_index, x.record, x.links_in, "
        f"x.links_out, x.digest {chosen}", {"base": base}).rowcount
    conn.execute(f"INSERT INTO records_fts (rowid, name, body) SELECT :base + x.id, x.name, x.body {chosen}",
                 {"base": base})
    conn.execute(
        "INSERT OR REPLACE INTO partitions SELECT dataset, partition, :run, :seq, content_hash, records, :sha, :names "
        "FROM temp.incoming WHERE action IN ('replace', 'same')",
        {"run": run_id, "seq": run_seq, "sha": index_sha256, "names": name_fields},
    )
    counts = dict(conn.execute("SELECT action, count(*) FROM temp.incoming GROUP BY action").fetchall())
    result = Switch(replaced=counts.get("replace", 0), unchanged=counts.get("same", 0),
                    kept_newer=counts.get("keep", 0), records=written)
    conn.execute("INSERT OR REPLACE INTO switches VALUES (?, ?, ?, ?, ?, ?)",
                 (run_id, run_seq, index_sha256, result.replaced, result.unchanged, result.kept_newer))
    return result
