"""Fleet fault test 1: worker processes SIGKILLed at random moments, each restarted at once."""

from __future__ import annotations

import random

import pytest

from support.fleet import Fleet, check_fleet, kill_random_worker, served, summary

pytestmark = [pytest.mark.chaos, pytest.mark.redis]

# Sized so the run outlasts the last kill (at most 10 s in) with margin: the fleet drains 200
# partitions of this pipeline in ~8 s since tasks stopped writing views, which cut it to 9 kills.
PARTITIONS = 300
KILLS = 10


def test_random_worker_kills_lose_nothing(fleet: Fleet) -> None:
    # Given a relay, two worker processes whose stages take ~120 ms, and a run of 300 partitions
    fleet.extra_env["CHAIN6_RECORD_SLEEP_S"] = "0.03"
    fleet.start_relay()
    fleet.start_worker()
    fleet.start_worker()
    refs = fleet.publish("r1", list(range(PARTITIONS)))
    rng = random.Random(5)
    kills: list[float] = []
    next_kill = [rng.uniform(0.5, 1.0)]

    def kill_some(elapsed: float) -> None:
        if len(kills) < KILLS and elapsed >= next_kill[0] and kill_random_worker(fleet, rng):
            kills.append(elapsed)
            next_kill[0] = elapsed + rng.uniform(0.4, 1.0)

    # When a random worker is SIGKILLed mid-run every 0.4-1 s, 10 times, and restarted each time
    drained = fleet.wait_until(served("r1"), timeout_s=90, during=kill_some)
    fleet.stop()

    # Then every kill happened before the run finished, and nothing was lost or doubled
    assert len(kills) == KILLS, f"the run finished after only {len(kills)} kills"
    report = check_fleet(fleet, {"r1": refs})
    print(summary("worker kills", partitions=report.partitions, kills=len(kills), manifests=report.manifests,
                  attempts_cut_short=report.unfinished_attempts, duplicates_absorbed=report.duplicates_absorbed,
                  drain_s=round(drained, 1)))
