"""The relay's own view of the open runs, kept in memory and moved forward one tailed event at a time.

Each open run is loaded from the projections once (when the relay starts, takes the lease over,
or first meets an event of a run it dropped), then every event it tails updates that run's task
states by the projection's own rules (a manifest is final; a final failure yields only to a
manifest; otherwise the newest event wins) and names the few tasks it may have made ready:

- ``PartitionIngested(p)``: the run's partition stages at ``p``;
- ``ManifestWritten(s, p)``: the stages after ``s`` at ``p`` (every partition when ``s`` is
  run-level), and a run-level stage once its upstream is done on every sealed partition, which
  a per-stage counter answers without a scan;
- ``RunSealed``: the run-level stages; ``StageStarted``/``StageFailed``: that task.

So an event costs the relay the same at 100 partitions as at 100k. The tasks found ready or in
flight stay in the run's ``open`` set, which the periodic full pass judges again (a dead worker,
a lost message): that pass costs what is open, never what is finished.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stagebus.actors.readiness import DONE, expected_partitions
from stagebus.events import (
    RUN_SCOPE,
    AnyEvent,
    ManifestWritten,
    PartitionIngested,
    RunAbandoned,
    RunSealed,
    StageFailed,
    StageStarted,
)
from stagebus.pipeline.definition import Pipeline

Key = tuple[str, str]  # (stage, partition ref)


class OpenTask:
    """A task's state as the runs projection keeps it (the fields readiness reads)."""

    __slots__ = ("attempts", "status", "updated_at", "worker")

    def __init__(self, status: str, attempts: int, worker: str, updated_at: str) -> None:
        self.status = status
        self.attempts = attempts
        self.worker = worker
        self.updated_at = updated_at

    def apply(self, status: str, attempt: int, worker: str, at: str) -> None:
        """The runs projection's upsert rule (see ``stagebus.projections.runs``), in memory."""
        if self.status not in DONE:
            if status in DONE:
                self.status, self.worker = status, worker
            elif self.status != "failed":
                self.status = status
                if worker:
                    self.worker = worker
        self.attempts = max(self.attempts, attempt)
        self.updated_at = at


