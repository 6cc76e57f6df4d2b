"""Limits and extension points on a server of their own: body size, record count, rate limits
(memory, and Redis shared by two API processes), custom processors, graceful SIGTERM."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.api import PREFIX_PROCESSOR, ApiServer, create_pipeline, wait_for_batch

CUSTOM = PREFIX_PROCESSOR + '''

@processor("explode")
def explode(record, config):
    return {"size": len(record["missing"])}
'''


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    code = tmp_path_factory.mktemp("user-code")
    (code / "my_processors.py").write_text(textwrap.dedent(CUSTOM))
    server = ApiServer.start(tmp_path_factory.mktemp("small-home"), {
        "STAGEBUS_API_MAX_BODY_BYTES": "4000", "STAGEBUS_API_MAX_BATCH_RECORDS": "5",
        "STAGEBUS_PROCESSORS": "my_processors", "PYTHONPATH": str(code)})
    yield server
    server.stop()


def test_a_body_over_the_limit_is_413(small_server: ApiServer) -> None:
    key = small_server.create_key("ACME")["key"]
    with small_server.client(key) as client:
        pipeline = create_pipeline(client)
        big = [{"name": "x" * 100} for _ in range(50)]
        answer = client.post(f"/pipelines/{pipeline}/batches", json=big)
        assert answer.status_code == 413 and answer.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            yield b"["
            for _ in range(100):
                yield b'{"name": "' + b"y" * 100 + b'"},'
            yield b'{"name": "z"}]'

        streamed = client.post(f"/pipelines/{pipeline}/batches", content=chunks(),
                               headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert client.get(f"/pipelines/{pipeline}/batches").json()["items"] == []


def test_a_batch_over_the_record_limit_is_413(small_server: ApiServer) -> None:
    key = small_server.create_key("ACME")["key"]
    with small_server.client(key) as client:
        pipeline = create_pipeline(client)
        answer = client.post(f"/pipelines/{pipeline}/batches", json=[{"name": str(i)} for i in range(6)])
        assert answer.status_code == 413 and answer.json()["error"]["code"] == "TOO_MANY_RECORDS"
        assert client.post(f"/pipelines/{pipeline}/batches", json=[{"name": "ok"}] * 5).status_code == 202


def test_a_spent_rate_limit_is_429_with_retry_after(small_server: ApiServer) -> None:
    key = small_server.create_key("SLOW", rate="3/minute")["key"]
    with small_server.client(key) as client:
        answers = [client.get("/pipelines") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert all(a.headers["RateLimit-Limit"] == "3" for a in answers)
    refused = answers[3]
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60 and "RateLimit-Reset" in refused.headers
    # And another key's budget is its own
    other = small_server.create_key("SLOW", rate="3/minute")["key"]
    with small_server.client(other) as client:
        assert client.get("/pipelines").status_code == 200


def test_custom_processors_run_and_their_rejections_are_record_errors(small_server: ApiServer) -> None:
    key = small_server.create_key("ACME")["key"]
    with small_server.client(key) as client:
        config = {"processors": [{"name": "prefix", "config": {"text": "u-"}}]}
        invalid = client.post("/pipelines", json={"name": "c", "config": {"processors": [
            {"name": "prefix", "config": {}}]}})
        assert invalid.status_code == 400
        assert ["config", "processors", "0", "config", "text"] in [d["loc"] for d in invalid.json()["error"]["details"]]
        pipeline = create_pipeline(client, config=config)
        batch = client.post(f"/pipelines/{pipeline}/batches", json=[{"id": 1}, {"name": "no id"}]).json()["id"]
        done = wait_for_batch(client, pipeline, batch)
        assert (done["processed_count"], done["failed_count"]) == (1, 1)
        errors = client.get(f"/pipelines/{pipeline}/batches/{batch}/errors").json()["items"]
        assert errors == [{"record_index": 1, "stage": "process", "processor": "prefix",
                           "error_message": "no id to prefix"}]
        # A processor's bug fails the record it met, not the batch
        buggy = create_pipeline(client, config={"processors": [{"name": "explode"}]})
        batch = client.post(f"/pipelines/{buggy}/batches", json=[{"a": 1}]).json()["id"]
        done = wait_for_batch(client, buggy, batch)
        assert done["status"] == "completed" and done["failed_count"] == 1
        error = client.get(f"/pipelines/{buggy}/batches/{batch}/errors").json()["items"][0]
        assert error["error_message"].startswith("KeyError")


def test_sigterm_shuts_down_gracefully(tmp_path: Path) -> None:
    server = ApiServer.start(tmp_path / "home")
    key = server.create_key("ACME")["key"]
    with server.client(key) as client:
        pipeline = create_pipeline(client)
        assert client.post(f"/pipelines/{pipeline}/batches", json=[{"name": "a"}]).status_code == 202
    assert server.stop() == 0
    assert "Application shutdown complete" in server.log()
    assert "Traceback" not in server.log()


def test_an_unloadable_processors_module_is_a_clear_startup_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="cannot load processors 'no_such_module'"):
        ApiServer.start(tmp_path / "home", {"STAGEBUS_PROCESSORS": "no_such_module"})


@pytest.mark.redis
def test_redis_rate_limits_are_one_budget_across_api_processes(tmp_path: Path,
                                                               redis_instances: Callable[..., Any]) -> None:
    redis = redis_instances()
    storage = "redis+" + redis.url  # redis+unix:///…/redis.sock
    home = tmp_path / "home"
    first = ApiServer.start(home, {"STAGEBUS_API_RATE_STORAGE": storage})
    second = ApiServer.start(home, {"STAGEBUS_API_RATE_STORAGE": storage})
    try:
        key = first.create_key("ACME", rate="5/minute")["key"]
        codes = []
        for i in range(6):
            with (first if i % 2 else second).client(key) as client:
                codes.append(client.get("/pipelines").status_code)
        assert codes == [200] * 5 + [429]
    finally:
        first.stop()
        second.stop()
        redis.stop()


def test_several_workers_share_the_port_and_one_runner_processes_batches(tmp_path: Path) -> None:
    server = ApiServer.start(tmp_path / "home", workers=2)
    try:
        key = server.create_key("ACME")["key"]
        with server.client(key) as client:
            pipeline = create_pipeline(client)
            batches = [client.post(f"/pipelines/{pipeline}/batches", json=[{"name": str(i)}]).json()["id"]
                       for i in range(6)]
            for batch in batches:
                assert wait_for_batch(client, pipeline, batch)["status"] == "completed"
    finally:
        assert server.stop() == 0


def test_a_revocation_reaches_every_api_process_within_a_second(tmp_path: Path) -> None:
    home = tmp_path / "home"
    servers = [ApiServer.start(home), ApiServer.start(home)]
    try:
        made = servers[0].create_key("ACME")
        clients = [s.client(made["key"]) for s in servers]
        assert [c.get("/pipelines").status_code for c in clients] == [200, 200]
        servers[0].stagebus("keys", "revoke", made["id"])
        revoked_at = time.monotonic()
        refused: set[int] = set()
        while len(refused) < 2:
            refused |= {i for i, c in enumerate(clients) if c.get("/pipelines").status_code == 401}
            assert time.monotonic() - revoked_at < 1.0, refused
        for client in clients:
            client.close()
    finally:
        for server in servers:
            server.stop()


@pytest.mark.redis
def test_with_a_fleet_broker_the_api_only_publishes(tmp_path: Path, redis_instances: Callable[..., Any]) -> None:
    redis = redis_instances()
    server = ApiServer.start(tmp_path / "home", {"STAGEBUS_BROKER": redis.url})  # rate limits in it too
    try:
        key = server.create_key("ACME")["key"]
        with server.client(key) as client:
            pipeline = create_pipeline(client)
            batch = client.post(f"/pipelines/{pipeline}/batches", json=[{"name": "a"}]).json()["id"]
            time.sleep(1.5)
            # Then the batch is in the log, whole, but nothing here processes it: that is the fleet's job
            status = client.get(f"/pipelines/{pipeline}/batches/{batch}").json()
            assert status["status"] == "pending"
        runs = server.stagebus("runs", "--format", "json").stdout
        assert f"api-{batch}" in runs
        assert "publish-only mode" in server.log()
    finally:
        server.stop()
        redis.stop()
