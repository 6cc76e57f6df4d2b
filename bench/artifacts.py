"""Artifact write and read throughput (MB/s): local disk and S3 (a moto_server) vs raw loops.

Each trial publishes ``--objects`` objects of ``--size-mib`` MiB of fresh random bytes (fresh, so
content addressing never turns a write into a no-op) and reads them back as a stage does:

- **local, ours**: ``pending.write`` in 1 MiB pieces + ``publish`` (hash while writing, fsync,
  hard link); read = :class:`VerifiedReader` to the end (sha256 checked).
  **local, raw**: ``open/write/fsync/rename`` of the same bytes; read = ``open().read`` loop.
- **S3, ours**: the same writes through :class:`S3ArtifactStore` (spool to a temp file while
  hashing, ``PutObject`` with ``If-None-Match: *``, temp file kept as the cached copy); read from
  a cold cache = ``path()`` (streamed download, verify, rename) + ``VerifiedReader`` to the end.
  **S3, raw**: a plain boto3 ``put_object`` / ``get_object().read()`` loop on the same bytes (the
  whole object in memory), and, as a second read baseline, ``get_object`` streamed to a file.

ratio = our MB/s / raw MB/s, per direction and backend, best of ``--repeats`` (alternating). The
S3 figures are moto's: a Python server on this machine, so they show our overhead against the
same server, not what AWS would do. ``--endpoint`` (with the AWS variables) measures a real one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import print_table
from stagebus.artifacts.integrity import VerifiedReader
from stagebus.artifacts.local import LocalArtifactStore
from stagebus.artifacts.store import ArtifactStore
from stagebus.events import Artifact
from stagebus.settings import S3Location

DEFAULT_JSON = Path(__file__).parent / "results-artifacts.json"
MiB = 1 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="4 objects of 4 MiB, 2 repeats")
    parser.add_argument("--objects", type=int, default=None, help="objects per trial (default 8)")
    parser.add_argument("--size-mib", type=float, default=None, help="MiB per object (default 16)")
    parser.add_argument("--repeats", type=int, default=None, help="trials per path (default 3)")
    parser.add_argument("--endpoint", default=None, help="an S3 endpoint to use instead of a moto_server")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


@contextmanager
def moto_endpoint(log_dir: Path) -> Iterator[str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    args = [binary] if binary else [sys.executable, "-m", "moto.server"]
    with (log_dir / "moto.log").open("wb") as log:
        process = subprocess.Popen([*args, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def s3_client(endpoint: str) -> Any:
    import boto3

    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return boto3.session.Session().client("s3", endpoint_url=endpoint)
    return boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench",
                                 region_name="us-east-1").client("s3", endpoint_url=endpoint)


def fresh(objects: int, size: int) -> list[bytes]:
    return [os.urandom(size) for _ in range(objects)]


def our_write(store: ArtifactStore, blobs: list[bytes]) -> list[Artifact]:
    published = []
    for blob in blobs:
        pending = store.pending("records")
        for start in range(0, len(blob), MiB):
            pending.write(blob[start:start + MiB])
        published.append(pending.publish())
    return published


def our_read(store: ArtifactStore, artifacts: list[Artifact]) -> int:
    total = 0
    for artifact in artifacts:
        with VerifiedReader(store.path(artifact), artifact) as reader:
            while block := reader.read(MiB):
                total += len(block)
    return total


def raw_local_write(root: Path, blobs: list[bytes]) -> list[Path]:
    paths = []
    for blob in blobs:
        tmp, final = root / f"{uuid.uuid4().hex}.tmp", root / uuid.uuid4().hex
        with tmp.open("wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        paths.append(final)
    return paths


def raw_local_read(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with path.open("rb") as fh:
            while block := fh.read(MiB):
                total += len(block)
    return total


def raw_s3_write(client: Any, bucket: str, blobs: list[bytes]) -> list[str]:
    keys = []
    for blob in blobs:
        key = f"raw/{uuid.uuid4().hex}"
        client.put_object(Bucket=bucket, Key=key, Body=blob)
        keys.append(key)
    return keys


def raw_s3_read(client: Any, bucket: str, keys: list[str]) -> int:
    return sum(len(client.get_object(Bucket=bucket, Key=key)["Body"].read()) for key in keys)


def raw_s3_read_to_file(client: Any, bucket: str, keys: list[str], directory: Path) -> int:
    """The streaming raw read (what bounded memory costs without hashing): blocks to a file."""
    total = 0
    for key in keys:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        with (directory / uuid.uuid4().hex).open("wb") as out:
            for chunk in body.iter_chunks(8 * MiB):
                out.write(chunk)
                total += len(chunk)
    return total


def timed(work: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work(*args)
    return time.perf_counter() - started, result


def measure(tmp: Path, endpoint: str, objects: int, size: int, repeats: int) -> dict[str, Any]:
    client = s3_client(endpoint)
    bucket = f"sb-bench-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    for trial in range(repeats):
        local = LocalArtifactStore(tmp / f"local-{trial}")
        raw_dir = tmp / f"raw-{trial}"
        raw_dir.mkdir()
        from stagebus.artifacts.s3 import S3ArtifactStore

        s3 = S3ArtifactStore(S3Location(bucket, f"ours-{trial}"), tmp / f"s3-writer-{trial}", client=client)
        blobs = fresh(objects, size)
        seconds, artifacts = timed(our_write, local, blobs)
        keep("local_write", seconds)
        seconds, paths = timed(raw_local_write, raw_dir, blobs)
        keep("raw_local_write", seconds)
        seconds, _ = timed(our_read, local, artifacts)
        keep("local_read", seconds)
        seconds, _ = timed(raw_local_read, paths)
        keep("raw_local_read", seconds)
        blobs = fresh(objects, size)
        seconds, s3_artifacts = timed(our_write, s3, blobs)
        keep("s3_write", seconds)
        seconds, keys = timed(raw_s3_write, client, bucket, blobs)
        keep("raw_s3_write", seconds)
        cold = S3ArtifactStore(S3Location(bucket, f"ours-{trial}"), tmp / f"s3-reader-{trial}", client=client)
        seconds, read = timed(our_read, cold, s3_artifacts)
        assert read == objects * size
        keep("s3_read_cold_cache", seconds)
        seconds, read = timed(raw_s3_read, client, bucket, keys)
        assert read == objects * size
        keep("raw_s3_read", seconds)
        seconds, read = timed(raw_s3_read_to_file, client, bucket, keys, raw_dir)
        assert read == objects * size
        keep("raw_s3_read_to_file", seconds)
        for path in tmp.iterdir():  # keep the disk use of one trial
            if path.is_dir() and path.name != "logs":
                shutil.rmtree(path)
    megabytes = objects * size / 1e6
    rates = {name: round(megabytes / seconds, 1) for name, seconds in best.items()}
    ratios = {f"ratio_{name}": round(rates[name] / rates[f"raw_{name.removesuffix('_cold_cache')}"], 3)
              for name in ("local_write", "local_read", "s3_write", "s3_read_cold_cache")}
    streamed = rates["s3_read_cold_cache"] / rates["raw_s3_read_to_file"]
    ratios["ratio_s3_read_cold_cache_to_streamed_raw"] = round(streamed, 3)
    return {"objects": objects, "object_bytes": size, "repeats": repeats, "mb_per_s": rates, **ratios}


def run(args: argparse.Namespace) -> dict[str, Any]:
    objects = args.objects or (4 if args.quick else 8)
    size = int((args.size_mib or (4 if args.quick else 16)) * MiB)
    repeats = args.repeats or (2 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="sb-bench-artifacts-") as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        if args.endpoint:
            figures = measure(Path(tmp), args.endpoint, objects, size, repeats)
        else:
            with moto_endpoint(logs) as endpoint:
                figures = measure(Path(tmp), endpoint, objects, size, repeats)
    figures["s3_server"] = "endpoint given" if args.endpoint else "moto_server (local subprocess)"
    rates = figures["mb_per_s"]
    print_table(f"artifacts: {objects} objects x {size / MiB:g} MiB, best of {repeats}; MB/s",
                ["path", "ours", "raw", "ours / raw"],
                [["local write", rates["local_write"], rates["raw_local_write"], figures["ratio_local_write"]],
                 ["local read (verified)", rates["local_read"], rates["raw_local_read"], figures["ratio_local_read"]],
                 ["S3 write", rates["s3_write"], rates["raw_s3_write"], figures["ratio_s3_write"]],
                 ["S3 read, cold cache (verified)", rates["s3_read_cold_cache"], rates["raw_s3_read"],
                  figures["ratio_s3_read_cold_cache"]],
                 ["  vs raw get_object streamed to a file", rates["s3_read_cold_cache"], rates["raw_s3_read_to_file"],
                  figures["ratio_s3_read_cold_cache_to_streamed_raw"]]])
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
