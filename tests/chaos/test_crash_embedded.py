"""Crash safety, tested by crashing: a real stagebus process SIGKILLed mid-stage, then rerun."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stagebus.artifacts.local import ArtifactStore
from stagebus.events import ManifestWritten, StageStarted
from stagebus.projections.reader import Projections
from stagebus.store import SqliteEventStore

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "run_toy.py"
pytestmark = pytest.mark.chaos


def run_toy(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(home), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def check_home(home: Path) -> tuple[list[ManifestWritten], list[StageStarted]]:
    """Invariants after any crash: one manifest per key, every artifact whole, no temp files."""
    store = SqliteEventStore(home / "log.db")
    events = [r.event() for r in store.read()]
    manifests = [e for e in events if isinstance(e, ManifestWritten)]
    keys = collections.Counter(e.key for e in manifests)
    assert all(n == 1 for n in keys.values())
    artifacts = ArtifactStore(home / "art")
    for event in manifests:
        for artifact in event.manifest.artifacts:
            assert artifacts.verify(artifact), f"{artifact.path} does not match its sha256"
    assert artifacts.leftovers() == []
    assert store.verify().ok
    store.close()
    return manifests, [e for e in events if isinstance(e, StageStarted)]


def test_sigkill_mid_write_leaves_nothing_half_written(tmp_path: Path) -> None:
    # Given 12 partitions, one of which kills its worker process while writing its output
    assert run_toy(tmp_path, "publish", "12").returncode == 0
    flag = tmp_path / "kill-once"
    flag.touch()
    # When the first run is SIGKILLed mid-write
    first = run_toy(tmp_path, env={"STAGEBUS_TEST_KILL": str(flag)})
    assert first.returncode == -9, first.stderr[-2000:]
    partial = list((tmp_path / "art" / "objects" / ".tmp").glob("*.part"))
    store = SqliteEventStore(tmp_path / "log.db")
    killed_task_manifest = store.get("manifest/r1/load/nums/p001")
    store.close()
    # Then the killed task has no manifest, and its half-written temp file is still on disk
    assert killed_task_manifest is None and partial
    # When the pipeline runs again
    second = run_toy(tmp_path)
    # Then it completes: the temp file swept, the task re-run, everything valid and whole
    assert second.returncode == 0, second.stdout + second.stderr[-2000:]
    assert "swept=" in second.stdout and "swept=0 " not in second.stdout
    manifests, starts = check_home(tmp_path)
    assert len(manifests) == 12 * 2 + 1
    assert sum(1 for s in starts if (s.stage, s.partition) == ("load", "nums/p001")) == 2
    projections = Projections(SqliteEventStore(tmp_path / "log.db"), tmp_path / "projections")
    projections.catch_up()
    assert {e.status for e in projections.ledger()} == {"valid"}


def test_sigkill_between_items_resumes_mid_way(tmp_path: Path) -> None:
    # Given a run whose "double" stage is killed while processing chunk 1 of its first partition
    assert run_toy(tmp_path, "publish", "3").returncode == 0
    flag = tmp_path / "kill-once"
    flag.touch()
    env = {"STAGEBUS_TEST_KILL_CHUNK_FLAG": str(flag), "STAGEBUS_TEST_KILL_AT_CHUNK": "1"}
    # When the process is SIGKILLed mid-stage, then run again
    assert run_toy(tmp_path, env=env).returncode == -9
    journals = list((tmp_path / "art" / "work").rglob("items.jsonl"))
    # chunk 0 of the killed task is committed, chunk 1 was in progress when the process died
    # (another partition's task, on the other worker thread, may have got anywhere meanwhile)
    assert journals and any(j.read_bytes().count(b"\n") == 1 for j in journals)
    parts = list((tmp_path / "art" / "work").rglob("numbers.part"))
    assert parts, "the items' outputs are kept in the work directory for the retry"
    assert run_toy(tmp_path).returncode == 0
    # Then the whole output is right (no chunk lost or doubled) and the journals are gone
    manifests, _ = check_home(tmp_path)
    for event in manifests:
        if event.stage == "double":
            numbers = next(a for a in event.manifest.artifacts if a.name == "numbers")
            assert numbers.records == (4 if event.partition == "nums/p001" else 6)
    assert list((tmp_path / "art" / "work").rglob("items.jsonl")) == []


def test_a_partition_that_kills_every_attempt_is_given_up_after_its_retries(tmp_path: Path) -> None:
    # Given a partition whose load SIGKILLs its process every time (retry policy: 1 + 2 attempts)
    assert run_toy(tmp_path, "publish-poison").returncode == 0
    env = {"STAGEBUS_TEST_KILL_ALWAYS": "1"}
    # When the pipeline is started again after each crash
    codes = [run_toy(tmp_path, env=env).returncode for _ in range(4)]
    # Then three attempts died, and the fourth start gives the task up instead of looping forever
    assert codes == [-9, -9, -9, 1]
    store = SqliteEventStore(tmp_path / "log.db")
    events = [r.event() for r in store.read()]
    starts = [e for e in events if isinstance(e, StageStarted) and e.partition == "nums/deadly"]
    assert [s.attempt for s in starts] == [1, 2, 3]
    projections = Projections(store, tmp_path / "projections")
    projections.catch_up()
    deadly = projections.partition("nums", "deadly")
    assert deadly.status == "invalid" and "AttemptsExhausted" in (deadly.reason or "")
    assert projections.partition("nums", "ok").status != "invalid"
