"""A `stagebus load` SIGKILLed in the middle of a partition's COPY, then run again: the table
holds exactly the expected rows, each once (the real PostgreSQL of this machine)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.warehouse import DATASET, OUTPUT, make_home
from support.warehouse import ADMIN_DSN, query, scratch_database

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]

ROWS = 400_000  # two partitions of 200,000: a COPY long enough to be caught in the middle
POLL_S = 0.002


def stagebus_load(home: Path, dsn: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "from stagebus.cli import main; main()", "--home", str(home),
                             "load", "--dataset", DATASET, "--table", "rows", "--output", OUTPUT, "--to", dsn],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_mid_copy(process: subprocess.Popen[bytes], database: str) -> int:
    """SIGKILL ``process`` as soon as PostgreSQL reports rows copied into ``database``; the rows
    the server had received by then."""
    import psycopg

    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        while process.poll() is None:
            row = admin.execute("SELECT tuples_processed FROM pg_stat_progress_copy WHERE datname = %s",
                                (database,)).fetchone()
            if row is not None and row[0] > 0:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return int(row[0])
            time.sleep(POLL_S)
    return 0


def test_a_load_killed_mid_copy_and_rerun_holds_exactly_the_expected_rows(tmp_path: Path) -> None:
    with scratch_database() as dsn:
        # Given a dataset of two valid partitions of 200,000 rows each
        home = tmp_path / "home"
        make_home(home, ROWS, partitions=2)
        # When `stagebus load` is SIGKILLed while PostgreSQL is receiving a partition's rows
        process = stagebus_load(home, dsn)
        copied = kill_mid_copy(process, dsn.rsplit("/", 1)[1])
        assert process.returncode == -signal.SIGKILL, "the load finished before it could be killed mid-COPY"
        assert 0 < copied < ROWS
        # Then no partition is half there: each holds exactly the rows its tracking row records, or none
        tracked = dict(query(dsn, "SELECT partition, rows FROM stagebus_loads WHERE run_id IS NOT NULL"))
        present = dict(query(dsn, "SELECT _partition, count(*) FROM rows GROUP BY _partition"))
        assert present == tracked
        assert len(tracked) < 2  # the partition in flight was not recorded
        # When the load runs again
        rerun = stagebus_load(home, dsn)
        out, err = rerun.communicate(timeout=120)
        # Then it finishes, and every row is there exactly once
        assert rerun.returncode == 0, err.decode()
        assert query(dsn, "SELECT count(*), count(DISTINCT n), sum(n) FROM rows") == [
            (ROWS, ROWS, ROWS * (ROWS - 1) // 2)]
        assert sorted(query(dsn, "SELECT partition, rows FROM stagebus_loads")) == [("p0", ROWS // 2),
                                                                                   ("p1", ROWS // 2)]
        assert f"loaded {ROWS - sum(tracked.values())} row(s)" in out.decode()
