"""Record indices grouped by a key of three strings, read back in sorted order, in bounded memory.

:class:`IndexGroups` gathers ``(key, index)`` pairs in a dict of sets; past ``spill_at`` pairs it
moves them into a SQLite temp file and goes on there, so a partition of millions of records is
grouped with memory bounded by SQLite's cache. Either way :meth:`IndexGroups.groups` yields every
key once, keys in sorted order (Python's code-point order is SQLite's UTF-8 byte order), each
with its distinct indices ascending.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterator
from itertools import groupby
from pathlib import Path
from types import TracebackType

Key = tuple[str, str, str]
SPILL_AT = 500_000  # pairs held in memory before they go to disk (~250 MB of sets and tuples)
BATCH = 10_000


def open_scratch_db(path: Path) -> sqlite3.Connection:
    """A SQLite temp file of a stage at ``path``, in one open transaction: no journal, no fsync
    (it is rebuilt by any retry), sorts spilled to disk, a 64 MiB page cache (the memory bound)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = OFF", "synchronous = OFF", "temp_store = FILE", "cache_size = -65536"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("BEGIN")
    return conn


class IndexGroups:
    """``scratch()`` names the temp file when one is needed (the stage's ``ctx.scratch_file``).
    Use as a context manager: the file, if any, is removed on exit."""

    def __init__(self, scratch: Callable[[], Path], *, spill_at: int | None = None) -> None:
        self._scratch = scratch
        self._spill_at = SPILL_AT if spill_at is None else spill_at
        self._memory: dict[Key, set[int]] | None = defaultdict(set)
        self._held = 0
        self._pending: list[tuple[str, str, str, int]] = []
        self._conn: sqlite3.Connection | None = None
        self._path: Path | None = None

    def __enter__(self) -> IndexGroups:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)

    @property
    def spilled(self) -> bool:
        return self._conn is not None

    def add(self, key: Key, index: int) -> None:
        if self._memory is not None:
            self._memory[key].add(index)
            self._held += 1
            if self._held >= self._spill_at:
                self._spill()
            return
        self._pending.append((*key, index))
        if len(self._pending) >= BATCH:
            self._flush()

    def _spill(self) -> None:
        assert self._memory is not None
        self._path = self._scratch()
        self._conn = open_scratch_db(self._path)
        self._conn.execute("CREATE TABLE pairs (a TEXT NOT NULL, b TEXT NOT NULL, c TEXT NOT NULL, "
                           "idx INTEGER NOT NULL, PRIMARY KEY (a, b, c, idx)) WITHOUT ROWID")
        memory, self._memory = self._memory, None
        for key, indices in memory.items():
            self._pending.extend((*key, index) for index in indices)
            if len(self._pending) >= BATCH:
                self._flush()
        self._flush()

    def _flush(self) -> None:
        assert self._conn is not None
        self._conn.executemany("INSERT OR IGNORE INTO pairs VALUES (?, ?, ?, ?)", self._pending)
        self._pending.clear()

    def groups(self) -> Iterator[tuple[Key, list[int]]]:
        if self._memory is not None:
            for key, indices in sorted(self._memory.items()):
                yield key, sorted(indices)
            return
        self._flush()
        assert self._conn is not None
        rows = self._conn.execute("SELECT a, b, c, idx FROM pairs ORDER BY a, b, c, idx")
        for key, group in groupby(rows, key=lambda row: (row[0], row[1], row[2])):
            yield key, [row[3] for row in group]
