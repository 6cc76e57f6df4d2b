"""Embedded mode end to end on the toy pipeline: the in-process broker, worker threads, retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stagebus.actors.embedded import EmbeddedRunner
from stagebus.actors.reruns import check_subset, resume_run
from stagebus.errors import InvalidInput
from stagebus.events import StageFailed, StageStarted
from stagebus.projections.reader import Projections
from stagebus.store import SqliteEventStore
from support import toy


class Home:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = SqliteEventStore(root / "log.db")
        self.projections = Projections(self.store, root / "projections")

    def runner(self, factor: int = 2) -> EmbeddedRunner:
        return EmbeddedRunner(self.store, self.projections, self.root / "art", toy.registry(factor), workers=3)

    def events(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in (r.event() for r in self.store.read()) if isinstance(e, kind)]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    toy.CALLS.clear()
    toy.FAIL_BUDGET.clear()
    h = Home(tmp_path)
    yield h
    h.projections.close()
    h.store.close()


def parts(n: int = 4) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    return {f"p{i}": [{"n": i}, {"n": i + 1}] for i in range(n)}


def test_run_processes_every_stage_and_marks_partitions_valid(home: Home) -> None:
    # Given a sealed run of four partitions
    toy.publish(home.store, home.root, "r1", parts())
    # When the embedded runner runs until idle
    with home.runner() as runner:
        report = runner.run()
    # Then all 4 + 4 + 1 tasks completed and the ledger says valid
    assert report.ok and report.outcomes["complete"] == 9
    assert {e.status for e in home.projections.ledger()} == {"valid"}
    (total,) = home.projections.manifests("r1", "total")
    assert total.metrics.records_out == 1


def test_identical_rerun_runs_nothing_and_says_so(home: Home) -> None:
    # Given a completed run
    toy.publish(home.store, home.root, "r1", parts())
    with home.runner() as runner:
        runner.run()
        calls = dict(toy.CALLS)
        # When a second run publishes the same partitions with the same config
        toy.publish(home.store, home.root, "r2", parts())
        report = runner.run(["r2"])
    # Then every task was reused and no stage function was called
    assert report.outcomes == {"reused": 9} and calls == toy.CALLS


def test_transient_failure_retries_then_succeeds(home: Home) -> None:
    # Given a partition whose load fails once
    toy.publish(home.store, home.root, "r1", {"a": [{"n": 1, "act": "fail"}]})
    toy.FAIL_BUDGET["r1/load/nums/a"] = 1
    # When it runs
    with home.runner() as runner:
        report = runner.run()
    # Then the retry succeeded: one non-final failure, then a valid partition
    assert report.ok
    failures = home.events(StageFailed)
    assert len(failures) == 1 and not failures[0].final
    assert home.projections.partition("nums", "a").status == "valid"


def test_retries_exhausted_make_the_partition_invalid(home: Home) -> None:
    # Given a partition that always fails, and a healthy one
    toy.publish(home.store, home.root, "r1", {"bad": [{"n": 1, "act": "fail"}], "good": [{"n": 2}]})
    # When it runs
    with home.runner() as runner:
        report = runner.run()
    # Then it was tried 1 + max_retries (2) times, then failed finally with its reason
    assert not report.ok
    starts = [e for e in home.events(StageStarted) if e.partition == "nums/bad"]
    assert len(starts) == 3
    entry = home.projections.partition("nums", "bad")
    assert entry.status == "invalid" and "ConnectionError" in (entry.reason or "")
    # And the healthy partition's own stages finished (the run-level stage waits on the bad one)
    assert home.projections.manifest("r1", "double", "nums/good") is not None
    assert home.projections.manifest("r1", "total", "*") is None


def test_permanent_error_is_not_retried(home: Home) -> None:
    # Given a poisoned partition
    toy.publish(home.store, home.root, "r1", {"bad": [{"n": 1, "act": "poison"}]})
    # When it runs
    with home.runner() as runner:
        report = runner.run()
        dead = [m.actor_name for m in runner.broker.dead_letters]
    # Then one attempt only, final failure, dead-lettered by the broker
    assert dead == ["stage_load"]
    assert len(home.events(StageStarted)) == 1
    assert home.events(StageFailed)[0].final
    assert home.projections.partition("nums", "bad").status == "invalid"
    assert report.failed and report.failed[0][0].stage == "load"


def test_resume_from_reuses_earlier_stages_and_reruns_later_ones(home: Home) -> None:
    # Given a completed run
    toy.publish(home.store, home.root, "r1", parts(2))
    with home.runner() as runner:
        runner.run()
        toy.CALLS.clear()
        # When a new run resumes from "double"
        run = home.projections.run("r1")
        assert run is not None
        new = resume_run(home.store, run, toy.toy_pipeline(), "double")
        runner.run([new])
    # Then load was reused from r1 while double and total executed again
    statuses = {(m.stage, m.status) for m in home.projections.manifests(new)}
    assert statuses == {("load", "reused"), ("double", "complete"), ("total", "complete")}
    assert toy.CALLS.get("load") is None and toy.CALLS["double"] == 2
    resumed = home.projections.run(new)
    assert resumed is not None and resumed.parent_run_id == "r1"


def test_stage_subset_needs_its_upstream_done(home: Home) -> None:
    # Given a run not yet processed
    toy.publish(home.store, home.root, "r1", parts(2))
    home.projections.catch_up()
    run = home.projections.run("r1")
    assert run is not None
    # When only "double" is asked for, Then it is refused: load is outside and not done
    with pytest.raises(InvalidInput, match="'double' needs 'load'"):
        check_subset(run, toy.toy_pipeline(), {"double"})
    # And a subset that includes its upstream runs only those stages
    with home.runner() as runner:
        report = runner.run(["r1"], only_stages={"load", "double"})
    assert report.by_stage.keys() == {"load", "double"}
    assert home.projections.manifest("r1", "total", "*") is None


def test_an_abandoned_run_is_skipped_by_readiness_even_when_asked_for_by_id(home: Home) -> None:
    # Given two sealed runs, one abandoned
    from stagebus.actors.abandon import abandon_run
    from stagebus.actors.readiness import has_open_tasks, ready_tasks

    toy.publish(home.store, home.root, "r1", parts(2))
    toy.publish(home.store, home.root, "r2", parts(2), dataset="other")
    abandon_run(home.store, "r1", "gone")
    home.projections.catch_up()
    # Then readiness offers nothing of it, from its summary or its tasks
    run = home.projections.run("r1")
    assert run is not None and not has_open_tasks(run)
    assert ready_tasks(run, toy.registry().get("toy")).ready == []
    # And the runner, even when named that run, processes nothing of it, but the other run fully
    with home.runner() as runner:
        assert runner.run(["r1"]).outcomes == {}
        runner.run()
    assert not [e for e in home.events(StageStarted) if e.run_id == "r1"]
    assert {e.run_id for e in home.events(StageStarted)} == {"r2"}


def test_a_partition_s_next_stage_does_not_wait_behind_every_queued_task_of_the_stage_before(home: Home) -> None:
    # Given a run of 30 partitions and one worker thread
    toy.publish(home.store, home.root, "r1", parts(30))
    with EmbeddedRunner(home.store, home.projections, home.root / "art", toy.registry(), workers=1) as runner:
        assert runner.run().ok
    # Then some partition's "double" started before the last "load" did: stages are pipelined
    # (one FIFO queue for every stage ran all 30 loads first, measured hot transitions of seconds)
    starts = [(r.position, r.event()) for r in home.store.read()]
    loads = [p for p, e in starts if isinstance(e, StageStarted) and e.stage == "load"]
    doubles = [p for p, e in starts if isinstance(e, StageStarted) and e.stage == "double"]
    assert min(doubles) < max(loads)
