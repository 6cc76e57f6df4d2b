"""Fleet fault test 3: the broker loses every message mid-run, twice (a flush, then a restart of
the broker-only Redis without persistence); the relay re-derives the lost tasks from the log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from support.fleet import Fleet, check_fleet, served, summary

pytestmark = [pytest.mark.chaos, pytest.mark.redis]

PARTITIONS = 200


def queued(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        return sum(int(client.llen(key)) for key in client.scan_iter("dramatiq:*") if client.type(key) == b"list")


def test_lost_broker_messages_are_sent_again(fleet: Fleet, fleet_servers: dict[str, Any],
                                             redis_instances: Callable[..., Any]) -> None:
    # Given a relay, two workers and a run of 200 partitions; the broker has a Redis of its own
    fleet.extra_env["CHAIN6_RECORD_SLEEP_S"] = "0.01"
    fleet.start_relay()
    fleet.start_worker()
    fleet.start_worker()
    refs = fleet.publish("r1", list(range(PARTITIONS)))
    losses: list[tuple[str, int]] = []

    def lose_messages(elapsed: float) -> None:
        if not losses and elapsed > 1.5:
            # When every queue, delayed and in-flight message is flushed from the broker
            lost = queued(fleet.broker_url)
            with redis.Redis.from_url(fleet.broker_url) as client:
                client.flushall()
            losses.append(("flush", lost))
        elif len(losses) == 1 and elapsed > 5.0:
            # and later the broker's Redis is killed and comes back empty
            lost = queued(fleet.broker_url)
            fleet_servers["broker"].kill()
            redis_instances(name="broker")
            losses.append(("restart", lost))

    drained = fleet.wait_until(served("r1"), timeout_s=50, during=lose_messages)
    fleet.stop()

    # Then both losses happened mid-run, and the run still finished whole
    assert [kind for kind, _ in losses] == ["flush", "restart"], f"the run finished first: {losses}"
    report = check_fleet(fleet, {"r1": refs})
    print(summary("broker loss", partitions=report.partitions,
                  queued_messages_lost=" + ".join(str(n) for _, n in losses), manifests=report.manifests,
                  duplicates_absorbed=report.duplicates_absorbed, drain_s=round(drained, 1)))
