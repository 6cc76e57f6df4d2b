"""A home made by running the toy pipeline for real, and ``stagebus ui`` over it as a real server
process on a free loopback port: what the inspector's HTTP and browser tests share.

The home (``build_home``):

- run ``r1``: ``nums/a`` (one record rejected: ``n`` is not an integer) and ``nums/c``, both valid;
- run ``r2``: ``nums/b``, poisoned in ``load`` (a permanent failure): invalid, ``total`` blocked;
- run ``r3``: ``r2`` resumed from ``load`` (its child), which fails again;
- run ``r4``: ``nums/a`` again with ``double.factor`` 3: valid at ``r4`` (replacing ``r1``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner, Result

from stagebus.cli import app
from support.net import free_port

TOY = "support.toy:toy_pipeline"
TOY_FACTOR3 = "support.why_toy:factor3"
ROOT = Path(__file__).resolve().parents[2]


def stagebus(home: Path, *args: str, pipelines: str = TOY) -> Result:
    return CliRunner(env={"STAGEBUS_PIPELINES": pipelines}).invoke(app, ["--home", str(home), *args])


def publish(home: Path, data: Path, run_id: str, partition: str, lines: list[dict], *,  # type: ignore[type-arg]
            pipelines: str = TOY, seal: bool = True) -> None:
    data.mkdir(parents=True, exist_ok=True)
    path = data / f"{run_id}-{partition}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    args = ["publish", "--pipeline", "toy", "--dataset", "nums", "--partition", partition, "--file", str(path),
            "--run-id", run_id]
    result = stagebus(home, *args, *(["--seal"] if seal else []), pipelines=pipelines)
    assert result.exit_code == 0, result.output


def build_home(home: Path, data: Path) -> Path:
    publish(home, data, "r1", "a", [{"n": 1}, {"n": "x"}, {"n": 2}], seal=False)
    publish(home, data, "r1", "c", [{"n": 5}])
    assert stagebus(home, "run").exit_code == 0
    publish(home, data, "r2", "b", [{"n": 1}, {"n": 2, "act": "poison"}])
    assert stagebus(home, "run").exit_code == 1  # b fails for good in load
    resumed = stagebus(home, "run", "--run-id", "r2", "--resume-from", "load")
    assert resumed.exit_code == 1, resumed.output  # the resumed run (r3) is poisoned again
    publish(home, data, "r4", "a", [{"n": 1}, {"n": "x"}, {"n": 2}], pipelines=TOY_FACTOR3)
    assert stagebus(home, "run", pipelines=TOY_FACTOR3).exit_code == 0
    return home


def child_run(home: Path, parent: str) -> str:
    runs = json.loads(stagebus(home, "runs", "--format", "json").stdout)
    return next(r["run_id"] for r in runs if r["parent_run_id"] == parent)


@dataclass
class Page:
    status: int
    body: str
    headers: dict[str, str]  # names in lower case


def fetch(url: str) -> Page:
    request = urllib.request.Request(url, headers={"Accept": "text/html"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Page(response.status, response.read().decode(), {k.lower(): v for k, v in response.headers.items()})
    except urllib.error.HTTPError as exc:
        return Page(exc.code, exc.read().decode(), {k.lower(): v for k, v in exc.headers.items()})


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT/ui
    process: subprocess.Popen[str]

    def get(self, path: str) -> Page:
        return fetch(self.url + path)

    def stderr(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read() if self.process.poll() is not None else ""


BOOT = "import sys; from stagebus.cli import main; sys.argv[0] = 'stagebus'; main()"


def ui_command(home: Path, port: int, *extra: str, interpreter: str = sys.executable,
               boot: str = BOOT) -> list[str]:
    return [interpreter, "-B", "-c", boot, "--home", str(home), "ui", "--port", str(port), *extra]


@contextlib.contextmanager
def serve(home: Path, *, env: dict[str, str] | None = None, command: list[str] | None = None,
          preexec_fn: Callable[[], None] | None = None, cwd: Path | None = None) -> Iterator[Server]:
    """``stagebus ui`` over ``home`` in a subprocess, once it answers; stopped (SIGTERM) after."""
    port = free_port()
    environment = {**os.environ, "STAGEBUS_PIPELINES": TOY, "PYTHONPATH": str(ROOT / "tests"), **(env or {})}
    args = command or ui_command(home, port)
    if command is not None:
        args = [a.replace("{port}", str(port)) for a in command]
    process = subprocess.Popen(args, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=preexec_fn, cwd=cwd)
    server = Server(f"http://127.0.0.1:{port}/ui", process)
    try:
        _wait_until_up(server)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def _wait_until_up(server: Server, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"stagebus ui exited with {server.process.returncode}: {server.stderr()}")
        try:
            with urllib.request.urlopen(server.url + "/static/live.js", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"stagebus ui did not answer at {server.url} within {timeout_s}s")
        time.sleep(0.1)
