"""The partition ledger: ``(dataset, partition) -> pending | valid | invalid``.

Rules (each has a unit test in ``tests/unit/test_projections_ledger.py``):

- ``PartitionIngested`` for ``(d, p)`` in run ``r`` creates the row as ``pending`` if absent and
  counts the runs that ingested it in ``attempts``. A partition without a row reads as pending.
- A partition ref is *complete* in run ``r`` when every stage of ``r``'s plan (the whole plan, even
  when ``RunOpened.stages`` names a subset) has a manifest, ``complete`` or ``reused``: under the
  ref for a partition-scoped stage, under ``*`` for a run-level one. Complete means *valid*.
- A final ``StageFailed`` under the ref makes it *invalid* with reason
  ``"<stage>: <error_type>: <message>"``; under ``*`` it makes every partition of the run invalid
  (ingested, sealed or seen by a stage, also those that show up later).
- A ref's verdict in a run is decided once: the first of complete / final failure in log order.
  Events of stages outside the run's plan, and of runs never opened, decide nothing; a run
  with an empty plan never reaches a verdict (nothing vouches for its partitions).
- The row shows the verdict of the *latest* run, in order of ``RunOpened`` positions, that reached
  one: an older run deciding later does not override a newer run's verdict, and while the newest
  run has no verdict yet the row keeps the previous one. ``run_id`` names the run whose verdict
  the row shows, or while there is none the latest run that ingested the partition.
- ``RunAbandoned`` for run ``r``: ``r`` decides nothing from then on, and a row showing ``r``
  without a verdict reads ``invalid`` with reason ``"run r abandoned: <reason>"`` (so it is not
  pending); any run's later verdict replaces that, as does a newer run's ingestion.
- ``updated_at`` is the ``recorded_at`` of the last event that changed the row. For a verdict that
  is the partition's *own* verdict time: its last stage manifest under its ref for ``valid``
  (run-level stages that follow vouch for every partition of the run at once, so their time is
  the run's, not the partition's), the failure that decided it for ``invalid`` (a run-level failure
  or an abandonment concerns every partition of the run: its time).
- ``records`` and ``rejected`` describe the run whose verdict the row shows, as of that verdict
  (NULL while the row has no verdict): ``records`` is ``records_in`` of the partition's manifest of
  the plan's first root stage (a partition-scoped stage with no ``after``; for the reference
  pipeline ingest, i.e. rows read), NULL if that stage wrote none; ``rejected`` is the sum of
  ``records_rejected`` over the partition's own manifests in that run (run-level stages' rejects
  belong to no one partition and are not counted).
- History: every change of a row is kept in ``ledger_history`` with the position of the event
  that made it (a full copy of the row), so the ledger as of any position is a lookup
  (:func:`read_ledger_as_of`). A change of status or run is tagged: ``valid`` (became valid),
  ``replaced`` (valid again, at another run), ``invalid`` (became invalid); :func:`read_changes`.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Literal

import msgspec

from stagebus.events import (
    RUN_SCOPE,
    AnyEvent,
    Event,
    ManifestWritten,
    PartitionIngested,
    RunAbandoned,
    RunOpened,
    RunSealed,
    StageFailed,
    split_partition_ref,
)
from stagebus.projections.base import decode_plan, encode_plan
from stagebus.store import RecordedEvent
from stagebus.store.keys import LEDGER_HISTORY_TABLE, LEDGER_PROGRESS_TABLE, LEDGER_RUNS_TABLE, LEDGER_TABLE

Status = Literal["pending", "valid", "invalid"]
STATUSES: tuple[str, ...] = ("pending", "valid", "invalid")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
    dataset     TEXT NOT NULL,
    partition   TEXT NOT NULL,
    status      TEXT NOT NULL,
    run_id      TEXT,
    attempts    INTEGER NOT NULL,
    updated_at  TEXT NOT NULL,
    reason      TEXT,
    verdict_seq INTEGER,  -- RunOpened position of the run whose verdict the row shows
    records     INTEGER,
    rejected    INTEGER,
    position    INTEGER NOT NULL,  -- of the last event that wrote the row (maybe changing nothing)
    PRIMARY KEY (dataset, partition)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {LEDGER_TABLE}_by_status ON {LEDGER_TABLE} (status);
CREATE INDEX IF NOT EXISTS {LEDGER_TABLE}_by_run ON {LEDGER_TABLE} (run_id);
CREATE INDEX IF NOT EXISTS {LEDGER_TABLE}_by_updated ON {LEDGER_TABLE} (updated_at);  -- inspector: newest first
CREATE TABLE IF NOT EXISTS {LEDGER_RUNS_TABLE} (
    run_id          TEXT PRIMARY KEY,
    seq             INTEGER NOT NULL,
    plan            BLOB NOT NULL,
    run_stages_done INTEGER NOT NULL,
    failure         TEXT,
    abandoned       TEXT  -- the reason a RunAbandoned gave; NULL while the run is not abandoned
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {LEDGER_PROGRESS_TABLE} (
    run_id      TEXT NOT NULL,
    ref         TEXT NOT NULL,
    stages_done INTEGER NOT NULL,
    verdict     TEXT,
    reason      TEXT,
    last_at     TEXT,      -- recorded_at of the ref's last stage manifest in the run
    records     INTEGER,   -- records_in of its root-stage manifest
    rejected    INTEGER NOT NULL,
    PRIMARY KEY (run_id, ref)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {LEDGER_HISTORY_TABLE} (
    version    INTEGER PRIMARY KEY,  -- write order: several versions may share a position
    position   INTEGER NOT NULL,
    dataset    TEXT NOT NULL,
    partition  TEXT NOT NULL,
    status     TEXT NOT NULL,
    run_id     TEXT,
    attempts   INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    reason     TEXT,
    records    INTEGER,
    rejected   INTEGER,
    change     TEXT  -- valid | replaced | invalid, or NULL when status and run stayed
);
CREATE INDEX IF NOT EXISTS {LEDGER_HISTORY_TABLE}_by_position ON {LEDGER_HISTORY_TABLE} (position);
CREATE INDEX IF NOT EXISTS {LEDGER_HISTORY_TABLE}_by_partition ON {LEDGER_HISTORY_TABLE} (dataset, partition, version);
CREATE INDEX IF NOT EXISTS {LEDGER_HISTORY_TABLE}_by_change ON {LEDGER_HISTORY_TABLE} (dataset, position)
    WHERE change IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS {LEDGER_TABLE}_inserted AFTER INSERT ON {LEDGER_TABLE} BEGIN
    INSERT INTO {LEDGER_HISTORY_TABLE} (position, dataset, partition, status, run_id, attempts, updated_at,
                                        reason, records, rejected, change)
    VALUES (new.position, new.dataset, new.partition, new.status, new.run_id, new.attempts, new.updated_at,
            new.reason, new.records, new.rejected,
            CASE new.status WHEN 'valid' THEN 'valid' WHEN 'invalid' THEN 'invalid' END);
END;
CREATE TRIGGER IF NOT EXISTS {LEDGER_TABLE}_updated AFTER UPDATE ON {LEDGER_TABLE}
WHEN old.status IS NOT new.status OR old.run_id IS NOT new.run_id OR old.attempts IS NOT new.attempts
     OR old.updated_at IS NOT new.updated_at OR old.reason IS NOT new.reason OR old.records IS NOT new.records
     OR old.rejected IS NOT new.rejected
BEGIN
    INSERT INTO {LEDGER_HISTORY_TABLE} (position, dataset, partition, status, run_id, attempts, updated_at,
                                        reason, records, rejected, change)
    VALUES (new.position, new.dataset, new.partition, new.status, new.run_id, new.attempts, new.updated_at,
            new.reason, new.records, new.rejected,
            CASE WHEN new.status = 'valid' AND old.status IS NOT 'valid' THEN 'valid'
                 WHEN new.status = 'valid' AND old.run_id IS NOT new.run_id THEN 'replaced'
                 WHEN new.status = 'invalid' AND old.status IS NOT 'invalid' THEN 'invalid' END);
END;
"""

