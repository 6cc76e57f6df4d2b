"""Per-item progress of a long stage task, durable on disk so a retry skips finished items.

While a task iterates :meth:`StageContext.items`, its outputs are written straight into files in
the task's work directory (``<output>.part``), and each finished item appends one line
``{"key": …, "sizes": {output: [bytes, records]}}`` to ``items.jsonl``: the outputs' sizes once
that item was done, after the outputs were fsynced. A retry truncates each output back to the
sizes of the last whole line (a crash mid-item leaves bytes past them, or a torn last line, both
cut off), hashes the kept prefix again, and goes on from the next item. So a resumable task
writes its records once, holds none of them in memory, and costs one fsync per item.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from stagebus.artifacts.pending import PendingFile

JOURNAL = "items.jsonl"


class _Entry(msgspec.Struct):
    key: str
    sizes: dict[str, tuple[int, int]]  # output -> (bytes, records) once this item was done


_ENC = msgspec.json.Encoder()
_DEC = msgspec.json.Decoder(_Entry)


class ItemJournal:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / JOURNAL
        self._done: set[str] = set()
        self._last: _Entry | None = None
        self._load()
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
                    break  # a torn line, or a journal of an older layout: start over from there
                self._last = entry
                self._done.add(entry.key)
                good += len(line)
        if good != self.path.stat().st_size:
            os.truncate(self.path, good)  # drop the torn tail of a crashed append

    def output_path(self, output: str) -> Path:
        return self.directory / f"{output}.part"

    def adopt(self, outputs: Mapping[str, PendingFile]) -> None:
        """Move the task's outputs into the work directory, resumed at the last finished item.
        If an output's file no longer holds what the journal says, the items start over."""
        committed = self._last.sizes if self._last is not None else {}
        if committed and not all(self._holds(name, committed.get(name, (0, 0))[0]) for name in outputs):
            self._restart()
            committed = {}
        for name, pending in outputs.items():
            size, records = committed.get(name, (0, 0))
            pending.resume_at(self.output_path(name), size, records, fresh=not committed)

    def _holds(self, output: str, size: int) -> bool:
        """Whether the output's file holds at least the ``size`` bytes committed (none: no file needed)."""
        try:
            return self.output_path(output).stat().st_size >= size
        except FileNotFoundError:
            return size == 0

    def _restart(self) -> None:
        self._fh.close()
        self.path.write_bytes(b"")
        self._fh = self.path.open("ab")
        self._done.clear()
        self._last = None

    def done(self, key: str) -> bool:
        return key in self._done

    def commit(self, key: str, outputs: Mapping[str, PendingFile]) -> None:
        """Make the item's outputs durable, then record it as done."""
        sizes = {name: pending.sync() for name, pending in outputs.items()}
        entry = _Entry(key, sizes)
        self._fh.write(_ENC.encode(entry) + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._last = entry
        self._done.add(key)

    def close(self) -> None:
        self._fh.close()
