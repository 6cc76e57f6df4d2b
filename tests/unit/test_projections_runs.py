"""The runs projection (run state, stage tasks, per-stage summaries) and pipeline lifecycle."""

from __future__ import annotations

from collections.abc import Callable

from stagebus.events import PipelineDefined, PipelineDeleted, PipelineStarted, PipelineStopped, RunAbandoned
from stagebus.projections import Projections
from stagebus.store import MemoryEventStore

from .conftest import PARTITION_STAGES, PLAN, LogWriter

CatchUp = Callable[[], Projections]


def test_a_run_carries_its_plan_lineage_and_stage_subset(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a resume run of a stage subset
    log.open("r2", parent_run_id="r1", resume_from="link", stages=("link", "index", "serve"))
    # When reading it
    run = caught_up().run("r2")
    # Then it shows what RunOpened said
    assert run is not None
    assert (run.pipeline, run.plan, run.stages) == ("reference", PLAN, ("link", "index", "serve"))
    assert (run.parent_run_id, run.resume_from) == ("r1", "link")


def test_an_unknown_run_reads_as_none(caught_up: CatchUp) -> None:
    # Given an empty log
    # When reading a run
    # Then there is none
    assert caught_up().run("nope") is None


def test_a_run_lists_its_ingested_partitions_in_log_order(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run that ingested two partitions
    log.open("r1")
    log.ingest("r1", "b/2")
    log.ingest("r1", "a/1")
    projections = caught_up()
    # When reading the run and its ingested partitions
    run = projections.run("r1")
    ingested = projections.ingested("r1")
    # Then both come in log order, the ingested ones with uri, hash and metadata
    assert run is not None and run.partitions == ("b/2", "a/1")
    assert [(p.dataset, p.partition, p.metadata) for p in ingested] == [
        ("b", "2", {"source": "test"}), ("a", "1", {"source": "test"})]


def test_a_run_is_unsealed_until_the_producer_seals_it(log: LogWriter, caught_up: CatchUp) -> None:
    # Given an open run
    log.open("r1")
    log.ingest("r1", "a/1")
    projections = caught_up()
    before = projections.run("r1")
    # When the producer seals it
    log.seal("r1", ("a/1",))
    after = caught_up().run("r1")
    # Then it is sealed with the sealed partition refs
    assert before is not None and (before.sealed, before.sealed_partitions) == (False, None)
    assert after is not None and (after.sealed, after.sealed_partitions) == (True, ("a/1",))


def test_a_started_task_is_running_with_its_attempt_and_worker(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a started stage task
    log.open("r1")
    log.started("r1", "ingest", "a/1", attempt=1, worker="host:1:2")
    # When reading the run
    run = caught_up().run("r1")
    # Then the task is running
    assert run is not None
    task = run.tasks[("ingest", "a/1")]
    assert (task.status, task.attempts, task.worker) == ("running", 1, "host:1:2")


def test_a_failed_attempt_that_will_be_retried_is_retrying(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a task whose first attempt failed, not finally
    log.open("r1")
    log.started("r1", "ingest", "a/1")
    log.failed("r1", "ingest", "a/1", final=False, error_type="IOError", message="reset")
    # When reading the task
    run = caught_up().run("r1")
    # Then it is retrying and shows the error
    assert run is not None
    task = run.tasks[("ingest", "a/1")]
    assert (task.status, task.last_error) == ("retrying", "IOError: reset")


def test_a_manifest_completes_a_task_for_good(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a completed task and then a late duplicate's start
    log.open("r1")
    log.started("r1", "ingest", "a/1")
    log.manifest("r1", "ingest", "a/1", duration_s=2.0)
    log.started("r1", "ingest", "a/1", attempt=2, worker="late")
    # When reading the task
    run = caught_up().run("r1")
    # Then it stays complete, with the manifest's worker and metrics, and counts both attempts
    assert run is not None
    task = run.tasks[("ingest", "a/1")]
    assert (task.status, task.worker, task.attempts, task.duration_s) == ("complete", "w1", 2, 2.0)


def test_a_final_failure_is_not_undone_by_a_late_start(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a task that failed for good, then a late duplicate's start
    log.open("r1")
    log.started("r1", "ingest", "a/1")
    log.failed("r1", "ingest", "a/1", final=True)
    log.started("r1", "ingest", "a/1", attempt=2)
    # When reading the task
    run = caught_up().run("r1")
    # Then it stays failed
    assert run is not None and run.tasks[("ingest", "a/1")].status == "failed"


def test_a_manifest_after_a_final_failure_completes_the_task(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a task that failed for good, then a duplicate delivery that finished
    log.open("r1")
    log.failed("r1", "ingest", "a/1", final=True)
    log.manifest("r1", "ingest", "a/1")
    # When reading the task
    run = caught_up().run("r1")
    # Then the manifest of record wins
    assert run is not None and run.tasks[("ingest", "a/1")].status == "complete"


def test_stage_summaries_count_tasks_against_expected_ones(log: LogWriter, caught_up: CatchUp) -> None:
    # Given three ingested partitions: one ingested, one running, one failed; nothing run-level yet
    log.open("r1")
    for ref in ("a/1", "a/2", "a/3"):
        log.ingest("r1", ref)
    log.manifest("r1", "ingest", "a/1", duration_s=1.0)
    log.started("r1", "ingest", "a/2")
    log.failed("r1", "ingest", "a/3")
    # When summarising the run's stages
    run = caught_up().run("r1")
    assert run is not None
    summary = {s.stage: s for s in run.stage_summaries}
    ingest, link = summary["ingest"], summary["link"]
    # Then counts add up to the expected tasks, and the error rate is failed over finished
    assert (ingest.expected, ingest.pending, ingest.running, ingest.complete, ingest.failed) == (3, 0, 1, 1, 1)
    assert ingest.error_rate == 0.5
    assert (ingest.latency_mean_s, ingest.latency_max_s) == (1.0, 1.0)
    assert (link.expected, link.pending) == (1, 1)


def test_stage_summaries_mark_the_stages_a_subset_run_selected(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run of the partition stages only
    log.open("r1", stages=PARTITION_STAGES)
    # When summarising
    run = caught_up().run("r1")
    # Then only those stages are selected
    assert run is not None
    assert [s.selected for s in run.stage_summaries] == [True] * 3 + [False] * 3


def test_last_activity_is_the_runs_newest_event(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run whose last event is a start (the test log stamps 000001, 000002, ...)
    log.open("r1")
    log.ingest("r1", "a/1")
    log.started("r1", "ingest", "a/1")
    # When reading it
    run = caught_up().run("r1")
    # Then last_activity is that event's recorded_at
    assert run is not None and run.last_activity == "2026-01-01T00:00:00.000003Z"


def test_runs_lists_every_run_in_opening_order(log: LogWriter, caught_up: CatchUp) -> None:
    # Given three runs
    for run in ("r2", "r1", "r3"):
        log.open(run)
    # When listing runs
    # Then they come in the order they were opened
    assert [r.run_id for r in caught_up().runs()] == ["r2", "r1", "r3"]


def test_a_pipeline_is_active_once_defined_and_follows_stop_and_start(
    store: MemoryEventStore, caught_up: CatchUp
) -> None:
    # Given a defined pipeline that was stopped
    store.append_one(PipelineDefined(pipeline="reference", version="2", stages=PLAN))
    store.append_one(PipelineStopped(pipeline="reference", reason="maintenance"))
    projections = caught_up()
    stopped = projections.pipeline("reference")
    # When it is started again
    store.append_one(PipelineStarted(pipeline="reference"))
    # Then its status follows, and it keeps its version and plan
    assert (stopped.status, stopped.reason, stopped.version) == ("stopped", "maintenance", "2")
    assert caught_up().pipeline_status("reference") == "active"
    assert projections.pipeline("reference").plan == PLAN


def test_a_deleted_pipeline_stays_deleted(store: MemoryEventStore, caught_up: CatchUp) -> None:
    # Given a deleted pipeline
    store.append_one(PipelineDefined(pipeline="reference", version="1", stages=PLAN))
    store.append_one(PipelineDeleted(pipeline="reference"))
    # When someone starts or redefines it
    store.append_one(PipelineStarted(pipeline="reference"))
    store.append_one(PipelineDefined(pipeline="reference", version="2", stages=PLAN))
    # Then it stays deleted, at its old version
    state = caught_up().pipeline("reference")
    assert (state.status, state.version) == ("deleted", "1")


def test_a_pipeline_the_log_never_mentioned_reads_as_active(caught_up: CatchUp) -> None:
    # Given an empty log
    # When asking for a pipeline's status
    # Then it is active: a producer may open runs of a pipeline nobody defined
    assert caught_up().pipeline_status("adhoc") == "active"


def open_ids(projections: Projections) -> list[str]:
    return [info.run_id for info in projections.open_runs()]


def test_open_runs_are_those_with_work_left_and_finished_ones_are_never_read(
        log: LogWriter, caught_up: CatchUp) -> None:
    # Given a finished run, an abandoned one, one half done, one whose partition failed for good,
    # and one with only some stages selected (a resume), finished
    log.full_run("done", ("a/1", "a/2"))
    log.open("gone")
    log.ingest("gone", "a/1")
    log.store.append_one(RunAbandoned(run_id="gone", reason="test"))
    log.open("half")
    for ref in ("a/1", "a/2"):
        log.ingest("half", ref)
    log.seal("half", ("a/1", "a/2"))
    log.partition_stages("half", "a/1")
    log.open("resumed", stages=("link", "index", "serve"))
    log.ingest("resumed", "a/1")
    log.run_stages("resumed")
    # Then only the half-done run is open
    projections = caught_up()
    assert open_ids(projections) == ["half"]
    # And it stays open while a task retries, and leaves once its last task is done
    log.partition_stages("half", "a/2")
    log.failed("half", "link", "*", final=False)
    assert open_ids(caught_up()) == ["half"]
    log.run_stages("half")
    assert open_ids(caught_up()) == []
    # And a duplicate manifest or a late start of a finished task changes nothing
    log.manifest("half", "serve", "*")
    log.started("half", "ingest", "a/1", attempt=2)
    assert open_ids(caught_up()) == []


def test_open_runs_count_partitions_ingested_before_their_run_opened_and_after_its_tasks_finished(
        log: LogWriter, caught_up: CatchUp) -> None:
    # Given a partition-stage-only run whose partition arrives before its RunOpened
    plan = tuple(p for p in PLAN if p.scope != "run")
    log.ingest("early", "a/1")
    log.open("early", plan=plan)
    log.partition_stages("early", "a/1")
    assert open_ids(caught_up()) == []
    # When another partition arrives after every task of the first finished
    log.ingest("early", "a/2")
    # Then the run is open again for it
    assert open_ids(caught_up()) == ["early"]


def test_a_final_failure_finishes_its_task_and_blocked_downstream_keeps_the_run_listed(
        log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run whose only partition failed for good at normalize
    log.open("r1")
    log.ingest("r1", "a/1")
    log.seal("r1", ("a/1",))
    log.manifest("r1", "ingest", "a/1")
    log.failed("r1", "normalize", "a/1", final=True)
    projections = caught_up()
    # Then it is listed (extract and the run stages never got a task), and readiness judges it
    (info,) = projections.open_runs()
    assert info.run_id == "r1"
    assert [(s.stage, s.failed) for s in info.stage_summaries if s.failed] == [("normalize", 1)]
