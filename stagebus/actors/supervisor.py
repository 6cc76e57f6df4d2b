"""``stagebus worker``: N worker processes, each restarted with backoff when it dies.

Dramatiq's own CLI treats a worker process that exits unexpectedly as fatal: its master stops
every other process and exits (``dramatiq/cli.py``, "Worker with PID … exited unexpectedly …
Shutting down"), so one OOM-killed process would take a host's whole fleet share down and
leave it down. The supervisor runs each process (:mod:`stagebus.actors.worker_process`, a
:class:`dramatiq.Worker` as dramatiq's CLI runs it) as its own child and starts a dead one again,
waiting longer after each death that came soon after its start. SIGTERM (or Ctrl-C) is passed
on once to every child, which lets its running tasks finish and exits; then so does this.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger("stagebus.worker")

MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0  # a process that lived this long starts its next life without backoff


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Slot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    deaths: int = 0  # deaths in a row, each soon after its start
    restart_at: float | None = None


class WorkerSupervisor:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str], processes: int, *,
                 poll_s: float = 0.2, min_backoff_s: float = MIN_BACKOFF_S) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.slots = [Slot(i + 1) for i in range(processes)]
        self.poll_s = poll_s
        self.min_backoff_s = min_backoff_s
        self.restarts = 0

    def run(self, stop: threading.Event) -> int:
        """Keep every slot's process running until ``stop``; then stop them all. Returns 0."""
        for slot in self.slots:
            self._start(slot)
        while not stop.wait(self.poll_s):
            now = time.monotonic()
            for slot in self.slots:
                if slot.proc is not None and slot.proc.poll() is not None:
                    self._died(slot, slot.proc, now)
                if slot.proc is None and slot.restart_at is not None and now >= slot.restart_at:
                    self._start(slot)
        return self._shutdown()

    def _start(self, slot: Slot) -> None:
        slot.proc = subprocess.Popen(self.argv, env=self.env)
        slot.started_at = time.monotonic()
        slot.restart_at = None
        log.info("worker process %d started (pid %d)", slot.index, slot.proc.pid)

    def _died(self, slot: Slot, proc: subprocess.Popen[bytes], now: float) -> None:
        lived = now - slot.started_at
        slot.deaths = 1 if lived >= STABLE_AFTER_S else slot.deaths + 1
        backoff = min(self.min_backoff_s * 2 ** (slot.deaths - 1), MAX_BACKOFF_S) if slot.deaths > 1 else 0.0
        slot.proc, slot.restart_at = None, now + backoff
        self.restarts += 1
        log.warning("worker process %d (pid %d) %s after %.1fs; restarting it in %.1fs",
                    slot.index, proc.pid, describe_exit(proc.returncode), lived, backoff)

    def _shutdown(self) -> int:
        running = [s.proc for s in self.slots if s.proc is not None and s.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            proc.wait()
        log.info("worker processes stopped")
        return 0


def child_argv(threads: int, queues: Sequence[str], shutdown_timeout_s: float | None, verbose: bool) -> list[str]:
    argv = [sys.executable, "-m", "stagebus.actors.worker_process", "--threads", str(threads)]
    if queues:
        argv += ["--queues", *queues]
    if shutdown_timeout_s is not None:
        argv += ["--shutdown-timeout-ms", str(int(shutdown_timeout_s * 1000))]
    if verbose:
        argv.append("--verbose")
    return argv


def supervise(argv: Sequence[str], env: Mapping[str, str], processes: int) -> int:
    """Run the supervisor in this process until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s] [PID %(process)d] [%(name)s] [%(levelname)s] %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return WorkerSupervisor(argv, env, processes).run(stop)
