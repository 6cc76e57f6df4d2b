"""The issue's acceptance criteria, one by one, against a real ``stagebus api`` process."""

from __future__ import annotations

import json
import time
import uuid

import httpx

from stagebus.api import keys as api_keys
from stagebus.events.types import ApiKeyCreated
from stagebus.store import SqliteEventStore
from support.api import PEOPLE_CONFIG, ApiServer, create_pipeline, wait_for_batch

GOOD_AND_BAD = [
    {"name": "  Ada  Lovelace ", "age": "36"},   # 0: good
    {"name": "Bob", "age": "old"},               # 1: cast refuses
    {"age": 5},                                  # 2: require refuses
    7,                                           # 3: not an object
    {"name": "Cy", "age": 41},                   # 4: good
]


def test_health_needs_no_key_and_the_spec_and_docs_are_served(api_server: ApiServer) -> None:
    with api_server.client() as client:
        assert client.get("/health").json() == {"status": "ok"}
        spec = client.get("/openapi.json").json()
        assert spec["openapi"].startswith("3.")
        assert "/api/v1/pipelines/{pipeline_id}/batches" in spec["paths"]
        assert "PIPELINE_HAS_ACTIVE_BATCHES" in json.dumps(spec)  # codes are documented
        assert client.get("/docs").status_code == 200


def test_create_answers_201_and_the_pipeline_reads_back(api_server: ApiServer, acme: str) -> None:
    with api_server.client(acme) as client:
        # When a pipeline is created
        answer = client.post("/pipelines", json={"name": "people", "config": PEOPLE_CONFIG})
        # Then 201 with its id and status, and it reads back with its config
        assert answer.status_code == 201
        body = answer.json()
        assert body["status"] == "active" and body["id"].startswith("pl_")
        detail = client.get(f"/pipelines/{body['id']}").json()
        assert detail["name"] == "people" and detail["version"] == 1
        assert [p["name"] for p in detail["config"]["processors"]] == ["whitespace", "cast", "require"]


def test_an_invalid_config_answers_400_with_every_problem(api_server: ApiServer, acme: str) -> None:
    with api_server.client(acme) as client:
        before = client.get("/pipelines", params={"limit": 1000}).json()["items"]
        config = {"processors": [{"name": "cast", "config": {"fields": {"age": "integer"}}}, {"name": "nope"},
                                 {"name": "require", "config": {}}],
                  "destination": {"type": "warehouse"}}
        answer = client.post("/pipelines", json={"name": "bad", "config": config})
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        where = {"/".join(d["loc"]) for d in error["details"]}
        # Then every problem is listed: the body's shape and each processor's own config
        assert "config/destination" in where
        assert "config/processors/0/config/fields/age" in where
        assert "config/processors/1/name" in where
        assert "config/processors/2/config/fields" in where
        # And nothing was stored
        assert client.get("/pipelines", params={"limit": 1000}).json()["items"] == before


