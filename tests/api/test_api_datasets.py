"""Datasets at both ends of an API pipeline: a published dataset as the source (a batch is a
verified snapshot of it), and a destination dataset any consumer reads with ``stagebus.read``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import stagebus
from support.api import STAGEBUS, ApiServer, create_pipeline, wait_for_batch


def publish_and_run(home: Path, tmp: Path, run_id: str, files: dict[str, str]) -> None:
    env = {"STAGEBUS_HOME": str(home), "PATH": "/usr/bin:/bin"}
    for i, (partition, text) in enumerate(files.items()):
        path = tmp / f"{run_id}-{partition}.csv"
        path.write_text(text)
        seal = ["--seal"] if i == len(files) - 1 else []
        subprocess.run([*STAGEBUS, "publish", "--dataset", "airports", "--partition", partition, "--file", str(path),
                        "--run-id", run_id, *seal], env=env, check=True, capture_output=True)
    subprocess.run([*STAGEBUS, "run", "--run-id", run_id], env=env, check=True, capture_output=True)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A home whose dataset ``airports`` (3 rows in 2 partitions) is shared with the API."""
    tmp = tmp_path_factory.mktemp("datasets")
    home = tmp / "home"
    publish_and_run(home, tmp, "r1", {"CA": "code,name\nSFO, San Francisco \nLAX,Los Angeles\n",
                                      "NY": "code,name\nJFK,\n"})
    server = ApiServer.start(home, {"STAGEBUS_API_DATASETS": "airports"})
    yield server
    server.stop()


def dataset_pipeline(dataset: str) -> dict[str, object]:
    return {"source": {"type": "dataset", "dataset": dataset},
            "processors": [{"name": "whitespace"}, {"name": "require", "config": {"fields": ["name"]}}],
            "destination": {"type": "dataset"}}


def test_a_dataset_source_batch_is_a_snapshot_and_its_destination_a_dataset_consumers_read(
        shared: ApiServer) -> None:
    key = shared.create_key("ACME")["key"]
    with shared.client(key) as client:
        # Given a pipeline reading the shared dataset and writing a dataset of its own
        pipeline_id = create_pipeline(client, "airports-clean", dataset_pipeline("airports"))
        # When a batch is submitted with an empty body
        answer = client.post(f"/pipelines/{pipeline_id}/batches", content=b"")
        assert answer.status_code == 202, answer.text
        batch = wait_for_batch(client, pipeline_id, answer.json()["id"])
        # Then it is the dataset's three rows, the one without a name rejected
        assert batch["status"] == "completed"
        assert (batch["record_count"], batch["failed_count"]) == (3, 1)
        # And a chained pipeline of the same owner reads the first one's dataset as its source
        lower = [{"name": "lowercase", "config": {"fields": ["code"]}}]
        chained = create_pipeline(client, "chained", {**dataset_pipeline(f"api-{pipeline_id}"), "processors": lower})
        second = client.post(f"/pipelines/{chained}/batches", json={})
        assert second.status_code == 202, second.text
        assert wait_for_batch(client, chained, second.json()["id"])["record_count"] == 2
        # And a bad snapshot position is a one-line 400, an unknown one 409
        assert client.post(f"/pipelines/{chained}/batches", json={"as_of": "x"}).json()["error"]["code"] == \
            "INVALID_BODY"
        assert client.post(f"/pipelines/{chained}/batches", json={"as_of": 10**9}).json()["error"]["code"] == \
            "SOURCE_NOT_READY"
    # And consumers read the destination datasets through the consumer contract
    with stagebus.read(f"api-{pipeline_id}", output="deliver.records", home=shared.home) as snapshot:
        assert sorted(row["record"]["name"] for row in snapshot) == ["Los Angeles", "San Francisco"]
    with stagebus.read(f"api-{chained}", output="deliver.records", home=shared.home) as snapshot:
        assert sorted(row["record"]["code"] for row in snapshot) == ["lax", "sfo"]


def test_a_dataset_neither_shared_nor_the_callers_own_is_refused_like_a_missing_one(shared: ApiServer) -> None:
    acme, globex = shared.create_key("ACME")["key"], shared.create_key("GLOBEX")["key"]
    with shared.client(acme) as client:
        own = create_pipeline(client, "mine", dataset_pipeline("airports"))
    with shared.client(globex) as client:
        for dataset in ("private-stuff", f"api-{own}"):  # not shared; another owner's pipeline
            answer = client.post("/pipelines", json={"name": "x", "config": dataset_pipeline(dataset)})
            assert answer.status_code == 400
            (detail,) = answer.json()["error"]["details"]
            assert detail["loc"] == ["config", "source", "dataset"]


def test_a_served_destination_makes_each_batch_searchable_with_query(shared: ApiServer) -> None:
    key = shared.create_key("ACME")["key"]
    config = {"processors": [{"name": "whitespace"}], "destination": {"type": "served"}}
    with shared.client(key) as client:
        pipeline_id = create_pipeline(client, "served-people", config)
        # When two batches are delivered to the served view
        for records in ([{"name": "  Grace   Hopper ", "role": "admiral"}], [{"name": "Alan Turing"}]):
            answer = client.post(f"/pipelines/{pipeline_id}/batches", json=records)
            assert wait_for_batch(client, pipeline_id, answer.json()["id"])["status"] == "completed"
    # Then `stagebus query` finds both, served as the pipeline's dataset, next to the CLI's airports
    for text, name in (("hopper", "Grace Hopper"), ("turing", "Alan Turing")):
        found = subprocess.run([*STAGEBUS, "query", text, "--format", "json"], env=shared.env, capture_output=True,
                               text=True, check=True)
        (hit,) = json.loads(found.stdout)
        assert hit["dataset"] == f"api-{pipeline_id}" and hit["record"]["name"] == name
    airports = subprocess.run([*STAGEBUS, "query", "francisco", "--format", "json"], env=shared.env,
                              capture_output=True, text=True, check=True)
    assert json.loads(airports.stdout)
