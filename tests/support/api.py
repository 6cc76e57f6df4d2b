"""A real ``stagebus api`` process for tests: its own home, a free loopback port, httpx clients.

``ApiServer.start(home)`` runs the console command in a subprocess (so coverage's subprocess
patch measures it too), waits until ``/api/v1/health`` answers, and ``stop()`` sends SIGTERM
(the graceful path). Keys are made with the real ``stagebus keys create``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from support.net import free_port

STAGEBUS = [sys.executable, "-c", "from stagebus.cli import main; main()"]
API = "/api/v1"
# A user module of one custom processor, for servers and workers started with
# STAGEBUS_PROCESSORS naming it: "prefix" rejects a record without "id" and prefixes the others'.
PREFIX_PROCESSOR = '''
from pydantic import BaseModel

from stagebus import RecordRejected, processor


class Prefix(BaseModel):
    text: str


@processor("prefix", config=Prefix)
def prefix(record, config):
    if "id" not in record:
        raise RecordRejected("no id to prefix")
    return {**record, "id": config.text + str(record["id"])}
'''


@dataclass
class ApiServer:
    home: Path
    env: dict[str, str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, home: Path, env: Mapping[str, str] | None = None, *, workers: int = 1) -> ApiServer:
        base = {k: v for k, v in os.environ.items() if not k.startswith("STAGEBUS_")}
        server = cls(home=home, env={**base, "STAGEBUS_HOME": str(home), **(env or {})})
        server.launch(workers=workers)
        return server

    def launch(self, *, workers: int = 1) -> None:
        self.port = free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path = self.home / f"api-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*STAGEBUS, "api", "--port", str(self.port), "--workers", str(workers)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"stagebus api exited with {self.process.returncode}: {self.log()[-2000:]}")
            try:
                if httpx.get(f"{self.url}{API}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"stagebus api did not answer within {timeout_s}s: {self.log()[-2000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        """SIGTERM, the graceful shutdown; returns the exit code."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return None if self.process is None else self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    # --- clients and the CLI ------------------------------------------------------------------

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=f"{self.url}{API}", headers=headers, **{"timeout": 30, **kwargs})

    def stagebus(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*STAGEBUS, *args], env=self.env, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"stagebus {' '.join(args)} failed: {done.stderr}")
        return done

    def create_key(self, owner: str, rate: str = "100000/minute") -> dict[str, str]:
        """``{"id", "owner", "rate", "key"}`` from ``stagebus keys create --format json``."""
        return json.loads(self.stagebus("keys", "create", "--owner", owner, "--rate", rate, "--format", "json").stdout)


def wait_for_batch(client: httpx.Client, pipeline_id: str, batch_id: str, *, timeout_s: float = 60.0,
                   until: tuple[str, ...] = ("completed", "failed")) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = client.get(f"/pipelines/{pipeline_id}/batches/{batch_id}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if body["status"] in until:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} still {body['status']} after {timeout_s}s")
        time.sleep(0.05)


PEOPLE_CONFIG: dict[str, Any] = {
    "source": {"type": "batch"},
    "processors": [
        {"name": "whitespace", "config": {}},
        {"name": "cast", "config": {"fields": {"age": "int"}}},
        {"name": "require", "config": {"fields": ["name"]}},
    ],
    "destination": {"type": "records"},
}


def create_pipeline(client: httpx.Client, name: str = "people", config: dict[str, Any] | None = None) -> str:
    answer = client.post("/pipelines", json={"name": name, "config": config or PEOPLE_CONFIG})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])