def test_a_batch_of_good_and_bad_records_completes_with_per_record_errors(api_server: ApiServer, acme: str) -> None:
    with api_server.client(acme) as client:
        pipeline = create_pipeline(client)
        answer = client.post(f"/pipelines/{pipeline}/batches", json=GOOD_AND_BAD)
        assert answer.status_code == 202
        assert answer.json()["status"] == "pending" and answer.json()["record_count"] == 5
        batch = wait_for_batch(client, pipeline, answer.json()["id"])
        assert batch["status"] == "completed"
        assert (batch["record_count"], batch["processed_count"], batch["failed_count"]) == (5, 2, 3)
        assert batch["started_at"] and batch["completed_at"] >= batch["started_at"]
        errors = client.get(f"/pipelines/{pipeline}/batches/{batch['id']}/errors").json()["items"]
        assert [(e["record_index"], e["processor"]) for e in errors] == [(1, "cast"), (2, "require"), (3, None)]
        assert all(e["stage"] == "process" and e["error_message"] for e in errors)
        assert "'old' is not an int" in errors[0]["error_message"]
        # And errors page
        first = client.get(f"/pipelines/{pipeline}/batches/{batch['id']}/errors", params={"limit": 2}).json()
        rest = client.get(f"/pipelines/{pipeline}/batches/{batch['id']}/errors",
                          params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert [e["record_index"] for e in first["items"] + rest["items"]] == [1, 2, 3]
        assert rest["next_cursor"] is None


def test_the_batch_is_a_stagebus_run_the_cli_shows(api_server: ApiServer, acme: str) -> None:
    with api_server.client(acme) as client:
        pipeline = create_pipeline(client)
        batch_id = client.post(f"/pipelines/{pipeline}/batches", json=GOOD_AND_BAD).json()["id"]
        batch = wait_for_batch(client, pipeline, batch_id)
    runs = json.loads(api_server.stagebus("runs", "--format", "json").stdout)
    assert any(r["run_id"] == batch["run_id"] and r["status"] == "complete" for r in runs)
    ledger = json.loads(api_server.stagebus("state", "inspect", "--run-id", batch["run_id"], "--format",
                                            "json").stdout)
    assert [(e["dataset"], e["partition"], e["status"]) for e in ledger] == [(f"api-{pipeline}", batch_id, "valid")]
    manifests = api_server.stagebus("manifest", "show", batch["run_id"], "--format", "json").stdout
    assert '"process"' in manifests and '"deliver"' in manifests


def test_ndjson_and_multipart_bodies_are_batches_too(api_server: ApiServer, acme: str) -> None:
    with api_server.client(acme) as client:
        pipeline = create_pipeline(client)
        ndjson = b'{"name": "a", "age": 1}\n\n{"name": "b", "age": "x"}\n'
        one = client.post(f"/pipelines/{pipeline}/batches", content=ndjson,
                          headers={"content-type": "application/x-ndjson"})
        two = client.post(f"/pipelines/{pipeline}/batches",
                          files={"file": ("people.json", b'[{"name": "c"}, {"age": 2}]', "application/json")})
        assert one.status_code == two.status_code == 202
        assert wait_for_batch(client, pipeline, one.json()["id"])["failed_count"] == 1
        assert wait_for_batch(client, pipeline, two.json()["id"])["failed_count"] == 1
        bad = client.post(f"/pipelines/{pipeline}/batches", content=b'{"a": 1}\nnot json\n',
                          headers={"content-type": "application/x-ndjson"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_BODY"
        assert bad.json()["error"]["details"][0]["loc"] == ["body", "line 2"]
        empty = client.post(f"/pipelines/{pipeline}/batches", json=[])
        assert empty.status_code == 400 and empty.json()["error"]["code"] == "INVALID_BODY"
        text = client.post(f"/pipelines/{pipeline}/batches", content=b"a,b", headers={"content-type": "text/csv"})
        assert text.status_code == 415 and text.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
        missing = client.post(f"/pipelines/{pipeline}/batches", files={"other": ("x", b"[]")})
        assert missing.status_code == 400
        listed = client.get(f"/pipelines/{pipeline}/batches").json()["items"]
        assert len(listed) == 2  # the refused bodies stored nothing


def test_a_stopped_pipeline_holds_batches_until_started(api_server: ApiServer, acme: str) -> None:
    with api_server.client(acme) as client:
        pipeline = create_pipeline(client)
        assert client.post(f"/pipelines/{pipeline}/stop").json()["status"] == "stopped"
        batch_id = client.post(f"/pipelines/{pipeline}/batches", json=[{"name": "x"}]).json()["id"]
        time.sleep(1.5)
        assert client.get(f"/pipelines/{pipeline}/batches/{batch_id}").json()["status"] == "pending"
        assert client.get("/pipelines", params={"status": "stopped", "limit": 1000}).json()["items"]
        assert client.post(f"/pipelines/{pipeline}/start").json()["status"] == "active"
        assert wait_for_batch(client, pipeline, batch_id)["status"] == "completed"


def test_delete_is_refused_while_a_batch_is_active(api_server: ApiServer, acme: str) -> None:
    with api_server.client(acme) as client:
        pipeline = create_pipeline(client)
        client.post(f"/pipelines/{pipeline}/stop")
        batch_id = client.post(f"/pipelines/{pipeline}/batches", json=[{"name": "x"}]).json()["id"]
        refused = client.delete(f"/pipelines/{pipeline}")
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "PIPELINE_HAS_ACTIVE_BATCHES"
        client.post(f"/pipelines/{pipeline}/start")
        wait_for_batch(client, pipeline, batch_id)
        assert client.delete(f"/pipelines/{pipeline}").status_code == 204
        gone = client.get(f"/pipelines/{pipeline}")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "PIPELINE_NOT_FOUND"
        assert client.delete(f"/pipelines/{pipeline}").status_code == 404


def test_an_update_is_a_new_version_and_a_held_batch_keeps_its_own(api_server: ApiServer, acme: str) -> None:
    with api_server.client(acme) as client:
        pipeline = create_pipeline(client)
        client.post(f"/pipelines/{pipeline}/stop")
        held = client.post(f"/pipelines/{pipeline}/batches", json=[{"age": 1}]).json()["id"]  # no name
        # When the config drops `require`
        config = {**PEOPLE_CONFIG, "processors": PEOPLE_CONFIG["processors"][:2]}
        updated = client.put(f"/pipelines/{pipeline}", json={"config": config})
        assert updated.status_code == 200 and updated.json()["version"] == 2
        invalid = client.put(f"/pipelines/{pipeline}", json={"config": {"processors": [{"name": "nope"}]}})
        assert invalid.status_code == 400
        client.post(f"/pipelines/{pipeline}/start")
        after = client.post(f"/pipelines/{pipeline}/batches", json=[{"age": 1}]).json()["id"]
        # Then the batch submitted under version 1 still required a name; the new one does not
        first = wait_for_batch(client, pipeline, held)
        second = wait_for_batch(client, pipeline, after)
        assert (first["pipeline_version"], first["failed_count"]) == (1, 1)
        assert (second["pipeline_version"], second["failed_count"]) == (2, 0)
        assert client.get(f"/pipelines/{pipeline}").json()["version"] == 2


def test_listing_pages_through_every_pipeline_and_batch_once(api_server: ApiServer) -> None:
    key = api_server.create_key("PAGER")["key"]
    with api_server.client(key) as client:
        made = [create_pipeline(client, name=f"p{i}") for i in range(5)]
        seen, cursor = [], None
        for _ in range(10):
            page = client.get("/pipelines", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
            seen += [p["id"] for p in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == made
        batches = [client.post(f"/pipelines/{made[0]}/batches", json=[{"name": str(i)}]).json()["id"]
                   for i in range(3)]
        one = client.get(f"/pipelines/{made[0]}/batches", params={"limit": 2}).json()
        two = client.get(f"/pipelines/{made[0]}/batches", params={"limit": 2, "cursor": one["next_cursor"]}).json()
        assert [b["id"] for b in one["items"] + two["items"]] == batches and two["next_cursor"] is None
        for batch in batches:
            wait_for_batch(client, made[0], batch)
        done = client.get(f"/pipelines/{made[0]}/batches", params={"status": "completed"}).json()["items"]
        assert len(done) == 3
        bad = client.get("/pipelines", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_CURSOR"
        bad_limit = client.get("/pipelines", params={"limit": 0})
        assert bad_limit.status_code == 400 and bad_limit.json()["error"]["code"] == "VALIDATION_ERROR"
        assert bad_limit.json()["error"]["details"]


def test_metrics_move_as_batches_complete(api_server: ApiServer, acme: str) -> None:
    with api_server.client(acme) as client:
        pipeline = create_pipeline(client)
        before = client.get(f"/pipelines/{pipeline}").json()["metrics"]
        assert before == {"batches": 0, "records_processed": 0, "records_failed": 0, "error_rate": 0.0,
                          "latency_p50_ms": None, "latency_p95_ms": None, "last_run_at": None}
        for _ in range(2):
            batch_id = client.post(f"/pipelines/{pipeline}/batches", json=GOOD_AND_BAD).json()["id"]
            wait_for_batch(client, pipeline, batch_id)
        after = client.get(f"/pipelines/{pipeline}").json()["metrics"]
        assert (after["batches"], after["records_processed"], after["records_failed"]) == (2, 4, 6)
        assert after["error_rate"] == 0.6
        assert 0 < after["latency_p50_ms"] <= after["latency_p95_ms"]
        assert after["last_run_at"] is not None


def test_an_idempotency_key_returns_the_first_batch(api_server: ApiServer, acme: str) -> None:
    with api_server.client(acme) as client:
        pipeline = create_pipeline(client)
        key = {"Idempotency-Key": uuid.uuid4().hex}
        first = client.post(f"/pipelines/{pipeline}/batches", json=[{"name": "a"}], headers=key)
        again = client.post(f"/pipelines/{pipeline}/batches", json=[{"name": "a"}], headers=key)
        assert first.status_code == again.status_code == 202
        assert first.json()["id"] == again.json()["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        other = client.post(f"/pipelines/{pipeline}/batches", json=[{"name": "b"}], headers=key)
        assert other.status_code == 409 and other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert len(client.get(f"/pipelines/{pipeline}/batches").json()["items"]) == 1


def test_an_export_destination_writes_the_processed_records(api_server: ApiServer, acme: str) -> None:
    with api_server.client(acme) as client:
        config = {**PEOPLE_CONFIG, "destination": {"type": "export", "folder": "people-out"}}
        pipeline = create_pipeline(client, config=config)
        batch_id = client.post(f"/pipelines/{pipeline}/batches", json=GOOD_AND_BAD).json()["id"]
        wait_for_batch(client, pipeline, batch_id)
    exported = api_server.home / "exports" / "ACME" / "people-out" / f"{batch_id}.jsonl"
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    assert rows == [{"name": "Ada Lovelace", "age": 36}, {"name": "Cy", "age": 41}]


def test_every_error_has_the_one_body(api_server: ApiServer, acme: str) -> None:
    def assert_error(answer: httpx.Response, status: int, code: str) -> None:
        assert answer.status_code == status, answer.text
        body = answer.json()
        assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
        assert set(body["error"]) <= {"code", "message", "details"}

    with api_server.client() as anonymous:
        assert_error(anonymous.get("/pipelines"), 401, "UNAUTHORIZED")
        assert_error(anonymous.get("/pipelines", headers={"X-API-Key": "sbk_" + "0" * 56}), 401, "UNAUTHORIZED")
        assert_error(anonymous.get("/pipelines", headers={"X-API-Key": "nonsense"}), 401, "UNAUTHORIZED")
    with api_server.client(acme) as client:
        assert_error(client.get("/nowhere"), 404, "NOT_FOUND")
        assert_error(client.patch("/pipelines"), 405, "METHOD_NOT_ALLOWED")
        assert_error(client.get("/pipelines/pl_missing"), 404, "PIPELINE_NOT_FOUND")
        pipeline = create_pipeline(client)
        assert_error(client.get(f"/pipelines/{pipeline}/batches/bat_missing"), 404, "BATCH_NOT_FOUND")
        assert_error(client.post("/pipelines", content=b"{", headers={"content-type": "application/json"}),
                     400, "VALIDATION_ERROR")
        assert_error(client.post("/pipelines", content=b"name=x", headers={"content-type": "text/plain"}),
                     415, "UNSUPPORTED_MEDIA_TYPE")
        assert_error(client.get("/pipelines", params={"status": "sleeping"}), 400, "VALIDATION_ERROR")


def test_keys_are_listed_without_secrets_and_no_secret_is_stored_or_logged(api_server: ApiServer) -> None:
    made = api_server.create_key("SECRETIVE")
    secret = made["key"]
    assert secret.startswith("sbk_") and len(secret) == 60
    with api_server.client(secret) as client:
        assert client.get("/pipelines").status_code == 200
        client.get("/pipelines", params={"cursor": secret})  # even echoed in a query
    listed = api_server.stagebus("keys", "list").stdout + api_server.stagebus("keys", "list", "--format", "json").stdout
    assert made["id"] in listed and secret not in listed and secret[:12] in listed
    # Then the secret is nowhere on disk: not in the log, the projections or the server's log
    for path in api_server.home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_a_revoked_key_is_refused_within_a_second(api_server: ApiServer) -> None:
    made = api_server.create_key("REVOKED")
    with api_server.client(made["key"]) as client:
        assert client.get("/pipelines").status_code == 200
        api_server.stagebus("keys", "revoke", made["id"])
        revoked_at = time.monotonic()
        while client.get("/pipelines").status_code != 401:
            assert time.monotonic() - revoked_at < 1.0
            time.sleep(0.05)
    assert "revoked" in api_server.stagebus("keys", "list", "--owner", "REVOKED").stdout
    again = api_server.stagebus("keys", "revoke", made["id"])
    assert "already revoked" in again.stdout
    unknown = api_server.stagebus("keys", "revoke", "key_nope", check=False)
    assert unknown.returncode == 2 and "no key" in unknown.stderr


def test_keys_create_refuses_a_bad_owner_or_rate(api_server: ApiServer) -> None:
    bad_rate = api_server.stagebus("keys", "create", "--owner", "ACME", "--rate", "lots", check=False)
    bad_owner = api_server.stagebus("keys", "create", "--owner", "a b/c", check=False)
    assert bad_rate.returncode == bad_owner.returncode == 2
    assert "rate" in bad_rate.stderr and "owner" in bad_owner.stderr
    plain = api_server.stagebus("keys", "create", "--owner", "PLAIN")
    assert "sbk_" in plain.stdout and "100/minute" in plain.stdout


def test_replay_rebuilds_the_api_projections_identically(api_server: ApiServer, acme: str) -> None:
    # Given keys, pipelines and batches in the log (the tests above), and one more batch
    with api_server.client(acme) as client:
        pipeline = create_pipeline(client)
        wait_for_batch(client, pipeline, client.post(f"/pipelines/{pipeline}/batches", json=GOOD_AND_BAD).json()["id"])
    # When the projections are rebuilt from the log and compared with the live ones
    done = api_server.stagebus("replay", "--verify")
    # Then they match; and after a real rebuild swapped in, the API answers from the new generation
    assert "match" in done.stdout.lower() or "identical" in done.stdout.lower(), done.stdout
    api_server.stagebus("replay")
    with api_server.client(acme) as client:
        assert client.get(f"/pipelines/{pipeline}").json()["metrics"]["records_failed"] == 3


def test_a_key_works_the_instant_it_is_created(api_server: ApiServer, acme: str) -> None:
    # Given a server that has just read its keys (its reads may then be up to 0.25 s stale)
    with api_server.client(acme) as client:
        assert client.get("/pipelines").status_code == 200
    # When a key is appended to the log right after, and used at once
    secret = api_keys.new_key()
    with SqliteEventStore(api_server.home / "log.db") as store:
        store.append_one(ApiKeyCreated(key_id=api_keys.new_key_id(), owner="INSTANT",
                                       key_hash=api_keys.hash_key(secret), rate="100/minute",
                                       prefix=secret[:api_keys.SHOWN]))
    # Then it is accepted: a key not found is looked up again in the log, not refused on a stale read
    with api_server.client(secret) as client:
        assert client.get("/pipelines").status_code == 200
