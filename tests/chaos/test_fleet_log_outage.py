"""Fleet fault test: the log's Redis is unreachable for 70 s mid-run (SIGSTOPped, so every call
hangs until it times out). Attempts cut off by the outage are abandoned by their live workers;
their heartbeats say so, and the relay sends them again within seconds of recovery."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from support.fleet import Fleet, check_fleet, served, summary

pytestmark = [pytest.mark.chaos, pytest.mark.redis]

PARTITIONS = 20
OUTAGE_S = 70.0
RECOVERY_BOUND_S = 60.0


def test_a_70s_log_outage_heals_within_a_minute_of_recovery(fleet: Fleet, fleet_servers: dict[str, Any]) -> None:
    # Given a relay and a worker busy with slow stage tasks (~0.5 s each)
    fleet.extra_env["CHAIN6_RECORD_SLEEP_S"] = "0.1"
    fleet.start_relay()
    fleet.start_worker()
    fleet.wait_ready()
    refs = fleet.publish("r1", list(range(PARTITIONS)))
    fleet.wait_until(lambda store: sum(r.type == "stage_started" for r in store.read()) >= 4, timeout_s=20)
    # When the log's Redis stops answering for 70 s, mid-run
    pid = fleet_servers["log"].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(OUTAGE_S)
    finally:
        os.kill(pid, signal.SIGCONT)
    # Then the run finishes within a minute of recovery, every partition valid, one manifest per key
    healed = fleet.wait_until(served("r1"), timeout_s=RECOVERY_BOUND_S)
    fleet.stop()
    report = check_fleet(fleet, {"r1": refs})
    print(summary("log outage", partitions=report.partitions, outage_s=OUTAGE_S, healed_s=round(healed, 1),
                  manifests=report.manifests, attempts_cut_short=report.unfinished_attempts))
