"""A real S3 HTTP API for the tests: ``moto_server`` in a subprocess on a free loopback port.

Clients reach it through the standard AWS variables (:meth:`MotoServer.env`), exactly as an
operator's deployment would reach MinIO or AWS: nothing in stagebus knows it is talking to moto.
Credentials are fixed dummies; a test that checks output for secrets looks for them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.net import free_port

ACCESS_KEY = "AKIASTAGEBUSTEST0000"
SECRET_KEY = "stagebus-test-secret-key-never-printed"
REGION = "us-east-1"


def require_moto(*, module: bool = False) -> None:
    """A skip (locally) or failure (under CI) when moto's server or boto3 is missing; ``module``:
    called at import time of a test module that needs botocore itself."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        message = f"moto[server] and boto3 are not installed (pip install -e '.[test]'): {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=module)


@dataclass
class MotoServer:
    endpoint: str
    process: subprocess.Popen[bytes]

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) plus what an S3 client needs."""
        env = dict(os.environ if base is None else base)
        env.update(AWS_ENDPOINT_URL=self.endpoint, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                   AWS_DEFAULT_REGION=REGION, AWS_EC2_METADATA_DISABLED="true")
        env.pop("AWS_PROFILE", None)
        return env

    def client(self) -> Any:
        import boto3

        return boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                                     region_name=REGION).client("s3", endpoint_url=self.endpoint)

    def new_bucket(self) -> str:
        name = f"sb-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_moto(log_dir: Path) -> MotoServer:
    require_moto()
    port = free_port()
    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    args = [binary] if binary else [sys.executable, "-m", "moto.server"]
    log = (log_dir / "moto.log").open("wb")
    process = subprocess.Popen([*args, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    server = MotoServer(f"http://127.0.0.1:{port}", process)
    _wait_until_ready(server, log_dir / "moto.log")
    return server


def _wait_until_ready(server: MotoServer, log: Path, timeout_s: float = 30.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {server.process.returncode}: {log.read_text()[-500:]}")
        try:
            with urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"moto_server at {server.endpoint} did not answer within {timeout_s}s")
        time.sleep(0.05)
