"""`stagebus run --processes N`: partition stages spread over N processes, each task run once."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

from stagebus.events import ManifestWritten, StageStarted
from stagebus.store import SqliteEventStore


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from stagebus.cli import main; main()", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=300)


def test_two_processes_run_every_task_once_and_the_fan_in_after(tmp_path: Path) -> None:
    # Given a sealed run of six small CSV partitions
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        (data / f"part{i}.csv").write_text("id,name\n" + "".join(f"{i}{n},name {n}\n" for n in range(20)))
    home = tmp_path / "home"
    assert cli(home, "publish", "--dataset", "airports", "--dir", str(data), "--seal").returncode == 0
    # When it runs with two processes
    done = cli(home, "run", "--processes", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    # Then every stage task started once and has one manifest, the fan-in stages included
    store = SqliteEventStore(home / "log.db", readonly=True)
    events = [r.event() for r in store.read()]
    started = collections.Counter((e.stage, e.partition) for e in events if isinstance(e, StageStarted))
    manifests = {(e.stage, e.partition) for e in events if isinstance(e, ManifestWritten)}
    assert set(started.values()) == {1}
    assert len(manifests) == 3 * 6 + 3 and set(started) == manifests
    # And the partition stages ran in two processes (the worker id names the pid)
    workers = {e.worker.split(":")[1] for e in events if isinstance(e, StageStarted) and e.partition != "*"}
    assert len(workers) == 2
    # And the table counts every task
    assert "ingest" in done.stdout + done.stderr and "│ serve     │        1" in done.stdout + done.stderr
    store.close()
    # And a bad shard is a one-line error
    bad = cli(home, "run", "--shard", "3/2")
    assert bad.returncode == 2 and "--shard" in bad.stderr
