"""The artifact store contract, one behaviour per test, run against every backend: the local
filesystem and S3 (a real S3 HTTP API: ``moto_server`` on a loopback port, see :mod:`support.s3`).

"Another machine" is a second store on the same objects: for the local store the same directory
(a shared filesystem), for S3 the same bucket with a cache directory of its own.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stagebus.artifacts.integrity import VerifiedReader
from stagebus.artifacts.local import LocalArtifactStore
from stagebus.artifacts.store import ArtifactStore
from stagebus.errors import ArtifactCorrupted
from stagebus.events import Artifact, ManifestWritten
from stagebus.settings import S3Location
from stagebus.store import SqliteEventStore
from support.s3 import MotoServer

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "run_toy_artifacts.py"
PREFIX = "team/pipelines"
MiB = 1 << 20


@dataclass
class Backend:
    name: str
    open: Callable[[str], ArtifactStore]  # a store as seen from the machine named
    objects: Callable[[], set[str]]  # relative paths of every stored object
    tamper: Callable[[str, bytes], None]  # overwrite an object behind the store's back
    url: str  # what STAGEBUS_ARTIFACTS takes
    env: dict[str, str]


def local_backend(tmp_path: Path) -> Backend:
    root = tmp_path / "shared-artifacts"

    def tamper(relative: str, data: bytes) -> None:
        (root / relative).write_bytes(data)

    return Backend("local", lambda machine: LocalArtifactStore(root),
                   lambda: {p.relative_to(root).as_posix() for p in (root / "objects").glob("??/*")},
                   tamper, str(root), dict(os.environ))


def s3_backend(tmp_path: Path, server: MotoServer, bucket: str, **options: Any) -> Backend:
    raw = server.client()
    location = S3Location(bucket, PREFIX)

    def open_store(machine: str) -> ArtifactStore:
        from stagebus.artifacts.s3 import S3ArtifactStore

        return S3ArtifactStore(location, tmp_path / machine / "artifacts-cache", client=server.client(), **options)

    def objects() -> set[str]:
        listed = raw.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/").get("Contents", [])
        return {item["Key"].removeprefix(f"{PREFIX}/") for item in listed}

    def tamper(relative: str, data: bytes) -> None:
        raw.put_object(Bucket=bucket, Key=f"{PREFIX}/{relative}", Body=data)

    return Backend("s3", open_store, objects, tamper, location.url, server.env())


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return local_backend(tmp_path)
    server: MotoServer = request.getfixturevalue("moto_server")
    return s3_backend(tmp_path, server, request.getfixturevalue("s3_bucket"))


def publish(store: ArtifactStore, data: bytes, name: str = "records") -> Artifact:
    pending = store.pending(name)
    pending.write(data)
    pending.records = data.count(b"\n")
    return pending.publish()


def read_verified(store: ArtifactStore, artifact: Artifact) -> bytes:
    with VerifiedReader(store.path(artifact), artifact) as reader:
        data = reader.stream.read()
        reader.finish()
    return data


def test_publish_then_read_round_trip(backend: Backend) -> None:
    # Given a store on one machine and a reader on another
    writer, reader = backend.open("a"), backend.open("b")
    data = b"".join(b'{"n": %d}\n' % i for i in range(1000))
    # When an output is published
    artifact = publish(writer, data)
    # Then it is stored under its content address, and reads back whole and verified elsewhere
    assert artifact.path == f"objects/{artifact.sha256[:2]}/{artifact.sha256}"
    assert artifact.sha256 == hashlib.sha256(data).hexdigest() and artifact.bytes == len(data)
    assert backend.objects() == {artifact.path}
    assert read_verified(reader, artifact) == data
    assert reader.problem(artifact) is None and writer.leftovers() == []


def test_an_empty_output_is_the_one_empty_object(backend: Backend) -> None:
    # Given two tasks on two machines that write nothing to an output
    first = backend.open("a").pending("rejects").publish()
    second = backend.open("b").pending("rejects").publish()
    # Then both reference the one empty object, which exists and reads back empty
    assert first == second and first.bytes == 0
    assert backend.objects() == {first.path}
    assert read_verified(backend.open("c"), first) == b""


def test_same_content_twice_is_one_object_and_both_succeed(backend: Backend) -> None:
    # Given the same content published by two tasks on two machines
    data = b"same bytes\n" * 100
    first, second = publish(backend.open("a"), data), publish(backend.open("b"), data)
    # Then both succeed with the same object, stored once
    assert first == second
    assert backend.objects() == {first.path}


def test_concurrent_writers_of_one_object_all_succeed_and_one_is_stored(backend: Backend) -> None:
    # Given eight writers on eight machines holding the same content, released together
    data = os.urandom(256 * 1024)
    stores = [backend.open(f"m{i}") for i in range(8)]
    barrier = threading.Barrier(len(stores))
    results: list[Artifact] = []
    errors: list[BaseException] = []

    def write(store: ArtifactStore) -> None:
        pending = store.pending("records")
        pending.write(data)
        barrier.wait()
        try:
            results.append(pending.publish())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every writer succeeded, exactly one object is stored, and it is intact
    assert errors == [] and len(results) == 8 and len(set(results)) == 1
    assert backend.objects() == {results[0].path}
    assert backend.open("reader").problem(results[0]) is None


WRITER = """
import sys, time
from pathlib import Path
from stagebus.artifacts import open_artifacts
from stagebus.settings import Settings
home, url, source, go = (Path(a) for a in sys.argv[1:5])
store = open_artifacts(Settings(home=home, artifacts=str(sys.argv[2])))
pending = store.pending("records")
pending.write(source.read_bytes())
while not go.exists():
    time.sleep(0.005)
