"""The HTTP service in fleet mode: ``stagebus api`` only appends, a relay and a worker (separate
processes over the same Redis log and broker) process the batches, custom processors included."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagebus.events import ManifestWritten
from support.api import PREFIX_PROCESSOR, ApiServer, create_pipeline, wait_for_batch
from support.fleet import Fleet, fleet, fleet_servers

__all__ = ["fleet", "fleet_servers"]
pytestmark = pytest.mark.redis

def test_a_batch_submitted_to_a_fleet_mode_api_is_processed_by_the_fleet(fleet: Fleet, tmp_path: Path) -> None:
    # Given a custom processor module both the API and the worker load, an API in fleet mode
    # (Redis log and broker, so no stage runner of its own), a relay and a worker
    (tmp_path / "fleet_procs.py").write_text(PREFIX_PROCESSOR)
    fleet.extra_env["STAGEBUS_PROCESSORS"] = "fleet_procs"
    fleet.extra_env["PYTHONPATH"] = f"{tmp_path}:{fleet.env['PYTHONPATH']}"
    api = ApiServer.start(fleet.home, {"STAGEBUS_STORE": fleet.log_url, "STAGEBUS_BROKER": fleet.broker_url,
                                       "STAGEBUS_PROCESSORS": "fleet_procs", "PYTHONPATH": fleet.env["PYTHONPATH"]})
    try:
        key = api.create_key("ACME")["key"]
        fleet.start_relay()
        fleet.start_worker()
        fleet.wait_ready(timeout_s=40)
        config = {"source": {"type": "batch"},
                  "processors": [{"name": "prefix", "config": {"text": "p-"}},
                                 {"name": "cast", "config": {"fields": {"age": "int"}}}],
                  "destination": {"type": "records"}}
        with api.client(key) as client:
            pipeline_id = create_pipeline(client, "fleet-people", config)
            # When batches of good and bad records are submitted
            records = [{"id": 1, "age": "30"}, {"age": "2"}, {"id": 3, "age": "x"}, {"id": 4, "age": 7}]
            batch_ids = [client.post(f"/pipelines/{pipeline_id}/batches", json=records).json()["id"]
                         for _ in range(3)]
            # Then the fleet completes each, with the rejected records' errors by index
            for batch_id in batch_ids:
                batch = wait_for_batch(client, pipeline_id, batch_id, timeout_s=60)
                assert batch["status"] == "completed", (batch, fleet.log_tail())
                assert (batch["record_count"], batch["failed_count"]) == (4, 2)
                errors = client.get(f"/pipelines/{pipeline_id}/batches/{batch_id}/errors").json()["items"]
                assert sorted((e["record_index"], e["processor"]) for e in errors) == [(1, "prefix"), (2, "cast")]
            metrics = client.get(f"/pipelines/{pipeline_id}").json()["metrics"]
            assert (metrics["records_processed"], metrics["records_failed"]) == (6, 6)  # kept, rejected
    finally:
        api.stop()
        fleet.stop()
    # And the manifests are the worker's: one per stage and batch, the kept records prefixed
    store = fleet.store()
    try:
        manifests = [e for r in store.read() if isinstance(e := r.event(), ManifestWritten)]
    finally:
        store.close()
    assert sorted((m.stage, m.run_id) for m in manifests) == sorted(
        (stage, f"api-{b}") for b in batch_ids for stage in ("process", "deliver"))
    assert all(a.records == 2 for m in manifests for a in m.manifest.artifacts if a.name == "deliver.records")
