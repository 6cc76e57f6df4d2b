"""The partition ledger's rules, one behaviour per test (see stagebus.projections.ledger)."""

from __future__ import annotations

from collections.abc import Callable

from stagebus.events import PlannedStage
from stagebus.projections import Projections

from .conftest import PARTITION_STAGES, PLAN, LogWriter

CatchUp = Callable[[], Projections]


def test_a_partition_the_log_never_mentioned_reads_as_pending(caught_up: CatchUp) -> None:
    # Given an empty log
    # When the ledger is asked about a partition by name
    entry = caught_up().partition("airports", "state=CA")
    # Then it is pending, with no run and no attempts
    assert (entry.status, entry.run_id, entry.attempts) == ("pending", None, 0)


def test_an_ingested_partition_is_pending_with_one_attempt(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run that ingested a partition
    log.open("r1")
    log.ingest("r1", "airports/state=CA")
    # When the ledger catches up
    entry = caught_up().partition("airports", "state=CA")
    # Then the row is pending, names the run and counts one attempt
    assert (entry.status, entry.run_id, entry.attempts, entry.reason) == ("pending", "r1", 1, None)


def test_attempts_count_the_runs_that_ingested_the_partition(log: LogWriter, caught_up: CatchUp) -> None:
    # Given three runs that each ingested the same partition
    for run in ("r1", "r2", "r3"):
        log.open(run)
        log.ingest(run, "airports/state=CA")
    # When the ledger catches up
    entry = caught_up().partition("airports", "state=CA")
    # Then attempts is three and the row names the latest ingesting run
    assert (entry.attempts, entry.run_id) == (3, "r3")


def test_a_partition_with_every_stage_manifest_is_valid(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run whose partition has every partition-stage and run-stage manifest
    log.full_run("r1", ("airports/state=CA",))
    # When the ledger catches up
    entry = caught_up().partition("airports", "state=CA")
    # Then the partition is valid under that run
    assert (entry.status, entry.run_id, entry.reason) == ("valid", "r1", None)


def test_partition_stages_alone_do_not_make_a_partition_valid(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run whose partition finished its partition stages, but no run-level stage ran yet
    log.open("r1")
    log.ingest("r1", "airports/state=CA")
    log.partition_stages("r1", "airports/state=CA")
    # When the ledger catches up
    # Then the partition is still pending
    assert caught_up().partition("airports", "state=CA").status == "pending"


def test_a_run_level_manifest_counts_only_under_the_run_scope_ref(log: LogWriter, caught_up: CatchUp) -> None:
    # Given run-level stage manifests written under a partition ref instead of "*"
    log.open("r1")
    log.ingest("r1", "airports/state=CA")
    log.partition_stages("r1", "airports/state=CA")
    for stage in ("link", "index", "serve"):
        log.manifest("r1", stage, "airports/state=CA")
    # When the ledger catches up
    # Then they complete nothing: the partition stays pending
    assert caught_up().partition("airports", "state=CA").status == "pending"


def test_the_last_run_stage_validates_every_complete_partition_of_the_run(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run with two partitions, only one of which finished its partition stages
    log.open("r1")
    for ref in ("airports/state=CA", "airports/state=NY"):
        log.ingest("r1", ref)
    log.partition_stages("r1", "airports/state=CA")
    # When the run-level stages complete
    log.run_stages("r1")
    ledger = {e.partition: e.status for e in caught_up().ledger()}
    # Then the finished partition is valid and the other still pending
    assert ledger == {"state=CA": "valid", "state=NY": "pending"}


def test_reused_manifests_count_as_complete(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run whose every manifest says "reused"
    log.open("r1")
    log.ingest("r1", "airports/state=CA")
    log.partition_stages("r1", "airports/state=CA", status="reused")
    log.run_stages("r1", status="reused")
    # When the ledger catches up
    # Then the partition is valid
    assert caught_up().partition("airports", "state=CA").status == "valid"


def test_a_run_of_a_stage_subset_still_needs_every_stage_of_the_plan(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run opened for only the partition stages, which all completed
    log.open("r1", stages=PARTITION_STAGES)
    log.ingest("r1", "airports/state=CA")
    log.partition_stages("r1", "airports/state=CA")
    # When the ledger catches up
    # Then the partition is not valid: the plan's run-level stages have no manifest
    assert caught_up().partition("airports", "state=CA").status == "pending"


def test_a_final_stage_failure_makes_the_partition_invalid(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a partition whose normalize stage failed for good
    log.open("r1")
    log.ingest("r1", "airports/state=CA")
    log.manifest("r1", "ingest", "airports/state=CA")
    log.failed("r1", "normalize", "airports/state=CA", error_type="SchemaError", message="no column iata")
    # When the ledger catches up
    entry = caught_up().partition("airports", "state=CA")
    # Then it is invalid, with the reason "<stage>: <error_type>: <message>"
    assert (entry.status, entry.run_id) == ("invalid", "r1")
    assert entry.reason == "normalize: SchemaError: no column iata"


def test_a_failure_that_will_be_retried_changes_nothing(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a partition whose stage failed an attempt that will be retried
    log.open("r1")
    log.ingest("r1", "airports/state=CA")
    log.failed("r1", "ingest", "airports/state=CA", final=False)
    # When the ledger catches up
    # Then it is still pending
    assert caught_up().partition("airports", "state=CA").status == "pending"


def test_a_final_run_level_failure_invalidates_every_partition_of_the_run(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run with two complete partitions whose link stage then failed for good
    refs = ("airports/state=CA", "airports/state=NY")
    log.open("r1")
    for ref in refs:
        log.ingest("r1", ref)
        log.partition_stages("r1", ref)
    log.failed("r1", "link", "*", error_type="LinkError", message="dangling id")
    # When the ledger catches up
    ledger = caught_up().ledger()
    # Then every partition of the run is invalid with the run-level reason
    assert [(e.status, e.reason) for e in ledger] == [("invalid", "link: LinkError: dangling id")] * 2


def test_a_partition_joining_a_run_after_its_run_level_failure_is_invalid(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run that failed at run level before a late partition was ingested
    log.open("r1")
    log.failed("r1", "link", "*")
    log.ingest("r1", "airports/state=TX")
    # When the ledger catches up
    # Then the late partition is invalid too
    assert caught_up().partition("airports", "state=TX").status == "invalid"


def test_a_newer_runs_verdict_replaces_an_older_one(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a partition valid in r1, then invalid in the newer run r2
    log.full_run("r1", ("airports/state=CA",))
    log.open("r2")
    log.ingest("r2", "airports/state=CA")
    log.failed("r2", "ingest", "airports/state=CA")
    # When the ledger catches up
    entry = caught_up().partition("airports", "state=CA")
    # Then the row shows r2's verdict
    assert (entry.status, entry.run_id, entry.attempts) == ("invalid", "r2", 2)


def test_an_older_run_deciding_later_does_not_override_a_newer_runs_verdict(
    log: LogWriter, caught_up: CatchUp
) -> None:
    # Given r1 opened before r2, r2 decided the partition valid first
    log.open("r1")
    log.ingest("r1", "airports/state=CA")
    log.full_run("r2", ("airports/state=CA",))
    # When the older run r1 decides afterwards (it fails)
    log.failed("r1", "ingest", "airports/state=CA")
    entry = caught_up().partition("airports", "state=CA")
    # Then the row still shows the newer run's verdict
    assert (entry.status, entry.run_id) == ("valid", "r2")


def test_a_row_keeps_its_verdict_while_the_newest_run_has_none(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a partition valid in r1 and re-ingested by r2, which is still running
    log.full_run("r1", ("airports/state=CA",))
    log.open("r2")
    log.ingest("r2", "airports/state=CA")
    log.manifest("r2", "ingest", "airports/state=CA")
    # When the ledger catches up
    entry = caught_up().partition("airports", "state=CA")
    # Then it keeps r1's verdict, and counts r2's attempt
    assert (entry.status, entry.run_id, entry.attempts) == ("valid", "r1", 2)


def test_a_resume_run_with_reused_manifests_becomes_authoritative(log: LogWriter, caught_up: CatchUp) -> None:
    # Given r1 failed at link, and r2 resumed from link reusing r1's partition-stage outputs
    ref = "airports/state=CA"
    log.open("r1")
    log.ingest("r1", ref)
    log.partition_stages("r1", ref)
    log.failed("r1", "link", "*")
    log.open("r2", parent_run_id="r1", resume_from="link")
    for stage in PARTITION_STAGES:
        log.manifest("r2", stage, ref, status="reused", reused_from="r1")
    log.run_stages("r2")
    # When the ledger catches up
    entry = caught_up().partition("airports", "state=CA")
    # Then the partition is valid under the resume run
    assert (entry.status, entry.run_id, entry.reason) == ("valid", "r2", None)


def test_a_verdict_is_decided_once_per_run(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a partition that failed for good in ingest, and a late duplicate that then wrote every manifest
    ref = "airports/state=CA"
    log.open("r1")
    log.ingest("r1", ref)
    log.failed("r1", "ingest", ref)
    log.partition_stages("r1", ref)
    log.run_stages("r1")
    # When the ledger catches up
    # Then the first verdict in log order stands
    assert caught_up().partition("airports", "state=CA").status == "invalid"


def test_manifests_of_stages_outside_the_plan_complete_nothing(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a one-stage plan and a manifest of another stage
    log.open("r1", plan=(PlannedStage(name="ingest"),))
    log.ingest("r1", "airports/state=CA")
    log.manifest("r1", "normalize", "airports/state=CA")
    # When the ledger catches up
    # Then the partition is still pending
    assert caught_up().partition("airports", "state=CA").status == "pending"


def test_a_run_with_an_empty_plan_never_reaches_a_verdict(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run whose plan names no stage
    log.open("r1", plan=())
    log.ingest("r1", "airports/state=CA")
    # When the ledger catches up
    # Then nothing vouches for the partition: it stays pending
    assert caught_up().partition("airports", "state=CA").status == "pending"


def test_events_of_a_run_never_opened_decide_nothing(log: LogWriter, caught_up: CatchUp) -> None:
    # Given manifests and a failure for a run with no RunOpened
    log.ingest("ghost", "airports/state=CA")
    log.partition_stages("ghost", "airports/state=CA")
    log.failed("ghost", "link", "*")
    # When the ledger catches up
    entry = caught_up().partition("airports", "state=CA")
    # Then the ingestion counts, the rest decides nothing
    assert (entry.status, entry.attempts) == ("pending", 1)


def test_updated_at_comes_from_the_log_not_the_clock(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run completing a partition (the test log stamps 000001, 000002, ...)
    log.full_run("r1", ("airports/state=CA",))
    # When the ledger catches up
    entry = caught_up().partition("airports", "state=CA")
    # Then updated_at is the recorded_at of its own verdict: its last stage manifest (event 6 of 9;
    # the run-level stages after it vouch for every partition of the run at once)
    assert entry.updated_at == "2026-01-01T00:00:00.000006Z"


def test_the_ledger_filters_by_dataset_status_and_run(log: LogWriter, caught_up: CatchUp) -> None:
    # Given valid airports from r1 and a failed runways partition from r2
    log.full_run("r1", ("airports/state=CA", "airports/state=NY"))
    log.open("r2")
    log.ingest("r2", "runways/state=CA")
    log.failed("r2", "ingest", "runways/state=CA")
    projections = caught_up()
    # When filtering
    # Then each filter narrows the rows, ordered by dataset and partition
    assert [e.partition for e in projections.ledger(dataset="airports")] == ["state=CA", "state=NY"]
    assert [e.dataset for e in projections.ledger(status="invalid")] == ["runways"]
    assert [e.dataset for e in projections.ledger(run_id="r2")] == ["runways"]
    assert projections.ledger(dataset="airports", status="invalid") == []


def test_plan_fixture_has_partition_and_run_stages() -> None:
    # Given the plan the tests use
    # Then it has the reference pipeline's shape: three partition stages, then three run-level ones
    assert [s.scope for s in PLAN] == ["partition"] * 3 + ["run"] * 3


def test_each_partition_of_a_run_keeps_its_own_verdict_time(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run whose two partitions finish their stages at different times, then its run stages
    log.open("r1")
    log.ingest("r1", "airports/state=CA")
    log.ingest("r1", "airports/state=NY")
    log.partition_stages("r1", "airports/state=CA")  # events 4-6
    log.partition_stages("r1", "airports/state=NY")  # events 7-9
    log.run_stages("r1")  # events 10-12
    # When the ledger catches up
    ledger = {e.partition: e.updated_at for e in caught_up().ledger()}
    # Then each partition shows the time of its own last manifest, not the serve manifest's
    assert ledger == {"state=CA": "2026-01-01T00:00:00.000006Z", "state=NY": "2026-01-01T00:00:00.000009Z"}


def test_a_run_level_failure_stamps_its_own_time_on_every_partition(log: LogWriter, caught_up: CatchUp) -> None:
    # Given two complete partitions of a run whose link stage then fails for good (event 10)
    log.open("r1")
    for ref in ("airports/state=CA", "airports/state=NY"):
        log.ingest("r1", ref)
    for ref in ("airports/state=CA", "airports/state=NY"):
        log.partition_stages("r1", ref)
    log.failed("r1", "link", "*")
    # Then the failure, which concerns them all, is their verdict time
    assert {e.updated_at for e in caught_up().ledger()} == {"2026-01-01T00:00:00.000010Z"}


def test_records_and_rejected_come_from_the_verdict_runs_manifests(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a valid partition whose ingest read 50 rows and whose three stages rejected 2, 3 and 4
    ref = "airports/state=CA"
    log.open("r1")
    log.ingest("r1", ref)
    for stage, records_in, rejected in (("ingest", 50, 2), ("normalize", 48, 3), ("extract", 45, 4)):
        log.manifest("r1", stage, ref, records_in=records_in, records_rejected=rejected)
    log.run_stages("r1")
    # When the ledger catches up
    entry = caught_up().partition("airports", "state=CA")
    # Then records is the root stage's records_in and rejected the sum over its own manifests
    assert (entry.status, entry.records, entry.rejected) == ("valid", 50, 9)


def test_records_and_rejected_are_null_while_no_run_has_a_verdict(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a partition ingested and half processed, without a verdict
    log.open("r1")
    log.ingest("r1", "airports/state=CA")
    log.manifest("r1", "ingest", "airports/state=CA")
    # Then its counts are unknown
    entry = caught_up().partition("airports", "state=CA")
    assert (entry.status, entry.records, entry.rejected) == ("pending", None, None)


def test_an_invalid_partition_counts_what_its_run_did_before_failing(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a partition whose ingest read 10 rows rejecting 1, then normalize failed for good
    log.open("r1")
    log.ingest("r1", "airports/state=CA")
    log.manifest("r1", "ingest", "airports/state=CA", records_in=10, records_rejected=1)
    log.failed("r1", "normalize", "airports/state=CA")
    # Then the invalid row counts ingest's records and rejects
    entry = caught_up().partition("airports", "state=CA")
    assert (entry.status, entry.records, entry.rejected) == ("invalid", 10, 1)


def test_a_row_keeps_the_counts_of_the_run_whose_verdict_it_shows(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a partition valid in r1 (10 rows), re-ingested by r2 which read 99 rows and is still running
    log.full_run("r1", ("airports/state=CA",))
    log.open("r2")
    log.ingest("r2", "airports/state=CA")
    log.manifest("r2", "ingest", "airports/state=CA", records_in=99)
    # Then the row still shows r1 and r1's counts
    entry = caught_up().partition("airports", "state=CA")
    assert (entry.run_id, entry.records, entry.rejected) == ("r1", 10, 3)


def test_the_ledger_as_of_a_position_is_the_ledger_then(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a partition valid in r1 (positions 1-9), then invalid in r2 (positions 10-12)
    log.full_run("r1", ("airports/state=CA",))
    log.open("r2")
    log.ingest("r2", "airports/state=CA")
    log.failed("r2", "ingest", "airports/state=CA")
    projections = caught_up()
    # When read as of several positions
    # Then each shows the row as it stood once that event was applied
    assert projections.ledger_as_of(0) == []
    assert [(e.status, e.run_id, e.attempts) for e in projections.ledger_as_of(2)] == [("pending", "r1", 1)]
    assert [(e.status, e.run_id, e.attempts) for e in projections.ledger_as_of(9)] == [("valid", "r1", 1)]
    assert [(e.status, e.run_id, e.attempts) for e in projections.ledger_as_of(11)] == [("valid", "r1", 2)]
    assert projections.ledger_as_of(12) == projections.ledger()


def test_changes_list_valid_replaced_and_invalid_in_log_order(log: LogWriter, caught_up: CatchUp) -> None:
    # Given CA valid in r1, valid again in r2, then invalid in r3; and NY valid in r2
    log.full_run("r1", ("airports/state=CA",))
    log.full_run("r2", ("airports/state=CA", "airports/state=NY"))
    log.open("r3")
    log.ingest("r3", "airports/state=CA")
    log.failed("r3", "ingest", "airports/state=CA")
    projections = caught_up()
    # When asked for the changes since the start, and since the first one
    changes = projections.changes("airports", after=0)
    # Then they come in log order, each with its position, and `after` skips what was seen
    assert [(c.partition, c.change, c.run_id) for c in changes] == [
        ("state=CA", "valid", "r1"), ("state=CA", "replaced", "r2"), ("state=NY", "valid", "r2"),
        ("state=CA", "invalid", "r3"),
    ]
    assert [c.position for c in changes] == sorted(c.position for c in changes)
    assert projections.changes("airports", after=changes[0].position) == changes[1:]
    assert projections.changes("runways", after=0) == []
