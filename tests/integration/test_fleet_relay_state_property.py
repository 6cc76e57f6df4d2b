"""Property: the relay's in-memory run, moved one event at a time, says what the runs projection
says: the same task states, and the same upstream verdict for every task of the run."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stagebus.actors.gate import TaskRef
from stagebus.actors.readiness import EXHAUSTED, READY, expected_partitions, ready_tasks, task_verdict, upstream_done
from stagebus.actors.relay_state import OpenRun
from stagebus.events import (
    RUN_SCOPE,
    Event,
    Manifest,
    ManifestWritten,
    PartitionIngested,
    RunOpened,
    RunSealed,
    StageFailed,
    StageStarted,
)
from stagebus.projections import Projections
from stagebus.store import MemoryEventStore
from support import chain6

PIPELINE = chain6.pipeline
PARTITIONS = ("p0", "p1", "p2")
STAGES = [d.name for d in PIPELINE.stages]
SCOPES = {d.name: d.contract.scope for d in PIPELINE.stages}


@st.composite
def task_event(draw: st.DrawFn) -> Event:
    stage = draw(st.sampled_from(STAGES))
    ref = RUN_SCOPE if SCOPES[stage] == "run" else f"nums/{draw(st.sampled_from(PARTITIONS))}"
    attempt = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["started", "failed", "final", "infra", "complete", "reused"]))
    if kind == "started":
        return StageStarted(run_id="r", stage=stage, partition=ref, attempt=attempt, worker=f"w:{attempt}:1",
                            input_hash="i", config_hash="c")
    if kind in ("failed", "final", "infra"):
        return StageFailed(run_id="r", stage=stage, partition=ref, attempt=attempt, error_type="E", message="m",
                           final=kind == "final", infrastructure=kind == "infra")
    return ManifestWritten(run_id="r", stage=stage, partition=ref, manifest=Manifest(
        stage=stage, run_id="r", partition=ref, input_hash="i", output_hash="o", config_hash="c",
        status=kind, started_at="s", ended_at="e", attempt=attempt, worker=f"m:{attempt}:1"))  # type: ignore[arg-type]


@st.composite
def run_events(draw: st.DrawFn) -> list[Event]:
    """A run's events in any order: its partitions ingested, maybe sealed, tasks faring as they may."""
    events: list[Event] = [PartitionIngested(run_id="r", dataset="nums", partition=p, uri="file:///x",
                                             content_hash="c", size=1) for p in PARTITIONS]
    events += draw(st.lists(task_event(), max_size=40))
    if draw(st.booleans()):
        sealed = PARTITIONS[:draw(st.integers(0, 3))]
        events.append(RunSealed(run_id="r", partitions=tuple(f"nums/{p}" for p in sealed)))
    return draw(st.permutations(events))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=run_events(), cut=st.integers(0, 50))
def test_the_relay_state_matches_the_projection_whatever_the_order(
        tmp_path_factory: object, events: list[Event], cut: int) -> None:
    # Given a run's events in the log, in any order (keyed ones once each)
    store = MemoryEventStore()
    store.append_one(RunOpened(run_id="r", pipeline="chain6", plan=PIPELINE.plan()))
    for event in events:
        store.append_one(event)
    root = Path(tmp_path_factory.mktemp("p"))  # type: ignore[attr-defined]
    with Projections(store, root) as projections:
        # When the relay's run is loaded from the projections part way, then moved by the rest
        records = list(store.read())
        base = max(1, min(cut, len(records)))  # from its RunOpened on
        partial = MemoryEventStore()
        for record in records[:base]:
            partial.append_one(record.event())  # type: ignore[arg-type]
        with Projections(partial, root / "partial") as early:
            early.catch_up()
            state = early.run("r")
        assert state is not None
        run = OpenRun.from_projection(state, PIPELINE, base)
        for record in records[base:]:
            run.apply(record.event(), record.recorded_at)
        projections.catch_up()
        expected = projections.run("r")
    assert expected is not None
    # Then its tasks are the projection's, and so is every task's upstream verdict
    assert {k: (t.status, t.attempts, t.worker) for k, t in run.tasks.items()} == \
        {k: (t.status, t.attempts, t.worker) for k, t in expected.tasks.items()}
    assert run.partitions == expected.partitions and run.sealed_partitions == expected.sealed_partitions
    verdicts: dict[str, list[TaskRef]] = {READY: [], EXHAUSTED: []}
    for stage in STAGES:
        for ref in expected_partitions(expected, PIPELINE, stage):
            assert run.upstream_done(stage, ref) == upstream_done(expected, PIPELINE, stage, ref), (stage, ref)
            task = TaskRef("r", stage, ref)
            verdict = task_verdict(run, PIPELINE[stage].contract, task, local_idle=False,
                                   upstream_ok=lambda s=stage, r=ref: run.upstream_done(s, r))  # type: ignore[misc]
            if verdict is not None:
                verdicts[verdict].append(task)
    # And judging each task on its own gives what ready_tasks gives for the whole run
    readiness = ready_tasks(expected, PIPELINE, local_idle=False)
    assert (verdicts[READY], verdicts[EXHAUSTED]) == (readiness.ready, readiness.exhausted)
