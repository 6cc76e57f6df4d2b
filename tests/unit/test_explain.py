"""The explain logic behind ``stagebus why``, on the in-memory log: facts for states no stage
task decides (seal, stop, abandonment, readiness), each naming the positions it rests on."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagebus.errors import InvalidInput
from stagebus.events import ManifestWritten, PipelineStopped, RunAbandoned
from stagebus.projections import Projections
from stagebus.projections.explain import explain
from stagebus.store import MemoryEventStore
from tests.support.history_events import manifest_for
from tests.support.toy import publish


def kinds(projections: Projections, ref: str = "a", **kw: str) -> dict[str | None, tuple[str, tuple[int, ...]]]:
    projections.catch_up()
    return {f.stage: (f.kind, f.positions) for f in explain(projections, "nums", ref, **kw).facts}


def test_an_unsealed_runs_run_level_stage_waits_on_seal(tmp_path: Path) -> None:
    # Given a run that is not sealed, whose partition stages are done
    store = MemoryEventStore()
    publish(store, tmp_path, "r1", {"a": [{"n": 1}]}, seal=False)
    for stage in ("load", "double"):
        store.append_one(ManifestWritten(run_id="r1", stage=stage, partition="nums/a",
                                         manifest=manifest_for("r1", stage, "nums/a")))
    facts = kinds(Projections(store))
    # Then load and double are executed, and total waits on the seal, citing the run's opening
    assert facts["load"][0] == facts["double"][0] == "executed"
    assert facts["total"] == ("waiting", (1,))
    assert facts[None][1] == (1, 2)  # ingested: RunOpened and PartitionIngested


def test_a_stopped_pipeline_and_an_abandoned_run_are_named_with_their_positions(tmp_path: Path) -> None:
    store = MemoryEventStore()
    publish(store, tmp_path, "r1", {"a": [{"n": 1}]})
    stopped = store.append_one(PipelineStopped(pipeline="toy", reason="maintenance")).position
    projections = Projections(store)
    projections.catch_up()
    facts = explain(projections, "nums", "a").facts
    stop = next(f for f in facts if f.kind == "stopped")
    assert stop.positions == (stopped,) and "maintenance" in stop.text
    assert next(f for f in facts if f.stage == "load").kind == "waiting"
    abandoned = store.append_one(RunAbandoned(run_id="r1", reason="gone")).position
    facts = kinds(projections)
    assert facts["load"][0] == "abandoned"
    projections.catch_up()
    assert any(f.kind == "abandoned" and f.positions == (abandoned,) and "gone" in f.text
               for f in explain(projections, "nums", "a").facts)


def test_a_ready_task_says_it_runs_next(tmp_path: Path) -> None:
    store = MemoryEventStore()
    publish(store, tmp_path, "r1", {"a": [{"n": 1}]})
    facts = kinds(Projections(store))
    assert facts["load"][0] == "waiting" and facts["double"][0] == "waiting"


def test_unknown_partitions_runs_and_stages_are_invalid_input(tmp_path: Path) -> None:
    store = MemoryEventStore()
    publish(store, tmp_path, "r1", {"a": [{"n": 1}]})
    publish(store, tmp_path, "r2", {"b": [{"n": 1}]})
    projections = Projections(store)
    projections.catch_up()
    for ref, kw in (("zzz", {}), ("a", {"run_id": "nope"}), ("a", {"run_id": "r2"}), ("a", {"stage": "nope"})):
        with pytest.raises(InvalidInput):
            explain(projections, "nums", ref, **kw)
