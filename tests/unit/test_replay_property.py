"""Property: however a log is caught up (any batch sizes, interleaved with appends), the state equals
a replay of the whole log, and replaying it again gives the same digest."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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

from .conftest import PLAN, ticking_clock

RUNS = ("r0", "r1", "r2")
REFS = ("a/1", "a/2", "b/1")
SCOPES = {s.name: s.scope for s in PLAN}


def manifest(run: str, stage: str, ref: str, status: str, source: int) -> ManifestWritten:
    return ManifestWritten(run_id=run, stage=stage, partition=ref, manifest=Manifest(
        stage=stage, run_id=run, partition=ref, input_hash=f"in{source}", output_hash="out", config_hash="cfg",
        status=status, started_at="s", ended_at="e",  # type: ignore[arg-type]
    ))


@st.composite
def noise(draw: st.DrawFn) -> Event:
    """Any single event about the small universe of runs, stages and refs."""
    run = draw(st.sampled_from(RUNS))
    stage = draw(st.sampled_from(list(SCOPES)))
    ref = RUN_SCOPE if SCOPES[stage] == "run" else draw(st.sampled_from(REFS))
    kind = draw(st.sampled_from(["open", "ingest", "seal", "start", "manifest", "fail"]))
    dataset, _, partition = draw(st.sampled_from(REFS)).partition("/")
    match kind:
        case "open":
            subset = draw(st.sampled_from([None, ("ingest", "normalize", "extract")]))
            return RunOpened(run_id=run, pipeline="reference", plan=PLAN, stages=subset)
        case "ingest":
            return PartitionIngested(run_id=run, dataset=dataset, partition=partition, uri="file:///x",
                                     content_hash="h", size=1)
        case "seal":
            return RunSealed(run_id=run, partitions=tuple(draw(st.lists(st.sampled_from(REFS), unique=True))))
        case "start":
            return StageStarted(run_id=run, stage=stage, partition=ref, attempt=draw(st.integers(1, 3)),
                                worker="w", input_hash="in", config_hash="cfg")
        case "manifest":
            status = draw(st.sampled_from(["complete", "reused"]))
            return manifest(run, stage, ref, status, draw(st.integers(0, 1)))
        case _:
            return StageFailed(run_id=run, stage=stage, partition=ref, attempt=1, error_type="E", message="m",
                               final=draw(st.booleans()))


@st.composite
def run_events(draw: st.DrawFn, run: str) -> list[Event]:
    """A plausible run in order: open, ingest, seal, then each task starts and ends (or fails)."""
    refs = draw(st.lists(st.sampled_from(REFS), min_size=1, unique=True))
    out: list[Event] = [RunOpened(run_id=run, pipeline="reference", plan=PLAN)]
    for ref in refs:
        dataset, _, partition = ref.partition("/")
        out.append(PartitionIngested(run_id=run, dataset=dataset, partition=partition, uri="file:///x",
                                     content_hash="h", size=1))
    out.append(RunSealed(run_id=run, partitions=tuple(refs)))
    tasks = [(s.name, ref) for s in PLAN if s.scope == "partition" for ref in refs]
    tasks += [(s.name, RUN_SCOPE) for s in PLAN if s.scope == "run"]
    for stage, ref in tasks:
        out.append(StageStarted(run_id=run, stage=stage, partition=ref, attempt=1, worker="w", input_hash="in",
                                config_hash="cfg"))
        ending = draw(st.sampled_from(["complete", "complete", "complete", "reused", "retry", "fail", "lost"]))
        if ending in ("complete", "reused"):
            out.append(manifest(run, stage, ref, ending, draw(st.integers(0, 1))))
        elif ending != "lost":
            out.append(StageFailed(run_id=run, stage=stage, partition=ref, attempt=1, error_type="E",
                                   message="m", final=ending == "fail"))
    return out


@st.composite
def logs(draw: st.DrawFn) -> list[Event]:
    """Up to three plausible runs interleaved at random, with some noise mixed in."""
    queues = [draw(run_events(run)) for run in RUNS[: draw(st.integers(1, len(RUNS)))]]
    queues.append(draw(st.lists(noise(), max_size=10)))
    merged: list[Event] = []
    while any(queues):
        queue = draw(st.sampled_from([q for q in queues if q]))
        merged.append(queue.pop(0))
    return merged


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    log=logs(),
    cuts=st.lists(st.integers(0, 80), max_size=6),
    batch_sizes=st.lists(st.integers(1, 17), min_size=1, max_size=6),
)
def test_incremental_catch_up_equals_a_replay_of_the_whole_log(
    log: list[Event], cuts: list[int], batch_sizes: list[int]
) -> None:
    # Given a log appended in pieces, caught up after each piece in varying batch sizes
    # (keyed duplicates the log refuses are simply not stored, as in production)
    store = MemoryEventStore(clock=ticking_clock())  # type: ignore[arg-type]
    incremental = Projections(store)
    start = 0
    for i, cut in enumerate([*sorted(cuts), len(log)]):
        for event in log[start:cut]:
            store.append_one(event)
        start = max(start, cut)
        incremental.catch_up(batch_size=batch_sizes[i % len(batch_sizes)])
    # When the same log is replayed from position 0, twice
    replayed = Projections(store)
    first = replayed.replay()
    second = replayed.replay()
    # Then all three states have the same digest
    assert incremental.digest() == first.digest == second.digest
    incremental.close()
    replayed.close()
