"""The relay: log → bus. Enqueues each stage task whose gate is open, and reconciles.

Every new event names the run it touches; the relay re-derives that run's ready tasks from the
projections and sends those it has not sent recently. A periodic full pass does the same for
every run, which is how a lost broker message, a dead worker or a restarted pipeline is healed:
the broker is a transport, never the source of truth.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from stagebus.actors.gate import TaskRef
from stagebus.actors.heartbeat import Liveness
from stagebus.actors.lease import Lease
from stagebus.actors.readiness import attempts_spent, chained_upstream_age, has_open_tasks, ready_tasks
from stagebus.errors import InvalidInput, StoreUnavailable
from stagebus.events import StageFailed
from stagebus.pipeline.definition import PipelineRegistry
from stagebus.store import EventStore

log = logging.getLogger("stagebus.relay")


class Relay:
    def __init__(
        self,
        store: EventStore,
        projections: Any,
        pipelines: PipelineRegistry,
        send: Callable[..., None],  # send(task, pipeline, *, attempts_before)
        *,
        lease: Lease | None = None,
        reconcile_every_s: float = 5.0,
        redelivery_s: float = 60.0,
        backlog: Callable[[str], int] | None = None,
        heartbeats: Callable[[], Liveness] | None = None,
    ) -> None:
        """``backlog(stage)``, when given, counts the messages waiting on a stage's queue: a
        task sent before is sent again only once its queue has none waiting, since until then
        its message is most likely among them (a redelivery into a backlog only lengthens it)."""
        self.store = store
        self.projections = projections
        self.pipelines = pipelines
        self.send = send
        self.lease = lease
        self.reconcile_every_s = reconcile_every_s
        self.redelivery_s = redelivery_s
        self.position = 0
        self.backlog = backlog
        self.heartbeats = heartbeats  # the workers' heartbeats, read once per step
        self._liveness: Liveness | None = None
        self._sent: dict[TaskRef, float] = {}
        self._ready: set[TaskRef] = set()  # tasks found ready during this step
        self._waiting: dict[str, int] = {}  # backlog per stage, asked once per step
        self._last_reconcile = 0.0
        self.enqueued = 0

    def step(self) -> int:
        """One pass: catch up, route new events, reconcile when due. Returns tasks sent."""
        if self.lease is not None and not self.lease.acquire():
            self._sent.clear()  # a standby knows nothing of what the leader sent
            return 0
        self.projections.catch_up()
        head = self.store.head()
        now = time.monotonic()
        self._ready.clear()
        self._waiting.clear()
        self._liveness = self.heartbeats() if self.heartbeats is not None else None
        full = now - self._last_reconcile >= self.reconcile_every_s or self.position == 0
        if full:
            runs = [r.run_id for r in self.projections.runs() if has_open_tasks(r)]
            self._last_reconcile = now
        else:
            runs = sorted({rid for rid in self._touched_runs(head) if rid})
        self.position = head
        sent = sum(self._reconcile_run(run_id, now) for run_id in runs)
        if full:
            # Forget tasks no longer ready (done, failed, running), so a long-lived relay does
            # not keep every task it ever sent.
            self._sent = {task: at for task, at in self._sent.items() if task in self._ready}
        self.enqueued += sent
        return sent

    def _touched_runs(self, head: int) -> set[str]:
        touched = set()
        for record in self.store.read(after=self.position, limit=head - self.position):
            touched.add(getattr(record.event(), "run_id", ""))
        return touched

    def _reconcile_run(self, run_id: str, now: float) -> int:
        run = self.projections.run(run_id)
        if run is None:
            return 0
        try:
            pipeline = self.pipelines.get(run.pipeline)
        except InvalidInput:
            log.warning("run %s uses pipeline %r, which this relay does not know", run_id, run.pipeline)
            return 0
        if self.projections.pipeline_status(pipeline.name) != "active":
            return 0  # a stopped pipeline's ready tasks are held until it starts again
        readiness = ready_tasks(run, pipeline, local_idle=False, liveness=self._liveness)
        for task in readiness.exhausted:
            attempts = run.tasks[(task.stage, task.partition)].attempts
            if self.lease is not None and not self.lease.acquire():
                return 0  # replaced since this step began: the new leader judges from here
            self.store.append_one(StageFailed(
                run_id=task.run_id, stage=task.stage, partition=task.partition, attempt=attempts,
                error_type="AttemptsExhausted", message=f"{attempts} attempts died before finishing", final=True,
            ))
        sent = 0
        for task in readiness.ready:
            self._ready.add(task)
            sent_at = self._sent.get(task)
            if sent_at is None:
                chained = chained_upstream_age(run, pipeline, task)
                if chained is not None and chained < self.redelivery_s:
                    # The worker that finished its upstream sent it (the fast path); count that
                    # as the first send, so only a lost one is sent again, after redelivery_s.
                    self._sent[task] = sent_at = now - chained
            if sent_at is not None and (now - sent_at < self.redelivery_s or self._backlog(task.stage)):
                continue
            state = run.tasks.get((task.stage, task.partition))
            # Attempts that died without a word count against the retry policy: the next one
            # is numbered after them (else a task that kills its worker would loop forever).
            self.send(task, pipeline.name, attempts_before=attempts_spent(state))
            self._sent[task] = now
            sent += 1
        return sent

    def _backlog(self, stage: str) -> int:
        if self.backlog is None:
            return 0
        if stage not in self._waiting:
            self._waiting[stage] = self.backlog(stage)
        return self._waiting[stage]

    def run_forever(self, stop: threading.Event, poll_s: float = 0.05) -> None:
        while not stop.is_set():
            try:
                if self.step() == 0:
                    stop.wait(poll_s)
            except StoreUnavailable as exc:
                log.warning("store unavailable, retrying: %s", exc)
                stop.wait(1.0)
        if self.lease is not None:
            self.lease.release()
