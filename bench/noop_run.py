"""One embedded run of the no-op pipeline (:func:`bench.runtime.noop_pipeline`) over N partitions:
SQLite log, 2 worker threads, ``EmbeddedRunner``. What the peers and scaling benchmarks call "ours".

``python -m bench.noop_run N`` runs it in a fresh process and prints JSON: the run's seconds
(publish + run until idle), the process's peak RSS, and its peak RSS before the run (after
imports, before the store and runner open), so that the run's own memory is the difference.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.runtime import noop_pipeline, publish
from stagebus.actors.embedded import EmbeddedRunner
from stagebus.pipeline.definition import PipelineRegistry
from stagebus.projections.reader import Projections
from stagebus.store import SqliteEventStore

WORKERS = 2
REPO = Path(__file__).resolve().parents[1]


def embedded_run(root: Path, partitions: int, workers: int = WORKERS, run_id: str = "r") -> float:
    """Seconds to publish ``partitions`` and run every stage task until idle (setup not timed)."""
    (root / "data").write_text("x")
    store = SqliteEventStore(root / "log.db")
    projections = Projections(store, root / "projections")
    try:
        with EmbeddedRunner(store, projections, root / "artifacts", PipelineRegistry([noop_pipeline()]),
                            workers=workers) as runner:
            started = time.perf_counter()
            publish(store, run_id, partitions, root / "data")
            report = runner.run([run_id])
            seconds = time.perf_counter() - started
    finally:
        projections.close()
        store.close()
    done = report.outcomes["complete"] + report.outcomes["reused"]
    if done != 3 * partitions + 3 or not report.ok:
        raise RuntimeError(f"no-op run did not finish: {report}")
    return seconds


def peak_rss_mb() -> float:
    """This process's peak RSS. ``VmHWM`` rather than ``ru_maxrss``: on Linux a child's ru_maxrss
    keeps the peak of the process it was forked from (before exec), so it would report the
    bench's own size instead of the run's."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def measure_in_subprocess(partitions: int, timeout_s: float = 900, tree: Path = REPO) -> dict[str, Any]:
    """``main`` in a fresh process, on the code of ``tree`` (default: this one)."""
    # Times its own imports (stagebus, dramatiq, msgspec…), as the peers' scripts do theirs.
    code = ("import sys, time; t = time.perf_counter(); from bench import noop_run; "
            "noop_run.main(int(sys.argv[1]), time.perf_counter() - t)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH", "")]))}
    done = subprocess.run([sys.executable, "-c", code, str(partitions)], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"bench.noop_run {partitions} failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(partitions: int, import_s: float = 0.0) -> None:
    with tempfile.TemporaryDirectory(prefix="sb-bench-noop-") as tmp:
        base_rss = peak_rss_mb()
        seconds = embedded_run(Path(tmp), partitions)
    print(json.dumps({"partitions": partitions, "tasks": 3 * partitions + 3, "seconds": seconds,
                      "peak_rss_mb": peak_rss_mb(), "base_rss_mb": base_rss, "import_s": import_s}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
