"""Runs: what each run is (plan, stage subset, lineage, partitions, seal) and how its stage tasks fare.

Stage task status follows the task's latest event, with two rules that keep it honest under
at-least-once delivery: a manifest (``complete`` / ``reused``) is final, and a final failure is
undone only by a manifest (a late duplicate's ``StageStarted`` cannot make it ``running`` again).
Per-stage counts, error rate and latency are computed on read from the task rows, so they are
never out of step with them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from typing import NamedTuple

import msgspec

from stagebus.events import (
    AnyEvent,
    Event,
    ManifestWritten,
    PartitionIngested,
    PlannedStage,
    RunAbandoned,
    RunOpened,
    RunSealed,
    StageFailed,
    StageStarted,
)
from stagebus.projections.base import JSON, decode_plan, decode_strings, to_micros
from stagebus.store import RecordedEvent
from stagebus.store.keys import RUN_PARTITIONS_TABLE, RUNS_TABLE, STAGE_TASKS_TABLE

# A task in one of these never runs again: complete, reused, or failed for good (the upsert below
# never moves a task out of them).
_FINISHED = "('complete', 'reused', 'failed')"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {RUNS_TABLE} (
    run_id            TEXT PRIMARY KEY,
    seq               INTEGER NOT NULL,
    pipeline          TEXT NOT NULL,
    pipeline_version  TEXT NOT NULL,
    config_hash       TEXT NOT NULL,
    plan              BLOB NOT NULL,
    stages            BLOB,
    parent_run_id     TEXT,
    resume_from       TEXT,
    opened_at         TEXT NOT NULL,
    sealed_partitions BLOB,
    sealed_at         TEXT,
    abandoned_at      TEXT,
    abandon_reason    TEXT,
    -- Kept by the triggers below, so open runs are found without reading finished ones:
    -- a run may have work left while finished_tasks < tasks_per_partition * partition_count + tasks_per_run.
    partition_count     INTEGER NOT NULL DEFAULT 0,
    finished_tasks      INTEGER NOT NULL DEFAULT 0,
    tasks_per_partition INTEGER NOT NULL DEFAULT 0,  -- selected partition stages of the plan
    tasks_per_run       INTEGER NOT NULL DEFAULT 0   -- selected run-level stages
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {RUN_PARTITIONS_TABLE} (
    run_id         TEXT NOT NULL,
    ref            TEXT NOT NULL,
    dataset        TEXT NOT NULL,
    partition      TEXT NOT NULL,
    uri            TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    size           INTEGER NOT NULL,
    metadata       BLOB NOT NULL,
    schema_version INTEGER NOT NULL,
    position       INTEGER NOT NULL,
    ingested_at    TEXT NOT NULL,
    PRIMARY KEY (run_id, ref)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {RUN_PARTITIONS_TABLE}_by_ref ON {RUN_PARTITIONS_TABLE} (ref, position);
CREATE TABLE IF NOT EXISTS {STAGE_TASKS_TABLE} (
    run_id           TEXT NOT NULL,
    stage            TEXT NOT NULL,
    partition        TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    last_error       TEXT,
    worker           TEXT NOT NULL,
    records_in       INTEGER NOT NULL,
    records_out      INTEGER NOT NULL,
    records_rejected INTEGER NOT NULL,
    duration_us      INTEGER NOT NULL,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (run_id, stage, partition)
) WITHOUT ROWID;
-- Failed and waiting tasks are looked up by status on every `stagebus run`: no scan of history.
CREATE INDEX IF NOT EXISTS {STAGE_TASKS_TABLE}_by_status ON {STAGE_TASKS_TABLE} (status);
CREATE TRIGGER IF NOT EXISTS {RUN_PARTITIONS_TABLE}_counted AFTER INSERT ON {RUN_PARTITIONS_TABLE} BEGIN
    UPDATE {RUNS_TABLE} SET partition_count = partition_count + 1 WHERE run_id = NEW.run_id;
END;
CREATE TRIGGER IF NOT EXISTS {STAGE_TASKS_TABLE}_finished_new AFTER INSERT ON {STAGE_TASKS_TABLE}
WHEN NEW.status IN {_FINISHED} BEGIN
    UPDATE {RUNS_TABLE} SET finished_tasks = finished_tasks + 1 WHERE run_id = NEW.run_id;
END;
CREATE TRIGGER IF NOT EXISTS {STAGE_TASKS_TABLE}_finished AFTER UPDATE OF status ON {STAGE_TASKS_TABLE}
WHEN OLD.status NOT IN {_FINISHED} AND NEW.status IN {_FINISHED} BEGIN
    UPDATE {RUNS_TABLE} SET finished_tasks = finished_tasks + 1 WHERE run_id = NEW.run_id;
END;
"""

