"""The inspector mounted in another app behind an owner dependency (how the HTTP service mounts
it under its key auth): every route asks for the owner, and an owner sees only its pipelines'
runs, partitions, rejects and events; another owner's are 404 or left out of lists."""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI, Header, HTTPException

from stagebus.api.inspector import create_inspector
from stagebus.settings import Settings
from support.inspector import Page, build_home
from support.net import free_port

KEYS = {"key-alice": "alice", "key-bob": "bob"}
OWNS = {"alice": {"toy"}, "bob": {"other"}}


def current_owner(x_api_key: str | None = Header(default=None)) -> str:
    if x_api_key not in KEYS:
        raise HTTPException(status_code=401, detail="missing or unknown X-API-Key")
    return KEYS[x_api_key]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("scope")
    home = build_home(root / "home", root / "data")
    app = FastAPI()
    # the one line the HTTP service adds to mount the inspector behind its auth
    app.include_router(create_inspector(Settings(home=home, pipelines="support.toy:toy_pipeline"),
                                        owner_dependency=current_owner, owner_pipelines=OWNS.__getitem__))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/ui"
    server.should_exit = True
    thread.join(timeout=20)


def get(url: str, key: str | None) -> Page:
    request = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Page(response.status, response.read().decode(), {})
    except urllib.error.HTTPError as exc:
        return Page(exc.code, exc.read().decode(), {})


@pytest.mark.parametrize("path", ["/", "/ledger", "/runs", "/runs/r1", "/partition?dataset=nums&partition=a",
                                  "/rejects", "/log", "/log/1", "/log/verify", "/static/live.js"])
def test_every_route_needs_the_owner(url: str, path: str) -> None:
    assert get(url + path, None).status == 401
    assert get(url + path, "key-wrong").status == 401
    assert get(url + path, "key-alice").status == 200


def test_an_owner_sees_its_pipelines_only(url: str) -> None:
    partitions = re.compile(r'class="partition-link" href="[^"]*">([^<]*)<')
    assert partitions.findall(get(url + "/ledger", "key-alice").body) == ["a", "b", "c"]
    assert partitions.findall(get(url + "/ledger", "key-bob").body) == []
    assert "0 partition(s) match" in get(url + "/ledger", "key-bob").body
    for path in ["/runs/r1", "/partition?dataset=nums&partition=a", "/log/1", "/rejects?run=r1"]:
        assert get(url + path, "key-bob").status == 404, path
    assert 'class="run-link"' not in get(url + "/runs", "key-bob").body
    assert 'class="event"' not in get(url + "/log", "key-bob").body
    assert 'class="event"' in get(url + "/log", "key-alice").body
    assert "nums" not in get(url + "/", "key-bob").body.split('id="counts"')[-1][:200]
