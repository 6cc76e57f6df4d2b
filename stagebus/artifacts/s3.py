"""Artifacts in S3-compatible object storage (AWS S3, MinIO, Ceph RGW, …), through **boto3**.

Why boto3 rather than obstore: it is the client operators already run and configure. It reads the
whole AWS credential chain (environment, shared config and profiles, SSO, instance and container
roles), honours ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3`` for S3-compatibles, and has retry
modes built in; it exposes conditional writes (``IfNoneMatch``) on ``PutObject`` and
``CompleteMultipartUpload``; and moto, the S3 server the contract tests run against, is written
for it. obstore (one Rust API over S3, local and memory) would be faster per request but would
add a second configuration story; our hot path is hashing and disk, not request overhead.

Keys: ``<prefix>/objects/ab/<sha256>``, the same relative path a local store uses, so manifests
do not say which backend holds their objects.

- **Write**: the stage's output is spooled to a local temp file and hashed as it is written (as
  locally), then uploaded with ``If-None-Match: *`` (create-if-absent), the sha256 kept as object
  metadata. ``412 PreconditionFailed`` means another writer stored it: a HEAD checks its size and
  recorded sha256, and only a corrupt object is overwritten. Above :data:`MULTIPART_THRESHOLD`
  the upload is multipart (memory bounded by one part), completed with ``If-None-Match: *`` too.
  Only once the object is stored does ``publish`` return, so the manifest is appended after it.
  The temp file then becomes the object's copy in the local cache (a hard link, no copy).
- **Read**: :meth:`S3ArtifactStore.path` gives a file in the read-through cache under ``root``,
  downloaded in blocks to a temp file, verified (size, sha256), then renamed into place: bounded
  memory for a multi-GB artifact, and a corrupt object is never placed where a reader finds it.
- **Retries**: botocore's standard retry mode, and around every operation tenacity on throttling
  (``SlowDown``, 503), server errors and connection errors; after the budget
  :class:`~stagebus.errors.ArtifactStoreUnavailable`, which a stage task waits out uncharged.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import tenacity

from stagebus.artifacts.local import LocalArtifactStore
from stagebus.artifacts.pending import EMPTY_SHA256, HOST
from stagebus.artifacts.store import ArtifactStore, Collected, grace_cutoff
from stagebus.errors import ArtifactCorrupted, ArtifactStoreUnavailable, InvalidInput
from stagebus.events import Artifact
from stagebus.settings import S3Location

try:
    import boto3
    import botocore.config
    import botocore.exceptions
except ImportError:  # the optional extra
    boto3 = None

_log = logging.getLogger("stagebus.artifacts.s3")
T = TypeVar("T")

MULTIPART_THRESHOLD = 64 << 20
PART_SIZE = 16 << 20  # S3 wants ≥ 5 MiB per part but the last; one part is held in memory
DOWNLOAD_BLOCK = 8 << 20  # bounded memory per download; fewer, larger reads than 1 MiB measured faster
SHA256_METADATA = "sha256"
_OBJECT_KEY = re.compile(r"objects/[0-9a-f]{2}/[0-9a-f]{64}")
# Codes that mean "slow down or try again", not "your request is wrong".
_RETRY_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                          "ServiceUnavailable", "InternalError", "RequestTimeout", "ConditionalRequestConflict",
                          "500", "503"})
# Codes that mean the deployment is wrong (bucket, credentials, permissions), not the data: a
# task waits, uncharged, until an operator fixes it, as for a full disk.
_SETUP_CODES = frozenset({"NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                          "ExpiredToken", "InvalidToken", "AllAccessDisabled", "403"})
ATTEMPTS = 5


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return _code(exc) in _RETRY_CODES or status in (500, 502, 503, 504)
    return isinstance(exc, (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError,
                            botocore.exceptions.IncompleteReadError, ConnectionError, TimeoutError))


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _missing(exc: BaseException) -> bool:
    return isinstance(exc, botocore.exceptions.ClientError) and _code(exc) in ("404", "NoSuchKey", "NotFound")


class S3ArtifactStore(ArtifactStore):
    """Objects in ``s3://bucket/prefix``; ``root`` is this machine's cache and working area."""

    def __init__(self, location: S3Location, root: Path, *, create: bool = True, client: Any = None,
                 multipart_threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE,
                 attempts: int = ATTEMPTS) -> None:
        if boto3 is None:
            raise InvalidInput("s3:// artifacts need boto3: pip install 'stagebus[s3]'")
        super().__init__(root, create=create)
        self.bucket = location.bucket
        self.prefix = location.prefix
        self._url = location.url
        self._cache = LocalArtifactStore(root, create=create)
        self._client = client
        self._client_lock = threading.Lock()
        self.multipart_threshold = max(multipart_threshold, part_size)
        self.part_size = part_size
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_transient), stop=tenacity.stop_after_attempt(attempts),
            wait=tenacity.wait_exponential(multiplier=0.2, max=5.0) + tenacity.wait_random(0, 0.2), reraise=True)
        self._empty_stored = False
        self.list_page = 1000  # keys per ListObjectsV2 request (S3's maximum)

    @property
    def location(self) -> str:
        return self._url

    @property
    def client(self) -> Any:
        """One boto3 client per store (thread-safe), made on first use: commands that never touch
        an object never pay for the credential chain."""
        with self._client_lock:
            if self._client is None:
                config = botocore.config.Config(retries={"mode": "standard", "max_attempts": 3},
                                                max_pool_connections=32, connect_timeout=5, read_timeout=60)
                self._client = boto3.session.Session().client("s3", config=config)
            return self._client

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        """``operation`` with tenacity's retries; what stays unreachable becomes one clear error
        (its code and status only: a botocore message may quote the endpoint URL)."""
        try:
            return self._retrying.copy()(operation)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, ConnectionError,
                TimeoutError) as exc:
            setup = isinstance(exc, botocore.exceptions.NoCredentialsError) or (
                isinstance(exc, botocore.exceptions.ClientError) and _code(exc) in _SETUP_CODES)
            if not _transient(exc) and not setup:
                raise
            detail = _code(exc) if isinstance(exc, botocore.exceptions.ClientError) else type(exc).__name__
            raise ArtifactStoreUnavailable(f"artifact store {self._url} unavailable ({what}): {detail}") from None

    # --- writes -----------------------------------------------------------------------------

    def store_object(self, temp: Path, sha256: str, size: int) -> None:
        key = self.key(self.object_path(sha256))
        if size >= self.multipart_threshold:
            if not self._intact_remote(key, sha256, size, repair_from=None):
                self._upload_multipart(temp, key, sha256, size)
        else:
            try:
                self._call("put", lambda: self._put(temp, key, sha256, conditional=True))
            except botocore.exceptions.ClientError as exc:
                if _code(exc) != "PreconditionFailed":
                    raise
                self._settle(temp, key, sha256, size)  # stored by someone else
        if sha256 == EMPTY_SHA256:
            self._empty_stored = True  # every task has empty outputs: one HEAD per process, not per task
        self._cache.store_object(temp, sha256, size)  # the temp file becomes the cached copy

    def _put(self, temp: Path, key: str, sha256: str, *, conditional: bool) -> None:
        extra = {"IfNoneMatch": "*"} if conditional else {}
        with temp.open("rb") as body:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata={SHA256_METADATA: sha256},
                                   **extra)

    def _intact_remote(self, key: str, sha256: str, size: int, *, repair_from: Path | None) -> bool:
        """Whether ``key`` holds an object of ``size`` bytes recorded as ``sha256``; when it holds
        something else and ``repair_from`` is given, overwrite it with that verified file."""
        try:
            head = self._call("head", lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        except botocore.exceptions.ClientError as exc:
            if not _missing(exc):
                raise
            head = None
        if head is not None and head["ContentLength"] == size and head.get("Metadata", {}).get(
                SHA256_METADATA) == sha256:
            return True
        if head is not None and repair_from is not None:
            self._call("put", lambda: self._put(repair_from, key, sha256, conditional=False))
            _log.warning("repaired object %s/%s (size or recorded sha256 did not match) with freshly "
                         "published content", self._url, key)
            return True
        return False  # absent, or corrupt: a multipart writer overwrites it (its complete is unconditional)

    def _settle(self, temp: Path, key: str, sha256: str, size: int) -> None:
        """After a 412: keep the other writer's object if intact, else (corrupt, or deleted since:
        a gc, an aborted upload) store ours over it, unconditionally: it is this name's content."""
        if not self._intact_remote(key, sha256, size, repair_from=temp):
            self._call("put", lambda: self._put(temp, key, sha256, conditional=False))

    def _upload_multipart(self, temp: Path, key: str, sha256: str, size: int) -> None:
        created = self._call("create multipart", lambda: self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, Metadata={SHA256_METADATA: sha256}))
        upload_id = created["UploadId"]
        try:
            parts = []
            with temp.open("rb") as fh:
                number = 1
                while block := fh.read(self.part_size):
                    part = self._call("upload part", functools.partial(
                        self.client.upload_part, Bucket=self.bucket, Key=key, UploadId=upload_id,
                        PartNumber=number, Body=block))
                    parts.append({"PartNumber": number, "ETag": part["ETag"]})
                    number += 1
            exists = self._exists(key)
            extra = {"IfNoneMatch": "*"} if not exists else {}  # an existing one was found corrupt above
            try:
                self._call("complete multipart", lambda: self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **extra))
            except botocore.exceptions.ClientError as exc:
                if _code(exc) != "PreconditionFailed":
                    raise
                self._abort(key, upload_id)
                self._settle(temp, key, sha256, size)
        except BaseException:
            self._abort(key, upload_id)
            raise

    def _exists(self, key: str) -> bool:
        try:
            self._call("head", lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        except botocore.exceptions.ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def _abort(self, key: str, upload_id: str) -> None:
        # A completed or already aborted upload refuses; a bucket lifecycle rule collects the rest.
        with contextlib.suppress(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def holds_intact(self, sha256: str, size: int) -> bool:
        if self._empty_stored and sha256 == EMPTY_SHA256:
            return True
        intact = self._intact_remote(self.key(self.object_path(sha256)), sha256, size, repair_from=None)
        if intact and sha256 == EMPTY_SHA256:
            self._empty_stored = True
        return intact

    # --- reads ------------------------------------------------------------------------------

    def path(self, artifact: Artifact) -> Path:
        for root in (self.root, self._spare_root()):
            cached = root / artifact.path
            try:
                if cached.stat().st_size == artifact.bytes:
                    return cached  # verified when it came in; readers verify again as they read
            except FileNotFoundError:
                pass
            try:
                problem = self._download(artifact, cached, root / "objects" / ".tmp")
            except PermissionError:
                continue  # a reader that may not write the home (the inspector as another user)
            if problem is not None:
                raise ArtifactCorrupted(f"artifact {artifact.name!r} at {self._url}/{artifact.path} is corrupted: "
                                        f"{problem}; run the stage that produced it again")
            return cached
        raise PermissionError(f"cannot write a cache of {self._url} under {self.root} or {self._spare_root()}")

    def _spare_root(self) -> Path:
        """A per-user cache in the system temp directory, for readers the home does not let write."""
        digest = hashlib.sha256(f"{self._url}|{self.root.resolve()}".encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"stagebus-{os.getuid()}-artifacts-{digest}"

    def _download(self, artifact: Artifact, target: Path | None, tmp_dir: Path | None = None) -> str | None:
        """Stream the object, hashing it; with ``target``, into a temp file renamed to ``target``
        only when it matches. Returns what is wrong with it, or None."""
        def attempt() -> str | None:
            temp = None
            if target is not None:
                spool = tmp_dir or self.tmp_dir
                spool.mkdir(mode=0o700, parents=True, exist_ok=True)
                temp = spool / f"{HOST}-{os.getpid()}-{uuid.uuid4().hex}.part"
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self.key(artifact.path))["Body"]
            except botocore.exceptions.ClientError as exc:
                if _missing(exc):
                    return "missing"
                raise
            try:
                digest, size = _consume(body.iter_chunks(DOWNLOAD_BLOCK), temp)
                if size != artifact.bytes:
                    return f"expected {artifact.bytes} bytes, found {size}"
                if digest != artifact.sha256:
                    return f"expected sha256 {artifact.sha256}, actual {digest}"
                if temp is not None and target is not None:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(temp, target)
                return None
            finally:
                if temp is not None:
                    temp.unlink(missing_ok=True)
                body.close()
        return self._call("get", attempt)

    def problem(self, artifact: Artifact) -> str | None:
        """Downloads and hashes the whole object (never into the cache: a check changes no file)."""
        return self._download(artifact, None)

    # --- gc ---------------------------------------------------------------------------------

    def gc(self, referenced: Iterable[str], *, min_age_s: float = 3600.0, dry_run: bool = False) -> Collected:
        keep = set(referenced)
        cutoff = grace_cutoff(min_age_s)
        doomed: list[tuple[str, int]] = []
        for item in self._listing(self.key("objects/")):
            relative = item["Key"][len(self.key("")):]
            if not _OBJECT_KEY.fullmatch(relative) or relative in keep:
                continue
            if item["LastModified"].timestamp() > cutoff:
                continue
            doomed.append((item["Key"], int(item["Size"])))
        if not dry_run:
            for start in range(0, len(doomed), 1000):  # DeleteObjects takes at most 1000 keys
                batch = [{"Key": k} for k, _ in doomed[start:start + 1000]]
                self._call("delete", functools.partial(self.client.delete_objects, Bucket=self.bucket,
                                                       Delete={"Objects": batch, "Quiet": True}))
            self._cache.collect_local(keep, cutoff, dry_run)  # cached copies of what is gone
        return Collected(len(doomed), sum(size for _, size in doomed))

    def _listing(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under ``prefix``, a page (1,000 keys) per request, each page retried on its
        own: a failure mid-listing must not end it early and silently."""
        token: dict[str, str] = {}
        while True:
            page = self._call("list", functools.partial(self.client.list_objects_v2, Bucket=self.bucket,
                                                        Prefix=prefix, MaxKeys=self.list_page, **token))
            yield from page.get("Contents", [])
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

def _consume(chunks: Iterable[bytes], temp: Path | None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    out = temp.open("wb") if temp is not None else None
    try:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
        if out is not None:
            out.flush()
            os.fsync(out.fileno())
    finally:
        if out is not None:
            out.close()
    return digest.hexdigest(), size
