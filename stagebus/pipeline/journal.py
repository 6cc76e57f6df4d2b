"""Per-item progress of a long stage task, durable on disk so a retry skips finished items.

Each finished item is one line ``{"key": …, "out": [[output, line], …]}`` appended and fsynced.
A crash mid-append leaves a torn last line, which is cut off on the next open.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from stagebus.pipeline.context import StageContext


class _Entry(msgspec.Struct):
    key: str
    out: list[tuple[str, bytes]]


_ENC = msgspec.json.Encoder()
_DEC = msgspec.json.Decoder(_Entry)


class ItemJournal:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "items.jsonl"
        self._entries: list[_Entry] = []
        self._done: set[str] = set()
        self._load()
        self._current: _Entry | None = None
        self._fh = self.path.open("ab")

    def _load(self) -> None:
        if not self.path.exists():
            return
        good = 0
        with self.path.open("rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break
                try:
                    entry = _DEC.decode(line)
                except msgspec.DecodeError:
                    break
                self._entries.append(entry)
                self._done.add(entry.key)
                good += len(line)
        if good != self.path.stat().st_size:
            os.truncate(self.path, good)  # drop the torn tail of a crashed append

    def done(self, key: str) -> bool:
        return key in self._done

    def begin(self, key: str) -> None:
        self._current = _Entry(key, [])

    def buffer(self, output: str, line: bytes) -> None:
        if self._current is None:
            raise RuntimeError("write outside an item")
        self._current.out.append((output, line))

    def commit(self) -> None:
        entry, self._current = self._current, None
        if entry is None:
            return
        self._fh.write(_ENC.encode(entry) + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._entries.append(entry)
        self._done.add(entry.key)

    def replay_into(self, ctx: StageContext) -> None:
        """Write every finished item's outputs, in item order, into the task's outputs."""
        self._fh.close()
        for entry in self._entries:
            for output, line in entry.out:
                ctx.write_line(output, line)
