"""A real full disk (a 1 MiB tmpfs under the artifact store): `stagebus run` leaves the run
pending with the reason, exits 75, and the next `stagebus run` after space is freed finishes it."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from stagebus.cli import app


def stagebus(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args])


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "home" / "artifacts"
    mount.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_waits_and_the_next_run_after_it_is_freed_completes(tmp_path: Path, tiny_disk: Path) -> None:
    home = tmp_path / "home"
    data = tmp_path / "data.csv"
    data.write_text("code,name\n" + "".join(f"A{i},airport {i}\n" for i in range(200)))
    assert stagebus(home, "publish", "--dataset", "airports", "--partition", "p1", "--file", str(data),
                    "--seal").exit_code == 0
    # Given the artifact store's disk is full
    filler = tiny_disk / "filler"
    with filler.open("wb") as fh, pytest.raises(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
    # When `stagebus run` runs
    first = stagebus(home, "run", "--wait-infra", "1")
    # Then it says which tasks wait and why, exits 75, and the partition is pending, not invalid
    assert first.exit_code == 75, first.output
    assert "waiting on infrastructure" in first.output and "No space left on device" in first.output
    rows = json.loads(stagebus(home, "state", "inspect", "--format", "json").output)
    assert [r["status"] for r in rows if r["partition"] == "p1"] in ([], ["pending"])
    # When space is freed and `stagebus run` runs again (no --resume-from)
    filler.unlink()
    second = stagebus(home, "run")
    # Then the run completes and the partition is valid
    assert second.exit_code == 0, second.output
    rows = json.loads(stagebus(home, "state", "inspect", "--format", "json").output)
    assert [r["status"] for r in rows if r["partition"] == "p1"] == ["valid"]
