"""SIGKILL the API process while clients are submitting: each batch is either fully accepted
(its id was returned, its run is whole in the log, and it completes after a restart) or absent."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from stagebus.events import PartitionIngested, RunOpened, RunSealed
from stagebus.events.types import ApiBatchSubmitted
from stagebus.store import open_store
from support.api import ApiServer, create_pipeline, wait_for_batch

pytestmark = pytest.mark.chaos


def test_a_killed_api_leaves_no_half_batch(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = ApiServer.start(home)
    key = server.create_key("ACME")["key"]
    with server.client(key) as client:
        pipeline = create_pipeline(client)
    answered: dict[str, str] = {}  # Idempotency-Key -> batch id, for the submits that were answered
    unanswered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def submit(worker: int) -> None:
        with server.client(key, timeout=10) as client:
            n = 0
            while not stop.is_set():
                idem = f"w{worker}-{n}"
                n += 1
                records = [{"name": f"{idem}-{i}"} for i in range(200)]
                try:
                    answer = client.post(f"/pipelines/{pipeline}/batches", json=records,
                                         headers={"Idempotency-Key": idem})
                except httpx.TransportError:
                    with lock:
                        unanswered.append(idem)
                    return
                assert answer.status_code == 202, answer.text
                with lock:
                    answered[idem] = answer.json()["id"]

    threads = [threading.Thread(target=submit, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(answered) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()  # mid-submission: the clients are still sending
    stop.set()
    for thread in threads:
        thread.join(30)
    assert len(answered) >= 10 and unanswered

    # Then every submission in the log is whole: its run opened, its partition and its seal
    store = open_store(f"sqlite:///{home / 'log.db'}", readonly=True)
    parts: dict[str, set[str]] = defaultdict(set)
    submitted: dict[str, str] = {}
    for record in store.read():
        event = record.event()
        if isinstance(event, ApiBatchSubmitted):
            submitted[event.idempotency_key] = event.batch_id
            parts[event.run_id].add("submitted")
        elif isinstance(event, RunOpened | PartitionIngested | RunSealed) and event.run_id.startswith("api-"):
            parts[event.run_id].add(type(event).__name__)
    store.close()
    assert all(p == {"submitted", "RunOpened", "PartitionIngested", "RunSealed"} for p in parts.values())
    # And every answered id is in it
    assert all(submitted.get(idem) == batch for idem, batch in answered.items())

    # When the API is restarted, every accepted batch completes, and a retried unanswered submit
    # finds its batch if it had been accepted, or is accepted now
    server.launch()
    try:
        with server.client(key) as client:
            for batch in answered.values():
                assert wait_for_batch(client, pipeline, batch)["status"] == "completed"
            for idem in unanswered:
                records = [{"name": f"{idem}-{i}"} for i in range(200)]
                retry = client.post(f"/pipelines/{pipeline}/batches", json=records, headers={"Idempotency-Key": idem})
                assert retry.status_code == 202
                if idem in submitted:
                    assert retry.json()["id"] == submitted[idem]
                assert wait_for_batch(client, pipeline, retry.json()["id"])["status"] == "completed"
    finally:
        server.stop()
