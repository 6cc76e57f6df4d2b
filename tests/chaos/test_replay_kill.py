"""A killed ``stagebus replay`` leaves a partial generation; the next replay deletes it first,
so killed replays do not pile up, and a generation a live process is building is never swept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import history
from stagebus.projections import Projections
from stagebus.projections.generations import FileGenerations
from stagebus.store import SqliteEventStore

SCRIPT = Path(sys.executable).parent / "stagebus"
EVENTS = 40_000


def stagebus(home: Path, *args: str) -> list[str]:
    return [str(SCRIPT), "--home", str(home), *args]


def generations(home: Path) -> list[str]:
    return sorted(p.stem for p in (home / "projections").glob("*.db"))


def stamps(home: Path) -> dict[str, tuple[tuple[int, int], int]]:
    """Generation -> ((inode, ctime), size): a leftover nobody writes keeps its stamp."""
    stats = {p.stem: p.stat() for p in (home / "projections").glob("*.db")}
    return {name: ((st.st_ino, st.st_ctime_ns), st.st_size) for name, st in stats.items()}


def kill_mid_replay(home: Path) -> str:
    """Start a replay, SIGKILL it once its new generation holds data; return that generation."""
    live = (home / "projections" / "CURRENT").read_text().strip()
    before = stamps(home)
    process = subprocess.Popen(stagebus(home, "replay"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PATH": "/usr/bin:/bin"})
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            try:  # a generation made or written since the replay started, other than the live one
                now = stamps(home)
            except FileNotFoundError:  # swept while we looked
                continue
            building = [n for n, (stamp, size) in now.items()
                        if n != live and before.get(n, (None, 0))[0] != stamp and size > 64 * 1024]
            if building:
                assert process.poll() is None, "the replay finished before it could be killed: grow the log"
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return building[0]
            time.sleep(0.01)
        raise AssertionError("the replay never started writing its generation")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A log of tens of thousands of events, with live projections caught up."""
    home = tmp_path / "home"
    store = SqliteEventStore(home / "log.db")
    while store.head() < EVENTS:
        history.grow(store, 2_000, run_size=1_000, batch=5_000, prefix=f"h{store.head()}")
    with Projections(store, home / "projections") as projections:
        projections.catch_up()
    store.close()
    return home


@pytest.mark.chaos
def test_the_next_replay_sweeps_what_killed_replays_left(home: Path) -> None:
    # Given a replay SIGKILLed mid-way: its partial generation is left behind
    live = generations(home)
    first = kill_mid_replay(home)
    assert generations(home) == sorted([*live, first])
    # When another replay starts and is killed mid-way too
    second = kill_mid_replay(home)
    # Then the first one's leftover is already gone: only the second's partial remains (its name
    # may be the first's again, as the number is free once the leftover is deleted)
    assert generations(home) == sorted([*live, second])
    # And a replay that completes leaves only its generation and the one it replaced, which verify
    done = subprocess.run(stagebus(home, "replay"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(generations(home)) <= 2
    assert not list((home / "projections").glob(".*.building"))
    verified = subprocess.run(stagebus(home, "replay", "--verify"), capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stderr
    assert "ok: the projections match" in verified.stdout


def test_a_generation_a_live_process_builds_is_not_swept(tmp_path: Path) -> None:
    # Given one process building a generation (it holds the build lock) and a dead partial one
    root = tmp_path / "projections"
    builder = FileGenerations(root)
    with builder.lock():
        dead, conn = builder.create()
    conn.close()
    os.close(builder._building.pop(dead))  # its builder died: the lock file stays, nobody holds it
    assert (root / f".{dead}.building").exists()
    with builder.lock():
        building, conn = builder.create()
    # When a rebuild elsewhere sweeps
    sweeper = FileGenerations(root)
    with sweeper.lock():
        swept = sweeper.sweep()
    # Then only the dead one went
    assert swept == [dead]
    assert (root / f"{building}.db").exists() and not (root / f"{dead}.db").exists()
    conn.close()
    builder.discard(building)
    assert not list(root.iterdir()) or [p.name for p in root.iterdir()] == [".lock"]