class OpenRun:
    """One run: what :mod:`stagebus.actors.readiness` reads of a run (a ``RunView``), plus the
    counters and the set of open tasks that keep the relay's work per event constant."""

    def __init__(self, run_id: str, pipeline_name: str, stages: tuple[str, ...] | None,
                 pipeline: Pipeline | None, base: int) -> None:
        self.run_id = run_id
        self.pipeline = pipeline_name
        self.stages = stages
        self.definition = pipeline  # None: this relay does not know the run's pipeline
        self.base = base  # events up to this position are already in the state
        self.abandoned = False
        self._partitions: dict[str, None] = {}
        self.sealed_partitions: tuple[str, ...] | None = None
        self._sealed: frozenset[str] = frozenset()
        self.tasks: dict[Key, OpenTask] = {}
        self._done: dict[str, set[str]] = {}  # stage -> partitions whose task is done
        self._sealed_done: dict[str, int] = {}  # stage -> sealed partitions among them
        self.open: dict[Key, None] = {}  # ready or in flight: judged again by the full pass

    @property
    def partitions(self) -> tuple[str, ...]:
        return tuple(self._partitions)

    # --- building and updating -----------------------------------------------------------

    @classmethod
    def from_projection(cls, state: Any, pipeline: Pipeline | None, base: int) -> OpenRun:
        """From a ``RunState`` read at checkpoint ``base``; every expected task becomes a candidate."""
        run = cls(state.run_id, state.pipeline, state.stages, pipeline, base)
        run.abandoned = bool(getattr(state, "abandoned", False))
        for ref in state.partitions:
            run._partitions[ref] = None
        for (stage, ref), task in state.tasks.items():
            run._set_task(stage, ref, OpenTask(task.status, task.attempts, task.worker, task.updated_at))
        if state.sealed_partitions is not None:
            run._seal(tuple(state.sealed_partitions))
        if pipeline is not None:
            for definition in pipeline.stages:
                for ref in expected_partitions(run, pipeline, definition.name):
                    run.open[(definition.name, ref)] = None
        return run

    def apply(self, event: AnyEvent, at: str) -> list[Key]:
        """Move the state past ``event`` (recorded at ``at``); returns the tasks it may have made ready."""
        match event:
            case StageStarted():
                self._task_event(event.stage, event.partition, "running", event.attempt, event.worker, at)
                return [(event.stage, event.partition)]
            case ManifestWritten():
                m = event.manifest
                self._task_event(event.stage, event.partition, m.status, m.attempt, m.worker, at)
                return self._after(event.stage, event.partition)
            case StageFailed():
                status = "failed" if event.final else "waiting" if event.infrastructure else "retrying"
                self._task_event(event.stage, event.partition, status, event.attempt, "", at)
                return [(event.stage, event.partition)]
            case PartitionIngested():
                if event.ref in self._partitions:
                    return []
                self._partitions[event.ref] = None
                return [(d.name, event.ref) for d in self._stages_of_scope("partition")]
            case RunSealed():
                if self.sealed_partitions is not None:
                    return []
                self._seal(tuple(event.partitions))
                return [(d.name, RUN_SCOPE) for d in self._stages_of_scope("run")]
            case RunAbandoned():
                self.abandoned = True
                self.open.clear()
        return []

    def _task_event(self, stage: str, ref: str, status: str, attempt: int, worker: str, at: str) -> None:
        task = self.tasks.get((stage, ref))
        if task is None:
            self._set_task(stage, ref, OpenTask(status, attempt, worker, at))
        else:
            was_done = task.status in DONE
            task.apply(status, attempt, worker, at)
            if not was_done and task.status in DONE:
                self._mark_done(stage, ref)

    def _set_task(self, stage: str, ref: str, task: OpenTask) -> None:
        self.tasks[(stage, ref)] = task
        if task.status in DONE:
            self._mark_done(stage, ref)

    def _mark_done(self, stage: str, ref: str) -> None:
        done = self._done.setdefault(stage, set())
        if ref not in done:
            done.add(ref)
            if ref in self._sealed:
                self._sealed_done[stage] = self._sealed_done.get(stage, 0) + 1

    def _seal(self, partitions: tuple[str, ...]) -> None:
        self.sealed_partitions = partitions
        self._sealed = frozenset(partitions)
        for stage, done in self._done.items():  # once per run: the counters start here
            self._sealed_done[stage] = len(self._sealed & done)

    def _stages_of_scope(self, scope: str) -> Iterator[Any]:
        if self.definition is None:
            return iter(())
        return (d for d in self.definition.stages if d.contract.scope == scope)

    def _after(self, stage: str, ref: str) -> list[Key]:
        pipeline = self.definition
        if pipeline is None or stage not in pipeline:
            return []
        found: list[Key] = []
        for nxt in pipeline.downstream(stage):
            if pipeline[nxt].contract.scope == "run":
                if self.upstream_done(nxt, RUN_SCOPE):
                    found.append((nxt, RUN_SCOPE))
            elif ref == RUN_SCOPE:  # a run-level stage feeds a partition stage: all of them, once
                found += [(nxt, p) for p in self._partitions]
            else:
                found.append((nxt, ref))
        return found

    # --- reading ---------------------------------------------------------------------------

    def upstream_done(self, stage: str, ref: str) -> bool:
        """:func:`stagebus.actors.readiness.upstream_done`, from the counters: no scan of the run."""
        pipeline = self.definition
        assert pipeline is not None
        for up in pipeline[stage].contract.after:
            done = self._done.get(up, ())
            if pipeline[up].contract.scope == "run":
                if RUN_SCOPE not in done:
                    return False
            elif ref == RUN_SCOPE:
                if self.sealed_partitions is None or self._sealed_done.get(up, 0) < len(self._sealed):
                    return False
            elif ref not in done:
                return False
        return True

    def selected(self, stage: str) -> bool:
        return self.stages is None or stage in self.stages
