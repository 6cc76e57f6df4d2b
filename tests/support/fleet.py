"""A real fleet for tests: private redis-servers, ``stagebus relay`` and ``stagebus worker``
subprocesses over one home, and the checks every fault test ends with.

Each process runs in its own session, so a SIGKILL of its group takes the dramatiq master and
its worker children down together, as a lost machine would.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from stagebus.artifacts import ArtifactStore, LocalArtifactStore
from stagebus.events import ManifestWritten, StageStarted, manifest_key
from stagebus.projections import Projections
from stagebus.store.redis import RedisEventStore
from support import chain6

TESTS_DIR = Path(__file__).resolve().parents[1]
STAGEBUS = [sys.executable, "-c", "from stagebus.cli import main; main()"]
# Tuned for tests on two cores: idle workers poll every 100 ms, a dead task is sent again after
# 3 s, a dead leader's lease lapses after 2 s.
RELAY_FLAGS = ("--reconcile-every", "1", "--redelivery", "3", "--lease-ttl", "2", "--health-every", "2")
WORKER_FLAGS = ("--processes", "1", "--threads", "4", "--worker-timeout", "100", "--shutdown-timeout", "5")


@dataclass
class Fleet:
    home: Path
    log_url: str
    broker_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    relays: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_files: dict[int, Path] = field(default_factory=dict)
    _spawned: int = 0

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "STAGEBUS_HOME": str(self.home),
            "STAGEBUS_STORE": self.log_url,
            "STAGEBUS_BROKER": self.broker_url,
            "STAGEBUS_PIPELINES": "support.chain6:pipeline",
            "STAGEBUS_WORKER_PROJECTIONS": str(self.home / "worker-projections"),
            "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
            "dramatiq_worker_timeout": "100",  # what `stagebus worker --worker-timeout 100` sets
            **self.extra_env,
        }

    # --- processes -----------------------------------------------------------------------

    def _spawn(self, kind: str, args: Iterable[str], command: Iterable[str] = STAGEBUS) -> subprocess.Popen[bytes]:
        self._spawned += 1
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        path = logs / f"{kind}-{self._spawned:03d}.log"
        with path.open("wb") as out:
            proc = subprocess.Popen([*command, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.log_files[proc.pid] = path
        return proc

    def worker_ready(self, proc: subprocess.Popen[bytes]) -> bool:
        """Whether dramatiq says the worker's child is ready (imports done, consuming)."""
        path = self.log_files.get(proc.pid)
        return path is not None and path.exists() and b"ready for action" in path.read_bytes()

    def start_relay(self, *extra: str) -> subprocess.Popen[bytes]:
        proc = self._spawn("relay", ["relay", *RELAY_FLAGS, *extra])
        self.relays.append(proc)
        return proc

    def start_worker(self, *extra: str) -> subprocess.Popen[bytes]:
        proc = self._spawn("worker", ["worker", *WORKER_FLAGS, *extra])
        self.workers.append(proc)
        return proc

    def start_dramatiq(self, *args: str) -> subprocess.Popen[bytes]:
        """``dramatiq stagebus.actors.fleet ARGS``, the way the README says fleets may run it."""
        proc = self._spawn("worker", ["stagebus.actors.fleet", *args], command=[sys.executable, "-m", "dramatiq"])
        self.workers.append(proc)
        return proc

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        """Until every worker consumes and a relay holds the lease."""
        deadline = time.monotonic() + timeout_s
        while not (all(self.worker_ready(p) for p in self.workers) and self.relay_leading()):
            if time.monotonic() > deadline:
                raise AssertionError(f"fleet not ready within {timeout_s}s\n{self.log_tail()}")
            time.sleep(0.05)

    def relay_leading(self) -> bool:
        return any(b"is now the leader" in path.read_bytes()
                   for pid, path in self.log_files.items() if path.name.startswith("relay") and path.exists())

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every process still running (gracefully), SIGKILL what outlives the timeout.
        Only the group's leader is signalled: dramatiq's master forwards SIGTERM to its children,
        and a child that got it twice would stop at once instead of finishing its tasks."""
        procs = [p for p in [*self.workers, *self.relays] if p.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                kill(proc)

    def log_tail(self, lines: int = 30) -> str:
        text = []
        for path in sorted((self.home / "logs").glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            text.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(text)

    # --- the log -------------------------------------------------------------------------

    def store(self) -> RedisEventStore:
        return RedisEventStore.from_url(self.log_url)

    def publish(self, run_id: str, indices: list[int], act: dict[int, str] | None = None) -> list[str]:
        store = self.store()
        try:
            return chain6.publish(store, self.home / "data", run_id, indices, act=act)
        finally:
            store.close()

    def wait_until(self, done: Callable[[RedisEventStore], bool], timeout_s: float,
                   during: Callable[[float], None] | None = None) -> float:
        """Poll ``done(store)`` until true; ``during(elapsed)`` runs between polls. Returns seconds taken."""
        store = self.store()
        started = time.monotonic()
        try:
            while True:
                elapsed = time.monotonic() - started
                try:
                    if done(store):
                        return elapsed
                except Exception:  # the log's redis may be restarting on purpose
                    pass
                if elapsed > timeout_s:
                    raise AssertionError(f"fleet did not finish within {timeout_s}s\n{self.log_tail()}")
                if during is not None:
                    during(elapsed)
                time.sleep(0.1)
        finally:
            store.close()


# --- fixtures (conftest.py files import these) ------------------------------------------------

@pytest.fixture
def fleet_servers(redis_instances: Callable[..., Any]) -> dict[str, Any]:
    """The log's redis (AOF on, so it can be restarted on its data) and a broker-only one, so
    that flushing or losing the broker never touches the log. Values are tests/conftest.py's
    RedisInstance (url, pid, stop(), kill())."""
    return {"log": redis_instances(appendonly=True, name="log"), "broker": redis_instances(name="broker")}


@pytest.fixture
def fleet(tmp_path: Path, fleet_servers: dict[str, Any]) -> Iterator[Fleet]:
    """A fleet over a fresh home; start its relay and workers in the test. Stopped at the end."""
    running = Fleet(tmp_path / "home", fleet_servers["log"].url, fleet_servers["broker"].url)
    yield running
    running.stop(timeout_s=5)


def broker_outstanding(fleet: Fleet) -> int:
    """Messages the broker still holds, queued, delayed or being processed (dead letters aside)."""
    with redis.Redis.from_url(fleet.broker_url) as client:
        return sum(int(client.hlen(key)) for key in client.scan_iter("dramatiq:*.msgs") if b".XQ." not in key)


def served(run_id: str) -> Callable[[RedisEventStore], bool]:
    return lambda store: store.get(manifest_key(run_id, "serve", "*")) is not None


def kill(proc: subprocess.Popen[bytes]) -> None:
    _signal_group(proc, signal.SIGKILL)
    proc.wait(timeout=10)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def kill_random_worker(fleet: Fleet, rng: random.Random) -> bool:
    """SIGKILL one worker that is up (killed while still importing, dramatiq's master would wait
    30 s for it): at random its dramatiq child, the process running stage code, or the whole
    group; then start a replacement. False when no worker is up yet."""
    alive = [p for p in fleet.workers if p.poll() is None and fleet.worker_ready(p)]
    if not alive:
        return False
    victim = rng.choice(alive)
    children = _children(victim.pid)
    if children and rng.random() < 0.5:
        os.kill(rng.choice(children), signal.SIGKILL)  # dramatiq's master then stops and exits
        try:
            victim.wait(timeout=3)
        except subprocess.TimeoutExpired:
            kill(victim)
    else:
        kill(victim)
    fleet.workers.remove(victim)
    fleet.start_worker()
    return True


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


# --- the checks every fault test ends with -------------------------------------------------------

@dataclass
class FleetReport:
    partitions: int
    manifests: int
    starts: int
    duplicates_absorbed: int  # deliveries that found the manifest already written, or lost the race

    @property
    def unfinished_attempts(self) -> int:
        """Attempts that started and never wrote their manifest (killed, failed, or lost a race)."""
        return self.starts - self.manifests
    ledger: dict[str, str]
    reasons: dict[str, str]


def check_fleet(fleet: Fleet, runs: dict[str, list[str]], invalid: Iterable[str] = (),
                artifacts: ArtifactStore | None = None) -> FleetReport:
    """The end state every fault test must reach (call after :meth:`Fleet.stop`):

    every partition valid except ``invalid`` ones; exactly one manifest per key and one for every
    task of every run that could finish; every referenced artifact whole; no temp files left
    after a sweep; the log's chain intact; a replay identical to the relay's live projections.
    ``artifacts``: where the objects are (default: the home's local store).
    """
    invalid = set(invalid)
    store = fleet.store()
    events = [r.event() for r in store.read()]
    manifests = [e for e in events if isinstance(e, ManifestWritten)]
    per_key = collections.Counter(e.key for e in manifests)
    assert all(n == 1 for n in per_key.values()), [k for k, n in per_key.items() if n > 1][:5]
    for run_id, refs in runs.items():
        if invalid.intersection(refs):
            continue
        for ref in refs:
            for stage in chain6.PARTITION_STAGES:
                assert manifest_key(run_id, stage, ref) in per_key, f"no {stage} manifest for {run_id}/{ref}"
        for stage in chain6.RUN_STAGES:
            assert manifest_key(run_id, stage, "*") in per_key, f"no {stage} manifest for run {run_id}"

    artifacts = artifacts or LocalArtifactStore(fleet.home / "artifacts")
    broken = [a.path for e in manifests for a in e.manifest.artifacts if not artifacts.verify(a)]
    assert broken == [], f"artifacts missing or not matching their sha256: {broken[:5]}"
    artifacts.sweep()
    assert artifacts.leftovers() == []
    assert list((artifacts.root / "runs").rglob(".manifest.*.tmp")) == []

    with Projections(store, fleet.home / "check-projections") as projections:
        projections.catch_up()
        ledger = {f"{e.dataset}/{e.partition}": e.status for e in projections.ledger()}
        reasons = {f"{e.dataset}/{e.partition}": e.reason or "" for e in projections.ledger()}
    everything = {ref for refs in runs.values() for ref in refs}
    assert set(ledger) == everything
    wrong = {ref: s for ref, s in ledger.items() if s != ("invalid" if ref in invalid else "valid")}
    assert wrong == {}, f"partitions in the wrong state: {dict(list(wrong.items())[:5])}"
    _check_serve_totals(artifacts, runs, manifests, invalid)
    store.close()

    for command in (["log", "verify"], ["replay", "--verify"]):
        done = subprocess.run([*STAGEBUS, *command], env=fleet.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"stagebus {' '.join(command)}: {done.stdout}{done.stderr}"
    return FleetReport(
        partitions=len(everything), manifests=len(manifests),
        starts=sum(1 for e in events if isinstance(e, StageStarted)),
        duplicates_absorbed=absorbed_duplicates(fleet.home), ledger=ledger, reasons=reasons,
    )


def _check_serve_totals(artifacts: ArtifactStore, runs: dict[str, list[str]], manifests: list[ManifestWritten],
                        invalid: set[str]) -> None:
    for run_id, refs in runs.items():
        if invalid.intersection(refs):
            continue
        serve = next(e for e in manifests if e.run_id == run_id and e.stage == "serve")
        total = next(a for a in serve.manifest.artifacts if a.name == "total")
        record = json.loads(artifacts.path(total).read_text())
        indices = [int(ref.rsplit("p", 1)[1]) for ref in refs]
        assert record == {"total": chain6.expected_total(indices), "partitions": len(refs)}


def absorbed_duplicates(home: Path) -> int:
    """Deliveries the executor absorbed, from the workers' NDJSON task logs."""
    count = 0
    for path in (home / "logs").glob("tasks-*.ndjson"):
        for line in path.read_text().splitlines():
            if line and json.loads(line).get("event") in ("duplicate", "lost"):
                count += 1
    return count


def summary(name: str, **figures: Any) -> str:
    """One line of figures a test prints for the closing report (shown with ``pytest -s``/``-rA``)."""
    return f"[fleet figures] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items())