print(pending.publish().path)
"""


def test_concurrent_writer_processes_of_one_object_all_succeed_and_one_is_stored(
        tmp_path: Path, backend: Backend) -> None:
    # Given four processes, each on a home of its own, holding the same content, released together
    source = tmp_path / "content"
    source.write_bytes(os.urandom(512 * 1024))
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / f"home{i}"), backend.url, str(source),
                                 str(go)], env=backend.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(4)]
    go.touch()
    outputs = [w.communicate(timeout=120) for w in writers]
    # Then every one succeeded with the same object, stored once and intact
    assert [w.returncode for w in writers] == [0, 0, 0, 0], [err[-1000:] for _, err in outputs]
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1 and backend.objects() == paths
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    artifact = Artifact(name="records", path=paths.pop(), sha256=digest, bytes=512 * 1024, records=0)
    assert backend.open("reader").problem(artifact) is None


def test_a_write_in_progress_is_never_visible_under_a_final_name(backend: Backend) -> None:
    # Given an output half written (not yet published)
    store = backend.open("a")
    pending = store.pending("records")
    pending.write(b"half of it\n" * 10_000)
    pending.sync()
    # Then no object exists; and discarding it leaves nothing behind
    assert backend.objects() == set()
    pending.discard()
    assert backend.objects() == set() and store.leftovers() == []


def test_a_large_object_round_trips(tmp_path: Path, request: pytest.FixtureRequest, backend: Backend) -> None:
    # Given a store that uploads anything above 5 MiB in 5 MiB parts (multipart on S3)
    if backend.name == "s3":
        backend = s3_backend(tmp_path, request.getfixturevalue("moto_server"),
                             request.getfixturevalue("s3_bucket"), multipart_threshold=5 * MiB, part_size=5 * MiB)
    data = os.urandom(11 * MiB + 123)
    # When it is published by two machines, one after the other
    first = publish(backend.open("a"), data)
    second = publish(backend.open("b"), data)
    # Then one object holds it, and another machine reads it back verified
    assert first == second and backend.objects() == {first.path}
    assert read_verified(backend.open("c"), first) == data


def test_a_corrupted_object_is_a_clear_error_and_never_used(backend: Backend) -> None:
    # Given a published object whose bytes were replaced behind the store's back
    artifact = publish(backend.open("a"), b"the real content\n" * 50)
    backend.tamper(artifact.path, b"something else entirely\n")
    reader = backend.open("b")
    # When a reader on another machine reads it
    with pytest.raises(ArtifactCorrupted, match="corrupted") as caught:
        read_verified(reader, artifact)
    # Then the error says what is wrong and what to do, and verify reports it
    assert "run the stage that produced it again" in str(caught.value)
    assert "sha256" in (reader.problem(artifact) or "") or "bytes" in (reader.problem(artifact) or "")
    # And no copy of the corrupt bytes is kept where a later reader would take it as the object
    if backend.name == "s3":
        assert not (reader.root / artifact.path).exists()


def test_publishing_over_a_corrupted_object_repairs_it(backend: Backend) -> None:
    # Given a corrupted object
    data = b"recomputed by a correct run\n" * 20
    artifact = publish(backend.open("a"), data)
    backend.tamper(artifact.path, b"rot\n")
    # When a task publishes the same content again
    again = publish(backend.open("b"), data)
    # Then the object holds the right bytes again
    assert again == artifact
    assert backend.open("c").problem(artifact) is None


def test_a_missing_object_is_reported(backend: Backend) -> None:
    data = b"never stored\n"
    digest = hashlib.sha256(data).hexdigest()
    ghost = Artifact(name="records", path=f"objects/{digest[:2]}/{digest}", sha256=digest, bytes=len(data), records=1)
    store = backend.open("a")
    assert store.problem(ghost) == "missing"
    with pytest.raises(ArtifactCorrupted, match="missing"):
        read_verified(store, ghost)


def test_gc_deletes_only_unreferenced_objects_older_than_the_grace(backend: Backend) -> None:
    # Given two objects, one referenced by a manifest
    store = backend.open("a")
    kept, dropped = publish(store, b"referenced\n"), publish(store, b"unreferenced\n")
    # When gc runs with an hour of grace, or as a dry run
    young = store.gc({kept.path}, min_age_s=3600)
    dry = store.gc({kept.path}, min_age_s=0, dry_run=True)
    # Then nothing is deleted (both are young; a dry run only counts)
    assert young.files == 0 and dry.files == 1 and dry.bytes == dropped.bytes
    assert backend.objects() == {kept.path, dropped.path}
    # When it runs with no grace
    done = store.gc({kept.path}, min_age_s=0)
    # Then only the unreferenced object is gone
    assert (done.files, done.bytes) == (1, dropped.bytes)
    assert backend.objects() == {kept.path}
    assert store.problem(kept) is None


def run_toy(home: Path, backend: Backend, *args: str,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(home), backend.url, *args], capture_output=True,
                          text=True, timeout=180, env={**backend.env, **(env or {})})


@pytest.mark.chaos
def test_a_crash_between_object_and_manifest_leaves_no_manifest_and_the_rerun_reuses_it(
        tmp_path: Path, backend: Backend) -> None:
    # Given a run of the toy pipeline whose process is SIGKILLed right after storing an object
    home = tmp_path / "home"
    home.mkdir()
    assert run_toy(home, backend, "publish", "2").returncode == 0
    flag = tmp_path / "kill-after-store"
    flag.touch()
    crashed = run_toy(home, backend, env={"STAGEBUS_TEST_KILL_AFTER_STORE": str(flag)})
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    orphan = flag.read_text()
    # Then the object is stored but no manifest references it
    store = SqliteEventStore(home / "log.db")
    manifests = [e for e in (r.event() for r in store.read()) if isinstance(e, ManifestWritten)]
    assert orphan in backend.objects()
    assert all(orphan != a.path for m in manifests for a in m.manifest.artifacts)
    store.close()
    # When the pipeline runs again
    rerun = run_toy(home, backend)
    # Then it completes, the object is used by a manifest, still stored once, and intact
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr[-2000:]
    store = SqliteEventStore(home / "log.db")
    manifests = [e for e in (r.event() for r in store.read()) if isinstance(e, ManifestWritten)]
    store.close()
    assert len(manifests) == 2 * 2 + 1
    referenced = {a.path: a for m in manifests for a in m.manifest.artifacts}
    assert orphan in referenced and set(referenced) <= backend.objects()
    reader = backend.open("checker")
    assert all(reader.problem(a) is None for a in referenced.values())