# Every write to a ledger row, as one statement so a batch of them goes in one executemany, in
# log order. An ingestion (verdict_seq NULL, attempts 1) counts an attempt; a verdict (attempts 0)
# replaces the row's verdict only when it comes from a newer run than the one the row shows.
_NEWER = "excluded.verdict_seq > coalesce(verdict_seq, -1)"


def _verdict_column(column: str) -> str:
    """A column the row's verdict owns: taken from a newer run's verdict, or from an ingestion
    while the row has no verdict yet."""
    return (f"{column} = CASE WHEN {_NEWER} THEN excluded.{column}\n"
            f"        WHEN excluded.verdict_seq IS NULL AND verdict_seq IS NULL THEN excluded.{column}\n"
            f"        ELSE {column} END")


_LEDGER_ROW = f"""
INSERT INTO {LEDGER_TABLE} (dataset, partition, status, run_id, attempts, updated_at, reason, verdict_seq,
                            records, rejected, position)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (dataset, partition) DO UPDATE SET
    attempts = attempts + excluded.attempts,
    {", ".join(_verdict_column(c) for c in ("status", "reason", "run_id", "records", "rejected"))},
    updated_at = CASE WHEN excluded.verdict_seq IS NULL OR {_NEWER} THEN excluded.updated_at
                      ELSE updated_at END,
    position = excluded.position,
    verdict_seq = CASE WHEN {_NEWER} THEN excluded.verdict_seq ELSE verdict_seq END
"""


