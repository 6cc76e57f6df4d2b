"""The web inspector mounted in the HTTP service (/ui) and `stagebus ui` over a home with keys:
behind the same X-API-Key, each owner seeing only their own pipelines' runs."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from support.api import ApiServer, create_pipeline, wait_for_batch
from support.inspector import ui_command
from support.net import free_port


def submit(api_server: ApiServer, key: str, name: str) -> tuple[str, str]:
    with api_server.client(key) as client:
        pipeline = create_pipeline(client, name)
        answer = client.post(f"/pipelines/{pipeline}/batches", json=[{"name": "Ada", "age": "36"}])
        assert answer.status_code == 202, answer.text
        batch = answer.json()["id"]
        wait_for_batch(client, pipeline, batch)
    return pipeline, batch


def runs_page(base: str, key: str | None) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return httpx.get(f"{base}/ui/runs", headers=headers, timeout=30)


def test_the_service_serves_the_inspector_behind_its_keys(api_server: ApiServer, acme: str, globex: str) -> None:
    # Given one batch of ACME's and one of GLOBEX's
    acme_pipeline, acme_batch = submit(api_server, acme, "acme-people")
    globex_pipeline, globex_batch = submit(api_server, globex, "globex-people")
    base = api_server.url
    # When the inspector is asked without a key, Then it answers the API's 401 body
    anonymous = runs_page(base, None)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "UNAUTHORIZED"
    # When each owner asks for the runs, Then each sees their own batch's run and not the other's
    acme_page, globex_page = runs_page(base, acme), runs_page(base, globex)
    assert acme_page.status_code == 200 and globex_page.status_code == 200
    assert f"api-{acme_pipeline}" in acme_page.text and f"api-{globex_pipeline}" not in acme_page.text
    assert f"api-{globex_pipeline}" in globex_page.text and f"api-{acme_pipeline}" not in globex_page.text
    # And the other owner's run page is a 404, like a missing one
    other = httpx.get(f"{base}/ui/runs/api-{globex_batch}", headers={"X-API-Key": acme}, timeout=30)
    own = httpx.get(f"{base}/ui/runs/api-{acme_batch}", headers={"X-API-Key": acme}, timeout=30)
    missing = httpx.get(f"{base}/ui/runs/api-nothing-here", headers={"X-API-Key": acme}, timeout=30)
    assert own.status_code == 200 and other.status_code == missing.status_code == 404
    # And the inspector is not part of the /api/v1 spec
    spec = httpx.get(f"{base}/api/v1/openapi.json", timeout=30).json()
    assert not [path for path in spec["paths"] if path.startswith("/ui")]


def test_stagebus_ui_over_a_home_with_keys_asks_for_one(api_server: ApiServer, acme: str) -> None:
    # Given the service's home, which has keys: stagebus ui on its own, on every address
    port = free_port()
    process = subprocess.Popen(ui_command(api_server.home, port, "--host", "0.0.0.0"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                first = runs_page(base, acme)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "stagebus ui did not start"
                time.sleep(0.2)
        # Then with a key a page is served, without one or with a wrong one it is refused
        assert first.status_code == 200
        assert runs_page(base, None).status_code == 401
        assert runs_page(base, "sbk_not_a_real_key").status_code == 401
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "API keys exist" in stderr and acme not in stderr


def test_stagebus_ui_without_keys_stays_on_loopback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    subprocess.run([sys.executable, "-c", "from stagebus.cli import main; main()", "--home", str(home),
                    "publish", "--dataset", "d", "--partition", "p", "--file", __file__, "--meta", "format=jsonl"],
                   capture_output=True, text=True, timeout=120)
    done = subprocess.run(ui_command(home, free_port(), "--host", "0.0.0.0"), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "loopback" in done.stderr
