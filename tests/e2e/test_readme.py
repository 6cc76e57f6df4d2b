"""Every command the README shows, run as written from a fresh copy of the repository.

The set-up command builds its own virtualenv and runs the demo; the "Your own data" and
"Writing your own stage" blocks then run verbatim in that copy, on small data the test writes
where the commands expect it. Fleet commands need a fleet, so for those the test checks that
each command and every flag it uses exists (``--help`` with the same flags). The second set-up
command (``./scripts/test``) is this suite itself.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
AIRPORTS = """id,name,city,country
1,San Francisco International,San Francisco,US
2,London Heathrow,London,GB
3,"broken quote,X,Y
"""
CATALOG = """sku,price
A-1,9.99
,3.50
B-2,not a number
C-3,12
"""
RUNWAYS = """airport,runway,length_ft
SFO,10L/28R,11870
LHR,09L/27R,12802
"""
FIRST_RUN_ID = 'import json, sys; print(json.load(sys.stdin)[0]["run_id"])'


def sh_blocks(section: str) -> list[str]:
    """The ```sh blocks of one ``## section`` of the README."""
    part = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0] if section else README.split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", part, re.S)


def commands(block: str) -> list[str]:
    return [line.split("  #", 1)[0].strip() for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files a clone would have (tracked, plus new ones not ignored), as in the work tree."""
    target = tmp_path_factory.mktemp("clone")
    listing = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    tracked = subprocess.run(listing, cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def run(block: str, cwd: Path, path_dirs: list[Path] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STAGEBUS_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = os.pathsep.join([*map(str, path_dirs or []), env.get("PATH", "")])
    env["COLUMNS"] = "200"  # rich tables wrap long names on a narrow terminal
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{block}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(clone: Path) -> Path:
    # Given the README's two set-up commands
    setup = commands(sh_blocks("")[0])
    assert setup[1] == "./scripts/test" and len(setup) == 2
    # When the first runs as written in a fresh copy
    done = run(setup[0], clone)
    # Then it installed stagebus and the demo ran to its ledger and search
    assert "valid" in done.stdout and "stagebus query" in done.stdout
    return clone / ".venv" / "bin"


def test_setup_command_installs_and_runs_the_demo(installed: Path) -> None:
    assert (installed / "stagebus").exists()


def test_your_own_data_commands_run_as_written(clone: Path, installed: Path) -> None:
    # Given two datasets where the README's commands expect them
    for dataset, text in (("airports", AIRPORTS), ("runways", RUNWAYS)):
        (clone / "data" / dataset).mkdir(parents=True)
        (clone / "data" / dataset / "us.csv").write_text(text)
    run_id = f"$(stagebus state inspect --format json | python3 -c '{FIRST_RUN_ID}')"
    block = sh_blocks("Your own data")[0].replace("RUN_ID", run_id)
    # When the block runs verbatim (run ids taken from the ledger)
    done = run(block, clone, [installed])
    found = done.stdout.replace("[", "").replace("]", "")  # snippets mark matches: [San Francisco]
    # Then the first dataset is still served after the second one's run, both valid in the ledger
    assert "San Francisco International" in found and "London Heathrow" in found
    ledger = json.loads(run("stagebus state inspect --format json", clone, [installed]).stdout)
    assert {(r["dataset"], r["status"], r["records"], r["rejected"]) for r in ledger if r["dataset"] != "stdlib"} == {
        ("airports", "valid", 3, 1), ("runways", "valid", 2, 0)}
    # And the reject, the runs, the why and the export are what the data says
    assert "broken quoting" in found and re.search(r"\b[23] run\(s\)", found) and "airports/us: valid" in found
    exported = (clone / "airports.csv").read_text().splitlines()
    manifest = json.loads((clone / "airports.csv.manifest.json").read_text())
    assert len(exported) == 3 and manifest["records"] == 2 and manifest["partitions"][0]["partition"] == "us"


def test_writing_your_own_stage_runs_as_written(clone: Path, installed: Path) -> None:
    # Given the README's example stage is the file that runs
    shown = re.search(r"```python\n# examples/prices.py\n(.*?)```", README, re.S)
    assert shown is not None
    example = (clone / "examples" / "prices.py").read_text()
    assert shown.group(1) in example
    # And a catalog with a good row, a row without sku, a bad price and another good row
    (clone / "catalog").mkdir()
    (clone / "catalog" / "spring.csv").write_text(CATALOG)
    home = clone / ".stagebus-shop"
    # When the block runs verbatim, from the clone's root
    run(f"export STAGEBUS_HOME={shlex.quote(str(home))}\n" + sh_blocks("Writing your own stage")[0], clone,
        [installed])
    # Then the partition is valid: the two bad rows are rejects, not retried failures
    ledger = run(f"stagebus --home {shlex.quote(str(home))} state inspect --format json", clone, [installed])
    assert '"valid"' in ledger.stdout and '"invalid"' not in ledger.stdout


def test_fleet_commands_and_flags_exist(installed: Path, clone: Path) -> None:
    # Given every stagebus command of the fleet block, with its flags and no values
    lines = [c for c in commands(sh_blocks("Running a fleet")[0]) if c.startswith("stagebus ")]
    assert lines
    for line in lines:
        words = shlex.split(line)
        verbs = [w for w in words[1:] if not w.startswith("-")][:1]
        flags = [w for w in words if w.startswith("--")]
        # When asked for help with exactly those flags, Then every flag is known
        help_text = run(f"stagebus {verbs[0]} --help", clone, [installed]).stdout
        assert all(flag in help_text for flag in flags), (line, help_text)


def test_service_commands_run_as_written(clone: Path, installed: Path) -> None:
    import socket

    with socket.socket() as sock:  # the README's port may be taken on a shared machine
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    block = sh_blocks("Run it as a service")[0].replace("8080", str(port))
    # When the block runs verbatim (on a free port)
    done = run(block, clone, [installed])
    # Then the batch completed with one record error, and the CLI lists its run
    assert '"status":"completed"' in done.stdout and '"failed_count":1' in done.stdout
    assert '"record_index":1' in done.stdout and '"processor":"cast"' in done.stdout
    assert '"records_processed":1' in done.stdout and "api-bat_" in done.stdout
