"""Which stage tasks of a run are ready: a pure function of the run's projected state.

The relay uses it to reconcile (a lost broker message, a crashed worker, a pipeline started
again) and the embedded runner to find its next work. The actor re-checks the gate in the log
before doing anything, so a stale projection can only cause a refused or duplicate delivery,
never a wrong run.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from stagebus.actors.failures import INFRA_MAX_BACKOFF_S
from stagebus.actors.gate import TaskRef
from stagebus.actors.heartbeat import Liveness
from stagebus.artifacts.local import process_exists
from stagebus.events import RUN_SCOPE
from stagebus.pipeline.contract import StageContract
from stagebus.pipeline.definition import Pipeline

DONE = frozenset({"complete", "reused"})
TERMINAL = DONE | {"failed"}
IN_FLIGHT = frozenset({"running", "retrying", "waiting"})
HOST = socket.gethostname()
RETRY_GRACE_S = 30.0


class TaskView(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def worker(self) -> str: ...
    @property
    def updated_at(self) -> str: ...


class RunView(Protocol):
    @property
    def run_id(self) -> str: ...
    @property
    def pipeline(self) -> str: ...
    @property
    def stages(self) -> tuple[str, ...] | None: ...
    @property
    def partitions(self) -> tuple[str, ...]: ...
    @property
    def sealed_partitions(self) -> tuple[str, ...] | None: ...
    @property
    def tasks(self) -> Mapping[tuple[str, str], TaskView]: ...


def worker_alive(worker: str, updated_at: str, stale_after_s: float, *, local_idle: bool) -> bool:
    """Whether the attempt recorded by ``worker`` ("host:pid:thread") may still be running.

    On this host the process table answers no for a gone process; ``local_idle`` means this
    process runs nothing, so its own old attempts are dead. Otherwise only time can tell: an
    attempt silent for longer than ``stale_after_s`` is presumed dead, also when its process
    lives on (the attempt may have ended without a trace, e.g. while the log was unreachable).
    """
    host, _, rest = worker.partition(":")
    pid_text = rest.partition(":")[0]
    if host == HOST and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            if local_idle:
                return False
        elif not process_exists(pid):
            return False
    return age_s(updated_at) < stale_after_s


def attempt_in_flight(state: TaskView, contract: StageContract, *, local_idle: bool,
                      liveness: Liveness | None = None, task: str = "") -> bool:
    """Whether a ``running``, ``retrying`` or ``waiting`` task's next step is still coming
    without our help. ``liveness`` (worker heartbeats) answers for a running attempt whose
    worker beats: alive while its beat is fresh and lists ``task``."""
    if state.status == "waiting":
        # Stopped by an infrastructure fault; its message comes back by itself after a backoff.
        window = INFRA_MAX_BACKOFF_S + RETRY_GRACE_S
        return worker_alive(state.worker, state.updated_at, math.inf, local_idle=local_idle) and \
            age_s(state.updated_at) < window
    if state.status == "retrying":
        # The failed attempt is over and the next one waits in the broker for its backoff. Past
        # that, and some grace for queueing, its message is presumed lost with the broker.
        window = contract.retry.max_backoff_ms / 1000 + RETRY_GRACE_S
        return worker_alive(state.worker, state.updated_at, math.inf, local_idle=local_idle) and \
            age_s(state.updated_at) < window
    if liveness is not None:
        verdict = liveness(state.worker, task, state.updated_at)
        if verdict is not None:
            return verdict and age_s(state.updated_at) < contract.time_limit_s * 2
    return worker_alive(state.worker, state.updated_at, contract.time_limit_s * 2, local_idle=local_idle)


def attempts_spent(state: TaskView | None) -> int:
    """Attempts that count against the retry policy: a task waiting on infrastructure has not
    spent the attempt that the fault stopped."""
    if state is None or state.status not in IN_FLIGHT:
        return 0
    return state.attempts - 1 if state.status == "waiting" else state.attempts


def age_s(stamp: str) -> float:
    try:
        seen = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return math.inf
    return (datetime.now(UTC) - seen).total_seconds()


def expected_partitions(run: RunView, pipeline: Pipeline, stage: str) -> tuple[str, ...]:
    if pipeline[stage].contract.scope == "run":
        return (RUN_SCOPE,) if run.sealed_partitions is not None else ()
    return run.partitions


def upstream_done(run: RunView, pipeline: Pipeline, stage: str, partition: str) -> bool:
    for up in pipeline[stage].contract.after:
        if pipeline[up].contract.scope == "run":
            refs: Collection[str] = (RUN_SCOPE,)
        elif partition == RUN_SCOPE:
            refs = run.sealed_partitions or ()
        else:
            refs = (partition,)
        for ref in refs:
            state = run.tasks.get((up, ref))
            if state is None or state.status not in DONE:
                return False
    return True


class Readiness(NamedTuple):
    ready: list[TaskRef]
    exhausted: list[TaskRef]  # died mid-attempt more often than the retry policy allows


def ready_tasks(
    run: RunView,
    pipeline: Pipeline,
    *,
    only_stages: Collection[str] | None = None,
    local_idle: bool = True,
    liveness: Liveness | None = None,
) -> Readiness:
    """Tasks whose upstream is done, that have no manifest or final failure and no live attempt.

    A task whose attempts keep dying without a word (the process is killed each time) is
    reported ``exhausted`` once it has been started more often than its retry policy allows,
    so a poison partition that crashes workers cannot loop forever.
    """
    ready: list[TaskRef] = []
    exhausted: list[TaskRef] = []
    if getattr(run, "abandoned", False):  # a RunView without the field predates abandonment
        return Readiness(ready, exhausted)
    for definition in pipeline.stages:
        stage = definition.name
        if run.stages is not None and stage not in run.stages:
            continue
        if only_stages is not None and stage not in only_stages:
            continue
        allowed = definition.contract.retry.max_retries + 1
        for ref in expected_partitions(run, pipeline, stage):
            state = run.tasks.get((stage, ref))
            if state is not None and state.status in TERMINAL:
                continue
            if state is not None and state.status in IN_FLIGHT:
                if attempt_in_flight(state, definition.contract, local_idle=local_idle, liveness=liveness,
                                     task=str(TaskRef(run.run_id, stage, ref))):
                    continue
                if attempts_spent(state) >= allowed:
                    exhausted.append(TaskRef(run.run_id, stage, ref))
                    continue
            if upstream_done(run, pipeline, stage, ref):
                ready.append(TaskRef(run.run_id, stage, ref))
    return Readiness(ready, exhausted)


READY = "ready"
EXHAUSTED = "exhausted"


def task_verdict(run: RunView, contract: StageContract, task: TaskRef, *, upstream_ok: Callable[[], bool],
                 local_idle: bool, liveness: Liveness | None = None) -> str | None:
    """What :func:`ready_tasks` decides for one task: :data:`READY`, :data:`EXHAUSTED`, or None
    (finished, a live attempt, or upstream not done). ``upstream_ok`` answers the upstream
    question the caller's way (the relay keeps counters; :func:`upstream_done` scans)."""
    state = run.tasks.get((task.stage, task.partition))
    if state is not None and state.status in TERMINAL:
        return None
    if state is not None and state.status in IN_FLIGHT:
        if attempt_in_flight(state, contract, local_idle=local_idle, liveness=liveness, task=str(task)):
            return None
        if attempts_spent(state) >= contract.retry.max_retries + 1:
            return EXHAUSTED
    return READY if upstream_ok() else None


