"""``bench/results.json``: every benchmark's figures of one ``python -m bench all`` run, merged,
with the machine they were measured on (figures only mean something beside their machine)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results.json"


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=RESULTS.parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "commit": commit,
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def run_all(benchmarks: Mapping[str, Callable[[], dict[str, Any]]], quick: bool,
            path: Path = RESULTS) -> dict[str, Any]:
    """Run each benchmark, keep going past one that fails (its error is recorded), write ``path``."""
    merged: dict[str, Any] = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "quick": quick,
                              "machine": machine(), "seconds": {}, "benchmarks": {}, "errors": {}}
    started = time.monotonic()
    for name, run in benchmarks.items():
        began = time.monotonic()
        try:
            merged["benchmarks"][name] = run()
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            traceback.print_exc()
            merged["errors"][name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        merged["seconds"][name] = round(time.monotonic() - began, 1)
    merged["seconds"]["total"] = round(time.monotonic() - started, 1)
    path.write_text(json.dumps(merged, indent=2, default=str) + "\n")
    print(f"wrote {path} in {merged['seconds']['total']} s"
          + (f"; failed: {', '.join(merged['errors'])}" if merged["errors"] else ""))
    return merged
