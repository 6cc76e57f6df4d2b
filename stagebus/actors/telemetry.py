"""NDJSON telemetry: one line per stage-task fact (start, end, counts, duration, error), each
stamped ``ts`` with the wall-clock time in UTC (telemetry is for people; the log orders facts)."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

_ENC = msgspec.json.Encoder()
log = logging.getLogger("stagebus.task")


class Telemetry:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fh = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = path.open("ab", buffering=0)

    def emit(self, event: str, **fields: Any) -> None:
        level = logging.WARNING if event in ("failed", "refused") else logging.DEBUG
        log.log(level, "%s %s", event, fields)
        if self._fh is not None:
            with self._lock:  # stamped under the lock, so the file's lines are in time order
                line = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **fields}
                self._fh.write(_ENC.encode(line) + b"\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
