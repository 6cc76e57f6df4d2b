"""Fleet fault test 5: every stage message delivered twice (a middleware re-enqueues a copy of
each before it is processed); each task still gets exactly one manifest."""

from __future__ import annotations

import pytest

from support.fleet import Fleet, broker_outstanding, check_fleet, served, summary

pytestmark = [pytest.mark.chaos, pytest.mark.redis]

PARTITIONS = 200


def test_every_message_delivered_twice_gives_one_manifest_per_task(fleet: Fleet) -> None:
    # Given workers whose broker delivers every stage message twice, a relay, 200 partitions
    fleet.extra_env["STAGEBUS_FAULT_DELIVER_TWICE"] = "1"
    fleet.start_relay()
    fleet.start_worker()
    fleet.start_worker()
    refs = fleet.publish("r1", list(range(PARTITIONS)))

    # When the run drains
    drained = fleet.wait_until(served("r1"), timeout_s=45)
    # (the copies of the last tasks are still queued when serve is done: let them through)
    fleet.wait_until(lambda store: broker_outstanding(fleet) == 0, timeout_s=15)
    fleet.stop()

    # Then one manifest per task, and about as many deliveries absorbed as there were tasks
    report = check_fleet(fleet, {"r1": refs})
    assert report.manifests == PARTITIONS * 3 + 3
    assert report.duplicates_absorbed >= report.manifests
    print(summary("duplicates", partitions=report.partitions, manifests=report.manifests,
                  duplicates_absorbed=report.duplicates_absorbed,
                  concurrent_duplicate_starts=report.unfinished_attempts, drain_s=round(drained, 1)))

