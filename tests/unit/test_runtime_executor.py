"""The stage task executor: gates, duplicates, reuse, failures, atomic and identical artifacts."""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec
import pytest

from stagebus.actors.executor import Executor, Outcome
from stagebus.actors.gate import TaskRef
from stagebus.artifacts.local import ArtifactStore
from stagebus.errors import ContractError, PermanentStageError
from stagebus.events import Manifest, ManifestWritten, StageFailed, StageStarted
from stagebus.pipeline.contract import stage
from stagebus.pipeline.definition import Pipeline
from stagebus.store import MemoryEventStore
from support import toy
from support.reference import LogLookups


@pytest.fixture
def store() -> MemoryEventStore:
    toy.CALLS.clear()
    toy.FAIL_BUDGET.clear()
    return MemoryEventStore()


def executor(store: MemoryEventStore, root: Path, factor: int = 2, reuse: bool = True) -> Executor:
    return Executor(store, ArtifactStore(root), toy.registry(factor), lookups=LogLookups(store) if reuse else None)


def events_of(store: MemoryEventStore, kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in (r.event() for r in store.read()) if isinstance(e, kind)]


def run_all(ex: Executor, run_id: str, refs: list[str]) -> None:
    for ref in refs:
        assert ex.execute(TaskRef(run_id, "load", ref), "toy") in (Outcome.COMPLETE, Outcome.REUSED)
        assert ex.execute(TaskRef(run_id, "double", ref), "toy") in (Outcome.COMPLETE, Outcome.REUSED)
    assert ex.execute(TaskRef(run_id, "total", "*"), "toy") in (Outcome.COMPLETE, Outcome.REUSED)


