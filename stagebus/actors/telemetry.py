"""NDJSON telemetry: one line per stage-task fact (start, end, counts, duration, error)."""

from __future__ import annotations

import logging
import threading
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
        line = {"event": event, **fields}
        level = logging.WARNING if event in ("failed", "refused") else logging.DEBUG
        log.log(level, "%s %s", event, fields)
        if self._fh is not None:
            data = _ENC.encode(line) + b"\n"
            with self._lock:
                self._fh.write(data)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
