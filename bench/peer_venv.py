"""The peer virtualenv: Dagster, Luigi and eventsourcing, installed by the benchmark, outside the repo.

The peers never enter stagebus's own environment: the benchmark creates a separate virtualenv
(``python3 -m venv`` + ``pip install -r bench/peers_env/requirements.txt``, pinned versions)
under ``$STAGEBUS_BENCH_PEERS`` or ``$XDG_CACHE_HOME/stagebus-bench-peers`` (default
``~/.cache/...``), reuses it while the requirements file is unchanged, and runs the scripts in
``bench/peers_env/`` there as subprocesses that print one JSON object on stdout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).parent / "peers_env"
REQUIREMENTS = SCRIPTS / "requirements.txt"
INSTALL_TIMEOUT_S = 900


class PeersUnavailable(RuntimeError):
    """The peer virtualenv could not be created (no network, pip failed): the peers are skipped."""


def location() -> Path:
    if "STAGEBUS_BENCH_PEERS" in os.environ:
        return Path(os.environ["STAGEBUS_BENCH_PEERS"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "stagebus-bench-peers"


def _stamp() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]


def python() -> Path:
    return location() / "bin" / "python"


def ready() -> bool:
    """The venv exists and was built from the current requirements file."""
    marker = location() / "stagebus-requirements.sha256"
    return python().exists() and marker.exists() and marker.read_text().strip() == _stamp()


def ensure() -> Path:
    """The peer venv's python, creating or rebuilding the venv first if needed (~40 s, ~170 MB)."""
    if ready():
        return python()
    root = location()
    shutil.rmtree(root, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)  # a venv's python makes a venv of its base
    steps = [[base, "-m", "venv", str(root)],
             [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "-r", str(REQUIREMENTS)]]
    print(f"creating the peer virtualenv in {root} (pinned: {', '.join(pins())})", flush=True)
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        if done.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise PeersUnavailable(f"{' '.join(step[:3])}… failed: {' | '.join(tail)}")
    (root / "stagebus-requirements.sha256").write_text(_stamp() + "\n")
    return python()


def pins() -> list[str]:
    lines = (line.strip() for line in REQUIREMENTS.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def run_script(script: str, *args: str, timeout_s: float = 900) -> dict[str, Any]:
    """Run ``bench/peers_env/<script>`` in the peer venv; its last stdout line is JSON."""
    done = subprocess.run([str(python()), str(SCRIPTS / script), *args], capture_output=True, text=True,
                          timeout=timeout_s, cwd=SCRIPTS)
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def unavailable(quick: bool, what: str, command: str) -> str | None:
    """Why ``what`` cannot be measured now (quick mode never builds the venv), or None when the
    peer venv is ready, building it if needed."""
    if quick and not ready():
        return (f"{what} not measured in quick mode: the peer venv does not exist yet ({location()}); "
                f"`python -m bench {command}` creates it")
    try:
        ensure()
    except PeersUnavailable as exc:
        return f"{what} not measured: {exc}"
    return None


def record_skip(figures: dict[str, Any], reason: str, path: Path) -> dict[str, Any]:
    """Say why a peer benchmark did not run, and write that as its figures."""
    figures["skipped"] = reason
    print(reason)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
