"""Tampered objects: never read, reused or published over as if they were intact."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from stagebus.actors.executor import Executor, Outcome
from stagebus.actors.gate import TaskRef
from stagebus.artifacts.audit import audit
from stagebus.artifacts.integrity import VerifiedReader
from stagebus.artifacts.local import ArtifactStore
from stagebus.errors import ArtifactCorrupted
from stagebus.events import Artifact, ManifestWritten, StageFailed
from stagebus.pipeline.context import StageContext
from stagebus.store import MemoryEventStore
from support import toy
from support.reference import LogLookups


@pytest.fixture
def store() -> MemoryEventStore:
    toy.CALLS.clear()
    toy.FAIL_BUDGET.clear()
    return MemoryEventStore()


def manifests(store: MemoryEventStore, run_id: str | None = None) -> list[ManifestWritten]:
    events = (r.event() for r in store.read())
    return [e for e in events if isinstance(e, ManifestWritten) and run_id in (None, e.run_id)]


def tamper(path: Path, at: int = 0) -> None:
    """Change one byte of a file in place, as an editor or a bad disk would."""
    with path.open("r+b") as fh:
        fh.seek(at)
        byte = fh.read(1)
        fh.seek(at)
        fh.write(b"7" if byte != b"7" else b"8")


def loaded(store: MemoryEventStore, tmp_path: Path, run_id: str = "r1") -> tuple[Executor, str, Artifact]:
    """``load`` done for one partition; returns the executor, partition ref and its numbers object."""
    (ref,) = toy.publish(store, tmp_path, run_id, {"a": [{"n": 1}, {"n": 2}, {"n": 3}]})
    ex = Executor(store, ArtifactStore(tmp_path / "art"), toy.registry(), lookups=LogLookups(store))
    assert ex.execute(TaskRef(run_id, "load", ref), "toy") is Outcome.COMPLETE
    (numbers,) = [a for a in manifests(store)[-1].manifest.artifacts if a.name == "numbers"]
    return ex, ref, numbers


def test_reading_a_tampered_upstream_fails_the_task_without_a_manifest(store: MemoryEventStore,
                                                                       tmp_path: Path) -> None:
    # Given load's numbers object edited behind the store's back (still valid JSON lines)
    ex, ref, numbers = loaded(store, tmp_path)
    tamper(ex.artifacts.path(numbers), at=len('{"n":'))
    # When double reads it
    with pytest.raises(ArtifactCorrupted) as caught:
        ex.execute(TaskRef("r1", "double", ref), "toy", final=False)
    # Then the task failed at once, naming the artifact, object and both hashes, and wrote no manifest
    message = str(caught.value)
    actual = hashlib.sha256(ex.artifacts.path(numbers).read_bytes()).hexdigest()
    assert "'numbers'" in message and numbers.path in message and numbers.sha256 in message and actual in message
    assert "stage 'load'" in message and "run r1" in message
    (failed,) = [e for e in (r.event() for r in store.read()) if isinstance(e, StageFailed)]
    assert failed.final and failed.error_type == "ArtifactCorrupted"
    assert [m.stage for m in manifests(store)] == ["load"]
    assert ex.artifacts.leftovers() == []


def test_a_tamper_that_breaks_json_is_reported_as_corruption(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given the object's first byte changed, so its first line no longer decodes
    ex, ref, numbers = loaded(store, tmp_path)
    tamper(ex.artifacts.path(numbers), at=0)
    # When double reads it, Then the error is the integrity error, not a decode error
    with pytest.raises(ArtifactCorrupted):
        ex.execute(TaskRef("r1", "double", ref), "toy")


def test_a_deleted_upstream_object_is_an_integrity_error(store: MemoryEventStore, tmp_path: Path) -> None:
    ex, ref, numbers = loaded(store, tmp_path)
    ex.artifacts.path(numbers).unlink()
    with pytest.raises(ArtifactCorrupted, match="missing"):
        ex.execute(TaskRef("r1", "double", ref), "toy")


def test_reuse_of_a_tampered_object_executes_again_and_repairs_it(store: MemoryEventStore, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    # Given run r1 loaded, and its numbers object tampered
    ex, ref, numbers = loaded(store, tmp_path)
    intact = ex.artifacts.path(numbers).read_bytes()
    tamper(ex.artifacts.path(numbers), at=len('{"n":'))
    calls = toy.CALLS.get("load", 0)
    # When run r2, with the same input and config, reaches load
    toy.publish(store, tmp_path, "r2", {"a": [{"n": 1}, {"n": 2}, {"n": 3}]})
    with caplog.at_level(logging.WARNING, logger="stagebus.artifacts"):
        outcome = ex.execute(TaskRef("r2", "load", ref), "toy")
    # Then load executed again instead of reusing, and its publish put the right bytes back
    assert outcome is Outcome.COMPLETE and toy.CALLS["load"] == calls + 1
    assert manifests(store, "r2")[0].manifest.status == "complete"
    assert ex.artifacts.path(numbers).read_bytes() == intact and ex.artifacts.verify(numbers)
    assert "repaired object" in caplog.text
    # And a downstream stage of r1 now reads the repaired object
    assert ex.execute(TaskRef("r1", "double", ref), "toy") is Outcome.COMPLETE


def test_publishing_over_a_corrupted_object_replaces_it(tmp_path: Path) -> None:
    # Given an object whose bytes no longer match its name
    artifacts = ArtifactStore(tmp_path)
    first = artifacts.pending("out")
    first.write(b"hello world\n")
    artifact = first.publish()
    tamper(artifacts.path(artifact))
    assert not artifacts.verify(artifact)
    # When the same content is published again
    again = artifacts.pending("out")
    again.write(b"hello world\n")
    assert again.publish() == artifact
    # Then the object holds the content its name says, and no temp file is left
    assert artifacts.path(artifact).read_bytes() == b"hello world\n"
    assert artifacts.leftovers() == []


def test_publishing_over_an_intact_object_keeps_it(tmp_path: Path) -> None:
    artifacts = ArtifactStore(tmp_path)
    for _ in range(2):
        pending = artifacts.pending("out")
        pending.write(b"same\n")
        artifact = pending.publish()
    assert artifacts.verify(artifact) and artifacts.leftovers() == []


def test_verified_reader_yields_every_line_and_checks_at_the_end(tmp_path: Path) -> None:
    # Given an object larger than one read block, without a final newline
    lines = [json.dumps({"n": i, "pad": "x" * 50}).encode() + b"\n" for i in range(30_000)]
    data = b"".join(lines) + b'{"n": -1}'
    path = tmp_path / "obj"
    path.write_bytes(data)
    artifact = Artifact(name="o", path="obj", sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), records=0)
    # When read line by line, Then the lines are exactly the file's
    with VerifiedReader(path, artifact) as reader:
        assert list(reader.lines()) == [*lines, b'{"n": -1}']
    # And a reader of a record claiming other bytes fails at the end
    wrong = Artifact(name="o", path="obj", sha256="0" * 64, bytes=len(data), records=0)
    with VerifiedReader(path, wrong) as reader, pytest.raises(ArtifactCorrupted, match="expected sha256 0000"):
        list(reader.lines())


def test_audit_reports_tampered_objects_and_writes_missing_views_on_repair(store: MemoryEventStore,
                                                                         tmp_path: Path) -> None:
    # Given a run with one object tampered, and no manifest.json views (tasks write none)
    ex, ref, numbers = loaded(store, tmp_path)
    ex.execute(TaskRef("r1", "double", ref), "toy")
    tamper(ex.artifacts.path(numbers), at=len('{"n":'))
    view = ex.artifacts.manifest_path("r1", "double", ref)
    records = [m.manifest for m in manifests(store)]
    # When audited, Then the object is found with the stage to run again; a missing view is no damage
    report = audit(ex.artifacts, records)
    assert not report.ok and [(f.kind, f.stage) for f in report.findings] == [("object", "load")]
    (bad,) = report.findings
    assert bad.path == numbers.path and "--resume-from load" in bad.advice and "r1" in bad.advice
    assert not view.exists()  # read-only without repair
    # When audited with repair, Then the views are written from the manifests, the object still reported
    report = audit(ex.artifacts, records, repair=True)
    assert view.exists() and json.loads(view.read_text())["stage"] == "double"
    assert [f.kind for f in report.findings if not f.repaired] == ["object"]
    assert [f.kind for f in audit(ex.artifacts, records).findings] == ["object"]


def test_artifact_path_checks_the_object_before_handing_it_out(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given a stage context over load's tampered output (a stage that opens the path itself)
    ex, ref, numbers = loaded(store, tmp_path)
    ctx = StageContext(contract=toy.double.contract, config=toy.DoubleConfig(), run_id="r1", partition=ref,
                       attempt=1, artifacts=ex.artifacts, upstream={("load", ref): manifests(store)[0].manifest},
                       ingested={}, partitions=(ref,))
    assert ctx.artifact_path("load", "numbers") == ex.artifacts.path(numbers)
    tamper(ex.artifacts.path(numbers), at=len('{"n":'))
    # When it asks for the path, Then it is refused before anything reads it
    with pytest.raises(ArtifactCorrupted, match="expected sha256"):
        ctx.artifact_path("load", "numbers")
    ctx.discard()


def test_audit_rebuilds_an_edited_view_from_the_manifest(store: MemoryEventStore, tmp_path: Path) -> None:
    # Given a manifest.json view edited by hand
    ex, ref, _ = loaded(store, tmp_path)
    view = ex.artifacts.materialize(manifests(store)[0].manifest)
    assert view == ex.artifacts.manifest_path("r1", "load", ref)
    original = view.read_bytes()
    view.write_bytes(original.replace(b'"status":"complete"', b'"status":"reused"'))
    records = [m.manifest for m in manifests(store)]
    # When audited, Then it differs from the event; with repair it is the event's bytes again
    (finding,) = audit(ex.artifacts, records).findings
    assert finding.kind == "view" and finding.problem == "differs from the ManifestWritten event"
    assert audit(ex.artifacts, records, repair=True).ok and view.read_bytes() == original
    assert audit(ex.artifacts, records).findings == []
