"""Nothing a user supplies may block a command or a worker, or take quadratic time."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stagebus.cli.publish import clashing_stems
from stagebus.errors import PermanentStageError
from stagebus.stages.parsing import parse_csv
from stagebus.store import SqliteEventStore
from support.reference import ReferenceRun

SCRIPT = Path(sys.executable).parent / "stagebus"


@pytest.mark.timeout(30)
def test_publishing_a_fifo_is_refused_at_once_and_stores_nothing(tmp_path: Path) -> None:
    # Given a FIFO nobody writes to
    fifo = tmp_path / "feed.csv"
    os.mkfifo(fifo)
    # When it is published through the console script
    done = subprocess.run([str(SCRIPT), "--home", str(tmp_path / "home"), "publish", "--dataset", "d",
                           "--partition", "p", "--file", str(fifo)],
                          capture_output=True, text=True, timeout=20, env={"PATH": "/usr/bin:/bin"})
    # Then it returns promptly with one line naming the file, exit 2, and nothing is stored
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"stagebus: error: {fifo} is not a regular file"]
    log = tmp_path / "home" / "log.db"
    if log.exists():
        with SqliteEventStore(log, readonly=True) as store:
            assert list(store.read()) == []


@pytest.mark.timeout(30)
def test_a_source_replaced_by_a_fifo_fails_ingest_for_good_without_hanging(tmp_path: Path) -> None:
    # Given a published partition whose file is then replaced by a FIFO
    source = tmp_path / "data.csv"
    source.write_text("a,b\n1,2\n")
    run = ReferenceRun(tmp_path / "art").open()
    run.publish("d", "p", source)
    source.unlink()
    os.mkfifo(source)
    # When ingest runs (a first attempt, with attempts left)
    with pytest.raises(PermanentStageError, match="is not a regular file"):
        run.execute("ingest", "d/p", final=False)
    # Then the task fails at once, permanently, saying the source is not a regular file
    (failure,) = run.failures()
    assert failure.final and "is not a regular file" in failure.message


@pytest.mark.timeout(30)
def test_a_100k_column_header_parses() -> None:
    # Given a CSV whose header has 100,000 distinct columns and one row
    names = [f"c{i}" for i in range(100_000)]
    data = (",".join(names) + "\n" + ",".join("x" * 100_000) + "\n").encode()
    # When parsed (quadratic duplicate checks took minutes here)
    (row,) = parse_csv(io.BytesIO(data))
    # Then the record has every column
    assert row.record is not None and len(row.record) == 100_000


@pytest.mark.timeout(60)
def test_a_100k_file_directory_is_checked_for_clashing_stems_in_linear_time(tmp_path: Path) -> None:
    # Given 100,000 file names with distinct stems and one pair that clash
    names = [Path(f"part{i}.csv") for i in range(100_000)] + [Path("part7.jsonl")]
    # Then the clash is found, and distinct names pass
    assert clashing_stems(names) == ["part7"]
    assert clashing_stems(names[:-1]) == []
