"""The projections of one home, as the rest of stagebus uses them: catch up, rebuild, read.

Writers (the relay, workers, the producer, ``stagebus replay``) open the live generation
read-write; each thread gets its own connection, reopened when ``CURRENT`` names a new
generation. Reads answer from the last checkpoint: call :meth:`Projections.catch_up` first to
see the log's newest events.

Read-only users (``stagebus state inspect``) change no file: they read the live generation in
place, and when it lags the log (or does not exist, or has another code version's tables) they
copy it into memory and catch the copy up; :attr:`Projections.applied_in_memory` says how much.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection
from pathlib import Path

from stagebus.errors import ReadOnlyStore, StoreUnavailable
from stagebus.events import Manifest
from stagebus.projections import ledger as _ledger
from stagebus.projections import manifests as _manifests
from stagebus.projections import pipelines as _pipelines
from stagebus.projections import replay as _replay
from stagebus.projections import runs as _runs
from stagebus.projections.generations import FileGenerations, Generations, MemoryGenerations
from stagebus.projections.ledger import LedgerChange, LedgerEntry
from stagebus.projections.manifests import StageRollup
from stagebus.projections.pipelines import PipelineState
from stagebus.projections.replay import ReplayResult, VerifyResult
from stagebus.projections.runner import BATCH_SIZE, Progress, ProjectionDB
from stagebus.projections.runs import IngestedPartition, RunHeader, RunInfo, RunState, TaskState
from stagebus.store import EventStore


class Projections:
    """The built-in projections over ``store``, kept under ``root`` (in memory when ``root`` is None).

    Lifecycle: :meth:`catch_up`, :meth:`lag`, :meth:`replay`, :meth:`verify`, :meth:`close`.
    Reads: :meth:`ledger`, :meth:`partition`, :meth:`run`, :meth:`runs`, :meth:`ingested`,
    :meth:`manifests`, :meth:`manifest`, :meth:`rollups`, :meth:`find_reusable`,
    :meth:`pipeline`, :meth:`pipelines`, :meth:`pipeline_status`, :meth:`checkpoint`,
    :meth:`digest`. Safe to share between threads.
    """

    def __init__(self, store: EventStore, root: Path | None = None, *, readonly: bool = False) -> None:
        self.store = store
        self.readonly = readonly
        self.generations: Generations = FileGenerations(root) if root is not None else MemoryGenerations()
        self.applied_in_memory = 0
        self._local = threading.local()
        self._open: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._snapshot: ProjectionDB | None = None  # read-only: the one file or in-memory copy read
        self._snapshot_in_memory = False

    # --- lifecycle -----------------------------------------------------------------------

    def catch_up(self, progress: Progress | None = None, *, batch_size: int = BATCH_SIZE) -> int:
        """Apply the log's new events; returns how many. Read-only: to the in-memory copy."""
        if self.readonly:
            db = self._readonly_db()
            if db.checkpoint() < self.store.head() and not self._snapshot_in_memory:
                db = self._copy_to_memory(db)
            applied = db.catch_up(self.store, progress=progress, batch_size=batch_size)
            self.applied_in_memory += applied
            return applied
        return self._db().catch_up(self.store, progress=progress, batch_size=batch_size)

    def lag(self) -> int:
        """Events in the log that the projections have not applied yet."""
        return max(self.store.head() - self.checkpoint(), 0)

    def replay(self, *, projection: str | None = None, progress: Progress | None = None) -> ReplayResult:
        """Rebuild from position 0 into a new generation and swap it in (see :mod:`.replay`)."""
        self._refuse_if_readonly("replay")
        return _replay.rebuild(self.generations, self.store, projection=projection, progress=progress)

    def verify(self, progress: Progress | None = None) -> VerifyResult:
        """Catch the live projections up, rebuild a scratch copy, compare digests."""
        self._refuse_if_readonly("verify")
        self.catch_up()
        return _replay.verify(self.generations, self.store, progress=progress)

    def close(self) -> None:
        with self._guard:
            for conn in self._open:
                conn.close()
            self._open.clear()
        self._local = threading.local()
        self._snapshot, self._snapshot_in_memory = None, False

    def __enter__(self) -> Projections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reads ---------------------------------------------------------------------------

    def checkpoint(self) -> int:
        return self._read().checkpoint()

    def digest(self) -> str:
        return self._read().digest()

    @property
    def generation(self) -> str | None:
        return self.generations.live()

    def ledger(self, dataset: str | None = None, status: str | None = None,
               run_id: str | None = None) -> list[LedgerEntry]:
        return _ledger.read_ledger(self._conn(), dataset=dataset, status=status, run_id=run_id)

    def ledger_as_of(self, position: int, dataset: str | None = None, status: str | None = None,
                     run_id: str | None = None) -> list[LedgerEntry]:
        """The ledger as it stood at ``position`` (which the projections must have applied)."""
        return _ledger.read_ledger_as_of(self._conn(), position, dataset=dataset, status=status, run_id=run_id)

    def changes(self, dataset: str, *, after: int, until: int | None = None) -> list[LedgerChange]:
        """Partitions of ``dataset`` that became valid, were replaced or became invalid at a position
        after ``after`` (up to ``until``, default the checkpoint), in log order."""
        return _ledger.read_changes(self._conn(), dataset, after=after,
                                    until=self.checkpoint() if until is None else until)

    def partition(self, dataset: str, partition: str) -> LedgerEntry:
        """One partition's ledger entry; one the log never mentioned reads as pending."""
        return _ledger.read_entry(self._conn(), dataset, partition)

    def run(self, run_id: str) -> RunState | None:
        return _runs.read_run(self._conn(), run_id)

    def runs(self) -> list[RunInfo]:
        return _runs.read_runs(self._conn())

    def open_runs(self) -> list[RunInfo]:
        """The runs that may still have work (see :func:`~stagebus.projections.runs.read_open_runs`):
        what readiness looks at, at a cost that follows open work, never history."""
        return _runs.read_open_runs(self._conn())

    def run_header(self, run_id: str) -> RunHeader | None:
        return _runs.read_run_header(self._conn(), run_id)

    def child_runs(self, run_id: str) -> list[str]:
        return _runs.read_child_runs(self._conn(), run_id)

    def partition_runs(self, ref: str) -> list[tuple[str, int]]:
        return _runs.read_partition_runs(self._conn(), ref)

    def task(self, run_id: str, stage: str, partition: str) -> TaskState | None:
        return _runs.read_task(self._conn(), run_id, stage, partition)

    def failed_tasks(self, run_id: str, stage: str | None = None, limit: int = 50) -> list[TaskState]:
        return _runs.read_failed_tasks(self._conn(), run_id, stage, limit)

    def tasks_in(self, statuses: tuple[str, ...],
                 run_ids: Collection[str] | None = None) -> list[tuple[str, TaskState]]:
        """(run_id, task) of every task in one of ``statuses``, of ``run_ids`` (default: every run)."""
        return _runs.read_tasks_in(self._conn(), statuses, run_ids)

    def ingested(self, run_id: str) -> list[IngestedPartition]:
        return _runs.read_ingested(self._conn(), run_id)

    def manifests(self, run_id: str, stage: str | None = None) -> list[Manifest]:
        return _manifests.read_manifests(self._conn(), run_id, stage)

    def manifest(self, run_id: str, stage: str, partition: str) -> Manifest | None:
        return _manifests.read_manifest(self._conn(), run_id, stage, partition)

    def rollups(self, run_id: str) -> list[StageRollup]:
        return _manifests.read_rollups(self._conn(), run_id)

    def find_reusable(self, stage: str, partition: str, input_hash: str, config_hash: str) -> Manifest | None:
        return _manifests.find_reusable(self._conn(), stage, partition, input_hash, config_hash)

    def pipelines(self) -> list[PipelineState]:
        return _pipelines.read_pipelines(self._conn())

    def pipeline(self, name: str) -> PipelineState:
        return _pipelines.read_pipeline(self._conn(), name)

    def pipeline_status(self, name: str) -> str:
        return self.pipeline(name).status

    def connection(self) -> sqlite3.Connection:
        """This thread's connection to the projections read, for the read functions of a projection
        module (the HTTP service's ``api_keys`` and ``api_resources``). Never written through."""
        return self._conn()

    # --- connections ---------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        return self._read().conn

    def _read(self) -> ProjectionDB:
        return self._readonly_db() if self.readonly else self._db()

    def _db(self) -> ProjectionDB:
        """This thread's writer connection to the live generation, created on first use."""
        live = self.generations.live()
        db: ProjectionDB | None = getattr(self._local, "db", None)
        if db is not None and live is not None and self._local.generation == live:
            return db
        if db is not None:
            self._forget(db.conn)
        for _ in range(3):
            live = self.generations.live() or self._initialize()
            try:
                conn = self.generations.open(live)
            except StoreUnavailable:
                continue  # deleted by a swap between reading CURRENT and opening: read it again
            db = ProjectionDB(conn)
            if not db.compatible():
                conn.close()
                _replay.rebuild(self.generations, self.store)
                continue
            self._remember(conn)
            self._local.db, self._local.generation = db, live
            return db
        raise StoreUnavailable("the live projections generation kept changing while opening it")

    def _initialize(self) -> str:
        with self.generations.lock():
            live = self.generations.live()
            if live is None:
                live, conn = self.generations.create()
                conn.execute("PRAGMA journal_mode = WAL")
                ProjectionDB(conn).initialize()
                conn.close()
                self.generations.publish(live)
            return live

    def _readonly_db(self) -> ProjectionDB:
        if self._snapshot is not None:
            return self._snapshot
        live = self.generations.live()
        db: ProjectionDB | None = None
        if live is not None:
            db = ProjectionDB(self.generations.open(live, readonly=True))
            self._remember(db.conn)
            if not db.compatible():
                db = None
        if db is None:  # nothing usable on disk: build from the log, in memory
            db = ProjectionDB(self._memory_connection())
            db.initialize()
            self._snapshot_in_memory = True
        self._snapshot = db
        return db

    def _copy_to_memory(self, db: ProjectionDB) -> ProjectionDB:
        memory = self._memory_connection()
        db.conn.backup(memory)
        copy = ProjectionDB(memory)
        self._snapshot, self._snapshot_in_memory = copy, True
        return copy

    def _memory_connection(self) -> sqlite3.Connection:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._remember(conn)
        return conn

    def _refuse_if_readonly(self, what: str) -> None:
        if self.readonly:
            raise ReadOnlyStore(f"cannot {what}: the projections are open read-only")

    def _remember(self, conn: sqlite3.Connection) -> None:
        with self._guard:
            self._open.append(conn)

    def _forget(self, conn: sqlite3.Connection) -> None:
        with self._guard:
            if conn in self._open:
                self._open.remove(conn)
        conn.close()
