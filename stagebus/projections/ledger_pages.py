"""The ledger a page at a time, for people browsing it (the web inspector).

Every read here is bounded: a page is a keyset query (``WHERE (sort key) > (last row's)``,
``LIMIT n + 1``) over an index of the ledger, so the cost of a page does not grow with the
number of partitions, only a text filter scans (and stops once the page is full). Nothing is
written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from typing import Any, Literal

import msgspec

from stagebus.projections.ledger import _COLUMNS, LedgerEntry, _entry
from stagebus.store.keys import LEDGER_HISTORY_TABLE, LEDGER_PROGRESS_TABLE, LEDGER_TABLE, RUNS_TABLE

# sort name -> the columns of its keyset, most significant first; each is served by an index
# (the primary key, or an index whose rows end with the primary key).
SORTS: dict[str, tuple[str, ...]] = {
    "partition": ("dataset", "partition"),
    "updated_at": ("updated_at", "dataset", "partition"),
    "status": ("status", "dataset", "partition"),
}  # every sort column is NOT NULL, so plain row-value comparisons order the keysets


class LedgerFilter(msgspec.Struct, frozen=True, kw_only=True):
    dataset: str | None = None
    status: str | None = None
    run_id: str | None = None
    text: str | None = None  # a substring of "dataset/partition" or of the reason
    pipelines: frozenset[str] | None = None  # only rows shown at a run of these pipelines (tenant scope)


class LedgerPage(msgspec.Struct, frozen=True, kw_only=True):
    rows: list[LedgerEntry]
    first: bool  # nothing before this page
    last: bool  # nothing after it
    start: list[Any] | None  # keyset of the first row (for the page before)
    end: list[Any] | None  # keyset of the last row (for the page after)


def _where(f: LedgerFilter) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("dataset", f.dataset), ("status", f.status), ("run_id", f.run_id)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if f.text:
        pattern = "%" + f.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append("(dataset || '/' || partition LIKE ? ESCAPE '\\' OR reason LIKE ? ESCAPE '\\')")
        args += [pattern, pattern]
    if f.pipelines is not None:
        marks = ",".join("?" * len(f.pipelines)) or "NULL"
        where.append(f"run_id IN (SELECT run_id FROM {RUNS_TABLE} WHERE pipeline IN ({marks}))")
        args += sorted(f.pipelines)
    return where, args


def read_page(conn: sqlite3.Connection, f: LedgerFilter, *, sort: str = "partition", descending: bool = False,
              after: list[Any] | None = None, before: list[Any] | None = None, limit: int = 50) -> LedgerPage:
    """One page of rows in ``sort`` order: the first, the one after the keyset ``after``, or
    the one before the keyset ``before`` (keysets come from a page's ``start`` / ``end``)."""
    keys = SORTS[sort]
    where, args = _where(f)
    backwards = before is not None
    mark = before if backwards else after
    if mark is not None:
        if len(mark) != len(keys):
            raise ValueError(f"a {sort} keyset has {len(keys)} values")
        forward_op = "<" if descending else ">"
        op = {"<": ">", ">": "<"}[forward_op] if backwards else forward_op
        where.append(f"({', '.join(keys)}) {op} ({', '.join('?' * len(keys))})")
        args += list(mark)
    order_desc = descending != backwards
    order = ", ".join(f"{k}{' DESC' if order_desc else ''}" for k in keys)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM {LEDGER_TABLE} {clause} ORDER BY {order} LIMIT ?",
                        (*args, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    entries = [_entry(r) for r in rows]
    index = {"dataset": 0, "partition": 1, "status": 2, "updated_at": 5}  # in _COLUMNS

    def keyset(row: tuple[Any, ...]) -> list[Any]:
        return [row[index[k]] for k in keys]

    return LedgerPage(rows=entries,
                      first=(not more) if backwards else mark is None,
                      last=(not more) if not backwards else False,
                      start=keyset(rows[0]) if rows else None, end=keyset(rows[-1]) if rows else None)


def count(conn: sqlite3.Connection, f: LedgerFilter) -> int:
    """How many rows pass the filter (an index count; a text filter scans the rows)."""
    where, args = _where(f)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return int(conn.execute(f"SELECT count(*) FROM {LEDGER_TABLE} {clause}", args).fetchone()[0])


def status_counts(conn: sqlite3.Connection, pipelines: frozenset[str] | None = None) -> dict[str, dict[str, int]]:
    """dataset -> status -> partitions, datasets in order."""
    where, args = _where(LedgerFilter(pipelines=pipelines))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    out: dict[str, dict[str, int]] = {}
    for dataset, status, n in conn.execute(
            f"SELECT dataset, status, count(*) FROM {LEDGER_TABLE} {clause} GROUP BY dataset, status "
            "ORDER BY dataset, status", args):
        out.setdefault(dataset, {})[status] = n
    return out


def datasets(conn: sqlite3.Connection) -> list[str]:
    """Every dataset the ledger has, skipping through the primary key (one seek per dataset)."""
    out: list[str] = []
    row = conn.execute(f"SELECT min(dataset) FROM {LEDGER_TABLE}").fetchone()
    while row is not None and row[0] is not None:
        out.append(row[0])
        row = conn.execute(f"SELECT min(dataset) FROM {LEDGER_TABLE} WHERE dataset > ?", (row[0],)).fetchone()
    return out


class HistoryRow(msgspec.Struct, frozen=True, kw_only=True):
    """A version of a partition's ledger row, and the position of the event that wrote it."""

    position: int
    status: str
    run_id: str | None
    attempts: int
    updated_at: str
    reason: str | None
    records: int | None
    rejected: int | None
    change: Literal["valid", "replaced", "invalid"] | None


def read_history(conn: sqlite3.Connection, dataset: str, partition: str) -> list[HistoryRow]:
    """Every version of the partition's ledger row, in log order."""
    cursor = conn.execute(
        f"SELECT position, status, run_id, attempts, updated_at, reason, records, rejected, change "
        f"FROM {LEDGER_HISTORY_TABLE} WHERE dataset = ? AND partition = ? ORDER BY version", (dataset, partition))
    return [HistoryRow(position=r[0], status=r[1], run_id=r[2], attempts=r[3], updated_at=r[4], reason=r[5],
                       records=r[6], rejected=r[7], change=r[8]) for r in cursor]


class RunVerdict(msgspec.Struct, frozen=True, kw_only=True):
    """What one run decided for a partition: valid, invalid, or nothing (yet)."""

    run_id: str
    verdict: str | None
    reason: str | None
    at: str | None
    records: int | None
    rejected: int


def read_verdicts(conn: sqlite3.Connection, ref: str, run_ids: Collection[str]) -> dict[str, RunVerdict]:
    """The verdict each of ``run_ids`` reached for ``ref`` (a primary-key lookup per run)."""
    out: dict[str, RunVerdict] = {}
    for run_id in run_ids:
        row = conn.execute(f"SELECT verdict, reason, last_at, records, rejected FROM {LEDGER_PROGRESS_TABLE} "
                           "WHERE run_id = ? AND ref = ?", (run_id, ref)).fetchone()
        if row is not None:
            out[run_id] = RunVerdict(run_id=run_id, verdict=row[0], reason=row[1], at=row[2], records=row[3],
                                     rejected=row[4])
    return out
