"""Embedded mode: the stage runner in a thread of the API process, so a batch submitted over
HTTP completes with no other process running. Woken by each submit (and polled, for batches
another API process accepted or a pipeline that was started again)."""

from __future__ import annotations

import logging
import threading

from stagebus.actors.embedded import EmbeddedRunner
from stagebus.projections import Projections
from stagebus.projections.api_resources import read_open_runs

log = logging.getLogger("stagebus.api.runner")


class BackgroundRunner:
    def __init__(self, runner: EmbeddedRunner, projections: Projections, *, poll_s: float = 0.5) -> None:
        self.runner = runner
        self.projections = projections
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stagebus-api-runner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the round in progress (a stage task is never cut short), then stop."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self.runner.close()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.projections.catch_up()
                open_runs = read_open_runs(self.projections.connection())
                if open_runs:
                    self.runner.run(open_runs)
            except Exception as exc:  # the next round tries again; the log says what happened
                log.error("stage runner round failed: %s: %s", type(exc).__name__, exc)
