"""An idle ``stagebus run`` (nothing ready) on a long history: its cost must follow open work,
never history.

Two homes: one with 100 finished runs of the no-op pipeline (10 partitions each, run for real:
manifests, ``manifest.json`` views and objects on disk), one with 100k partitions of synthetic
finished history in its log (:mod:`bench.history`). Timed, best of 5: ``EmbeddedRunner.run()`` in
process (the runner's own work: sweep, catch-up, readiness), and ``stagebus run`` as a
subprocess, against ``stagebus --version`` (interpreter start and imports, the floor of any
command). ``--quick``: 10 runs and 10k partitions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import print_table
from bench.history import grow
from bench.noop_run import REPO
from bench.runtime import noop_pipeline, publish
from stagebus.actors.embedded import EmbeddedRunner
from stagebus.pipeline.definition import PipelineRegistry
from stagebus.projections.reader import Projections
from stagebus.store import SqliteEventStore

DEFAULT_JSON = Path(__file__).parent / "results-idle.json"
STAGEBUS = [sys.executable, "-c", "from stagebus.cli import main; main()"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="10 finished runs and 10k partitions")
    parser.add_argument("--tiny", action="store_true", help="2 runs and 200 partitions: the benchmark's code only")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")


def finished_runs(home: Path, runs: int) -> None:
    (home / "data").write_text("x")
    store = SqliteEventStore(home / "log.db")
    projections = Projections(store, home / "projections")
    with EmbeddedRunner(store, projections, home / "artifacts", PipelineRegistry([noop_pipeline()])) as runner:
        for index in range(runs):
            publish(store, f"r{index:03d}", 10, home / "data")
            if not runner.run([f"r{index:03d}"]).ok:
                raise RuntimeError("a no-op run failed")
    projections.close()
    store.close()


def long_log(home: Path, partitions: int) -> None:
    store = SqliteEventStore(home / "log.db")
    grow(store, partitions)
    with Projections(store, home / "projections") as projections:
        projections.catch_up()
    store.close()


def timed(home: Path, repeats: int) -> dict[str, float]:
    store = SqliteEventStore(home / "log.db")
    projections = Projections(store, home / "projections")
    in_process = float("inf")
    with EmbeddedRunner(store, projections, home / "artifacts", PipelineRegistry([noop_pipeline()])) as runner:
        for _ in range(repeats):
            started = time.perf_counter()
            report = runner.run()
            in_process = min(in_process, time.perf_counter() - started)
            if report.by_stage:
                raise RuntimeError("the idle home had work to do")
    projections.close()
    store.close()
    env = {**os.environ, "STAGEBUS_HOME": str(home), "STAGEBUS_PIPELINES": "bench.runtime:noop_pipeline",
           "STAGEBUS_STORE": ""}
    cli = floor = float("inf")
    for _ in range(repeats):  # alternating: load from elsewhere hits both alike
        for argv, keep in (([*STAGEBUS, "run"], "cli"), ([*STAGEBUS, "--version"], "floor")):
            started = time.perf_counter()
            subprocess.run(argv, env=env, cwd=REPO, check=True, capture_output=True, timeout=600)
            seconds = time.perf_counter() - started
            if keep == "cli":
                cli = min(cli, seconds)
            else:
                floor = min(floor, seconds)
    return {"run_in_process_s": round(in_process, 4), "cli_run_s": round(cli, 3), "cli_version_s": round(floor, 3),
            "cli_over_floor_s": round(cli - floor, 3)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs, partitions = (10, 10_000) if args.quick else (100, 100_000)
    if args.tiny:
        runs, partitions = 2, 200
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sb-bench-idle-") as tmp:
        history = Path(tmp) / "runs"
        history.mkdir()
        finished_runs(history, runs)
        figures["finished_runs"] = {"runs": runs, "tasks": runs * 33, **timed(history, 5)}
        big = Path(tmp) / "partitions"
        big.mkdir()
        long_log(big, partitions)
        figures["partitions"] = {"partitions": partitions, **timed(big, 5)}
    print_table("idle stagebus run (nothing ready), best of 5",
                ["home", "run() in process", "stagebus run", "stagebus --version", "run - version"],
                [[label, f"{f['run_in_process_s']:.4f} s", f"{f['cli_run_s']:.3f} s", f"{f['cli_version_s']:.3f} s",
                  f"{f['cli_over_floor_s']:.3f} s"]
                 for label, f in ((f"{runs} finished runs", figures["finished_runs"]),
                                  (f"{partitions:,} partitions", figures["partitions"]))])
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures
