"""Where projection files live: numbered generations, and which one is live.

A rebuild never writes into the live file: it builds a new generation ``<home>/projections/
<NNNNNN>.db`` and then swaps it in by atomically replacing ``CURRENT`` (a one-line file naming the
live generation). Renaming a new ``.db`` over the live one instead would pair it, in every process
that holds it open, with that file's stale ``-wal``/``-shm``. Processes notice a new ``CURRENT`` on
their next call and reopen.

Old generations are deleted at the next swap: each swap keeps the new generation and the one it
replaced (a slow reader may still be on it) and deletes everything else that no process is
building. A process building a generation holds an exclusive ``flock`` on ``.<NNNNNN>.building``
beside it until it publishes or discards it; a generation whose build lock can be taken was left
by a killed rebuild, and :meth:`FileGenerations.sweep` (run at the start of every rebuild) deletes
it, so killed replays do not pile up until the next success. Opens never create a generation
file (``mode=rw``), so a process that read an old ``CURRENT`` fails to open a deleted generation
and retries, instead of resurrecting it empty.

For an in-memory event log the projections live in memory too (:class:`MemoryGenerations`,
SQLite's ``memdb`` VFS, shared by every connection of the process).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from stagebus.errors import StoreUnavailable
from stagebus.store.files import fsync_dir
from stagebus.store.keys import PROJECTIONS_CURRENT, PROJECTIONS_LOCK

BUSY_TIMEOUT_S = 30.0


class Generations(Protocol):
    def live(self) -> str | None:
        """The name of the live generation, ``None`` before the first one exists."""
        ...

    def open(self, name: str, *, readonly: bool = False) -> sqlite3.Connection:
        """Open an existing generation; never creates one. Read-only opens change no file."""
        ...

    def create(self) -> tuple[str, sqlite3.Connection]:
        """A new, empty, private generation (call under :meth:`lock`)."""
        ...

    def publish(self, name: str) -> None:
        """Make ``name`` the live generation, atomically (call under :meth:`lock`)."""
        ...

    def discard(self, name: str) -> None:
        """Delete a generation that was never published (a failed or verification build)."""
        ...

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive across processes: held to create the first generation and for a rebuild."""
        ...

    def sweep(self) -> list[str]:
        """Delete unpublished generations no live process is building (call under :meth:`lock`)."""
        ...


