"""Fleet fault test 6: poison input. A partition whose records make ``ingest`` raise on every
attempt ends ``invalid`` with the reason once its retries are spent, and its message is
dead-lettered; one raising a permanent error fails at once. Every other partition is valid.

Each poisoned partition is published in a run of its own: a run-level stage (link, index,
serve) needs every partition of its run, so a poisoned partition holds its whole run back.
"""

from __future__ import annotations

import collections
import json

import pytest
import redis

from stagebus.events import StageStarted
from support import chain6
from support.fleet import Fleet, broker_outstanding, check_fleet, served, summary

pytestmark = [pytest.mark.chaos, pytest.mark.redis]

PARTITIONS = 200


def failed(run_id: str, ref: str):  # type: ignore[no-untyped-def]
    return lambda store: store.get(f"failed/{run_id}/ingest/{ref}") is not None


def test_poisoned_partitions_fail_alone_and_are_dead_lettered(fleet: Fleet) -> None:
    # Given a run of 200 good partitions, and two runs of one poisoned partition each: one that
    # fails transiently on every attempt, one that fails permanently
    fleet.start_relay()
    fleet.start_worker()
    fleet.start_worker()
    good = fleet.publish("r-good", list(range(PARTITIONS)))
    flaky = fleet.publish("r-flaky", [PARTITIONS], act={PARTITIONS: "fail"})
    poisoned = fleet.publish("r-poison", [PARTITIONS + 1], act={PARTITIONS + 1: "poison"})

    # When the fleet has worked through them, retries and all
    drained = fleet.wait_until(
        lambda store: served("r-good")(store) and failed("r-flaky", flaky[0])(store)
        and failed("r-poison", poisoned[0])(store), timeout_s=45)
    fleet.wait_until(lambda store: broker_outstanding(fleet) == 0, timeout_s=15)
    with redis.Redis.from_url(fleet.broker_url) as client:
        dead = collections.Counter(json.loads(body)["args"][1] for body in client.hvals("dramatiq:ingest.XQ.msgs"))
    fleet.stop()

    # Then the two poisoned partitions are invalid with their reasons, the rest valid
    report = check_fleet(fleet, {"r-good": good, "r-flaky": flaky, "r-poison": poisoned},
                         invalid=[*flaky, *poisoned])
    assert report.reasons[flaky[0]].startswith("ingest: ConnectionError: upstream refused record")
    assert report.reasons[poisoned[0]].startswith("ingest: PermanentStageError: record")
    # and both were dead-lettered, nothing else: each delivery of the flaky one (at-least-once:
    # under load the relay may have sent it twice) after max_retries + 1 attempts, of the
    # poisoned one after its single attempt
    assert set(dead) == {flaky[0], poisoned[0]}
    store = fleet.store()
    starts = [e for r in store.read() if isinstance(e := r.event(), StageStarted)]
    store.close()
    attempts = {ref: sum(1 for e in starts if e.partition == ref) for ref in dead}
    assert attempts == {flaky[0]: (chain6.RETRY.max_retries + 1) * dead[flaky[0]], poisoned[0]: dead[poisoned[0]]}
    print(summary("poison", partitions=report.partitions, invalid=len(flaky) + len(poisoned),
                  dead_lettered=sum(dead.values()), flaky_attempts=attempts[flaky[0]], drain_s=round(drained, 1)))
