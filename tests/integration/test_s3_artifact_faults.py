"""The S3 artifact store when S3 misbehaves: throttling and dropped connections are retried, an
unreachable endpoint is one clear infrastructure error, and an interrupted multipart upload
leaves nothing under the object's name. Against a real S3 HTTP API (moto_server); faults come
from a client that wraps the real one and fails chosen calls first, with botocore's own errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from stagebus.actors.failures import classify
from stagebus.artifacts.s3 import S3ArtifactStore
from stagebus.errors import ArtifactStoreUnavailable
from stagebus.settings import S3Location
from support.net import free_port
from support.s3 import ACCESS_KEY, SECRET_KEY, MotoServer, require_moto

require_moto(module=True)  # the faults below are botocore's own exceptions
import botocore.config  # noqa: E402
import botocore.exceptions  # noqa: E402

pytestmark = pytest.mark.s3
MiB = 1 << 20


class Flaky:
    """The real client, except that the first ``times`` calls of ``operation`` raise ``error``
    (or, given ``failing``, the calls with those numbers, counted from 1)."""

    def __init__(self, client: Any, operation: str, error: BaseException, times: int = 0,
                 failing: frozenset[int] = frozenset()) -> None:
        self._client, self._operation, self._error, self.left = client, operation, error, times
        self._failing = failing
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if name != self._operation:
            return real

        def call(**kwargs: Any) -> Any:
            self.calls += 1
            if self.calls in self._failing:
                raise self._error
            if self.left > 0:
                self.left -= 1
                raise self._error
            return real(**kwargs)

        return call


def slow_down(operation: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
         "ResponseMetadata": {"HTTPStatusCode": 503}}, operation)


def store_on(client: Any, bucket: str, tmp_path: Path, **options: Any) -> S3ArtifactStore:
    return S3ArtifactStore(S3Location(bucket, "faults"), tmp_path / "cache", client=client, **options)


def publish(store: S3ArtifactStore, data: bytes) -> Any:
    pending = store.pending("records")
    pending.write(data)
    return pending.publish()


def test_throttled_puts_are_retried_until_they_succeed(tmp_path: Path, moto_server: MotoServer,
                                                       s3_bucket: str) -> None:
    # Given S3 answering the first two puts with 503 SlowDown
    client = Flaky(moto_server.client(), "put_object", slow_down("PutObject"), times=2)
    store = store_on(client, s3_bucket, tmp_path)
    # When an object is published, Then it is stored after the retries, and reads back intact
    artifact = publish(store, b"throttled but stored\n")
    assert client.calls == 3
    assert store_on(moto_server.client(), s3_bucket, tmp_path / "other").problem(artifact) is None


def test_a_dropped_connection_mid_download_is_retried(tmp_path: Path, moto_server: MotoServer,
                                                      s3_bucket: str) -> None:
    # Given an object, and a reader whose first GET loses its connection
    artifact = publish(store_on(moto_server.client(), s3_bucket, tmp_path / "writer"), os.urandom(3 * MiB))
    error = botocore.exceptions.ConnectionClosedError(endpoint_url="http://s3.invalid")
    client = Flaky(moto_server.client(), "get_object", error, times=1)
    reader = store_on(client, s3_bucket, tmp_path / "reader")
    # When it reads, Then the download is retried and the cached copy is whole
    path = reader.path(artifact)
    assert client.calls == 2 and path.stat().st_size == artifact.bytes


def test_throttling_that_never_ends_is_one_infrastructure_error(tmp_path: Path, moto_server: MotoServer,
                                                                 s3_bucket: str) -> None:
    # Given S3 that throttles every put
    client = Flaky(moto_server.client(), "put_object", slow_down("PutObject"), times=10**6)
    store = store_on(client, s3_bucket, tmp_path, attempts=3)
    # When an object is published, Then the retries are bounded and the error is an infrastructure fault
    with pytest.raises(ArtifactStoreUnavailable, match="SlowDown") as caught:
        publish(store, b"never stored\n")
    assert client.calls == 3 and classify(caught.value) == "infrastructure"
    # And nothing was stored
    assert moto_server.client().list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0


def test_an_unreachable_endpoint_is_one_clear_error_without_secrets(tmp_path: Path) -> None:
    # Given an endpoint nothing listens on, with credentials configured
    import boto3

    endpoint = f"http://{ACCESS_KEY}:{SECRET_KEY}@127.0.0.1:{free_port()}"
    client = boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                                   region_name="us-east-1").client(
        "s3", endpoint_url=endpoint, config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=1))
    store = store_on(client, "no-such-host-bucket", tmp_path, attempts=2)
    # When an object is published
    with pytest.raises(ArtifactStoreUnavailable) as caught:
        publish(store, b"nowhere to go\n")
    # Then the message names the store and the fault, never a credential
    message = str(caught.value)
    assert "s3://no-such-host-bucket/faults" in message and "unavailable" in message
    assert SECRET_KEY not in message and ACCESS_KEY not in message


def test_a_wrong_bucket_is_an_infrastructure_fault(tmp_path: Path, moto_server: MotoServer) -> None:
    store = store_on(moto_server.client(), "bucket-nobody-made", tmp_path)
    with pytest.raises(ArtifactStoreUnavailable, match="NoSuchBucket") as caught:
        publish(store, b"x\n")
    assert classify(caught.value) == "infrastructure"


def test_an_interrupted_multipart_upload_leaves_nothing_under_the_name(tmp_path: Path, moto_server: MotoServer,
                                                                       s3_bucket: str) -> None:
    # Given a multipart upload whose completion fails for good
    raw = moto_server.client()
    error = botocore.exceptions.ClientError({"Error": {"Code": "InternalError"},
                                             "ResponseMetadata": {"HTTPStatusCode": 500}}, "CompleteMultipartUpload")
    client = Flaky(raw, "complete_multipart_upload", error, times=10**6)
    store = store_on(client, s3_bucket, tmp_path, multipart_threshold=5 * MiB, part_size=5 * MiB, attempts=2)
    data = os.urandom(10 * MiB + 1)
    with pytest.raises(ArtifactStoreUnavailable):
        publish(store, data)
    # Then no object exists under the prefix and the upload was aborted, not left to linger
    assert raw.list_objects_v2(Bucket=s3_bucket, Prefix="faults/").get("KeyCount", 0) == 0
    assert raw.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    # When S3 recovers and the task publishes again, Then the object is stored whole
    artifact = publish(store_on(raw, s3_bucket, tmp_path / "retry", multipart_threshold=5 * MiB,
                                part_size=5 * MiB), data)
    assert store_on(raw, s3_bucket, tmp_path / "reader").problem(artifact) is None


def test_gc_lists_every_page_even_when_a_page_request_fails_once(tmp_path: Path, moto_server: MotoServer,
                                                                 s3_bucket: str) -> None:
    # Given five unreferenced objects, listed two keys per request, the second request failing once
    writer = store_on(moto_server.client(), s3_bucket, tmp_path / "writer")
    published = [publish(writer, f"orphan {i}\n".encode()) for i in range(5)]
    error = botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3.invalid")
    client = Flaky(moto_server.client(), "list_objects_v2", error, failing=frozenset({2}))
    store = store_on(client, s3_bucket, tmp_path / "collector")
    store.list_page = 2
    # When gc runs without grace, keeping one of them
    collected = store.gc({published[0].path}, min_age_s=0)
    # Then it found and deleted the other four: the failed page was retried, not skipped
    assert collected.files == 4 and client.calls == 4  # pages 1, 2 (failed), 2 again, 3
    left = moto_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert [item["Key"] for item in left] == [f"faults/{published[0].path}"]


def test_a_run_waits_out_an_s3_outage_uncharged_and_completes(tmp_path: Path, moto_server: MotoServer,
                                                              s3_bucket: str) -> None:
    from stagebus.actors.embedded import EmbeddedRunner
    from stagebus.events import StageFailed
    from stagebus.projections.reader import Projections
    from stagebus.store import SqliteEventStore
    from support import toy

    # Given a run of the toy pipeline whose artifact store throttles its first six puts (one
    # attempt each: every put that fails is a failed publish)
    store = SqliteEventStore(tmp_path / "log.db")
    projections = Projections(store, tmp_path / "projections")
    toy.publish(store, tmp_path, "r1", {"p0": [{"n": 1}, {"n": 2}], "p1": [{"n": 3}]})
    client = Flaky(moto_server.client(), "put_object", slow_down("PutObject"), times=6)
    artifacts = store_on(client, s3_bucket, tmp_path / "cache", attempts=1)
    # When the embedded runner runs until idle
    with EmbeddedRunner(store, projections, artifacts, toy.registry(2), workers=2, infra_wait_s=30) as runner:
        report = runner.run()
    # Then the run completed, the faults were infrastructure (no attempt charged), every partition valid
    assert report.ok and report.waiting == [], report
    failures = [e for e in (r.event() for r in store.read()) if isinstance(e, StageFailed)]
    assert failures and all(f.infrastructure and not f.final for f in failures)
    projections.catch_up()
    assert {e.status for e in projections.ledger()} == {"valid"}
    reader = store_on(moto_server.client(), s3_bucket, tmp_path / "reader")
    manifests = [m for stage in ("load", "double", "total") for m in projections.manifests("r1", stage)]
    assert all(reader.problem(a) is None for m in manifests for a in m.artifacts)
    projections.close()
    store.close()


def test_a_412_for_an_object_gone_since_still_leaves_it_stored(tmp_path: Path, moto_server: MotoServer,
                                                               s3_bucket: str) -> None:
    # Given a put refused with 412 (another writer had it) for an object deleted since (a gc)
    refused = botocore.exceptions.ClientError({"Error": {"Code": "PreconditionFailed"},
                                               "ResponseMetadata": {"HTTPStatusCode": 412}}, "PutObject")
    client = Flaky(moto_server.client(), "put_object", refused, times=1)
    store = store_on(client, s3_bucket, tmp_path)
    # When an object is published, Then it is in the bucket, intact: the writer did not trust the 412
    artifact = publish(store, b"must not be lost\n")
    assert client.calls == 2
    assert store_on(moto_server.client(), s3_bucket, tmp_path / "reader").problem(artifact) is None


READ_AS_NOBODY = """
import site, sys
site.addsitedir(sys.argv[1])
from pathlib import Path
import boto3, msgspec
from stagebus.artifacts.s3 import S3ArtifactStore
from stagebus.events import Artifact
from stagebus.settings import S3Location
endpoint, bucket, root, artifact = sys.argv[2], sys.argv[3], Path(sys.argv[4]), sys.argv[5]
client = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1").client(
    "s3", endpoint_url=endpoint)
