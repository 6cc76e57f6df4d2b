"""Eight clients submit 500 batches at once: none is lost or doubled (counted in the log's
events and manifests), and a retried submit with the same Idempotency-Key gets the same batch."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stagebus.events import ManifestWritten, RunOpened
from stagebus.events.types import ApiBatchSubmitted
from stagebus.store import open_store
from support.api import ApiServer, create_pipeline

CLIENTS = 8
BATCHES = 500


def test_concurrent_submits_lose_and_double_nothing(tmp_path: Path) -> None:
    server = ApiServer.start(tmp_path / "home")
    try:
        key = server.create_key("ACME")["key"]
        with server.client(key) as client:
            pipeline = create_pipeline(client)

        def submit(worker: int) -> list[tuple[str, str]]:
            done = []
            with server.client(key) as client:
                for n in range(worker, BATCHES, CLIENTS):
                    idem = {"Idempotency-Key": f"batch-{n}"}
                    records = [{"name": f"r{n}-{i}", "age": str(i)} for i in range(3)] + [{"age": "x"}]
                    first = client.post(f"/pipelines/{pipeline}/batches", json=records, headers=idem)
                    assert first.status_code == 202, first.text
                    if n % 5 == 0:  # a client retrying: the same batch comes back
                        again = client.post(f"/pipelines/{pipeline}/batches", json=records, headers=idem)
                        assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
                    done.append((idem["Idempotency-Key"], first.json()["id"]))
            return done

        with ThreadPoolExecutor(CLIENTS) as pool:
            accepted = [item for part in pool.map(submit, range(CLIENTS)) for item in part]
        ids = {batch_id for _, batch_id in accepted}
        assert len(accepted) == len(ids) == BATCHES

        with server.client(key) as client:
            deadline = time.monotonic() + 240
            while True:
                metrics = client.get(f"/pipelines/{pipeline}").json()["metrics"]
                completed = _count(client, pipeline, "completed")
                if completed == BATCHES or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert completed == BATCHES
            assert _count(client, pipeline, "failed") == 0
            assert metrics["batches"] == BATCHES
            assert client.get(f"/pipelines/{pipeline}").json()["metrics"]["records_failed"] == BATCHES
    finally:
        server.stop()

    # Then the log holds exactly one submission, one run and one manifest per stage for each batch
    store = open_store(f"sqlite:///{tmp_path / 'home' / 'log.db'}", readonly=True)
    submitted, opened, manifests = Counter[str](), Counter[str](), Counter[tuple[str, str]]()
    for record in store.read():
        event = record.event()
        if isinstance(event, ApiBatchSubmitted):
            submitted[event.batch_id] += 1
        elif isinstance(event, RunOpened) and event.run_id.startswith("api-"):
            opened[event.run_id] += 1
        elif isinstance(event, ManifestWritten) and event.run_id.startswith("api-"):
            manifests[(event.run_id, event.stage)] += 1
    store.close()
    assert set(submitted) == ids and set(submitted.values()) == {1}
    assert set(opened) == {f"api-{b}" for b in ids} and set(opened.values()) == {1}
    assert len(manifests) == 2 * BATCHES and set(manifests.values()) == {1}


def _count(client: object, pipeline: str, status: str) -> int:
    total, cursor = 0, None
    while True:
        params = {"status": status, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/pipelines/{pipeline}/batches", params=params).json()  # type: ignore[attr-defined]
        total += len(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return total
