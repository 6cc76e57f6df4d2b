"""Fleet mode: what a worker or relay process is built from, read once from ``STAGEBUS_*``.

A fleet is a Redis log (or a SQLite one on a single machine), a Redis or RabbitMQ broker, one
active relay and any number of stateless worker processes. Workers share only two things: the
log, which decides everything, and the artifact directory (``<home>/artifacts``), which must be
one filesystem for every machine that runs stages.

Workers answer the executor's projection lookups (``pipeline_status``, ``find_reusable``) from a
projections cache of their own, caught up from the log at most once a second: both lookups may
lag a little without harm (a stop takes effect a second later; a reuse chance is missed and the
stage simply runs). The cache is per host, shared by that host's worker processes (catch-up is
safe across processes), and lives on local disk, never on the shared artifact filesystem,
since SQLite's locking is not to be trusted over NFS.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dramatiq.broker import Broker
from dramatiq.middleware import Middleware

from stagebus.actors.executor import Executor
from stagebus.actors.gate import TaskRef
from stagebus.actors.heartbeat import FileHeartbeats, Heartbeat, HeartbeatBoard, HeldAttempts, RedisHeartbeats
from stagebus.actors.lease import FileLease, Lease, RedisLease
from stagebus.actors.metrics import queue_depths
from stagebus.actors.readiness import chained_downstream
from stagebus.actors.runtime import StageActors, make_broker, stage_message
from stagebus.actors.telemetry import Telemetry
from stagebus.artifacts.location import open_artifacts
from stagebus.errors import InvalidInput, StoreError, StoreUnavailable
from stagebus.events import Manifest
from stagebus.pipeline.definition import Pipeline, PipelineRegistry
from stagebus.pipeline.registry import fleet_pipelines
from stagebus.projections import Projections
from stagebus.settings import Settings
from stagebus.store import EventStore, open_store

log = logging.getLogger("stagebus.fleet")

LOOKUP_LAG_S = 1.0
LOG_OUTAGE_WAIT_S = 60.0  # a restarting Redis is back well within this
RELAY_LOCK = "relay.lock"
WORKERS_DIR = "workers"  # heartbeat files of the workers of a SQLite log


class FleetSettings(Settings):
    """:class:`~stagebus.settings.Settings` plus what only fleet processes read."""

    worker_projections: Path | None = None  # STAGEBUS_WORKER_PROJECTIONS: the workers' local cache
    fault_deliver_twice: bool = False  # STAGEBUS_FAULT_DELIVER_TWICE: tests only, see DeliverTwice


def open_fleet_broker(settings: Settings) -> Broker:
    if settings.broker in ("", "memory", "memory://", "stub"):
        raise InvalidInput("fleet mode needs a shared broker: set STAGEBUS_BROKER=redis://… or amqp://…")
    return make_broker(settings.broker)


def relay_lease(store: EventStore, settings: Settings, ttl_s: float) -> Lease:
    """A lease in the log's own Redis, or an ``flock`` beside a SQLite log (one machine)."""
    from stagebus.store.redis import RedisEventStore

    if isinstance(store, RedisEventStore):
        return RedisLease(store.client, store.names, ttl_ms=int(ttl_s * 1000))
    return FileLease(settings.home / RELAY_LOCK)


def heartbeat_board(store: EventStore, settings: Settings) -> HeartbeatBoard:
    """Worker heartbeats in the log's own Redis, or files beside a SQLite log (one machine)."""
    from stagebus.store.redis import RedisEventStore

    if isinstance(store, RedisEventStore):
        return RedisHeartbeats(store.client, store.names.worker_heartbeats)
    return FileHeartbeats(settings.home / WORKERS_DIR)


def stage_queues(pipelines: PipelineRegistry) -> list[str]:
    """Every stage queue the pipelines use, in pipeline order, once each."""
    return list(dict.fromkeys(d.name for p in pipelines for d in p.stages))


class StageSender:
    """Sends stage tasks to the stage queues without declaring the actors: the relay's side."""

    def __init__(self, broker: Broker, pipelines: PipelineRegistry) -> None:
        self.broker = broker
        self.queues = stage_queues(pipelines)
        for queue in self.queues:
            broker.declare_queue(queue)

    def send(self, task: TaskRef, pipeline: str, *, attempts_before: int = 0) -> None:
        if task.stage not in self.queues:
            raise InvalidInput(f"no queue for stage {task.stage!r}")
        self.broker.enqueue(stage_message(task, pipeline, attempts_before=attempts_before))

    def waiting(self, stage: str) -> int:
        """Messages waiting on ``stage``'s queue (not yet fetched by any worker)."""
        depth = queue_depths(self.broker, [stage]).get(stage)
        return depth.ready if depth is not None else 0