_DONE = "('complete', 'reused')"
# One upsert for every stage event, so a batch of them can go in one executemany, in log order.
# A manifest is final; a final failure yields only to a manifest; otherwise the newest event wins.
_TASK_EVENT = f"""
INSERT INTO {STAGE_TASKS_TABLE} (run_id, stage, partition, status, attempts, last_error, worker, records_in,
                                 records_out, records_rejected, duration_us, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO UPDATE SET
    status = CASE WHEN status IN {_DONE} THEN status
                  WHEN excluded.status IN {_DONE} THEN excluded.status
                  WHEN status = 'failed' THEN status
                  ELSE excluded.status END,
    worker = CASE WHEN status IN {_DONE} THEN worker
                  WHEN excluded.status IN {_DONE} THEN excluded.worker
                  WHEN status = 'failed' OR excluded.worker = '' THEN worker
                  ELSE excluded.worker END,
    last_error = CASE WHEN status IN {_DONE} THEN last_error ELSE coalesce(excluded.last_error, last_error) END,
    records_in = CASE WHEN status IN {_DONE} THEN records_in ELSE excluded.records_in END,
    records_out = CASE WHEN status IN {_DONE} THEN records_out ELSE excluded.records_out END,
    records_rejected = CASE WHEN status IN {_DONE} THEN records_rejected ELSE excluded.records_rejected END,
    duration_us = CASE WHEN status IN {_DONE} THEN duration_us ELSE excluded.duration_us END,
    attempts = max(attempts, excluded.attempts),
    updated_at = excluded.updated_at
"""
_INGESTED = f"INSERT OR IGNORE INTO {RUN_PARTITIONS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


class TaskState(msgspec.Struct, frozen=True, kw_only=True):
    stage: str
    partition: str
    status: str  # running | retrying | waiting (on infrastructure) | complete | reused | failed
    attempts: int
    last_error: str | None
    worker: str
    records_in: int
    records_out: int
    records_rejected: int
    duration_s: float
    updated_at: str


class StageSummary(msgspec.Struct, frozen=True, kw_only=True):
    stage: str
    scope: str
    selected: bool  # among the run's stages (RunOpened.stages, or the whole plan)
    expected: int  # ingested partitions for a partition stage, 1 for a run-level one
    pending: int
    running: int  # includes retrying
    retrying: int
    complete: int
    reused: int
    failed: int
    records_in: int
    records_rejected: int
    error_rate: float  # failed / finished tasks
    latency_mean_s: float  # over tasks that did the work (complete)
    latency_max_s: float
    last_activity: str | None
    waiting: int = 0  # on infrastructure (counted in pending too): see docs/failures.md


