"""An abandoned run in the projections: ledger rows not pending, earlier verdicts untouched, runs marked."""

from __future__ import annotations

from collections.abc import Callable

from stagebus.events import RunAbandoned, decode, encode
from stagebus.projections import Projections

from .conftest import LogWriter

CatchUp = Callable[[], Projections]
CA = "airports/state=CA"


def test_an_abandoned_runs_undecided_partition_is_invalid_with_the_reason(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a run that ingested a partition and was then abandoned
    log.open("r1")
    log.ingest("r1", CA)
    log.store.append_one(RunAbandoned(run_id="r1", reason="producer retired"))
    # Then the row is not pending: invalid, naming the run and the reason; the run is marked
    projections = caught_up()
    entry = projections.partition("airports", "state=CA")
    assert (entry.status, entry.run_id, entry.reason) == ("invalid", "r1", "run r1 abandoned: producer retired")
    run = projections.run("r1")
    assert run is not None and run.abandoned and run.abandon_reason == "producer retired"


def test_abandoning_a_newer_run_keeps_an_older_runs_valid_verdict(log: LogWriter, caught_up: CatchUp) -> None:
    # Given a partition valid in r1, ingested again by r2, which is abandoned
    log.full_run("r1", (CA,))
    log.open("r2")
    log.ingest("r2", CA)
    log.store.append_one(RunAbandoned(run_id="r2"))
    # Then the row still shows r1's verdict
    entry = caught_up().partition("airports", "state=CA")
    assert (entry.status, entry.run_id) == ("valid", "r1")


def test_an_abandoned_run_decides_nothing_and_a_newer_run_takes_over(log: LogWriter, caught_up: CatchUp) -> None:
    # Given an abandoned run whose late manifests complete every stage
    log.open("r1")
    log.ingest("r1", CA)
    log.store.append_one(RunAbandoned(run_id="r1"))
    log.seal("r1", (CA,))
    log.partition_stages("r1", CA)
    log.run_stages("r1")
    # Then it is still not valid
    assert caught_up().partition("airports", "state=CA").status == "invalid"
    # When a new run ingests the partition, Then the row is pending in that run
    log.open("r2")
    log.ingest("r2", CA)
    entry = caught_up().partition("airports", "state=CA")
    assert (entry.status, entry.run_id, entry.reason) == ("pending", "r2", None)


def test_a_run_abandoned_payload_without_a_reason_decodes_with_the_default() -> None:
    # Given the smallest payload of the new type (as an older writer of it could store)
    event = decode(b'{"type": "run_abandoned", "event_id": "e1", "run_id": "r1"}')
    # Then it decodes with an empty reason, and round-trips
    assert isinstance(event, RunAbandoned) and event.reason == "" and event.key == "abandon/r1"
    assert decode(encode(event)) == event
