"""Worker heartbeats: which stage attempts a live worker process still holds.

A process id says nothing about an attempt: after a long log outage a worker process lives on
while the attempts it had started are gone (their messages failed or were lost with the broker),
so judging them by the PID left them "running" for twice the stage's time limit. Instead each
worker process records, every :data:`BEAT_EVERY_S`, a heartbeat naming the tasks it is running
right now: in the log's Redis (a hash, one field per ``host:pid``) or, beside a SQLite log, a
file per process under ``<home>/workers/``. The relay reads them all once per step:

- a beat older than :data:`STALE_AFTER_S` means the process is gone or cut off: its attempts are dead;
- a fresh beat, written well after an attempt started, that does not list it means the process
  abandoned it: dead too, and the relay sends it again within seconds of the log coming back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("stagebus.fleet")

BEAT_EVERY_S = 1.0
STALE_AFTER_S = 10.0
LISTING_MARGIN_S = 3.0  # a beat this much newer than an attempt's start would list it


def process_id(pid: int | None = None) -> str:
    """``host:pid``, the prefix of every ``worker`` id this process records."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


@dataclass(frozen=True)
class Beat:
    at: float  # the writer's wall clock, seconds since the epoch
    tasks: frozenset[str]  # str(TaskRef) of every attempt it is running

    def encode(self) -> str:
        return json.dumps({"at": self.at, "tasks": sorted(self.tasks)})

    @staticmethod
    def decode(raw: str | bytes) -> Beat | None:
        try:
            data = json.loads(raw)
            return Beat(float(data["at"]), frozenset(map(str, data["tasks"])))
        except (ValueError, KeyError, TypeError):
            return None


class HeartbeatBoard(Protocol):
    def write(self, process: str, beat: Beat) -> None: ...
    def remove(self, process: str) -> None: ...
    def read(self) -> dict[str, Beat]: ...


class RedisHeartbeats:
    """One hash in the log's Redis; entries of long-dead processes are pruned by readers."""

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key

    def write(self, process: str, beat: Beat) -> None:
        self.client.hset(self.key, process, beat.encode())

    def remove(self, process: str) -> None:
        self.client.hdel(self.key, process)

    def read(self) -> dict[str, Beat]:
        beats, dead = {}, []
        for field, raw in self.client.hgetall(self.key).items():
            name = field.decode() if isinstance(field, bytes) else str(field)
            beat = Beat.decode(raw)
            if beat is None or time.time() - beat.at > 3600:
                dead.append(name)
            else:
                beats[name] = beat
        if dead:
            self.client.hdel(self.key, *dead)
        return beats


class FileHeartbeats:
    """A file per process in a directory: for a SQLite log, every process on one machine."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, process: str) -> Path:
        return self.root / f"{process.replace(':', '_').replace('/', '_')}.json"

    def write(self, process: str, beat: Beat) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(process)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"process": process, **json.loads(beat.encode())}))
        os.replace(tmp, path)

    def remove(self, process: str) -> None:
        self._path(process).unlink(missing_ok=True)

    def read(self) -> dict[str, Beat]:
        beats = {}
        for path in self.root.glob("*.json") if self.root.is_dir() else ():
            with contextlib.suppress(OSError, ValueError, KeyError):
                raw = path.read_text()
                beat = Beat.decode(raw)
                if beat is not None:
                    beats[str(json.loads(raw)["process"])] = beat
        return beats


class HeldAttempts:
    """The attempts this process is running, as its heartbeat lists them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[str, int] = {}

    @contextlib.contextmanager
    def holding(self, task: str) -> Iterator[None]:
        with self._lock:
            self._tasks[task] = self._tasks.get(task, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._tasks.pop(task) - 1
                if left:
                    self._tasks[task] = left

    def snapshot(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._tasks)


class Heartbeat:
    """A daemon thread that writes this process's beat every ``every_s``; a failed write (the
    log's Redis is down) is tried again at the next beat."""

    def __init__(self, board: HeartbeatBoard, held: HeldAttempts, every_s: float = BEAT_EVERY_S) -> None:
        self.board = board
        self.held = held
        self.every_s = every_s
        self.process = process_id()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stagebus-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def beat(self) -> bool:
        try:
            self.board.write(self.process, Beat(time.time(), self.held.snapshot()))
            return True
        except Exception as exc:
            log.debug("heartbeat not written: %s", exc)
            return False

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every_s * 2)
        with contextlib.suppress(Exception):
            self.board.remove(self.process)


Liveness = Callable[[str, str, str], bool | None]  # (worker, task, started_at) -> alive, or None: no beat


def liveness_from(beats: Mapping[str, Beat], now: float | None = None) -> Liveness:
    """Judge attempts by a snapshot of heartbeats. ``None`` for a worker that never beat (an
    embedded runner, an older worker): the caller falls back to what it knew before."""
    now = time.time() if now is None else now

    def alive(worker: str, task: str, started_at: str) -> bool | None:
        host, _, rest = worker.partition(":")
        beat = beats.get(f"{host}:{rest.partition(':')[0]}")
        if beat is None:
            return None
        if now - beat.at > STALE_AFTER_S:
            return False
        return task in beat.tasks or beat.at < _epoch(started_at) + LISTING_MARGIN_S

    return alive


def _epoch(stamp: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