class RunInfo(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    pipeline: str
    pipeline_version: str
    config_hash: str
    plan: tuple[PlannedStage, ...]
    stages: tuple[str, ...] | None  # the subset to run; None: the whole plan
    parent_run_id: str | None
    resume_from: str | None
    opened_at: str
    partitions: tuple[str, ...]  # ingested partition refs, in log order
    sealed: bool
    sealed_partitions: tuple[str, ...] | None
    last_activity: str
    stage_summaries: tuple[StageSummary, ...]
    abandoned: bool = False  # an operator gave the run up: nothing of it is processed any more
    abandon_reason: str | None = None


class RunState(RunInfo, frozen=True, kw_only=True):
    tasks: dict[tuple[str, str], TaskState]  # (stage, partition ref) -> state


class RunHeader(msgspec.Struct, frozen=True, kw_only=True):
    """What a run is, without its partitions or tasks: cheap to read for a run of any size."""

    run_id: str
    position: int  # of its RunOpened
    pipeline: str
    plan: tuple[PlannedStage, ...]
    stages: tuple[str, ...] | None
    parent_run_id: str | None
    resume_from: str | None
    sealed: bool
    abandoned: bool


class IngestedPartition(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    dataset: str
    partition: str
    uri: str
    content_hash: str
    size: int
    metadata: dict[str, str]
    schema_version: int
    position: int
    ingested_at: str


class RunsProjection:
    name = "runs"
    tables: tuple[str, ...] = (RUNS_TABLE, RUN_PARTITIONS_TABLE, STAGE_TASKS_TABLE)
    schema = SCHEMA
    handles: tuple[type[Event], ...] = (
        RunOpened, PartitionIngested, RunSealed, RunAbandoned, StageStarted, StageFailed, ManifestWritten)

    def __init__(self) -> None:
        # Rows of the two busiest statements, written in one executemany each by flush().
        self._ingested: list[tuple[object, ...]] = []
        self._task_events: list[tuple[object, ...]] = []

    def apply(self, conn: sqlite3.Connection, record: RecordedEvent, event: AnyEvent) -> None:
        at = record.recorded_at
        match event:
            case StageStarted():
                self._task_events.append((event.run_id, event.stage, event.partition, "running", event.attempt,
                                          None, event.worker, 0, 0, 0, 0, at))
            case ManifestWritten():
                m, metrics = event.manifest, event.manifest.metrics
                self._task_events.append((event.run_id, event.stage, event.partition, m.status, m.attempt, None,
                                          m.worker, metrics.records_in, metrics.records_out,
                                          metrics.records_rejected, to_micros(metrics.duration_s), at))
            case StageFailed():
                self._task_events.append((event.run_id, event.stage, event.partition,
                                          _failure_status(event), event.attempt,
                                          f"{event.error_type}: {event.message}", "", 0, 0, 0, 0, at))
            case PartitionIngested():
                self._ingested.append((event.run_id, event.ref, event.dataset, event.partition, event.uri,
                                       event.content_hash, event.size, JSON.encode(event.metadata),
                                       event.schema_version, record.position, at))
            case RunOpened():
                self.flush(conn)  # the counts below start from every row applied before it
                selected = [p for p in event.plan if event.stages is None or p.name in event.stages]
                conn.execute(
                    f"INSERT OR IGNORE INTO {RUNS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, "
                    f"(SELECT count(*) FROM {RUN_PARTITIONS_TABLE} WHERE run_id = ?1), "
                    f"(SELECT count(*) FROM {STAGE_TASKS_TABLE} WHERE run_id = ?1 AND status IN {_FINISHED}), ?, ?)",
                    (event.run_id, record.position, event.pipeline, event.pipeline_version, event.config_hash,
                     JSON.encode(event.plan), None if event.stages is None else JSON.encode(event.stages),
                     event.parent_run_id, event.resume_from, at,
                     sum(1 for p in selected if p.scope != "run"), sum(1 for p in selected if p.scope == "run")),
                )
            case RunSealed():
                self.flush(conn)  # keep writes to the runs table in log order
                conn.execute(
                    f"UPDATE {RUNS_TABLE} SET sealed_partitions = ?, sealed_at = ? "
                    "WHERE run_id = ? AND sealed_partitions IS NULL",
                    (JSON.encode(event.partitions), at, event.run_id),
                )
            case RunAbandoned():
                conn.execute(
                    f"UPDATE {RUNS_TABLE} SET abandoned_at = ?, abandon_reason = ? "
                    "WHERE run_id = ? AND abandoned_at IS NULL",
                    (at, event.reason, event.run_id),
                )
            case _:
                pass

    def flush(self, conn: sqlite3.Connection) -> None:
        if self._ingested:
            conn.executemany(_INGESTED, self._ingested)
            self._ingested.clear()
        if self._task_events:
            conn.executemany(_TASK_EVENT, self._task_events)
            self._task_events.clear()


def _failure_status(event: StageFailed) -> str:
    if event.final:
        return "failed"
    return "waiting" if event.infrastructure else "retrying"


# --- reads ----------------------------------------------------------------------------------

_RUN_COLUMNS = ("run_id, pipeline, pipeline_version, config_hash, plan, stages, parent_run_id, resume_from, "
                "opened_at, sealed_partitions, sealed_at, abandoned_at, abandon_reason")
_TASK_COLUMNS = ("stage, partition, status, attempts, last_error, worker, records_in, records_out, "
                 "records_rejected, duration_us, updated_at")


def read_runs(conn: sqlite3.Connection) -> list[RunInfo]:
    """Every run, in the order they were opened, with stage summaries but without task rows."""
    rows = conn.execute(f"SELECT {_RUN_COLUMNS} FROM {RUNS_TABLE} ORDER BY seq").fetchall()
    return [_run_info(conn, row) for row in rows]


def read_open_runs(conn: sqlite3.Connection) -> list[RunInfo]:
    """The runs that may still have work, in the order they were opened: not abandoned, and
    fewer tasks finished than the plan expects. Finished runs are never read, so the cost
    follows open work, not history. A superset of the runs with pending or running tasks
    (a task blocked by a failed upstream keeps its run here; readiness skips it)."""
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM {RUNS_TABLE} WHERE abandoned_at IS NULL "
        "AND finished_tasks < tasks_per_partition * partition_count + tasks_per_run ORDER BY seq").fetchall()
    return [_run_info(conn, row) for row in rows]


def read_run(conn: sqlite3.Connection, run_id: str) -> RunState | None:
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM {RUNS_TABLE} WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    info = _run_info(conn, row)
    return RunState(**msgspec.structs.asdict(info), tasks={(t.stage, t.partition): t for t in _tasks(conn, run_id)})


def read_ingested(conn: sqlite3.Connection, run_id: str) -> list[IngestedPartition]:
    cursor = conn.execute(
        f"SELECT run_id, dataset, partition, uri, content_hash, size, metadata, schema_version, position, "
        f"ingested_at FROM {RUN_PARTITIONS_TABLE} WHERE run_id = ? ORDER BY position",
        (run_id,),
    )
    return [
        IngestedPartition(run_id=r[0], dataset=r[1], partition=r[2], uri=r[3], content_hash=r[4], size=r[5],
                          metadata=msgspec.json.decode(r[6], type=dict[str, str]), schema_version=r[7],
                          position=r[8], ingested_at=r[9])
        for r in cursor
    ]


def read_run_header(conn: sqlite3.Connection, run_id: str) -> RunHeader | None:
    row = conn.execute(
        f"SELECT run_id, seq, pipeline, plan, stages, parent_run_id, resume_from, sealed_at, abandoned_at "
        f"FROM {RUNS_TABLE} WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    return RunHeader(run_id=row[0], position=row[1], pipeline=row[2], plan=decode_plan(row[3]),
                     stages=decode_strings(row[4]), parent_run_id=row[5], resume_from=row[6],
                     sealed=row[7] is not None, abandoned=row[8] is not None)


def read_child_runs(conn: sqlite3.Connection, run_id: str) -> list[str]:
    """Runs opened with ``run_id`` as their parent (resume chains), in the order they were opened."""
    rows = conn.execute(f"SELECT run_id FROM {RUNS_TABLE} WHERE parent_run_id = ? ORDER BY seq", (run_id,))
    return [r[0] for r in rows]


def read_partition_runs(conn: sqlite3.Connection, ref: str) -> list[tuple[str, int]]:
    """``(run_id, position of its PartitionIngested)`` of every run that ingested ``ref``, in log order."""
    rows = conn.execute(f"SELECT run_id, position FROM {RUN_PARTITIONS_TABLE} WHERE ref = ? ORDER BY position",
                        (ref,))
    return [(r[0], r[1]) for r in rows]


def read_task(conn: sqlite3.Connection, run_id: str, stage: str, partition: str) -> TaskState | None:
    row = conn.execute(f"SELECT {_TASK_COLUMNS} FROM {STAGE_TASKS_TABLE} WHERE run_id = ? AND stage = ? "
                       "AND partition = ?", (run_id, stage, partition)).fetchone()
    return None if row is None else _task(row)


def read_failed_tasks(conn: sqlite3.Connection, run_id: str, stage: str | None = None,
                      limit: int = 50) -> list[TaskState]:
    """A run's finally failed tasks (of one stage, or all), at most ``limit``."""
    where, args = ("AND stage = ?", (run_id, stage, limit)) if stage else ("", (run_id, limit))
    rows = conn.execute(f"SELECT {_TASK_COLUMNS} FROM {STAGE_TASKS_TABLE} WHERE run_id = ? {where} "
                        "AND status = 'failed' ORDER BY stage, partition LIMIT ?", args)
    return [_task(r) for r in rows]


def _task(r: tuple) -> TaskState:  # type: ignore[type-arg]
    return TaskState(stage=r[0], partition=r[1], status=r[2], attempts=r[3], last_error=r[4], worker=r[5],
                     records_in=r[6], records_out=r[7], records_rejected=r[8], duration_s=r[9] / 1_000_000,
                     updated_at=r[10])


def read_tasks_in(conn: sqlite3.Connection, statuses: tuple[str, ...],
                  run_ids: Collection[str] | None = None) -> list[tuple[str, TaskState]]:
    """(run_id, task) of every task in one of ``statuses`` (of ``run_ids``, default every run), in
    run, stage, partition order. Through the status index: a long history of finished runs costs
    nothing, and no finished task is built into an object."""
    marks = ",".join("?" * len(statuses))
    rows = conn.execute(
        f"SELECT run_id, {_TASK_COLUMNS} FROM {STAGE_TASKS_TABLE} WHERE status IN ({marks}) "
        "ORDER BY run_id, stage, partition", statuses).fetchall()
    wanted = None if run_ids is None else set(run_ids)
    return [(r[0], TaskState(stage=r[1], partition=r[2], status=r[3], attempts=r[4], last_error=r[5], worker=r[6],
                             records_in=r[7], records_out=r[8], records_rejected=r[9], duration_s=r[10] / 1_000_000,
                             updated_at=r[11]))
            for r in rows if wanted is None or r[0] in wanted]


def _tasks(conn: sqlite3.Connection, run_id: str) -> list[TaskState]:
    cursor = conn.execute(
        f"SELECT {_TASK_COLUMNS} FROM {STAGE_TASKS_TABLE} WHERE run_id = ? ORDER BY stage, partition", (run_id,)
    )
    return [
        TaskState(stage=r[0], partition=r[1], status=r[2], attempts=r[3], last_error=r[4], worker=r[5],
                  records_in=r[6], records_out=r[7], records_rejected=r[8], duration_s=r[9] / 1_000_000,
                  updated_at=r[10])
        for r in cursor
    ]


class _Totals(NamedTuple):
    """Aggregates of one run's tasks of one stage in one status."""

    tasks: int
    records_in: int
    records_rejected: int
    duration_us: int
    max_duration_us: int
    last_at: str


def _run_info(conn: sqlite3.Connection, row: tuple) -> RunInfo:  # type: ignore[type-arg]
    run_id = row[0]
    plan = decode_plan(row[4])
    stages = decode_strings(row[5])
    ingested = conn.execute(
        f"SELECT ref, ingested_at FROM {RUN_PARTITIONS_TABLE} WHERE run_id = ? ORDER BY position", (run_id,)
    ).fetchall()
    partitions = tuple(ref for ref, _ in ingested)
    sealed = decode_strings(row[9])
    # Summed in SQL: a run may have hundreds of thousands of tasks and runs() reads every run.
    totals: dict[str, dict[str, _Totals]] = {}
    for stage, status, *numbers in conn.execute(
        "SELECT stage, status, count(*), sum(records_in), sum(records_rejected), sum(duration_us), "
        f"max(duration_us), max(updated_at) FROM {STAGE_TASKS_TABLE} WHERE run_id = ? GROUP BY stage, status",
        (run_id,),
    ):
        totals.setdefault(stage, {})[status] = _Totals(*numbers)
    # The run's newest event: computed here rather than updated on every event of the run.
    moments = [row[8], row[10] or "", row[11] or "", *(at for _, at in ingested),
               *(t.last_at for by_status in totals.values() for t in by_status.values())]
    return RunInfo(
        run_id=run_id, pipeline=row[1], pipeline_version=row[2], config_hash=row[3], plan=plan, stages=stages,
        parent_run_id=row[6], resume_from=row[7], opened_at=row[8], partitions=partitions,
        sealed=sealed is not None, sealed_partitions=sealed, last_activity=max(moments),
        stage_summaries=tuple(_summary(s, stages, len(partitions), totals.get(s.name, {})) for s in plan),
        abandoned=row[11] is not None, abandon_reason=row[12],
    )


def _summary(planned: PlannedStage, selected: tuple[str, ...] | None, partitions: int,
             totals: dict[str, _Totals]) -> StageSummary:
    none = _Totals(0, 0, 0, 0, 0, "")
    running, retrying, waiting, complete, reused, failed = (
        totals.get(s, none) for s in ("running", "retrying", "waiting", "complete", "reused", "failed"))
    expected = 1 if planned.scope == "run" else partitions
    finished = complete.tasks + reused.tasks + failed.tasks
    return StageSummary(
        stage=planned.name, scope=planned.scope, selected=selected is None or planned.name in selected,
        expected=expected, pending=max(expected - sum(t.tasks for t in totals.values()), 0) + waiting.tasks,
        running=running.tasks + retrying.tasks, retrying=retrying.tasks, complete=complete.tasks,
        reused=reused.tasks, failed=failed.tasks, waiting=waiting.tasks,
        records_in=complete.records_in + reused.records_in,
        records_rejected=complete.records_rejected + reused.records_rejected,
        error_rate=failed.tasks / finished if finished else 0.0,
        latency_mean_s=complete.duration_us / complete.tasks / 1_000_000 if complete.tasks else 0.0,
        latency_max_s=complete.max_duration_us / 1_000_000,
        last_activity=max((t.last_at for t in totals.values()), default=None),
    )
