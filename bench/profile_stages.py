"""Where a reference stage's time goes, per record: ``python -m bench.profile_stages [ROWS]``.

Runs the reference pipeline on one airports-like CSV of ROWS rows (default 50,000) with one worker
thread, cProfile enabled around each stage task, and prints per stage the microseconds per record
spent in the framework's record path (reading and verifying upstream records, validating and
encoding emitted ones, writing and hashing artifacts) against the stage's own logic, with the
functions that cost most. cProfile inflates call-heavy code, so read the shares, not the totals.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import threading
from collections import defaultdict
from pathlib import Path

from bench.airports_data import write_airports
from bench.records import run_pipeline
from stagebus.actors import executor
from stagebus.stages import reference_pipeline

FRAMEWORK = ("stagebus/pipeline/", "stagebus/artifacts/", "msgspec", "hashlib", "_io.", "sqlite3")


def main(rows: int) -> None:
    profiles: dict[str, list[cProfile.Profile]] = defaultdict(list)
    lock = threading.Lock()
    original = executor.Executor._attempt

    def profiled(self, task, *args, **kwargs):  # type: ignore[no-untyped-def]
        profile = cProfile.Profile()
        profile.enable()
        try:
            return original(self, task, *args, **kwargs)
        finally:
            profile.disable()
            with lock:
                profiles[task.stage].append(profile)

    executor.Executor._attempt = profiled  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="sb-profile-") as tmp:
        files = write_airports(Path(tmp) / "data", rows, 1)
        totals, _ = run_pipeline(Path(tmp) / "home", files, reference_pipeline)
    for stage, runs in profiles.items():
        stats = pstats.Stats(runs[0])
        for extra in runs[1:]:
            stats.add(extra)
        records = max(int(totals[stage][0]), 1)
        own: dict[str, float] = defaultdict(float)
        for (filename, _, name), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
            where = f"{filename}:{name}"
            own["framework" if any(part in where for part in FRAMEWORK) else "stage"] += tottime
        total = sum(own.values())
        print(f"\n{stage}: {records:,} records, {total / records * 1e6:.1f} us/record under cProfile "
              f"(framework {own['framework'] / total:.0%}, stage logic and the rest {own['stage'] / total:.0%})")
        stats.sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
