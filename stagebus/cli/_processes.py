"""``stagebus run --processes N``: partition-scoped stage tasks spread over N processes.

Threads of one process share the GIL, so CPU-bound stages use one core however many worker
threads run them. Here each of N child processes runs ``stagebus run --shard K/N``: an embedded
runner over the same home that takes only the partitions hashing to its shard, so a partition's
stages chain within one process and no two processes race for one task (the log's keys would
absorb a race, but the work would be done twice). The SQLite log is safe across processes.
Run-level (fan-in) stages need every partition, so the parent runs them, unsharded, once every
child is idle; it also picks up anything a child left (a child that died: its attempt is judged
like any crashed one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Collection
from pathlib import Path

from stagebus.actors.embedded import RunReport
from stagebus.cli._context import AppContext

SUMMARY_PREFIX = "stagebus-shard-summary "


def shard_summary(report: RunReport) -> str:
    """The one line a child prints for its parent: what it ran."""
    return SUMMARY_PREFIX + json.dumps({"by_stage": report.by_stage, "swept": report.swept})


def run_shards(app: AppContext, processes: int, *, run_ids: Collection[str] | None, stages: str | None,
               workers: int, log_file: Path | None, wait_infra: float) -> RunReport:
    """Run every shard in its own child process until each is idle; the merged report."""
    env = {**os.environ, "STAGEBUS_HOME": str(app.settings.home)}
    if app.settings.store:
        env["STAGEBUS_STORE"] = app.settings.store  # in the environment, never on a command line
    env["STAGEBUS_LOG_LEVEL"] = app.settings.log_level
    children = []
    for index in range(processes):
        argv = [sys.executable, "-c", "from stagebus.cli import main; main()", "run",
                "--shard", f"{index}/{processes}", "--workers", str(workers), "--wait-infra", str(wait_infra)]
        if stages is not None:
            argv += ["--stages", stages]
        if log_file is not None:
            argv += ["--log-file", str(log_file)]
        for run_id in run_ids or ():
            argv += ["--run-id", run_id]
        children.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True))
    report = RunReport()
    for child in children:
        out, _ = child.communicate()
        for line in out.splitlines():
            if line.startswith(SUMMARY_PREFIX):
                merge(report, json.loads(line[len(SUMMARY_PREFIX):]))
    return report


def merge(report: RunReport, summary: dict) -> None:  # type: ignore[type-arg]
    for stage, counts in summary["by_stage"].items():
        report.by_stage.setdefault(stage, Counter()).update(counts)
        report.outcomes.update(counts)
    report.swept += summary["swept"]