def default_worker_projections(settings: Settings) -> Path:
    if settings.store_url.startswith("sqlite://"):
        return settings.projections_path  # a SQLite log means one machine: share the relay's
    digest = hashlib.sha256(settings.store_url.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"stagebus-{os.getuid()}" / f"projections-{digest}"


class WorkerLookups:
    """The executor's projection lookups, from a local cache caught up at most every ``max_lag_s``."""

    def __init__(self, store: EventStore, root: Path, max_lag_s: float = LOOKUP_LAG_S) -> None:
        self.store = store
        self.projections = Projections(store, root)
        self.max_lag_s = max_lag_s
        self._lock = threading.Lock()
        self._caught_up_at: float | None = None

    def find_reusable(self, stage: str, partition: str, input_hash: str, config_hash: str) -> Manifest | None:
        self._refresh()
        return self.projections.find_reusable(stage, partition, input_hash, config_hash)

    def pipeline_status(self, pipeline: str) -> str:
        self._refresh()
        return self.projections.pipeline_status(pipeline)

    def _refresh(self) -> None:
        at = self._caught_up_at
        if at is not None and time.monotonic() - at < self.max_lag_s:
            return
        # One thread catches up; the others read the cache as it is, unless it was never read.
        if not self._lock.acquire(blocking=at is None):
            return
        try:
            try:
                if self.projections.checkpoint() > self.store.head():
                    raise StoreError("the log is shorter than the cache (it lost its last events)")
                self.projections.catch_up()
            except StoreUnavailable:
                raise
            except StoreError as exc:  # built from another log, or from this one before it lost events
                log.warning("this worker's projections cache does not match the log (%s): rebuilding it", exc)
                self.projections.replay()
            self._caught_up_at = time.monotonic()
        finally:
            self._lock.release()

    def close(self) -> None:
        self.projections.close()


class DeliverTwice(Middleware):
    """Fault injection (``STAGEBUS_FAULT_DELIVER_TWICE=1``, tests only): before a stage message
    is processed, a copy of it goes back on its queue, so every task is delivered twice."""

    COPY = "stagebus_copy"

    def before_process_message(self, broker: Broker, message: Any) -> None:
        if not message.options.get(self.COPY):
            broker.enqueue(message.copy(options={self.COPY: True}))


@dataclass
class WorkerParts:
    settings: FleetSettings
    store: EventStore
    broker: Broker
    pipelines: PipelineRegistry
    lookups: WorkerLookups
    actors: StageActors
    telemetry: Telemetry
    heartbeat: Heartbeat

    def close(self) -> None:
        self.heartbeat.stop()
        self.lookups.close()
        self.telemetry.close()
        self.store.close()


def build_worker(settings: FleetSettings | None = None) -> WorkerParts:
    """Everything a worker process needs, with the stage actors declared on the broker."""
    settings = settings or FleetSettings()
    pipelines = fleet_pipelines(settings)
    broker = open_fleet_broker(settings)
    if settings.fault_deliver_twice:
        broker.add_middleware(DeliverTwice())
    store = open_store(settings.store_url)
    lookups = WorkerLookups(store, settings.worker_projections or default_worker_projections(settings))
    telemetry = Telemetry(settings.logs_dir / f"tasks-{socket.gethostname()}-{os.getpid()}.ndjson")
    artifacts = open_artifacts(settings)
    swept = artifacts.sweep()  # temp files of this host's dead attempts (a restarted worker's own)
    if swept:
        log.info("swept %d temp file(s) of attempts that died on this host", swept)
    held = HeldAttempts()
    executor = Executor(store, artifacts, pipelines, lookups=lookups, telemetry=telemetry, held=held)
    actors = StageActors(broker, executor, pipelines)

    def send_chained(task: TaskRef, pipeline: Pipeline) -> None:
        # The fast path: a finished task sends its partition's next stages itself, so a
        # transition costs one broker hop; the relay sends them only if this never happened.
        for nxt in chained_downstream(task, pipeline):
            actors.send(nxt, pipeline.name)

    executor.on_complete = send_chained
    actors.log_outage_wait_s = LOG_OUTAGE_WAIT_S
    actors.resend_on_infrastructure = True
    heartbeat = Heartbeat(heartbeat_board(store, settings), held).start()
    return WorkerParts(settings, store, broker, pipelines, lookups, actors, telemetry, heartbeat)