class RunPlan(msgspec.Struct, frozen=True):
    """What the ledger needs of a run's plan. Immutable once opened, so safe to cache."""

    seq: int
    partition_stages: frozenset[str]
    run_stages: frozenset[str]
    root_stage: str | None  # the first partition stage with no upstream: its records_in is "records"

    @property
    def stages(self) -> int:
        return len(self.partition_stages) + len(self.run_stages)


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True):
    dataset: str
    partition: str
    status: Status
    run_id: str | None
    attempts: int
    updated_at: str | None
    reason: str | None
    records: int | None = None
    rejected: int | None = None


class LedgerChange(msgspec.Struct, frozen=True, kw_only=True):
    """A partition that became valid, was replaced (valid at another run) or became invalid."""

    position: int  # of the event that made the change
    dataset: str
    partition: str
    change: Literal["valid", "replaced", "invalid"]
    status: Status
    run_id: str | None
    reason: str | None
    at: str


class PartitionLedger:
    """Applies the rules above. Within a batch it keeps the progress rows and run states it
    touched in memory (the runner holds the write lock, so nobody else changes them) and writes
    them back in :meth:`flush`; that replaces several statements per event with a few
    ``executemany`` calls per batch."""

    name = "ledger"
    tables: tuple[str, ...] = (LEDGER_TABLE, LEDGER_RUNS_TABLE, LEDGER_PROGRESS_TABLE, LEDGER_HISTORY_TABLE)
    schema = SCHEMA
    handles: tuple[type[Event], ...] = (RunOpened, PartitionIngested, RunSealed, RunAbandoned, ManifestWritten,
                                        StageFailed)

    def __init__(self) -> None:
        self._plans: dict[str, RunPlan] = {}  # immutable facts: kept across batches
        # (run, ref) -> [stages_done, verdict, reason, last_at, records, rejected]
        self._progress: dict[tuple[str, str], list[Any]] = {}
        self._position = 0  # of the event being applied
        self._runs: dict[str, list[Any]] = {}  # run -> [run_stages_done, failure]
        self._dirty_progress: set[tuple[str, str]] = set()
        self._dirty_runs: set[str] = set()
        self._rows: list[tuple[Any, ...]] = []  # ledger row writes, in log order

    def apply(self, conn: sqlite3.Connection, record: RecordedEvent, event: AnyEvent) -> None:
        at = record.recorded_at
        self._position = record.position
        match event:
            case RunOpened():
                conn.execute(
                    f"INSERT OR IGNORE INTO {LEDGER_RUNS_TABLE} VALUES (?, ?, ?, 0, NULL, NULL)",
                    (event.run_id, record.position, encode_plan(event.plan)),
                )
            case PartitionIngested():
                abandoned = self._abandoned(conn, event.run_id)
                self._rows.append((event.dataset, event.partition, "pending" if abandoned is None else "invalid",
                                   event.run_id, 1, at, abandoned, None, None, None, record.position))
                self._touch(conn, event.run_id, event.ref, at)
            case RunAbandoned():
                self._abandon(conn, event, at)
            case RunSealed():
                for ref in event.partitions:
                    self._touch(conn, event.run_id, ref, at)
            case ManifestWritten():
                self._manifest(conn, event, at)
            case StageFailed(final=True):
                self._failure(conn, event, at)
            case _:
                pass

    def flush(self, conn: sqlite3.Connection) -> None:
        if self._dirty_progress:
            conn.executemany(
                f"INSERT OR REPLACE INTO {LEDGER_PROGRESS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run, ref, *self._progress[(run, ref)]) for run, ref in sorted(self._dirty_progress)],
            )
        if self._dirty_runs:
            conn.executemany(
                f"UPDATE {LEDGER_RUNS_TABLE} SET run_stages_done = ?, failure = ?, abandoned = ? WHERE run_id = ?",
                [(*self._runs[run], run) for run in sorted(self._dirty_runs)],
            )
        if self._rows:
            conn.executemany(_LEDGER_ROW, self._rows)
        # Mutable state is only trusted under this transaction's lock: drop it with the batch.
        self._progress.clear()
        self._runs.clear()
        self._dirty_progress.clear()
        self._dirty_runs.clear()
        self._rows.clear()

    # --- rules ---------------------------------------------------------------------------

    def _abandon(self, conn: sqlite3.Connection, event: RunAbandoned, at: str) -> None:
        """Rows showing the run while it has no verdict become invalid with the reason; they keep
        ``verdict_seq`` NULL, so any run's later verdict, an older run's too, replaces it."""
        if self._plan(conn, event.run_id) is None or self._abandoned(conn, event.run_id) is not None:
            return
        state = self._run(conn, event.run_id)
        state[2] = f"run {event.run_id} abandoned" + (f": {event.reason}" if event.reason else "")
        self._dirty_runs.add(event.run_id)
        self.flush(conn)  # rare: let SQL see every row written so far
        conn.execute(
            f"UPDATE {LEDGER_TABLE} SET status = 'invalid', reason = ?, updated_at = ?, position = ? "
            "WHERE run_id = ? AND verdict_seq IS NULL",
            (state[2], at, self._position, event.run_id),
        )

    def _abandoned(self, conn: sqlite3.Connection, run_id: str) -> str | None:
        """The ledger's reason for an abandoned run's partitions; None if the run is not abandoned
        (or was never opened). An abandoned run decides nothing any more."""
        if self._plan(conn, run_id) is None:
            return None
        return self._run(conn, run_id)[2]  # type: ignore[no-any-return]

    def _manifest(self, conn: sqlite3.Connection, event: ManifestWritten, at: str) -> None:
        plan = self._plan(conn, event.run_id)
        if plan is None or self._abandoned(conn, event.run_id) is not None:
            return
        if event.partition == RUN_SCOPE:
            if event.stage in plan.run_stages:
                state = self._run(conn, event.run_id)
                state[0] += 1
                self._dirty_runs.add(event.run_id)
                if state[0] == len(plan.run_stages):
                    self._decide_run(conn, event.run_id, plan, "valid", None, at)
            return
        if event.stage not in plan.partition_stages:
            return
        progress = self._touch(conn, event.run_id, event.partition, at)
        progress[0] += 1
        if progress[1] is None:  # counts as of the verdict: later duplicates change nothing
            metrics = event.manifest.metrics
            progress[3] = at
            progress[5] += metrics.records_rejected
            if event.stage == plan.root_stage:
                progress[4] = metrics.records_in
        self._dirty_progress.add((event.run_id, event.partition))
        if progress[1] is None and progress[0] == len(plan.partition_stages):
            self._judge(conn, event.run_id, event.partition, progress, plan, at)

    def _failure(self, conn: sqlite3.Connection, event: StageFailed, at: str) -> None:
        plan = self._plan(conn, event.run_id)
        if plan is None or event.stage not in plan.partition_stages | plan.run_stages:
            return
        if self._abandoned(conn, event.run_id) is not None:
            return
        reason = f"{event.stage}: {event.error_type}: {event.message}"
        if event.partition == RUN_SCOPE:
            state = self._run(conn, event.run_id)
            if state[1] is None:
                state[1] = reason
                self._dirty_runs.add(event.run_id)
            self._decide_run(conn, event.run_id, plan, "invalid", state[1], at)
            return
        progress = self._touch(conn, event.run_id, event.partition, at)
        self._decide(event.run_id, event.partition, progress, plan, "invalid", reason, at)

    def _touch(self, conn: sqlite3.Connection, run_id: str, ref: str, at: str) -> list[Any]:
        """The ref's progress in the run, created if new; a ref new to a run may be decided at once."""
        key = (run_id, ref)
        progress = self._progress.get(key)
        if progress is not None:
            return progress
        row = conn.execute(
            f"SELECT stages_done, verdict, reason, last_at, records, rejected FROM {LEDGER_PROGRESS_TABLE} "
            "WHERE run_id = ? AND ref = ?", key
        ).fetchone()
        progress = self._progress[key] = list(row) if row is not None else [0, None, None, None, None, 0]
        if row is None:
            self._dirty_progress.add(key)
            plan = self._plan(conn, run_id)
            if plan is not None:
                self._judge(conn, run_id, ref, progress, plan, at)
        return progress

    def _judge(self, conn: sqlite3.Connection, run_id: str, ref: str, progress: list[Any], plan: RunPlan,
               at: str) -> None:
        """Decide an undecided ref whose run already failed at run level, or that is complete."""
        run_done, failure, abandoned = self._run(conn, run_id)
        if abandoned is not None:
            return
        if failure is not None:
            self._decide(run_id, ref, progress, plan, "invalid", failure, at)
        elif progress[0] == len(plan.partition_stages) and run_done == len(plan.run_stages) and plan.stages:
            self._decide(run_id, ref, progress, plan, "valid", None, progress[3] or at)

    def _decide(self, run_id: str, ref: str, progress: list[Any], plan: RunPlan, status: Status,
                reason: str | None, at: str) -> None:
        if progress[1] is not None:
            return  # decided once, by the first verdict in log order
        progress[1], progress[2] = status, reason
        self._dirty_progress.add((run_id, ref))
        dataset, partition = split_partition_ref(ref)
        self._rows.append((dataset, partition, status, run_id, 0, at, reason, plan.seq, progress[4], progress[5],
                           self._position))

    def _decide_run(self, conn: sqlite3.Connection, run_id: str, plan: RunPlan, status: Status,
                    reason: str | None, at: str) -> None:
        """Decide every undecided ref of the run that qualifies (all of them for a failure), in one
        statement: a run may have many thousands of partitions."""
        self.flush(conn)  # rare (once per run-level stage): let SQL see everything first
        complete = " AND stages_done = ?" if status == "valid" else ""
        args = (status, reason, run_id, *((len(plan.partition_stages),) if status == "valid" else ()))
        decided = conn.execute(
            f"UPDATE {LEDGER_PROGRESS_TABLE} SET verdict = ?, reason = ? "
            f"WHERE run_id = ? AND verdict IS NULL{complete} RETURNING ref, last_at, records, rejected",
            args,
        ).fetchall()
        for ref, last_at, records, rejected in sorted(decided):
            dataset, partition = split_partition_ref(ref)
            own_at = last_at if status == "valid" and last_at is not None else at
            self._rows.append((dataset, partition, status, run_id, 0, own_at, reason, plan.seq, records, rejected,
                               self._position))

    def _run(self, conn: sqlite3.Connection, run_id: str) -> list[Any]:
        state = self._runs.get(run_id)
        if state is None:
            row = conn.execute(
                f"SELECT run_stages_done, failure, abandoned FROM {LEDGER_RUNS_TABLE} WHERE run_id = ?", (run_id,)
            ).fetchone()
            state = self._runs[run_id] = list(row)
        return state

    def _plan(self, conn: sqlite3.Connection, run_id: str) -> RunPlan | None:
        plan = self._plans.get(run_id)
        if plan is None:
            row = conn.execute(f"SELECT seq, plan FROM {LEDGER_RUNS_TABLE} WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                return None  # not cached: the run may be opened later
            stages = decode_plan(row[1])
            roots = [s.name for s in stages if s.scope == "partition" and not s.after]
            plan = RunPlan(
                row[0],
                frozenset(s.name for s in stages if s.scope == "partition"),
                frozenset(s.name for s in stages if s.scope == "run"),
                roots[0] if roots else None,
            )
            self._plans[run_id] = plan
        return plan


# --- reads ----------------------------------------------------------------------------------

_COLUMNS = "dataset, partition, status, run_id, attempts, updated_at, reason, records, rejected"


def read_ledger(conn: sqlite3.Connection, *, dataset: str | None = None, status: str | None = None,
                run_id: str | None = None) -> list[LedgerEntry]:
    """Ledger rows ordered by (dataset, partition). ``status="pending"`` cannot list partitions
    the log never mentioned: a missing row reads as pending only when asked for by name."""
    where, args = [], []
    for column, value in (("dataset", dataset), ("status", status), ("run_id", run_id)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    cursor = conn.execute(f"SELECT {_COLUMNS} FROM {LEDGER_TABLE} {clause} ORDER BY dataset, partition", args)
    return [_entry(row) for row in cursor]


def read_entry(conn: sqlite3.Connection, dataset: str, partition: str) -> LedgerEntry:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM {LEDGER_TABLE} WHERE dataset = ? AND partition = ?", (dataset, partition)
    ).fetchone()
    if row is None:
        return LedgerEntry(dataset=dataset, partition=partition, status="pending", run_id=None,
                           attempts=0, updated_at=None, reason=None)
    return _entry(row)


def _entry(row: tuple) -> LedgerEntry:  # type: ignore[type-arg]
    return LedgerEntry(dataset=row[0], partition=row[1], status=row[2], run_id=row[3],
                       attempts=row[4], updated_at=row[5], reason=row[6], records=row[7], rejected=row[8])


def read_ledger_as_of(conn: sqlite3.Connection, position: int, *, dataset: str | None = None,
                      status: str | None = None, run_id: str | None = None) -> list[LedgerEntry]:
    """The ledger as it stood once the event at ``position`` was applied: each row's last version
    at or before it (the projection must have applied ``position``)."""
    where, args = [], []
    for column, value in (("dataset", dataset), ("status", status), ("run_id", run_id)):
        if value is not None:
            where.append(f"h.{column} = ?")
            args.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    cursor = conn.execute(
        f"SELECT h.dataset, h.partition, h.status, h.run_id, h.attempts, h.updated_at, h.reason, h.records, "
        f"h.rejected FROM {LEDGER_HISTORY_TABLE} h JOIN (SELECT max(version) AS version FROM {LEDGER_HISTORY_TABLE} "
        f"WHERE position <= ? GROUP BY dataset, partition) last ON h.version = last.version {clause} "
        "ORDER BY h.dataset, h.partition",
        (position, *args),
    )
    return [_entry(row) for row in cursor]


def read_changes(conn: sqlite3.Connection, dataset: str, *, after: int, until: int) -> list[LedgerChange]:
    """Status or run changes of ``dataset``'s partitions at positions in ``(after, until]``, in log order."""
    cursor = conn.execute(
        f"SELECT position, dataset, partition, change, status, run_id, reason, updated_at FROM {LEDGER_HISTORY_TABLE} "
        "WHERE dataset = ? AND position > ? AND position <= ? AND change IS NOT NULL ORDER BY position, version",
        (dataset, after, until),
    )
    return [LedgerChange(position=r[0], dataset=r[1], partition=r[2], change=r[3], status=r[4], run_id=r[5],
                         reason=r[6], at=r[7]) for r in cursor]
