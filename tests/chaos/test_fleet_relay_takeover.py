"""Fleet fault test 2: the active relay SIGKILLed mid-run; a standby takes the lease over."""

from __future__ import annotations

import time

import pytest
import redis

from stagebus.store.keys import RedisKeys
from support.fleet import Fleet, check_fleet, kill, served, summary

pytestmark = [pytest.mark.chaos, pytest.mark.redis]

PARTITIONS = 200


def lease_holder(client: redis.Redis) -> int | None:
    """The pid of the relay holding the lease (its token is "<pid>-<uuid>")."""
    token = client.get(RedisKeys().relay_lease)
    return int(token.split(b"-", 1)[0]) if token else None


def test_standby_relay_takes_over_when_the_leader_dies(fleet: Fleet) -> None:
    # Given two relays (one leads, one stands by), two workers and a run of 200 partitions
    fleet.extra_env["CHAIN6_RECORD_SLEEP_S"] = "0.01"
    first, second = fleet.start_relay(), fleet.start_relay()
    fleet.start_worker()
    fleet.start_worker()
    client = redis.Redis.from_url(fleet.log_url)
    deadline = time.monotonic() + 15
    while lease_holder(client) is None:
        assert time.monotonic() < deadline, fleet.log_tail()
        time.sleep(0.05)
    leader = first if lease_holder(client) == first.pid else second
    standby = second if leader is first else first
    refs = fleet.publish("r1", list(range(PARTITIONS)))
    fence_before = int(client.get(RedisKeys().relay_fence) or 0)
    takeover: dict[str, float] = {}

    def kill_leader_mid_run(elapsed: float) -> None:
        store = fleet.store()
        manifests = sum(1 for _ in store.read())  # a rough progress gauge: events so far
        store.close()
        if "killed" not in takeover and manifests > PARTITIONS * 2:
            kill(leader)
            takeover["killed"] = time.monotonic()
        elif "killed" in takeover and "taken" not in takeover and lease_holder(client) == standby.pid:
            takeover["taken"] = time.monotonic()

    # When the leader is SIGKILLed once the run is under way
    drained = fleet.wait_until(served("r1"), timeout_s=45, during=kill_leader_mid_run)
    fleet.stop()

    # Then the standby took the lease with a new fence, and the run finished whole
    assert "killed" in takeover, "the run finished before the leader could be killed"
    assert "taken" in takeover or lease_holder(client) is None, "the standby never took the lease"
    assert int(client.get(RedisKeys().relay_fence) or 0) == fence_before + 1
    report = check_fleet(fleet, {"r1": refs})
    taken_s = takeover.get("taken", takeover["killed"]) - takeover["killed"]
    print(summary("relay takeover", partitions=report.partitions, relays_killed=1,
                  takeover_s=round(taken_s, 2), manifests=report.manifests,
                  duplicates_absorbed=report.duplicates_absorbed, drain_s=round(drained, 1)))
    client.close()
