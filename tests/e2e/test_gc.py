"""``stagebus gc``: only what no manifest references goes, and only when asked."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

STAGEBUS = [str(Path(sys.executable).parent / "stagebus")]


def cli(home: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEBUS_")}
    done = subprocess.run([*STAGEBUS, "--home", str(home), *args], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_gc_keeps_referenced_objects_and_the_served_view(tmp_path: Path) -> None:
    # Given two runs over different data, an orphan object, as a duplicate that lost its manifest
    # key would leave behind, and a snapshot and pointer of the old serving model
    home = tmp_path / "home"
    for text in ("a,b\n1,first\n", "a,b\n1,second\n"):
        (tmp_path / "t.csv").write_text(text)
        cli(home, "publish", "--dataset", "d", "--partition", "p", "--file", str(tmp_path / "t.csv"), "--seal")
        cli(home, "run")
    orphan_bytes = b"left behind by a losing duplicate"
    digest = hashlib.sha256(orphan_bytes).hexdigest()
    orphan = home / "artifacts" / "objects" / digest[:2] / digest
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(orphan_bytes)
    served = home / "artifacts" / "served"
    (served / "snapshots").mkdir()
    (served / "snapshots" / f"{'0' * 64}.db").write_bytes(b"an old snapshot")
    (served / "CURRENT").write_text("{}\n")
    # When a dry run looks, Then nothing is deleted
    assert "would delete 1 unreferenced object(s)" in cli(home, "gc", "--min-age", "0", "--dry-run")
    assert orphan.exists() and (served / "CURRENT").exists()
    # When gc runs for real
    out = cli(home, "gc", "--min-age", "0")
    # Then the orphan and the old model's files are gone; the served view and every manifest's
    # artifacts are intact
    assert "deleted 1 unreferenced object(s)" in out and "2 serving leftover(s)" in out
    assert not orphan.exists() and not (served / "CURRENT").exists()
    assert [p.name for p in served.iterdir() if p.is_file()] == ["served.db"]
    for run in json.loads(cli(home, "state", "inspect", "--format", "json")):
        for manifest in json.loads(cli(home, "manifest", "show", run["run_id"], "--format", "json")):
            for artifact in manifest["artifacts"]:
                data = (home / "artifacts" / artifact["path"]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == artifact["sha256"]
    assert json.loads(cli(home, "query", "second", "--format", "json"))


def test_gc_keeps_young_unreferenced_objects(tmp_path: Path) -> None:
    # Given an unreferenced object just written (a running task publishes before its manifest)
    home = tmp_path / "home"
    (tmp_path / "t.csv").write_text("a\n1\n")
    cli(home, "publish", "--dataset", "d", "--partition", "p", "--file", str(tmp_path / "t.csv"), "--seal")
    young = home / "artifacts" / "objects" / "ab" / ("ab" + "0" * 62)
    young.parent.mkdir(parents=True, exist_ok=True)
    young.write_bytes(b"in flight")
    # When gc runs with the default grace period, Then it stays
    assert "deleted 0 unreferenced object(s)" in cli(home, "gc")
    assert young.exists()