def chained_downstream(task: TaskRef, pipeline: Pipeline) -> list[TaskRef]:
    """The next partition-level tasks of the same partition: the ones a finished task can send
    at once (the fast path), since each needs only upstream manifests of that partition.
    Run-level (fan-in) stages wait for the relay or the next readiness round."""
    return [TaskRef(task.run_id, nxt, task.partition) for nxt in pipeline.downstream(task.stage)
            if pipeline[nxt].contract.scope == "partition"]


def chained_upstream_age(run: RunView, pipeline: Pipeline, task: TaskRef) -> float | None:
    """Seconds since the last upstream of a fast-path task finished, or None if ``task`` is
    not sent by the fast path (it has no upstream, or a run-level one)."""
    after = pipeline[task.stage].contract.after
    if not after or task.partition == RUN_SCOPE or any(pipeline[u].contract.scope == "run" for u in after):
        return None
    ages = []
    for up in after:
        state = run.tasks.get((up, task.partition))
        if state is None:
            return None
        ages.append(age_s(state.updated_at))
    return min(ages)


def has_open_tasks(info: Any) -> bool:
    """From a run's summary alone: whether any selected stage still has a pending or running
    task. Finished runs are skipped without loading their tasks, so a home with a long history
    costs a readiness round nothing extra."""
    if getattr(info, "abandoned", False):
        return False
    return any(summary.selected and (summary.pending or summary.running) for summary in info.stage_summaries)
