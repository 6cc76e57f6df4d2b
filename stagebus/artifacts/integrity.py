"""Checking objects against the sha256 and size their manifests recorded.

Readers verify while they read (:class:`VerifiedReader` hashes each block as it is consumed and
compares at end of file), so a large upstream output is read once, never hashed in a second pass.
Where an object is used without being read through here (reuse, publishing over it) the whole
object is checked with :func:`check_object`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from stagebus.errors import ArtifactCorrupted
from stagebus.events import Artifact

BLOCK = 1 << 20


def corrupted(artifact: Artifact, path: Path, problem: str) -> ArtifactCorrupted:
    return ArtifactCorrupted(f"artifact {artifact.name!r} at {path} is corrupted: {problem}; "
                             f"run the stage that produced it again")


def check_object(path: Path, sha256: str, size: int) -> str | None:
    """What is wrong with the object at ``path`` (missing, wrong size, wrong sha256), or None."""
    try:
        actual_size = path.stat().st_size
        if not path.is_file():
            return "not a regular file"
    except FileNotFoundError:
        return "missing"
    if actual_size != size:
        return f"expected {size} bytes, found {actual_size}"
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            digest.update(block)
    if digest.hexdigest() != sha256:
        return f"expected sha256 {sha256}, actual {digest.hexdigest()}"
    return None


def verify_artifact(path: Path, artifact: Artifact) -> None:
    """Raise :class:`ArtifactCorrupted` unless the object at ``path`` is ``artifact``'s content."""
    problem = check_object(path, artifact.sha256, artifact.bytes)
    if problem is not None:
        raise corrupted(artifact, path, problem)


class VerifiedReader:
    """A binary reader over an object that hashes what it reads; at end of file it raises
    :class:`ArtifactCorrupted` unless size and sha256 match the artifact. Bytes are handed out
    before the end is reached, so a consumer must not commit anything until it has read to EOF
    (a stage task only publishes after its body returns, so a mismatch leaves no manifest)."""

    def __init__(self, path: Path, artifact: Artifact) -> None:
        self.path = path
        self.artifact = artifact
        try:
            self._fh: IO[bytes] = path.open("rb")
        except FileNotFoundError:
            raise corrupted(artifact, path, "missing") from None
        except IsADirectoryError:
            raise corrupted(artifact, path, "not a regular file") from None
        self._hash = hashlib.sha256()
        self._size = 0
        self._checked = False

    def read(self, n: int = BLOCK) -> bytes:
        block = self._fh.read(n)
        if block:
            self._hash.update(block)
            self._size += len(block)
        elif n != 0:
            self._check()
        return block

    def lines(self) -> Iterator[bytes]:
        """Every line (with its newline), read in blocks so hashing costs one call per block."""
        rest = b""
        while block := self.read(BLOCK):
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            for line in lines:
                yield line + b"\n"
        if rest:
            yield rest

    def drain(self) -> None:
        """Read to the end, so the check runs (raises when the object is corrupted)."""
        while self.read(BLOCK):
            pass

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        if self._size != self.artifact.bytes:
            raise corrupted(self.artifact, self.path, f"expected {self.artifact.bytes} bytes, read {self._size}")
        if self._hash.hexdigest() != self.artifact.sha256:
            raise corrupted(self.artifact, self.path,
                            f"expected sha256 {self.artifact.sha256}, actual {self._hash.hexdigest()}")

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> VerifiedReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
