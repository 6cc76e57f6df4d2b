"""The manifests projection: manifests of record, rollups, and reuse lookups."""

from __future__ import annotations

from collections.abc import Callable

from stagebus.projections import Projections

from .conftest import LogWriter

CatchUp = Callable[[], Projections]


def test_a_manifest_reads_back_exactly_as_the_event_carried_it(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a manifest written to the log
    log.open("r1")
    written = log.manifest("r1", "ingest", "airports/state=CA", records_in=7, duration_s=1.5)
    # When the projections catch up
    # Then the stored manifest equals the written one, field for field
    assert caught_up().manifest("r1", "ingest", "airports/state=CA") == written


def test_a_runs_manifests_come_in_log_order_and_filter_by_stage(log: LogWriter, caught_up: CatchUp) -> None:
    # Given two partitions' ingest and normalize manifests, interleaved
    log.open("r1")
    log.manifest("r1", "ingest", "a/2")
    log.manifest("r1", "ingest", "a/1")
    log.manifest("r1", "normalize", "a/2")
    projections = caught_up()
    # When listing them
    # Then they come in the order they were written, optionally one stage's only
    assert [(m.stage, m.partition) for m in projections.manifests("r1")] == [
        ("ingest", "a/2"), ("ingest", "a/1"), ("normalize", "a/2")]
    assert [m.partition for m in projections.manifests("r1", stage="ingest")] == ["a/2", "a/1"]


def test_rollups_sum_a_runs_manifests_per_stage(log: LogWriter, caught_up: CatchUp) -> None:
    # Given three ingest manifests, one of them reused
    log.open("r1")
    log.manifest("r1", "ingest", "a/1", records_in=10, records_rejected=1, duration_s=0.25)
    log.manifest("r1", "ingest", "a/2", records_in=20, records_rejected=2, duration_s=0.5)
    log.manifest("r1", "ingest", "a/3", status="reused", records_in=5, records_rejected=0, duration_s=0.0)
    # When rolling up
    (rollup,) = caught_up().rollups("r1")
    # Then counts, records and total duration add up
    assert (rollup.stage, rollup.manifests, rollup.complete, rollup.reused) == ("ingest", 3, 2, 1)
    assert (rollup.records_in, rollup.records_out, rollup.records_rejected) == (35, 32, 3)
    assert rollup.duration_s == 0.75


def test_find_reusable_returns_the_earliest_complete_manifest_of_the_same_inputs(
    log: LogWriter, caught_up: CatchUp
) -> None:
    # Given two runs that did the same work, the second of which also has a reused copy
    for run in ("r1", "r2"):
        log.open(run)
        log.manifest(run, "normalize", "a/1", input_hash="in-1", config_hash="cfg-1")
    log.open("r3")
    log.manifest("r3", "normalize", "a/1", status="reused", input_hash="in-1", config_hash="cfg-1", reused_from="r1")
    # When looking for a manifest to reuse
    found = caught_up().find_reusable("normalize", "a/1", "in-1", "cfg-1")
    # Then it is the first run's, which did the work
    assert found is not None and found.run_id == "r1"


def test_find_reusable_needs_the_same_input_and_config(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a manifest made from input in-1 with config cfg-1
    log.open("r1")
    log.manifest("r1", "normalize", "a/1", input_hash="in-1", config_hash="cfg-1")
    projections = caught_up()
    # When asking with another input or another config
    # Then nothing is reusable
    assert projections.find_reusable("normalize", "a/1", "in-2", "cfg-1") is None
    assert projections.find_reusable("normalize", "a/1", "in-1", "cfg-2") is None


def test_find_reusable_never_offers_a_reused_manifest(log: LogWriter, caught_up: CatchUp) -> None:
    # Given only a reused manifest for the inputs
    log.open("r1")
    log.manifest("r1", "normalize", "a/1", status="reused", input_hash="in-1", config_hash="cfg-1", reused_from="r0")
    # When looking for a manifest to reuse
    # Then there is none: a reuse must point at a run that did the work
    assert caught_up().find_reusable("normalize", "a/1", "in-1", "cfg-1") is None
