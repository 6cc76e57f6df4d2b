"""Checking objects against the sha256 and size their manifests recorded.

Readers verify while they read (:class:`VerifiedReader` hashes each block as it is consumed and
compares at end of file), so a large upstream output is read once, never hashed in a second pass.
Where an object is used without being read through here (reuse, publishing over it) the whole
object is checked with :func:`check_object`.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from stagebus.errors import ArtifactCorrupted
from stagebus.events import Artifact

BLOCK = 1 << 20
STREAM_BUFFER = 1 << 16  # measured: larger buffers make line iteration slower (bench/verify.py)


def corrupted(artifact: Artifact, path: Path, problem: str, origin: str = "") -> ArtifactCorrupted:
    producer = f" ({origin})" if origin else ""
    return ArtifactCorrupted(f"artifact {artifact.name!r} at {path} is corrupted: {problem}; "
                             f"run the stage that produced it again{producer}")


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


def verify_artifact(path: Path, artifact: Artifact, *, origin: str = "") -> None:
    """Raise :class:`ArtifactCorrupted` unless the object at ``path`` is ``artifact``'s content."""
    problem = check_object(path, artifact.sha256, artifact.bytes)
    if problem is not None:
        raise corrupted(artifact, path, problem, origin)


class _HashingFile(io.RawIOBase):
    """The raw file under a buffered reader: hashes each block as the buffer is filled, so line
    iteration stays in C and hashing costs one call per block. (Hashing on a helper thread was
    measured too, bench/verify.py: no faster, as the blocks must be copied for it.)"""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._fh = path.open("rb", buffering=0)
        self._hash = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._fh.readinto(buffer) or 0
        if n:
            self._hash.update(memoryview(buffer)[:n])
            self.size += n
        return n

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        self._fh.close()
        super().close()


class VerifiedReader:
    """A binary reader over an object that hashes what it reads; at end of file it raises
    :class:`ArtifactCorrupted` unless size and sha256 match the artifact. Bytes are handed out
    before the end is reached, so a consumer must not commit anything until it has read to EOF
    (a stage task only publishes after its body returns, so a mismatch leaves no manifest).

    Iterate :attr:`stream` for lines at full speed, then call :meth:`finish`; or use
    :meth:`read` / :meth:`lines`, which check by themselves at the end.
    """

    def __init__(self, path: Path, artifact: Artifact, *, origin: str = "") -> None:
        self.path = path
        self.artifact = artifact
        self.origin = origin
        try:
            self._raw = _HashingFile(path)
        except FileNotFoundError:
            raise corrupted(artifact, path, "missing", origin) from None
        except IsADirectoryError:
            raise corrupted(artifact, path, "not a regular file", origin) from None
        self.stream: IO[bytes] = io.BufferedReader(self._raw, buffer_size=STREAM_BUFFER)
        self._checked = False

    def read(self, n: int = BLOCK) -> bytes:
        block = self.stream.read(n)
        if not block and n != 0:
            self.finish()
        return block

    def lines(self) -> Iterator[bytes]:
        """Every line (with its newline, if it has one), then the check."""
        yield from self.stream
        self.finish()

    def drain(self) -> None:
        """Read to the end, so the check runs (raises when the object is corrupted)."""
        while self.read(BLOCK):
            pass

    def finish(self) -> None:
        """At end of file: raise :class:`ArtifactCorrupted` unless what was read is the artifact."""
        if self._checked:
            return
        self._checked = True
        problem = None
        if self.stream.read(1):
            problem = "finish() called before the end of the file"
        elif self._raw.size != self.artifact.bytes:
            problem = f"expected {self.artifact.bytes} bytes, read {self._raw.size}"
        elif (actual := self._raw.hexdigest()) != self.artifact.sha256:
            problem = f"expected sha256 {self.artifact.sha256}, actual {actual}"
        if problem is not None:
            raise corrupted(self.artifact, self.path, problem, self.origin)

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> VerifiedReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
