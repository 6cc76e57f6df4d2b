"""The relay as a fleet process: one loop of :class:`~stagebus.actors.relay.Relay` steps that
outlives a restarting Redis or broker, keeps a standby's projections warm, reports its health.

Several may run; the lease makes one active. A standby catches its projections up every poll,
so when the leader dies (its lease expires after ``lease_ttl_s``) it takes over within one poll
of that and starts with a full reconciliation: tasks the old leader had sent and that are still
queued are sent again, and their duplicates are absorbed by the manifest keys in the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from dramatiq.errors import BrokerError

from stagebus.actors.fleet_setup import FleetSettings, StageSender, heartbeat_board, open_fleet_broker, relay_lease
from stagebus.actors.heartbeat import liveness_from
from stagebus.actors.metrics import QueueDepth, queue_depths, render_prometheus, stage_task_counts
from stagebus.actors.relay import Relay
from stagebus.errors import StoreUnavailable
from stagebus.events import Event
from stagebus.pipeline.registry import fleet_pipelines
from stagebus.projections import Projections
from stagebus.store import EventStore, open_store
from stagebus.store.base import READ_PAGE, Appended, RecordedEvent

log = logging.getLogger("stagebus.relay")

# Failures a later step can get past: the log's or the broker's server restarting or unreachable.
TRANSIENT: tuple[type[BaseException], ...] = (StoreUnavailable, redis.RedisError, BrokerError, ConnectionError)
MAX_BACKOFF_S = 5.0


class StepLog(EventStore):
    """The log as the relay process's steps read it: reads end at the head last asked for (each
    step's catch-up asks it first), and the events read last are served again from memory. So
    the projections' catch-up and the relay's own tail share one read of each event, and neither
    pays an empty read past the head. Memory is dropped when the head goes back (a Redis that
    lost its last writes) and by :meth:`forget` after any failed step. The head is asked once
    per step (:meth:`next_step`): the log-shortening check and the catch-up share it."""

    def __init__(self, store: EventStore, keep: int = 5 * READ_PAGE) -> None:
        self.store = store
        self.url = store.url
        self.readonly = store.readonly
        self.keep = keep
        self._recent: list[RecordedEvent] = []  # consecutive positions
        self._head: int | None = None
        self._head_asked = False  # during this step

    def next_step(self) -> None:
        self._head_asked = False

    def forget(self) -> None:
        self._recent = []
        self._head = None
        self._head_asked = False

    def head(self) -> int:
        if self._head_asked and self._head is not None:
            return self._head
        head = self.store.head()
        self._head_asked = True
        if self._head is not None and head < self._head:
            self._recent = []
        self._head = head
        return head

    def read(self, after: int = 0, limit: int | None = None) -> Iterator[RecordedEvent]:
        if self._head is not None:
            limit = self._head - after if limit is None else min(limit, self._head - after)
        if limit is not None and limit <= 0:
            return
        recent = self._recent
        if recent and recent[0].position <= after + 1 <= recent[-1].position:
            served = recent[after + 1 - recent[0].position:][:limit]
            yield from served
            after += len(served)
            if limit is not None:
                limit -= len(served)
                if limit <= 0:
                    return
        for record in self.store.read(after=after, limit=limit):
            self._remember(record)
            yield record

    def _remember(self, record: RecordedEvent) -> None:
        if self._recent and record.position != self._recent[-1].position + 1:
            self._recent = []
        self._recent.append(record)
        if len(self._recent) > 2 * self.keep:
            del self._recent[:-self.keep]

    def append(self, events: Sequence[Event]) -> list[Appended]:
        return self.store.append(events)

    def get(self, key: str) -> RecordedEvent | None:
        return self.store.get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, RecordedEvent]:
        return self.store.get_many(keys)

    def close(self) -> None:
        self.store.close()


class RelayProcess:
    def __init__(self, settings: FleetSettings, *, reconcile_every_s: float = 5.0, redelivery_s: float = 60.0,
                 lease_ttl_s: float = 5.0, poll_s: float = 0.05, health_every_s: float = 10.0,
                 stall_after_s: float = 30.0) -> None:
        self.settings = settings
        self.poll_s = poll_s
        self.health_every_s = health_every_s
        self.stall_after_s = stall_after_s
        self.store = open_store(settings.store_url)
        self.step_log = StepLog(self.store)  # what the steps read: the projections' and the relay's
        self.projections = Projections(self.step_log, settings.projections_path)
        self.pipelines = fleet_pipelines(settings)
        self.broker = open_fleet_broker(settings)
        self.sender = StageSender(self.broker, self.pipelines)
        self.lease = relay_lease(self.store, settings, lease_ttl_s)
        board = heartbeat_board(self.store, settings)
        self.relay = Relay(self.step_log, self.projections, self.pipelines, self.sender.send, lease=self.lease,
                           reconcile_every_s=reconcile_every_s, redelivery_s=redelivery_s,
                           backlog=self.sender.waiting, heartbeats=lambda: liveness_from(board.read()))
        self.failures = 0
        self.last_error = ""
        self._last_ok = time.monotonic()
        self._checkpoint = 0

    # --- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set, then give up the lease so a standby takes over at once."""
        leader = False
        next_report = time.monotonic()
        try:
            while not stop.is_set():
                sent, wait = self._step()
                if self.lease.held != leader:
                    leader = self.lease.held
                    log.info("relay is now %s (fence %d)", "the leader" if leader else "a standby", self.lease.fence)
                if time.monotonic() >= next_report:
                    log.info("%s", self.health_line())
                    next_report = time.monotonic() + self.health_every_s
                if wait or not sent:
                    stop.wait(wait or self.poll_s)
        finally:
            self._release()

    def _step(self) -> tuple[int, float]:
        """One step; returns (tasks sent, seconds to back off after a failure)."""
        try:
            self.step_log.next_step()
            self._check_log_not_shorter()
            if not self.lease.held:
                self.projections.catch_up()  # a standby stays warm, so a takeover starts fast
            sent = self.relay.step()
            self._checkpoint = self.projections.checkpoint()
        except TRANSIENT as exc:
            self.step_log.forget()  # the server may come back without its last writes
            self.relay.forget_runs()
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            backoff = min(0.25 * 2 ** min(self.failures, 5), MAX_BACKOFF_S)
            log.warning("relay step failed (%s); trying again in %.1fs", self.last_error, backoff)
            return 0, backoff
        self.failures = 0
        self._last_ok = time.monotonic()
        return sent, 0.0

    def _check_log_not_shorter(self) -> None:
        # A Redis that restarted without its last writes (AOF "everysec" and a crash) leaves the
        # projections ahead of the log; left alone they would skip the positions written anew.
        checkpoint, head = self.projections.checkpoint(), self.step_log.head()
        if checkpoint > head:
            log.error("the log ends at %d but the projections are at %d: events were lost; rebuilding them",
                      head, checkpoint)
            self.projections.replay()
            self.relay.position = 0

    def _release(self) -> None:
        try:
            self.lease.release()
        except TRANSIENT as exc:
            log.warning("could not release the relay lease (it expires by itself): %s", exc)

    def close(self) -> None:
        self.projections.close()
        self.store.close()
        self.broker.close()

    # --- health --------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details): healthy while steps keep succeeding."""
        age = time.monotonic() - self._last_ok
        ok = age < self.stall_after_s
        return ok, {
            "status": "ok" if ok else "stalled",
            "role": "leader" if self.lease.held else "standby",
            "fence": self.lease.fence,
            "checkpoint": self._checkpoint,
            "enqueued": self.relay.enqueued,
            "seconds_since_step": round(age, 3),
            "last_error": self.last_error,
        }

    def metrics(self) -> str:
        runs = self.projections.runs()
        depths = queue_depths(self.broker, self.sender.queues)
        return render_prometheus(runs, depths, {
            "leader": float(self.lease.held),
            "fence": float(self.lease.fence),
            "enqueued_total": float(self.relay.enqueued),
            "checkpoint": float(self._checkpoint),
            "seconds_since_step": time.monotonic() - self._last_ok,
        })

    def health_line(self) -> str:
        role = f"leader (fence {self.lease.fence})" if self.lease.held else "standby"
        line = f"relay {role}: checkpoint {self._checkpoint}, {self.relay.enqueued} tasks sent"
        try:
            counts: dict[str, int] = {}
            for (_, _, state), n in stage_task_counts(self.projections.runs()).items():
                counts[state] = counts.get(state, 0) + n
            depth = [sum(d) for d in zip(*queue_depths(self.broker, self.sender.queues).values(), strict=True)]
            queued = dict(zip(QueueDepth._fields, depth, strict=True)) if depth else {}
        except TRANSIENT as exc:
            return f"{line}; state unavailable: {exc}"
        tasks = " ".join(f"{k}={v}" for k, v in counts.items() if v)
        queues = " ".join(f"{k}={v}" for k, v in queued.items())
        return f"{line}; tasks {tasks or 'none'}; queues {queues or 'none'}"