def _configure(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: catch-up touches many index pages
    return conn


class FileGenerations:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._current = self.root / PROJECTIONS_CURRENT
        self._building: dict[str, int] = {}  # generation -> fd holding its build lock
        self._live: tuple[tuple[int, int, int], str | None] | None = None  # CURRENT's stat, its name

    def _build_lock(self, name: str) -> Path:
        return self.root / f".{name}.building"

    def _hold_build_lock(self, name: str) -> None:
        fd = os.open(self._build_lock(name), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # new file, under the generations lock: never waits
        self._building[name] = fd

    def _release_build_lock(self, name: str) -> None:
        fd = self._building.pop(name, None)
        if fd is not None:
            self._build_lock(name).unlink(missing_ok=True)
            os.close(fd)

    def being_built(self, name: str) -> bool:
        """Whether a live process (this one included) holds ``name``'s build lock."""
        if name in self._building:
            return True
        try:
            fd = os.open(self._build_lock(name), os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops the lock if we took it
        return False

    def sweep(self) -> list[str]:
        """Delete generations newer than the live one that no live process is building (left by
        killed rebuilds or verifications); returns their names. Call under :meth:`lock`."""
        live = self.live()
        floor = int(live) if live is not None and live.isdigit() else 0
        swept = []
        for path in sorted(self.root.glob("*.db")):
            name = path.stem
            if name.isdigit() and int(name) > floor and name != live and not self.being_built(name):
                self.discard(name)
                swept.append(name)
        for lock in self.root.glob(".*.building"):  # a lock whose generation is gone already
            name = lock.name[1:].removesuffix(".building")
            if not self.path(name).exists() and not self.being_built(name):
                lock.unlink(missing_ok=True)
        return swept

    def path(self, name: str) -> Path:
        return self.root / f"{name}.db"

    def live(self) -> str | None:
        # Asked before every projection read: one stat, and the file is read again only when it
        # was replaced (a swap renames a new file over it, so its inode changes).
        try:
            stat = os.stat(self._current)
        except FileNotFoundError:
            return None
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = self._live
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            name = self._current.read_text().strip() or None
        except FileNotFoundError:
            return None
        self._live = (stamp, name)
        return name

    def open(self, name: str, *, readonly: bool = False) -> sqlite3.Connection:
        path = self.path(name)
        if readonly:
            return open_readonly(path)
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S,
                                   isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"cannot open projections generation {path}: {exc}") from None
        return _configure(conn)

    def create(self) -> tuple[str, sqlite3.Connection]:
        self.root.mkdir(parents=True, exist_ok=True)
        numbers = [int(p.stem) for p in self.root.glob("*.db") if p.stem.isdigit()]
        name = f"{max(numbers, default=0) + 1:06d}"
        path = self.path(name)
        for leftover in (path, *_sidecars(path)):
            leftover.unlink(missing_ok=True)
        self._hold_build_lock(name)
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        return name, _configure(conn)

    def publish(self, name: str) -> None:
        previous = self.live()
        tmp = self.root / f".{PROJECTIONS_CURRENT}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        with open(tmp, "w") as handle:
            handle.write(name + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._current)
        fsync_dir(self.root)
        self._release_build_lock(name)
        keep = {name, previous}
        for path in self.root.glob("*.db"):
            if path.stem.isdigit() and path.stem not in keep and not self.being_built(path.stem):
                self.discard(path.stem)

    def discard(self, name: str) -> None:
        path = self.path(name)
        for victim in (path, *_sidecars(path)):
            victim.unlink(missing_ok=True)
        self._release_build_lock(name)
        if not self.being_built(name):
            self._build_lock(name).unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / PROJECTIONS_LOCK, "a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class MemoryGenerations:
    """Projections of an in-memory log: gone with the process, like the log itself."""

    def __init__(self) -> None:
        self._live: str | None = None
        self._keepers: dict[str, sqlite3.Connection] = {}  # a memdb lives while a connection does
        self._lock = threading.RLock()

    def live(self) -> str | None:
        return self._live

    def open(self, name: str, *, readonly: bool = False) -> sqlite3.Connection:
        if name not in self._keepers:
            raise StoreUnavailable(f"no in-memory projections generation {name}")
        conn = sqlite3.connect(f"file:/stagebus-{name}?vfs=memdb", uri=True, timeout=BUSY_TIMEOUT_S,
                               isolation_level=None, check_same_thread=False)
        if readonly:
            conn.execute("PRAGMA query_only = ON")
        return conn

    def create(self) -> tuple[str, sqlite3.Connection]:
        name = uuid.uuid4().hex
        keeper = sqlite3.connect(f"file:/stagebus-{name}?vfs=memdb", uri=True, timeout=BUSY_TIMEOUT_S,
                                 isolation_level=None, check_same_thread=False)
        self._keepers[name] = keeper
        return name, self.open(name)

    def publish(self, name: str) -> None:
        previous, self._live = self._live, name
        for old in [n for n in self._keepers if n not in (name, previous)]:
            self.discard(old)

    def discard(self, name: str) -> None:
        keeper = self._keepers.pop(name, None)
        if keeper is not None:
            keeper.close()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with self._lock:
            yield

    def sweep(self) -> list[str]:
        return []  # gone with the process that built them


def open_readonly(path: Path) -> sqlite3.Connection:
    """Open a projections file without creating or changing any file, even as root.

    With a ``-wal`` beside it a writer is active (or crashed) and its ``-shm`` exists, so a
    ``mode=ro`` open only reads. Without one nobody has the file open; an ``immutable`` open then
    reads it as it is, where ``mode=ro`` would create ``-wal``/``-shm`` files wherever the process
    may write.
    """
    if not path.exists():
        raise StoreUnavailable(f"no projections at {path}")
    mode = "mode=ro" if Path(f"{path}-wal").exists() else "immutable=1"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, timeout=BUSY_TIMEOUT_S,
                               isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise StoreUnavailable(f"cannot read projections at {path}: {exc}") from None
    return conn


def _sidecars(path: Path) -> tuple[Path, Path, Path]:
    return Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")

