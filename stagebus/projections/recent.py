"""The newest runs a page at a time, for people browsing them (the web inspector): reading every
run with its summaries costs time in proportion to the whole history, a page of them does not."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

from stagebus.projections.runs import _RUN_COLUMNS, RunInfo, _run_info
from stagebus.store.keys import RUNS_TABLE


def read_recent_runs(conn: sqlite3.Connection, limit: int, *, before: int | None = None,
                     pipelines: Collection[str] | None = None) -> list[tuple[int, RunInfo]]:
    """Up to ``limit`` runs, newest first, opened before the run at log position ``before``
    (a run's ``seq``, the position of its ``RunOpened``), with that position."""
    where: list[str] = []
    args: list[object] = []
    if before is not None:
        where.append("seq < ?")
        args.append(before)
    if pipelines is not None:
        where.append(f"pipeline IN ({','.join('?' * len(pipelines)) or 'NULL'})")
        args += sorted(pipelines)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(f"SELECT seq, {_RUN_COLUMNS} FROM {RUNS_TABLE} {clause} ORDER BY seq DESC LIMIT ?",
                        (*args, limit)).fetchall()
    return [(row[0], _run_info(conn, row[1:])) for row in rows]


def read_run_ids(conn: sqlite3.Connection, pipelines: Collection[str]) -> set[str]:
    """The ids of every run of ``pipelines``."""
    marks = ",".join("?" * len(pipelines)) or "NULL"
    return {r[0] for r in conn.execute(f"SELECT run_id FROM {RUNS_TABLE} WHERE pipeline IN ({marks})",
                                       sorted(pipelines))}
