"""Fleet fault test: one process of a `stagebus worker --processes 2` is SIGKILLed mid-run; the
worker starts a new one, says so in its log, and the run finishes; SIGTERM still stops it all."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from support.fleet import Fleet, _children, check_fleet, served

pytestmark = [pytest.mark.chaos, pytest.mark.redis]

PARTITIONS = 30


def wait_for(check, timeout_s: float, what: str, fleet: Fleet):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s}s\n{fleet.log_tail()}")
        time.sleep(0.1)


def test_a_killed_worker_process_is_restarted_and_the_run_finishes(fleet: Fleet) -> None:
    # Given a relay and one `stagebus worker --processes 2` whose stages take ~0.2 s each
    fleet.extra_env["CHAIN6_RECORD_SLEEP_S"] = "0.05"
    fleet.start_relay()
    worker = fleet.start_worker("--processes", "2")
    log_path = fleet.log_files[worker.pid]
    wait_for(lambda: log_path.read_bytes().count(b"ready for action") >= 2, 30, "2 processes not ready", fleet)
    first = wait_for(lambda: len(c := _children(worker.pid)) == 2 and c, 10, "2 children not seen", fleet)
    refs = fleet.publish("r1", list(range(PARTITIONS)))
    fleet.wait_until(lambda store: any(r.type == "stage_started" for r in store.read()), timeout_s=20)

    # When one of its processes is SIGKILLed mid-run
    victim = first[0]
    os.kill(victim, signal.SIGKILL)

    # Then a new process takes its place, the log names the dead pid, its signal and the restart
    replaced = wait_for(lambda: (c := _children(worker.pid)) and len(c) == 2 and victim not in c and c,
                        15, "no replacement process", fleet)
    assert first[1] in replaced
    text = log_path.read_text(errors="replace")
    assert re.search(rf"pid {victim}\) killed by SIGKILL after [\d.]+s; restarting it", text), text[-2000:]
    # and the run finishes, with `stagebus worker` still up
    fleet.wait_until(served("r1"), timeout_s=60)
    assert worker.poll() is None

    # When it gets SIGTERM, it stops its processes gracefully and exits 0
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    for pid in replaced:
        assert not os.path.exists(f"/proc/{pid}"), f"worker process {pid} outlived `stagebus worker`"
    assert "worker processes stopped" in log_path.read_text(errors="replace")
    fleet.workers.remove(worker)
    fleet.stop()
    check_fleet(fleet, {"r1": refs})
