"""Tenant isolation: every endpoint, called with another owner's key on real ids, answers
exactly as it does for an id that does not exist — and changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from support.api import ApiServer, create_pipeline, wait_for_batch

Call = Callable[[httpx.Client, str, str], httpx.Response]

ENDPOINTS: dict[str, Call] = {
    "get pipeline": lambda c, p, b: c.get(f"/pipelines/{p}"),
    "put pipeline": lambda c, p, b: c.put(f"/pipelines/{p}", json={"config": {"processors": []}}),
    "delete pipeline": lambda c, p, b: c.delete(f"/pipelines/{p}"),
    "start": lambda c, p, b: c.post(f"/pipelines/{p}/start"),
    "stop": lambda c, p, b: c.post(f"/pipelines/{p}/stop"),
    "submit batch": lambda c, p, b: c.post(f"/pipelines/{p}/batches", json=[{"name": "intruder"}]),
    "list batches": lambda c, p, b: c.get(f"/pipelines/{p}/batches"),
    "get batch": lambda c, p, b: c.get(f"/pipelines/{p}/batches/{b}"),
    "batch errors": lambda c, p, b: c.get(f"/pipelines/{p}/batches/{b}/errors"),
}


@pytest.fixture(scope="module")
def acme_batch(api_server: ApiServer, acme: str) -> tuple[str, str]:
    with api_server.client(acme) as client:
        pipeline = create_pipeline(client)
        batch = client.post(f"/pipelines/{pipeline}/batches", json=[{"name": "a"}, {"age": 1}]).json()["id"]
        wait_for_batch(client, pipeline, batch)
        return pipeline, batch


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_another_owners_ids_answer_like_missing_ones(api_server: ApiServer, acme: str, globex: str,
                                                     acme_batch: tuple[str, str], endpoint: str) -> None:
    pipeline, batch = acme_batch
    call = ENDPOINTS[endpoint]
    with api_server.client(globex) as intruder, api_server.client(acme) as owner:
        before = owner.get(f"/pipelines/{pipeline}").json()
        # When GLOBEX calls it on ACME's ids, and on ids that exist nowhere
        foreign = call(intruder, pipeline, batch)
        missing = call(intruder, "pl_0000000000000000", "bat_00000000000000000000")
        # Then the answers are the same but for the id the message names
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["error"]["code"] == missing.json()["error"]["code"]
        assert (foreign.json()["error"]["message"].replace(pipeline, "ID").replace(batch, "BID")
                == missing.json()["error"]["message"].replace("pl_0000000000000000", "ID")
                .replace("bat_00000000000000000000", "BID"))
        assert set(foreign.headers) - {"date", "ratelimit-remaining", "ratelimit-reset"} == \
            set(missing.headers) - {"date", "ratelimit-remaining", "ratelimit-reset"}
        # And ACME's pipeline is unchanged
        assert owner.get(f"/pipelines/{pipeline}").json() == before


def test_a_batch_id_under_another_pipeline_is_not_found(api_server: ApiServer, acme: str,
                                                        acme_batch: tuple[str, str]) -> None:
    _, batch = acme_batch
    with api_server.client(acme) as client:
        other = create_pipeline(client, name="other")
        assert client.get(f"/pipelines/{other}/batches/{batch}").status_code == 404


def test_listing_shows_only_the_callers_pipelines(api_server: ApiServer, acme: str, globex: str,
                                                  acme_batch: tuple[str, str]) -> None:
    pipeline, _ = acme_batch
    with api_server.client(globex) as intruder:
        mine = create_pipeline(intruder, name="globex-only")
        ids = [p["id"] for p in intruder.get("/pipelines", params={"limit": 1000}).json()["items"]]
    assert mine in ids and pipeline not in ids
