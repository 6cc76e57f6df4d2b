"""Worker heartbeats decide whether a running attempt is alive, not the worker's PID."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stagebus.actors.heartbeat import Beat, FileHeartbeats, Heartbeat, HeldAttempts, liveness_from, process_id
from stagebus.actors.readiness import attempt_in_flight
from stagebus.pipeline.contract import StageContract
from stagebus.projections.runs import TaskState

TASK = "r1/load/nums/p0"


def running(started_s_ago: float) -> TaskState:
    stamp = (datetime.now(UTC) - timedelta(seconds=started_s_ago)).isoformat().replace("+00:00", "Z")
    # the worker is this very process: its PID is alive, as after a long log outage
    return TaskState(stage="load", partition="nums/p0", status="running", attempts=1, last_error=None,
                     worker=f"{process_id()}:1", records_in=0, records_out=0, records_rejected=0,
                     duration_s=0.0, updated_at=stamp)


def test_an_attempt_its_live_worker_no_longer_lists_is_not_in_flight(tmp_path: Path) -> None:
    # Given a worker process (alive) whose fresh heartbeat does not list an attempt it started 20 s ago
    board = FileHeartbeats(tmp_path / "workers")
    Heartbeat(board, HeldAttempts()).beat()
    contract = StageContract(name="load", time_limit_s=600)
    # Then the attempt is dead: the relay may send it again at once
    assert not attempt_in_flight(running(20), contract, local_idle=False, liveness=liveness_from(board.read()),
                                 task=TASK)


def test_an_attempt_listed_by_a_fresh_beat_is_in_flight_and_a_stale_beat_is_dead(tmp_path: Path) -> None:
    held = HeldAttempts()
    board = FileHeartbeats(tmp_path / "workers")
    with held.holding(TASK):
        Heartbeat(board, held).beat()
    contract = StageContract(name="load", time_limit_s=600)
    beats = board.read()
    assert beats[process_id()].tasks == frozenset({TASK})  # written while held
    listed = {process_id(): Beat(time.time(), frozenset({TASK}))}
    assert attempt_in_flight(running(20), contract, local_idle=False, liveness=liveness_from(listed), task=TASK)
    stale = {process_id(): Beat(time.time() - 60, frozenset({TASK}))}
    assert not attempt_in_flight(running(20), contract, local_idle=False, liveness=liveness_from(stale), task=TASK)
    # a beat written just before the attempt started cannot list it yet: still in flight
    assert attempt_in_flight(running(0.5), contract, local_idle=False, liveness=liveness_from(board.read()),
                             task=TASK)
