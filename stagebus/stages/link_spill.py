"""The entity graph of ``link`` on disk: the same graph as :class:`~stagebus.stages.link.EntityGraph`
(the in-memory reference), held in a SQLite file so that a run of millions of records links in
bounded memory.

Every answer is a sorted scan or an aggregate query, streamed: the graph never sits in Python
objects. Sorted output matches the reference's (Python orders strings by code point, SQLite's
BINARY collation by UTF-8 bytes: the same order), and a property test checks the two agree on
every output. The file is a temp file of the task (the artifact store's sweep removes one a
crashed attempt leaves) with no journal and no fsync: it is rebuilt by any retry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import groupby
from pathlib import Path
from types import TracebackType

from stagebus.stages.grouping import open_scratch_db
from stagebus.stages.records import Edge, LinkCounts, Node, RecordLinks, record_ref

SCHEMA = (
    # (value, record) pairs a record defines, and the kinds each value was found as
    "CREATE TABLE defined (value TEXT NOT NULL, ref TEXT NOT NULL, idx INTEGER NOT NULL, "
    "PRIMARY KEY (value, ref, idx)) WITHOUT ROWID",
    "CREATE TABLE kinds (value TEXT NOT NULL, kind TEXT NOT NULL, PRIMARY KEY (value, kind)) WITHOUT ROWID",
    "CREATE TABLE mention (ref TEXT NOT NULL, idx INTEGER NOT NULL, value TEXT NOT NULL, kind TEXT NOT NULL, "
    "PRIMARY KEY (ref, idx, value, kind)) WITHOUT ROWID",
    "CREATE TABLE suffix (suffix TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (suffix, value)) WITHOUT ROWID",
    # per mentioned value: what it resolves to (NULL: unresolved), and whether it was ambiguous
    "CREATE TABLE resolution (value TEXT PRIMARY KEY, target TEXT, ambiguous INTEGER NOT NULL) WITHOUT ROWID",
    # (mentioning record, target) once each, and (mentioning record, value) left unresolved
    "CREATE TABLE resolved (ref TEXT NOT NULL, idx INTEGER NOT NULL, target TEXT NOT NULL, "
    "PRIMARY KEY (ref, idx, target)) WITHOUT ROWID",
    "CREATE TABLE unresolved (ref TEXT NOT NULL, idx INTEGER NOT NULL, value TEXT NOT NULL, "
    "ambiguous INTEGER NOT NULL, PRIMARY KEY (ref, idx, value)) WITHOUT ROWID",
)
BATCH = 10_000


class SpilledEntityGraph:
    """:class:`~stagebus.stages.link.EntityGraph`'s interface over a SQLite file at ``path``
    (which must not exist). Use as a context manager: the file is removed on exit."""

    def __init__(self, path: Path, resolve_suffixes: bool = True) -> None:
        self.path = path
        self.resolve_suffixes = resolve_suffixes
        self.conn = open_scratch_db(path)
        for statement in SCHEMA:
            self.conn.execute(statement)
        self._defined: list[tuple[str, str, int]] = []
        self._kinds: list[tuple[str, str]] = []
        self._mentions: list[tuple[str, int, str, str]] = []

    def __enter__(self) -> SpilledEntityGraph:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()
        self.path.unlink(missing_ok=True)

    # --- building ---------------------------------------------------------------------------

    def add(self, ref: str, value: str, role: str, kind: str, records: list[int]) -> None:
        if role == "defines":
            self._defined.extend((value, ref, index) for index in records)
            self._kinds.append((value, kind))
        else:
            self._mentions.extend((ref, index, value, kind) for index in records)
        if len(self._defined) + len(self._mentions) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        self.conn.executemany("INSERT OR IGNORE INTO defined VALUES (?, ?, ?)", self._defined)
        self.conn.executemany("INSERT OR IGNORE INTO kinds VALUES (?, ?)", self._kinds)
        self.conn.executemany("INSERT OR IGNORE INTO mention VALUES (?, ?, ?, ?)", self._mentions)
        self._defined.clear()
        self._kinds.clear()
        self._mentions.clear()

    def resolve(self) -> None:
        self._flush()
        conn = self.conn
        if self.resolve_suffixes:
            values = conn.execute("SELECT DISTINCT value FROM defined WHERE instr(value, '.') > 0")
            suffixes = ((".".join(parts[start:]), value)
                        for (value,) in values for parts in [value.split(".")] for start in range(1, len(parts) - 1))
            self._insert_in_batches("INSERT OR IGNORE INTO suffix VALUES (?, ?)", suffixes)
        conn.execute(
            "INSERT INTO resolution "
            "SELECT m.value, CASE WHEN d.value IS NOT NULL THEN m.value WHEN s.n = 1 THEN s.only END, "
            "       d.value IS NULL AND coalesce(s.n, 0) > 1 "
            "FROM (SELECT DISTINCT value FROM mention) m "
            "LEFT JOIN (SELECT DISTINCT value FROM defined) d ON d.value = m.value "
            "LEFT JOIN (SELECT suffix, count(*) AS n, min(value) AS only FROM suffix GROUP BY suffix) s "
            "       ON s.suffix = m.value AND instr(m.value, '.') > 0")
        conn.execute("INSERT OR IGNORE INTO resolved SELECT m.ref, m.idx, r.target FROM mention m "
                     "JOIN resolution r ON r.value = m.value WHERE r.target IS NOT NULL")
        conn.execute("INSERT OR IGNORE INTO unresolved SELECT m.ref, m.idx, m.value, r.ambiguous FROM mention m "
                     "JOIN resolution r ON r.value = m.value WHERE r.target IS NULL")
        conn.execute("INSERT OR IGNORE INTO kinds SELECT coalesce(r.target, m.value), m.kind FROM mention m "
                     "JOIN resolution r ON r.value = m.value")
        conn.execute("CREATE INDEX defined_by_record ON defined (ref, idx, value)")
        conn.execute("CREATE INDEX resolved_by_target ON resolved (target, ref, idx)")
        conn.execute("CREATE INDEX unresolved_by_value ON unresolved (value, ref, idx)")

    def _insert_in_batches(self, sql: str, rows: Iterable[tuple[str, str]]) -> None:
        batch: list[tuple[str, str]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= BATCH:
                self.conn.executemany(sql, batch)
                batch.clear()
        self.conn.executemany(sql, batch)

    # --- answers, streamed in sorted order ----------------------------------------------------

    def nodes(self) -> Iterator[Node]:
        # Every value defined or left unresolved (resolved targets are defined ones), merged from
        # three scans sorted by value: kinds, definitions, and the records mentioning it.
        kinds = groupby(self.conn.execute("SELECT value, kind FROM kinds ORDER BY value, kind"), key=_first)
        defined = _grouped(self.conn.execute("SELECT value, ref, idx FROM defined ORDER BY value, ref, idx"))
        mentioned = _grouped(self.conn.execute(
            "SELECT target, ref, idx FROM resolved UNION ALL SELECT value, ref, idx FROM unresolved "
            "ORDER BY 1, 2, 3"))
        values = self.conn.execute("SELECT value FROM defined UNION SELECT value FROM unresolved ORDER BY 1")
        kind_at = next(kinds, None)
        defined_at, mentioned_at = next(defined, None), next(mentioned, None)
        for (value,) in values:
            while kind_at is not None and kind_at[0] < value:
                kind_at = next(kinds, None)
            found_kinds = [row[1] for row in kind_at[1]] if kind_at is not None and kind_at[0] == value else []
            keys: list[tuple[str, int]] = []
            if defined_at is not None and defined_at[0] == value:
                keys, defined_at = defined_at[1], next(defined, None)
            mentions: list[tuple[str, int]] = []
            if mentioned_at is not None and mentioned_at[0] == value:
                mentions, mentioned_at = mentioned_at[1], next(mentioned, None)
            yield Node(value=value, kinds=found_kinds, defined_in=[record_ref(*k) for k in keys],
                       mentioned_by=len(mentions), partitions=sorted({k[0] for k in [*keys, *mentions]}))

    def edges(self) -> Iterator[Edge]:
        rows = self.conn.execute(
            "SELECT d.value, r.target, count(*), "
            "       max(NOT EXISTS (SELECT 1 FROM defined h WHERE h.value = r.target AND h.ref = r.ref)) "
            "FROM resolved r JOIN defined d ON d.ref = r.ref AND d.idx = r.idx "
            "WHERE d.value != r.target GROUP BY d.value, r.target ORDER BY d.value, r.target")
        for source, target, weight, cross in rows:
            yield Edge(source=source, target=target, weight=weight, cross_partition=bool(cross))

    def record_links(self) -> Iterator[RecordLinks]:
        rows = self.conn.execute(
            "SELECT ref, idx, sum(links_in), sum(links_out) FROM ("
            "  SELECT d.ref, d.idx, count(*) AS links_in, 0 AS links_out FROM resolved r "
            "  JOIN defined d ON d.value = r.target WHERE NOT (d.ref = r.ref AND d.idx = r.idx) "
            "  GROUP BY d.ref, d.idx "
            "  UNION ALL "
            "  SELECT r.ref, r.idx, 0, count(*) FROM resolved r WHERE EXISTS (SELECT 1 FROM defined d "
            "    WHERE d.value = r.target AND NOT (d.ref = r.ref AND d.idx = r.idx)) GROUP BY r.ref, r.idx"
            ") GROUP BY ref, idx ORDER BY ref, idx")
        for ref, index, links_in, links_out in rows:
            yield RecordLinks(partition=ref, index=index, links_in=links_in, links_out=links_out)

    def counts(self, partitions: int, edges: int, cross_partition_edges: int) -> LinkCounts:
        one = self._one
        resolved, unresolved = one("SELECT count(*) FROM resolved"), one("SELECT count(*) FROM unresolved")
        ambiguous = one("SELECT count(*) FROM unresolved WHERE ambiguous")
        return LinkCounts(
            partitions=partitions,
            nodes=one("SELECT count(*) FROM (SELECT value FROM defined UNION SELECT value FROM unresolved)"),
            edges=edges, cross_partition_edges=cross_partition_edges,
            definitions=one("SELECT count(*) FROM defined"),
            references=resolved + unresolved, resolved_references=resolved, ambiguous_references=ambiguous,
            unresolved_references=unresolved - ambiguous,
            unresolved_entities=one("SELECT count(*) FROM (SELECT value FROM unresolved EXCEPT "
                                    "SELECT value FROM unresolved WHERE ambiguous)"),
        )

    def _one(self, sql: str) -> int:
        (value,) = self.conn.execute(sql).fetchone()
        return int(value)


def _first(row: tuple[str, ...]) -> str:
    return row[0]


def _grouped(rows: Iterable[tuple[str, str, int]]) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    for value, group in groupby(rows, key=lambda row: row[0]):
        yield value, [(ref, index) for _, ref, index in group]
