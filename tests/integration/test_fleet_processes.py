"""Fleet processes for real: ``dramatiq stagebus.actors.fleet`` serving chosen queues,
``stagebus worker`` and ``stagebus relay`` stopping cleanly on SIGTERM, the health endpoint,
and the one-line refusals of bad worker settings."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.error
import urllib.request

import pytest
import redis
from typer.testing import CliRunner

from stagebus.cli import app
from stagebus.events import ManifestWritten, StageStarted, manifest_key
from stagebus.store.keys import RedisKeys
from support.fleet import Fleet, check_fleet, served

pytestmark = pytest.mark.redis


def manifests_of(fleet: Fleet, stage: str) -> int:
    store = fleet.store()
    try:
        return sum(1 for r in store.read() if isinstance(e := r.event(), ManifestWritten) and e.stage == stage)
    finally:
        store.close()


def test_dramatiq_runs_the_fleet_module_on_the_queues_it_is_given(fleet: Fleet) -> None:
    # Given a relay and a plain `dramatiq stagebus.actors.fleet --queues ingest` worker
    fleet.start_relay()
    fleet.start_dramatiq("--processes", "1", "--threads", "2", "--queues", "ingest")
    fleet.wait_ready()
    refs = fleet.publish("r1", list(range(5)))
    # When its queue is drained
    fleet.wait_until(lambda store: all(store.get(manifest_key("r1", "ingest", ref)) for ref in refs), timeout_s=20)
    time.sleep(0.5)
    # Then only ingest ran: the other stages wait for workers on their queues
    assert manifests_of(fleet, "normalize") == 0
    # When a `stagebus worker` serves the remaining queues
    fleet.start_worker("--queues", "normalize,extract,link,index,serve")
    fleet.wait_until(served("r1"), timeout_s=30)
    fleet.stop()
    # Then the run finishes whole
    check_fleet(fleet, {"r1": refs})


def test_sigterm_lets_a_worker_finish_its_tasks_and_the_relay_hand_over_its_lease(fleet: Fleet) -> None:
    # Given a relay and a worker busy with slow stage tasks (ingest takes ~0.8 s)
    fleet.extra_env["CHAIN6_RECORD_SLEEP_S"] = "0.2"
    relay, worker = fleet.start_relay(), fleet.start_worker()
    fleet.wait_ready()
    refs = fleet.publish("r1", list(range(8)))
    fleet.wait_until(lambda store: any(r.type == "stage_started" for r in store.read()), timeout_s=20)
    # When both get SIGTERM mid-run
    worker.send_signal(signal.SIGTERM)
    relay.send_signal(signal.SIGTERM)
    # Then both exit cleanly, the relay giving up its lease at once
    assert worker.wait(timeout=15) == 0, fleet.log_tail()
    assert relay.wait(timeout=10) == 0, fleet.log_tail()
    with redis.Redis.from_url(fleet.log_url) as client:
        assert client.get(RedisKeys().relay_lease) is None
    # and every task the worker had started, it finished: no attempt was cut short
    store = fleet.store()
    events = [r.event() for r in store.read()]
    store.close()
    started = {(e.stage, e.partition) for e in events if isinstance(e, StageStarted)}
    finished = {(e.stage, e.partition) for e in events if isinstance(e, ManifestWritten)}
    assert started and started <= finished
    # When a new relay and worker start, the run completes
    fleet.extra_env["CHAIN6_RECORD_SLEEP_S"] = "0"
    fleet.start_relay()
    fleet.start_worker()
    fleet.wait_until(served("r1"), timeout_s=30)
    fleet.stop()
    check_fleet(fleet, {"r1": refs})


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_relay_serves_health_and_prometheus_metrics(fleet: Fleet) -> None:
    # Given a relay asked for a health port (any free one) and a worker, after a small run
    fleet.start_relay("--health-port", "0")
    fleet.start_worker()
    fleet.wait_ready()
    fleet.publish("r1", list(range(3)))
    fleet.wait_until(served("r1"), timeout_s=30)
    time.sleep(0.5)  # a relay step after the last manifest
    port = int(re.search(rb"on port (\d+)", next(p for p in fleet.log_files.values()
                                                   if p.name.startswith("relay")).read_bytes()).group(1))
    # When /healthz, /metrics and an unknown path are asked for
    health_status, health = get(f"http://127.0.0.1:{port}/healthz")
    metrics_status, metrics = get(f"http://127.0.0.1:{port}/metrics")
    missing_status, _ = get(f"http://127.0.0.1:{port}/nope")
    fleet.stop()
    # Then the relay is healthy and leading, and the metrics count the run's tasks and queues
    assert health_status == 200 and json.loads(health)["role"] == "leader"
    assert metrics_status == 200 and missing_status == 404
    assert 'stagebus_stage_tasks{pipeline="chain6",stage="ingest",state="complete"} 3' in metrics
    assert 'stagebus_stage_tasks{pipeline="chain6",stage="serve",state="complete"} 1' in metrics
    assert 'stagebus_queue_messages{queue="ingest",state="ready"} 0' in metrics
    assert "stagebus_stage_duration_seconds_mean" in metrics and "stagebus_relay_leader 1" in metrics


@pytest.mark.parametrize(("args", "env", "says"), [
    (["worker", "--queues", "ingest,nope"], {"STAGEBUS_BROKER": "redis://localhost:1"}, "no stage named 'nope'"),
    (["worker"], {"STAGEBUS_BROKER": "memory"}, "fleet mode needs a shared broker"),
    (["worker"], {"STAGEBUS_BROKER": "redis://localhost:1", "STAGEBUS_PIPELINES": "nowhere:pipeline"},
     "cannot load pipeline 'nowhere:pipeline'"),
    (["relay"], {"STAGEBUS_BROKER": "memory", "STAGEBUS_STORE": "memory://"}, "fleet mode needs a shared broker"),
])
def test_bad_fleet_settings_are_refused_in_one_line(args: list[str], env: dict[str, str], says: str,
                                                    tmp_path: object) -> None:
    result = CliRunner().invoke(app, ["--home", str(tmp_path), *args], env=env)
    assert result.exit_code == 2, result.output
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
