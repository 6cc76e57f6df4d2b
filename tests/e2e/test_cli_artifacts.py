"""``stagebus artifacts verify``: tampered objects and lost views are reported; views are repaired."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

STAGEBUS = [str(Path(sys.executable).parent / "stagebus")]


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEBUS_")}
    return subprocess.run([*STAGEBUS, "--home", str(home), *args], capture_output=True, text=True, env=env,
                          timeout=300)


def ok(home: Path, *args: str) -> str:
    done = cli(home, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def tamper(path: Path) -> None:
    with path.open("r+b") as fh:
        byte = fh.read(1)
        fh.seek(0)
        fh.write(b"#" if byte != b"#" else b"$")


def _run_id(home: Path) -> str:
    (run,) = json.loads(ok(home, "runs", "--format", "json"))  # the one run
    return str(run["run_id"])


def completed_run(tmp_path: Path) -> tuple[Path, str]:
    """A home with one run of the reference pipeline over a two-row CSV, done; and its run id."""
    home = tmp_path / "home"
    (tmp_path / "t.csv").write_text("a,b\n1,first\n2,second\n")
    ok(home, "publish", "--dataset", "d", "--partition", "p", "--file", str(tmp_path / "t.csv"), "--seal")
    ok(home, "run")
    return home, _run_id(home)


def ingest_raw(home: Path, run_id: str) -> Path:
    (manifest,) = json.loads(ok(home, "manifest", "show", run_id, "--stage", "ingest", "--format", "json"))
    (raw,) = [a for a in manifest["artifacts"] if a["name"] == "raw"]
    return home / "artifacts" / raw["path"]


def test_views_are_written_on_demand_from_the_log(tmp_path: Path) -> None:
    # Given a completed run: its tasks wrote no browsable views
    home, run_id = completed_run(tmp_path)
    assert not (home / "artifacts" / "runs").exists()
    # When the views are asked for, Then one per manifest is written, each its manifest of record
    first = json.loads(ok(home, "artifacts", "views", "--format", "json"))
    assert first["manifests"] == first["written"] == 6
    shown = json.loads(ok(home, "manifest", "show", run_id, "--format", "json"))
    views = {json.loads(p.read_text())["stage"]: json.loads(p.read_text())
             for p in (home / "artifacts" / "runs" / run_id).rglob("manifest.json")}
    assert set(views) == {m["stage"] for m in shown} and len(views) == 6
    assert views["ingest"]["output_hash"] == next(m for m in shown if m["stage"] == "ingest")["output_hash"]
    # And asking again writes nothing; for an unknown run it is a usage error
    assert "0 manifest.json view(s) written" in ok(home, "artifacts", "views", "--run", run_id)
    done = cli(home, "artifacts", "views", "--run", "nope")
    assert done.returncode == 2 and "no run 'nope'" in done.stderr


def test_verify_reports_tampered_objects_and_edited_views_and_exits_1(tmp_path: Path) -> None:
    # Given a completed run: verify says it is intact, with or without views written
    home, run_id = completed_run(tmp_path)
    clean = json.loads(ok(home, "artifacts", "verify", "--format", "json"))
    assert clean["ok"] and clean["findings"] == [] and clean["objects"] > 0 and clean["views"] == 6
    ok(home, "artifacts", "views")
    assert json.loads(ok(home, "artifacts", "verify", "--format", "json"))["findings"] == []
    # When ingest's raw object is edited and normalize's manifest.json edited
    raw = ingest_raw(home, run_id)
    tamper(raw)
    (view,) = (home / "artifacts" / "runs").rglob("normalize/**/manifest.json")
    original = view.read_bytes()
    view.write_bytes(original.replace(b'"status":"complete"', b'"status":"reused"'))
    # Then verify lists both, with the stage to run again, exits 1 and changes nothing
    done = cli(home, "artifacts", "verify", "--run", run_id, "--format", "json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    found = {(f["kind"], f["stage"]): f for f in report["findings"]}
    assert set(found) == {("object", "ingest"), ("view", "normalize")}
    assert found[("object", "ingest")]["path"] == raw.relative_to(home / "artifacts").as_posix()
    assert "expected sha256" in found[("object", "ingest")]["problem"]
    assert f"--run-id {run_id} --resume-from ingest" in found[("object", "ingest")]["advice"]
    assert found[("view", "normalize")]["problem"] == "differs from the ManifestWritten event"
    assert view.read_bytes() != original
    table = cli(home, "artifacts", "verify")
    assert table.returncode == 1 and "ingest" in table.stdout and "differs" in table.stdout
    # When repaired, Then the view is rebuilt from the log; the object is still reported
    repaired = cli(home, "artifacts", "verify", "--repair", "--format", "json")
    assert repaired.returncode == 1
    assert view.read_bytes() == original
    left = [(f["kind"], f["repaired"]) for f in json.loads(repaired.stdout)["findings"]]
    assert sorted(left) == [("object", False), ("view", True)]
    # When the advice is followed, Then the recomputation repairs the object and verify is clean
    ok(home, "run", "--run-id", run_id, "--resume-from", "ingest")
    ok(home, "run")
    assert json.loads(ok(home, "artifacts", "verify", "--format", "json"))["ok"]


def test_verify_of_an_unknown_run_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a\n1\n")
    ok(tmp_path / "home", "publish", "--dataset", "d", "--partition", "p", "--file", str(tmp_path / "t.csv"))
    done = cli(tmp_path / "home", "artifacts", "verify", "--run", "nope")
    assert done.returncode == 2 and "no run 'nope'" in done.stderr


def test_resume_over_a_tampered_upstream_executes_it_again_and_repairs_it(tmp_path: Path) -> None:
    # Given a completed run whose normalize output is then edited (still valid JSON)
    home, run_id = completed_run(tmp_path)
    (manifest,) = json.loads(ok(home, "manifest", "show", run_id, "--stage", "normalize", "--format", "json"))
    (records,) = [a for a in manifest["artifacts"] if a["name"] == "records"]
    obj = home / "artifacts" / records["path"]
    intact = obj.read_bytes()
    assert b"first" in intact
    obj.write_bytes(intact.replace(b"first", b"forst"))
    # When the run is resumed from extract, whose upstream normalize would be reused from the parent
    ok(home, "run", "--run-id", run_id, "--resume-from", "extract")
    ok(home, "run")
    # Then the first stage whose reuse would have handed on the damaged object executed again
    # (ingest: normalize's records are byte-identical to ingest's, one shared object), which put
    # the right bytes back; normalize then reused the repaired object
    (new_run,) = [r["run_id"] for r in json.loads(ok(home, "runs", "--format", "json")) if r["run_id"] != run_id]
    status = {m["stage"]: m["status"] for m in json.loads(ok(home, "manifest", "show", new_run, "--format", "json"))}
    assert status["ingest"] == "complete" and status["normalize"] == "reused" and status["extract"] == "complete"
    assert obj.read_bytes() == intact
    # And the new run's search results come from the intact records
    assert "first" in ok(home, "query", "first")
    assert json.loads(ok(home, "artifacts", "verify", "--format", "json"))["ok"]