def test_stage_refuses_before_its_upstream_manifest_exists(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given a partition ingested but not yet loaded
    (ref,) = toy.publish(store, tmp_path, "r1", {"a": [{"n": 1}]})
    ex = executor(store, tmp_path / "art")
    # When "double" is delivered out of order, before "load"
    outcome = ex.execute(TaskRef("r1", "double", ref), "toy")
    # Then it is refused and nothing started
    assert outcome is Outcome.REFUSED
    assert events_of(store, StageStarted) == []


def test_gate_needs_upstream_of_the_same_run(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given run r1 fully loaded and run r2 only ingested
    (ref,) = toy.publish(store, tmp_path, "r1", {"a": [{"n": 1}]})
    toy.publish(store, tmp_path, "r2", {"a": [{"n": 1}]})
    ex = executor(store, tmp_path / "art")
    assert ex.execute(TaskRef("r1", "load", ref), "toy") is Outcome.COMPLETE
    # When double runs for r2, whose load has not run
    verdict = ex.gate.check(TaskRef("r2", "double", ref), toy.toy_pipeline())
    # Then r1's manifest does not open r2's gate
    assert not verdict.open and "upstream 'load'" in verdict.reason and "r2" in verdict.reason


def test_run_level_stage_waits_for_the_seal(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given an unsealed run whose partitions are done
    refs = toy.publish(store, tmp_path, "r1", {"a": [{"n": 1}]}, seal=False)
    ex = executor(store, tmp_path / "art")
    for ref in refs:
        ex.execute(TaskRef("r1", "load", ref), "toy")
        ex.execute(TaskRef("r1", "double", ref), "toy")
    # When the run-level stage is delivered, Then it is refused: more partitions may come
    assert ex.execute(TaskRef("r1", "total", "*"), "toy") is Outcome.REFUSED
    assert "not sealed" in ex.gate.check(TaskRef("r1", "total", "*"), toy.toy_pipeline()).reason


def test_five_concurrent_deliveries_write_one_manifest(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given one ready task
    (ref,) = toy.publish(store, tmp_path, "r1", {"a": [{"n": i, "act": "slow"} for i in range(3)]})
    ex = executor(store, tmp_path / "art", reuse=False)
    barrier = threading.Barrier(5)
    outcomes: list[Outcome] = []

    def deliver() -> None:
        barrier.wait()
        outcomes.append(ex.execute(TaskRef("r1", "load", ref), "toy"))

    # When it is delivered five times at once
    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then exactly one manifest exists and its artifacts are intact; the rest lost or deduped
    manifests = events_of(store, ManifestWritten)
    assert len(manifests) == 1
    assert outcomes.count(Outcome.COMPLETE) == 1
    assert set(outcomes) <= {Outcome.COMPLETE, Outcome.LOST, Outcome.DUPLICATE}
    arts = ArtifactStore(tmp_path / "art")
    assert all(arts.verify(a) for a in manifests[0].manifest.artifacts)
    assert arts.leftovers() == []


def test_identical_rerun_reuses_every_stage(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given run r1 completed
    refs = toy.publish(store, tmp_path, "r1", {"a": [{"n": 1}], "b": [{"n": 2}]})
    ex = executor(store, tmp_path / "art")
    run_all(ex, "r1", refs)
    calls = dict(toy.CALLS)
    # When run r2 has the same inputs and config
    toy.publish(store, tmp_path, "r2", {"a": [{"n": 1}], "b": [{"n": 2}]})
    run_all(ex, "r2", refs)
    # Then nothing executed again and every r2 manifest says reused from r1
    assert calls == toy.CALLS
    r2 = [e.manifest for e in events_of(store, ManifestWritten) if e.run_id == "r2"]
    assert len(r2) == 5 and all(m.status == "reused" and m.reused_from == "r1" for m in r2)


def test_config_change_reruns_that_stage_and_downstream_only(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given run r1 completed with factor 2
    refs = toy.publish(store, tmp_path, "r1", {"a": [{"n": 1}]})
    run_all(executor(store, tmp_path / "art", factor=2), "r1", refs)
    toy.CALLS.clear()
    # When r2 runs with factor 3
    toy.publish(store, tmp_path, "r2", {"a": [{"n": 1}]}, factor=3)
    run_all(executor(store, tmp_path / "art", factor=3), "r2", refs)
    # Then load is reused, double and total execute again
    assert toy.CALLS.get("load") is None and toy.CALLS["double"] == 1 and toy.CALLS["total"] == 1
    status = {e.stage: e.manifest.status for e in events_of(store, ManifestWritten) if e.run_id == "r2"}
    assert status == {"load": "reused", "double": "complete", "total": "complete"}


def test_same_inputs_give_byte_identical_artifacts(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given the same run executed into two fresh artifact roots without reuse
    refs = toy.publish(store, tmp_path, "r1", {"a": [{"n": 1}, {"n": 7}], "b": [{"n": "x"}]})
    other = MemoryEventStore()
    toy.publish(other, tmp_path, "r1", {"a": [{"n": 1}, {"n": 7}], "b": [{"n": "x"}]})
    run_all(executor(store, tmp_path / "one", reuse=False), "r1", refs)
    run_all(executor(other, tmp_path / "two", reuse=False), "r1", refs)
    # Then every manifest names the same output hashes and the files match byte for byte
    ones = {(e.stage, e.partition): e.manifest for e in events_of(store, ManifestWritten)}
    twos = {(e.stage, e.partition): e.manifest for e in events_of(other, ManifestWritten)}
    assert {k: m.output_hash for k, m in ones.items()} == {k: m.output_hash for k, m in twos.items()}
    for key, m in ones.items():
        for a, b in zip(m.artifacts, twos[key].artifacts, strict=True):
            assert (tmp_path / "one" / a.path).read_bytes() == (tmp_path / "two" / b.path).read_bytes()


def test_rejects_are_kept_and_counted(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given a partition with one bad record
    (ref,) = toy.publish(store, tmp_path, "r1", {"a": [{"n": 1}, {"n": "two"}, {"n": 3}]})
    ex = executor(store, tmp_path / "art")
    # When it loads
    ex.execute(TaskRef("r1", "load", ref), "toy")
    # Then the manifest counts it and the rejects artifact holds it with its row and error
    (m,) = [e.manifest for e in events_of(store, ManifestWritten)]
    assert (m.metrics.records_in, m.metrics.records_out, m.metrics.records_rejected) == (3, 2, 1)
    rejects = next(a for a in m.artifacts if a.name == "rejects")
    line = (tmp_path / "art" / rejects.path).read_text()
    assert '"index":1' in line and "n is not an integer" in line


def test_permanent_error_fails_finally_at_once(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given a poisoned partition
    (ref,) = toy.publish(store, tmp_path, "r1", {"a": [{"n": 1, "act": "poison"}]})
    ex = executor(store, tmp_path / "art")
    # When its first attempt runs (not the last by the retry policy)
    with pytest.raises(PermanentStageError):
        ex.execute(TaskRef("r1", "load", ref), "toy", attempt=1, final=False)
    # Then the failure is final already, and no temp file remains
    (failed,) = events_of(store, StageFailed)
    assert failed.final and failed.error_type == "PermanentStageError"
    assert ArtifactStore(tmp_path / "art").leftovers() == []


def test_transient_error_is_not_final_before_the_last_attempt(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given a flaky partition
    (ref,) = toy.publish(store, tmp_path, "r1", {"a": [{"n": 1, "act": "fail"}]})
    ex = executor(store, tmp_path / "art")
    # When attempt 1 of 3 fails
    with pytest.raises(ConnectionError):
        ex.execute(TaskRef("r1", "load", ref), "toy", attempt=1, final=False)
    # Then it is recorded as retryable
    (failed,) = events_of(store, StageFailed)
    assert not failed.final and failed.error_type == "ConnectionError"


def test_output_breaking_its_schema_is_a_contract_error(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given a stage that emits a record its schema refuses
    @stage("load", outputs={"numbers": toy.Number})
    def bad_load(ctx) -> None:  # type: ignore[no-untyped-def]
        ctx.emit("numbers", {"n": "not a number"})

    (ref,) = toy.publish(store, tmp_path, "r1", {"a": [{"n": 1}]})
    ex = Executor(store, ArtifactStore(tmp_path / "art"), toy.PipelineRegistry([Pipeline("toy", [bad_load])]))
    # When it runs, Then the contract error is final and names the field
    with pytest.raises(ContractError, match="numbers"):
        ex.execute(TaskRef("r1", "load", ref), "toy", final=False)
    assert events_of(store, StageFailed)[0].final


def test_a_stage_task_writes_no_view_and_the_view_is_the_event(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given a completed task (twice delivered)
    (ref,) = toy.publish(store, tmp_path, "r1", {"a": [{"n": 1}]})
    ex = executor(store, tmp_path / "art")
    ex.execute(TaskRef("r1", "load", ref), "toy")
    assert ex.execute(TaskRef("r1", "load", ref), "toy") is Outcome.DUPLICATE
    # Then no browsable manifest.json was written on the task path (views are written on demand)
    path = ex.artifacts.manifest_path("r1", "load", ref)
    assert not path.exists() and not (tmp_path / "art" / "runs").exists()
    # When the views are written from the log, Then the view is the event's manifest, once
    (event,) = events_of(store, ManifestWritten)
    assert ex.artifacts.materialize_many([event.manifest]) == 1
    assert msgspec.json.decode(path.read_bytes(), type=Manifest) == event.manifest
    assert ex.artifacts.materialize_many([event.manifest]) == 0  # already current: nothing rewritten


def retried_double(store: MemoryEventStore, tmp_path: Path, body) -> tuple[Executor, str]:  # type: ignore[no-untyped-def]
    """Run load, then double with ``body`` as its function: the first attempt must fail with
    ConnectionError, the retry complete. Returns the executor and the partition ref."""
    (ref,) = toy.publish(store, tmp_path, "r1", {"a": [{"n": i} for i in range(6)]})
    ex = executor(store, tmp_path / "art", reuse=False)
    ex.execute(TaskRef("r1", "load", ref), "toy")
    original = toy.double.fn
    toy.double.fn = body
    try:
        with pytest.raises(ConnectionError):
            ex.execute(TaskRef("r1", "double", ref), "toy", final=False)
        # When the task is retried
        assert ex.execute(TaskRef("r1", "double", ref), "toy", attempt=2) is Outcome.COMPLETE
    finally:
        toy.double.fn = original
    return ex, ref


def test_items_resume_skips_finished_items(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given double's chunk 1 of 3 fails once after chunk 0 committed
    state = {"failed": False}

    def flaky(ctx) -> None:  # type: ignore[no-untyped-def]
        records = list(ctx.read("load", "numbers"))
        for number in ctx.items(range(3), key=str):
            if number == 1 and not state["failed"]:
                state["failed"] = True
                raise ConnectionError("crash mid-way")
            for r in records[number * 2 : number * 2 + 2]:
                ctx.emit("numbers", {"n": r["n"] * 2})
            toy.CALLS[f"chunk-{number}"] = toy.CALLS.get(f"chunk-{number}", 0) + 1

    retried_double(store, tmp_path, flaky)
    # Then chunk 0 ran once, and the output is whole and in order
    assert toy.CALLS["chunk-0"] == 1 and toy.CALLS["chunk-1"] == 1
    m = next(e.manifest for e in events_of(store, ManifestWritten) if e.stage == "double")
    numbers = next(a for a in m.artifacts if a.name == "numbers")
    assert (tmp_path / "art" / numbers.path).read_text().split() == [f'{{"n":{2 * i}}}' for i in range(6)]


def test_items_resume_cuts_what_a_failed_item_half_wrote(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given double's chunk 1 writes one of its records to disk, then its attempt fails
    state = {"failed": False}

    def half_writing(ctx) -> None:  # type: ignore[no-untyped-def]
        records = list(ctx.read("load", "numbers"))
        for number in ctx.items(range(3), key=str):
            for r in records[number * 2 : number * 2 + 2]:
                ctx.emit("numbers", {"n": r["n"] * 2})
                if number == 1 and not state["failed"]:
                    ctx._pending["numbers"].sync()  # the half-written item reaches the disk
                    state["failed"] = True
                    raise ConnectionError("crash mid-item")

    ex, ref = retried_double(store, tmp_path, half_writing)
    # Then the output holds each record once, in order, its sha256 right, and the work dir is empty
    m = next(e.manifest for e in events_of(store, ManifestWritten) if e.stage == "double")
    numbers = next(a for a in m.artifacts if a.name == "numbers")
    assert (tmp_path / "art" / numbers.path).read_text().split() == [f'{{"n":{2 * i}}}' for i in range(6)]
    assert numbers.records == 6 and ex.artifacts.verify(numbers)
    assert [p.name for p in ex.artifacts.work_dir("r1", "double", ref).iterdir()] == []