store = S3ArtifactStore(S3Location(bucket, "faults"), root, create=False, client=client)
path = store.path(msgspec.json.decode(artifact.encode(), type=Artifact))
print(path)
print(path.read_text(), end="")
"""


def _nobody_interpreter(candidates: list[str]) -> str | None:
    """An interpreter user nobody may run (the virtualenv's may be under a directory only root enters)."""
    import subprocess

    from support.files import become_nobody

    for candidate in candidates:
        try:
            if Path(candidate).exists() and subprocess.run([candidate, "-c", "pass"], preexec_fn=become_nobody,
                                                           capture_output=True, timeout=30).returncode == 0:
                return candidate
        except OSError:
            continue
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can switch to user nobody")
def test_a_reader_that_may_not_write_the_home_reads_through_a_cache_of_its_own(
        moto_server: MotoServer, s3_bucket: str) -> None:
    import shutil
    import subprocess
    import sys
    import sysconfig
    import tempfile

    import msgspec

    from support.files import become_nobody

    # Given an object, and a home user nobody may read but not write
    home = Path(tempfile.mkdtemp(prefix="sb-s3-ro-"))
    spare: Path | None = None
    try:
        home.chmod(0o755)
        artifact = publish(store_on(moto_server.client(), s3_bucket, home / "writer-cache"), b"read me\n")
        root = home / "artifacts-cache"
        root.mkdir(mode=0o755)
        candidates = [sys.executable, f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"]
        interpreter = _nobody_interpreter(candidates)
        if interpreter is None:
            pytest.skip("no Python interpreter that user nobody may run")
        # When nobody reads it
        done = subprocess.run([interpreter, "-B", "-c", READ_AS_NOBODY, sysconfig.get_paths()["purelib"],
                               moto_server.endpoint, s3_bucket, str(root), msgspec.json.encode(artifact).decode()],
                              preexec_fn=become_nobody, capture_output=True, text=True, timeout=60)
        # Then it reads the object, from a cache in the temp directory, and the home is untouched
        assert done.returncode == 0, done.stderr[-2000:]
        where, content = done.stdout.split("\n", 1)
        spare = Path(where.removesuffix(artifact.path))
        assert content == "read me\n" and spare.parent == Path(tempfile.gettempdir())
        assert list(root.iterdir()) == []
    finally:
        shutil.rmtree(home)
        if spare is not None:
            shutil.rmtree(spare, ignore_errors=True)


def test_a_large_download_holds_a_few_blocks_in_memory_not_the_object(tmp_path: Path, moto_server: MotoServer,
                                                                       s3_bucket: str) -> None:
    import hashlib
    import tracemalloc

    from stagebus.artifacts.s3 import DOWNLOAD_BLOCK
    from stagebus.events import Artifact

    # Given a 64 MiB object in the bucket (put there by a plain client: only the read is measured)
    data = os.urandom(64 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    artifact = Artifact(name="big", path=f"objects/{digest[:2]}/{digest}", sha256=digest, bytes=len(data), records=0)
    moto_server.client().put_object(Bucket=s3_bucket, Key=f"faults/{artifact.path}", Body=data)
    del data
    reader = store_on(moto_server.client(), s3_bucket, tmp_path)
    # When a reader downloads it into its cache, with Python's allocations traced
    tracemalloc.start()
    try:
        path = reader.path(artifact)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Then it is whole on disk, and the peak was a few download blocks, far below the object's size
    assert path.stat().st_size == 64 * MiB
    assert peak < 4 * DOWNLOAD_BLOCK < 64 * MiB, f"peak {peak / MiB:.1f} MiB"


@pytest.mark.parametrize("multipart", [False, True])
def test_a_large_upload_holds_a_few_parts_in_memory_not_the_object(tmp_path: Path, moto_server: MotoServer,
                                                                   s3_bucket: str, multipart: bool) -> None:
    import tracemalloc

    # Given a 48 MiB output spooled to its temp file, published in one PUT or in 5 MiB parts
    options = {"multipart_threshold": 5 * MiB, "part_size": 5 * MiB} if multipart else {}
    store = store_on(moto_server.client(), s3_bucket, tmp_path, **options)
    pending = store.pending("records")
    block = os.urandom(MiB)
    for _ in range(48):
        pending.write(block)
    # When it is published, with Python's allocations traced
    tracemalloc.start()
    try:
        artifact = pending.publish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Then the object is stored whole, and the peak stayed far below its size
    assert store_on(moto_server.client(), s3_bucket, tmp_path / "reader").problem(artifact) is None
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB"
