"""The relay: log → bus. Enqueues each stage task whose gate is open, and reconciles.

The relay tails the log and keeps its own view of the open runs in memory
(:mod:`stagebus.actors.relay_state`): each event updates its run and names the few tasks it may
have made ready, and only those are judged and sent. A periodic full pass judges again every
task still open (ready or in flight), which is how a lost broker message, a dead worker or a
restarted pipeline is healed: the broker is a transport, never the source of truth. Open runs are
loaded from the projections once; finished runs cost nothing.
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
from stagebus.actors.readiness import (
    EXHAUSTED,
    IN_FLIGHT,
    READY,
    attempts_spent,
    chained_upstream_age,
    has_open_tasks,
    task_verdict,
)
from stagebus.actors.relay_state import Key, OpenRun
from stagebus.errors import InvalidInput, StoreUnavailable
from stagebus.events import PipelineStarted, RunOpened, StageFailed
from stagebus.pipeline.definition import Pipeline, PipelineRegistry
from stagebus.store import EventStore

log = logging.getLogger("stagebus.relay")
STEP_EVENTS = 5_000  # events tailed per step at most, so one step stays short behind a backlog


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
        self._runs: dict[str, OpenRun] | None = None  # the open runs; None until loaded
        self._status: dict[str, bool] = {}  # pipeline active?, asked once per step
        self._full_due = False
        self._tailed = 0  # the position this relay's state is at (``position`` may be set back)
        self.enqueued = 0

    def forget_runs(self) -> None:
        """Read the open runs from the projections again at the next step (e.g. after the log's
        server failed: a restarted Redis may have lost events this state has seen)."""
        self._runs = None

    def step(self) -> int:
        """One pass: catch up, route new events, reconcile when due. Returns tasks sent."""
        if self.lease is not None and not self.lease.acquire():
            self._sent.clear()  # a standby knows nothing of what the leader sent
            self.forget_runs()  # nor of the runs: it loads them afresh when it takes over
            return 0
        self.projections.catch_up()
        now = time.monotonic()
        self._ready.clear()
        self._waiting.clear()
        self._status.clear()
        self._liveness = self._heartbeats_when_asked()
        try:
            sent = self._route(now)
        except BaseException:
            self._full_due = True  # tasks tailed but not judged yet are open: the next step judges them all
            raise
        finally:
            self._tailed = self.position
        self.enqueued += sent
        return sent

    def _route(self, now: float) -> int:
        if self._runs is None or self.position < self._tailed:  # set back: the log was rebuilt
            candidates = self._load()
            full = True
        else:
            candidates = self._tail()
            full = self._full_due or now - self._last_reconcile >= self.reconcile_every_s
            self._full_due = False
        runs = self._runs
        assert runs is not None
        if full:
            self._last_reconcile = now
            candidates = {run_id: list(run.open) for run_id, run in runs.items()}
        sent = sum(self._judge(run_id, keys, now) for run_id, keys in candidates.items())
        if full:
            # Forget tasks no longer ready (done, failed, running), so a long-lived relay does
            # not keep every task it ever sent; and runs with nothing open left.
            self._sent = {task: at for task, at in self._sent.items() if task in self._ready}
            self._evict()
        return sent

    # --- the open runs ---------------------------------------------------------------------

    def _load(self) -> dict[str, list[Key]]:
        """Every open run from the projections, at their checkpoint: the relay's starting state."""
        base = self.projections.checkpoint()
        runs: dict[str, OpenRun] = {}
        for info in self.projections.open_runs():
            if has_open_tasks(info):
                run = self._read_run(info.run_id, base)
                if run is not None:
                    runs[run.run_id] = run
        self._runs, self.position = runs, base
        return {}  # a full pass follows

    def _read_run(self, run_id: str, base: int) -> OpenRun | None:
        state = self.projections.run(run_id)
        if state is None:
            return None
        return OpenRun.from_projection(state, self._pipeline(state.pipeline, run_id), base)

    def _pipeline(self, name: str, run_id: str) -> Pipeline | None:
        try:
            return self.pipelines.get(name)
        except InvalidInput:
            log.warning("run %s uses pipeline %r, which this relay does not know", run_id, name)
            return None

    def _tail(self) -> dict[str, list[Key]]:
        """Apply the events past ``position`` to the open runs; the tasks they may have made ready."""
        assert self._runs is not None
        candidates: dict[str, list[Key]] = {}
        base = self.projections.checkpoint()
        # Up to what the projections just caught up to (the head this step asked): an idle step
        # reads nothing, and the relay process serves these events from the catch-up's read.
        limit = min(STEP_EVENTS, base - self.position)
        if limit <= 0:
            return candidates
        for record in self.store.read(after=self.position, limit=limit):
            self.position = record.position
            event = record.event()
            if isinstance(event, PipelineStarted):
                self._full_due = True  # its held tasks are in their runs' open sets
                continue
            run_id = getattr(event, "run_id", "")
            if not run_id:
                continue
            run = self._runs.get(run_id)
            if run is None:
                if isinstance(event, RunOpened):
                    run = OpenRun(run_id, event.pipeline, event.stages, self._pipeline(event.pipeline, run_id),
                                  record.position)
                    self._runs[run_id] = run
                    continue
                # A run this relay dropped as finished (or never saw open): from the projections,
                # which hold every event up to their checkpoint; later ones are applied here.
                run = self._read_run(run_id, base)
                if run is None:
                    continue
                self._runs[run_id] = run
                candidates.setdefault(run_id, []).extend(run.open)
            if record.position <= run.base:
                continue
            keys = run.apply(event, record.recorded_at)
            if keys:
                for key in keys:
                    run.open[key] = None
                candidates.setdefault(run_id, []).extend(keys)
        return candidates

    def _evict(self) -> None:
        assert self._runs is not None
        # A run of a pipeline this relay does not know stays: dropped, each of its events would
        # read it from the projections again (and warn again).
        for run_id in [r for r, run in self._runs.items() if not run.open and run.definition is not None
                       and (run.abandoned or run.sealed_partitions is not None)]:
            del self._runs[run_id]

    # --- judging and sending -----------------------------------------------------------------

    def _judge(self, run_id: str, keys: list[Key], now: float) -> int:
        assert self._runs is not None
        run = self._runs.get(run_id)
        if run is None or run.definition is None:
            return 0
        pipeline = run.definition
        if run.abandoned:
            run.open.clear()
            return 0
        if not self._active(pipeline.name):
            return 0  # a stopped pipeline's ready tasks are held (open) until it starts again
        ready: list[TaskRef] = []
        for key in dict.fromkeys(keys):
            stage, ref = key
            if key not in run.open:
                continue
            if stage not in pipeline or not run.selected(stage):
                del run.open[key]
                continue
            task = TaskRef(run_id, stage, ref)
            verdict = task_verdict(run, pipeline[stage].contract, task, local_idle=False, liveness=self._liveness,
                                   upstream_ok=lambda s=stage, r=ref: run.upstream_done(s, r))  # type: ignore[misc]
            if verdict == READY:
                ready.append(task)
            elif verdict == EXHAUSTED:
                attempts = run.tasks[key].attempts
                if self.lease is not None and not self.lease.acquire():
                    return 0  # replaced since this step began: the new leader judges from here
                self.store.append_one(StageFailed(
                    run_id=task.run_id, stage=task.stage, partition=task.partition, attempt=attempts,
                    error_type="AttemptsExhausted", message=f"{attempts} attempts died before finishing",
                    final=True,
                ))
            else:
                state = run.tasks.get(key)
                if state is None or state.status not in IN_FLIGHT:
                    del run.open[key]  # finished, or its upstream is not done: a later event names it
        return self._send_ready(run, pipeline, ready, now)

    def _send_ready(self, run: OpenRun, pipeline: Pipeline, ready: list[TaskRef], now: float) -> int:
        sent = 0
        for task in ready:
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

    def _active(self, pipeline: str) -> bool:
        if pipeline not in self._status:
            self._status[pipeline] = self.projections.pipeline_status(pipeline) == "active"
        return self._status[pipeline]

    def _heartbeats_when_asked(self) -> Liveness | None:
        """The workers' heartbeats, read at most once per step and only if a running attempt
        is judged: most steps judge none, and the read is a round trip to the log's Redis."""
        read = self.heartbeats
        if read is None:
            return None
        snapshot: list[Liveness] = []

        def alive(worker: str, task: str, started_at: str) -> bool | None:
            if not snapshot:
                snapshot.append(read())
            return snapshot[0](worker, task, started_at)

        return alive

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
