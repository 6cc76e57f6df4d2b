"""A fleet that shares no filesystem for artifacts: a relay and two workers, each with its own
``STAGEBUS_HOME``, one Redis log and broker, and one S3 bucket (moto_server) for the objects.
What one worker publishes, the other reads through its own cache; nothing lands in a home's
``artifacts`` directory."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from stagebus.artifacts.s3 import S3ArtifactStore
from stagebus.settings import S3Location
from support.fleet import STAGEBUS, Fleet, check_fleet, served
from support.s3 import MotoServer

pytestmark = [pytest.mark.redis, pytest.mark.s3]
PREFIX = "fleet"


def machine(tmp_path: Path, name: str, servers: dict[str, Any], moto_server: MotoServer, bucket: str) -> Fleet:
    """The processes of one machine: its own home, the shared log, broker and bucket."""
    env = {k: v for k, v in moto_server.env({}).items() if k.startswith("AWS_")}
    return Fleet(tmp_path / name, servers["log"].url, servers["broker"].url,
                 extra_env={**env, "STAGEBUS_ARTIFACTS": f"s3://{bucket}/{PREFIX}"})


def wait_ready(relay: Fleet, workers: list[Fleet], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not (relay.relay_leading() and all(w.worker_ready(p) for w in workers for p in w.workers)):
        if time.monotonic() > deadline:
            raise AssertionError("fleet not ready\n" + "\n".join(f.log_tail() for f in (relay, *workers)))
        time.sleep(0.05)


def test_two_workers_on_separate_homes_share_artifacts_through_one_bucket(
        tmp_path: Path, fleet_servers: dict[str, Any], moto_server: MotoServer, s3_bucket: str) -> None:
    # Given a relay and two workers, each on a home of its own, sharing a bucket
    relay = machine(tmp_path, "relay-host", fleet_servers, moto_server, s3_bucket)
    workers = [machine(tmp_path, f"worker-host-{i}", fleet_servers, moto_server, s3_bucket) for i in (1, 2)]
    try:
        relay.start_relay()
        for worker in workers:
            worker.start_worker()
        wait_ready(relay, workers)
        # When a run of 12 partitions is published and served
        refs = relay.publish("r1", list(range(12)))
        relay.wait_until(served("r1"), timeout_s=120)
    finally:
        for fleet in (*workers, relay):
            fleet.stop()
    # Then every partition is valid and every object verifies from a machine that ran nothing
    checker = S3ArtifactStore(S3Location(s3_bucket, PREFIX), tmp_path / "checker" / "artifacts-cache",
                              client=moto_server.client())
    check_fleet(relay, {"r1": refs}, artifacts=checker)
    # And both workers did stage work, each keeping objects only in its own cache, none in a home
    for worker in workers:
        assert list((worker.home / "logs").glob("tasks-*.ndjson")), "a worker ran no task"
        assert not (worker.home / "artifacts").exists()
        assert (worker.home / "artifacts-cache" / "objects").is_dir()
    listed = moto_server.client().list_objects_v2(Bucket=s3_bucket, Prefix=f"{PREFIX}/objects/")
    assert listed["KeyCount"] > 12
    # And `stagebus artifacts verify` passes on the relay's machine, which wrote no object or view
    done = subprocess.run([*STAGEBUS, "artifacts", "verify", "--format", "json"], env=relay.env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["ok"] and report["objects"] == listed["KeyCount"] and report["findings"] == []
