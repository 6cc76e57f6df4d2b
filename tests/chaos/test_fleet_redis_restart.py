"""Fleet fault test 4: the Redis holding the log (and, as in compose.yaml, the broker) crashes
mid-run and restarts from its append-only file; the relay and workers reconnect and finish.

The Redis runs with compose.yaml's ``appendfsync everysec``. A crash of the Redis *process*
loses nothing it acknowledged under that setting: Redis hands the AOF to the kernel with
write() before it replies, and the page cache outlives the process. What ``everysec`` risks is
a crash of the whole machine, which loses up to a second of acknowledged events; the test
counts the events the log had acknowledged before the crash that are missing after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from stagebus.store import RecordedEvent
from support.fleet import Fleet, check_fleet, served, summary

pytestmark = [pytest.mark.chaos, pytest.mark.redis]

PARTITIONS = 200
DOWN_S = 1.0
CRASH_AT_EVENTS = 600  # about a third of the run's events


def last_event(fleet: Fleet) -> RecordedEvent:
    store = fleet.store()
    try:
        return next(iter(store.read(after=store.head() - 1)))
    finally:
        store.close()


def test_log_redis_crash_and_restart_loses_nothing(fleet: Fleet, fleet_servers: dict[str, Any],
                                                   redis_instances: Callable[..., Any]) -> None:
    # Given one Redis for the log (db 0) and the broker (db 1), AOF with fsync every second
    fleet.broker_url = f"{fleet.log_url}?db=1"
    with redis.Redis.from_url(fleet.log_url) as client:
        client.config_set("appendfsync", "everysec")
    fleet.extra_env["CHAIN6_RECORD_SLEEP_S"] = "0.01"
    fleet.start_relay()
    fleet.start_worker()
    fleet.start_worker()
    refs = fleet.publish("r1", list(range(PARTITIONS)))
    crash: dict[str, Any] = {}

    def crash_redis(elapsed: float) -> None:
        if crash:
            return
        acknowledged = last_event(fleet)
        if acknowledged.position > CRASH_AT_EVENTS:
            # When the Redis is SIGKILLed mid-run, stays down a second, and restarts on its AOF
            crash["acknowledged"] = acknowledged
            fleet_servers["log"].kill()
            time.sleep(DOWN_S)
            redis_instances(appendonly=True, name="log")
            crash["at"] = elapsed

    drained = fleet.wait_until(served("r1"), timeout_s=50, during=crash_redis)
    fleet.stop()

    # Then every event acknowledged before the crash is still there, unchanged, and the run
    # finished whole
    assert crash, "the run finished before the crash"
    before: RecordedEvent = crash["acknowledged"]
    store = fleet.store()
    after = next(iter(store.read(after=before.position - 1, limit=1)), None)
    store.close()
    lost = 0 if after is not None and after.hash == before.hash else before.position - (after.position if after else 0)
    assert lost == 0, f"{lost} acknowledged event(s) lost"
    report = check_fleet(fleet, {"r1": refs})
    print(summary("log redis restart", partitions=report.partitions, events_before_crash=before.position,
                  events_lost=lost, down_s=DOWN_S, manifests=report.manifests,
                  attempts_cut_short=report.unfinished_attempts, drain_s=round(drained, 1)))
