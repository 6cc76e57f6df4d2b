"""Fixtures of the HTTP service tests: one real ``stagebus api`` per module, keys of two owners."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.api import ApiServer


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = ApiServer.start(tmp_path_factory.mktemp("api-home"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def acme(api_server: ApiServer) -> str:
    return api_server.create_key("ACME")["key"]


@pytest.fixture(scope="module")
def globex(api_server: ApiServer) -> str:
    return api_server.create_key("GLOBEX")["key"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"
