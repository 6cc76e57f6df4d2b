"""The stage task's fixed costs cut for speed (issue 12), each with the guarantee it must keep:
group commit, unsynced StageStarted, the shared empty object, views written off the task path,
a sweep that never walks history, gate facts kept in memory, CURRENT read only when replaced."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from stagebus.actors.embedded import EmbeddedRunner
from stagebus.actors.gate import Gate, TaskRef
from stagebus.artifacts.local import EMPTY_SHA256, ArtifactStore
from stagebus.events import ManifestWritten, RunOpened, StageStarted
from stagebus.projections.generations import FileGenerations
from stagebus.projections.reader import Projections
from stagebus.store import MemoryEventStore, SqliteEventStore
from stagebus.store.sqlite import commit_level
from support import toy
from support.history_events import manifest_for


def started(run_id: str) -> StageStarted:
    return StageStarted(run_id=run_id, stage="s", partition="d/p", attempt=1, worker="w",
                        input_hash="i", config_hash="c")


def test_a_group_commit_keeps_each_append_atomic_and_refuses_only_the_taken_key(tmp_path: Path) -> None:
    # Given five threads appending while the writer is busy, one of them with a key taken already
    store = SqliteEventStore(tmp_path / "log.db")
    store.append_one(RunOpened(run_id="taken", pipeline="p"))
    results: dict[str, list] = {}  # type: ignore[type-arg]
    store._writer.acquire()
    batches = {f"t{i}": [RunOpened(run_id=f"r{i}", pipeline="p"), started(f"r{i}")] for i in range(4)}
    batches["clash"] = [started("x"), RunOpened(run_id="taken", pipeline="p")]

    def append(name: str) -> None:
        results[name] = store.append(batches[name])

    threads = [threading.Thread(target=append, args=(name,)) for name in batches]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(store._queued) < len(batches) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(store._queued) == len(batches)
    # When the writer is released: whoever takes it commits the whole group
    store._writer.release()
    for t in threads:
        t.join()
    # Then every append but the clashing one is stored whole, the clashing one not at all
    assert all(a.stored for name in batches if name != "clash" for a in results[name])
    assert [a.stored for a in results["clash"]] == [False, False]
    assert results["clash"][1].position == 1  # the position that holds the key
    # And the log is gap-free, chained, and holds no event of the refused append
    positions = [r.position for r in store.read()]
    assert positions == list(range(1, 1 + 1 + 8))
    assert store.verify().ok
    assert not any(isinstance(e, StageStarted) and e.run_id == "x" for e in (r.event() for r in store.read()))
    store.close()


def test_only_stage_started_commits_skip_the_fsync() -> None:
    manifest = ManifestWritten(run_id="r", stage="s", partition="d/p", manifest=manifest_for("r", "s", "d/p"))
    assert commit_level([started("r")], "FULL") == "NORMAL"
    assert commit_level([started("r"), manifest], "FULL") == "FULL"
    assert commit_level([manifest], "EXTRA") == "EXTRA"
    assert commit_level([started("r")], "NORMAL") == "NORMAL"


def test_an_empty_output_reuses_the_one_empty_object(tmp_path: Path) -> None:
    # Given an artifact store where one empty output was published
    store = ArtifactStore(tmp_path)
    first = store.pending("rejects").publish()
    obj = tmp_path / first.path
    inode = obj.stat().st_ino
    # When another task publishes an empty output
    second = store.pending("rejects").publish()
    # Then both name the empty object, which was made once, and no temp file is left
    assert first.sha256 == second.sha256 == EMPTY_SHA256 and first.bytes == 0
    assert obj.stat().st_ino == inode
    assert store.leftovers() == []


def test_a_damaged_empty_object_is_repaired_by_the_next_empty_output(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    obj = tmp_path / store.pending("rejects").publish().path
    obj.write_bytes(b"not empty")
    store.pending("rejects").publish()
    assert obj.read_bytes() == b""


def test_a_run_writes_no_views_and_leaves_no_temp_files(tmp_path: Path) -> None:
    # Given a run of three partitions run by the embedded runner
    store = SqliteEventStore(tmp_path / "log.db")
    projections = Projections(store, tmp_path / "projections")
    toy.publish(store, tmp_path, "r1", {f"p{i}": [{"n": i}] for i in range(3)})
    with EmbeddedRunner(store, projections, tmp_path / "art", toy.registry(), workers=2) as runner:
        report = runner.run()
    # Then its 7 tasks wrote no manifest.json (views are written on demand: `artifacts views`)
    assert report.ok and report.outcomes["complete"] == 7
    assert not (tmp_path / "art" / "runs").exists()
    assert not list((tmp_path / "art" / "objects" / ".tmp").iterdir())
    projections.close()
    store.close()


def test_the_sweep_never_walks_the_run_views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an artifact store with many views and a dead process's temp view
    store = ArtifactStore(tmp_path)
    for i in range(50):
        store.materialize(manifest_for("r1", "s", f"d/p{i}"))
    dead = store.tmp_dir / "somehost-999999999-abc.view"
    dead.write_bytes(b"{}")
    dead_here = store.tmp_dir / dead.name.replace("somehost", socket.gethostname())
    dead_here.write_bytes(b"{}")
    walked: list[Path] = []
    real_rglob = Path.rglob
    monkeypatch.setattr(Path, "rglob", lambda self, pattern: walked.append(self) or real_rglob(self, pattern))
    # When it sweeps, Then it removes this host's dead temp view, keeps another host's, walks no tree
    assert store.sweep() == 1
    assert dead.exists() and not dead_here.exists()
    assert walked == []


def test_the_gate_asks_the_log_once_for_facts_it_has_seen(tmp_path: Path) -> None:
    # Given a gate over a sealed toy run
    store = MemoryEventStore()
    toy.publish(store, tmp_path, "r1", {"p0": [{"n": 1}]})
    pipeline = toy.registry().get("toy")
    gate = Gate(store)
    calls: list[list[str]] = []
    real = store.get_many
    store.get_many = lambda keys: calls.append(list(keys)) or real(keys)  # type: ignore[method-assign]
    task = TaskRef("r1", "load", "nums/p0")
    first = gate.check(task, pipeline, own_manifest=True)
    asked = len(calls)
    second = gate.check(task, pipeline, own_manifest=True)
    # Then the second check asks only for what can still appear: the task's manifest, the abandon mark
    assert first.open and second.open
    assert len(calls) == asked + 1
    assert all(k.startswith(("manifest/", "abandon/")) for k in calls[-1])


def test_a_replaced_current_file_is_noticed(tmp_path: Path) -> None:
    generations = FileGenerations(tmp_path)
    (tmp_path / "CURRENT").write_text("000001\n")
    assert generations.live() == "000001"
    replacement = tmp_path / ".CURRENT.new"
    replacement.write_text("000002\n")
    replacement.replace(tmp_path / "CURRENT")
    assert generations.live() == "000002"
