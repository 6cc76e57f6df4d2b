"""The real ``stagebus`` console script on a home whose artifacts live in S3
(``STAGEBUS_ARTIFACTS=s3://bucket/prefix``, a moto_server reached through the AWS variables):
every partition valid, ``artifacts verify`` checks the bucket itself, ``gc`` collects in it, and
no credential ever reaches output."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.s3 import ACCESS_KEY, SECRET_KEY, MotoServer

STAGEBUS = [str(Path(sys.executable).parent / "stagebus")]
PREFIX = "prod/stagebus"
pytestmark = pytest.mark.s3


def cli(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*STAGEBUS, "--home", str(home), *args], capture_output=True, text=True, env=env,
                          timeout=300)
    for secret in (SECRET_KEY, ACCESS_KEY):
        assert secret not in done.stdout + done.stderr
    return done


def ok(home: Path, env: dict[str, str], *args: str) -> str:
    done = cli(home, env, *args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def environment(moto_server: MotoServer, bucket: str) -> dict[str, str]:
    env = {k: v for k, v in moto_server.env().items() if not k.startswith("STAGEBUS_")}
    env["STAGEBUS_ARTIFACTS"] = f"s3://{bucket}/{PREFIX}"
    return env


def bucket_objects(moto_server: MotoServer, bucket: str) -> dict[str, int]:
    listed = moto_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/").get("Contents", [])
    return {item["Key"].removeprefix(f"{PREFIX}/"): item["Size"] for item in listed}


def publish_and_run(home: Path, env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "airports"
    source.mkdir()
    (source / "ca.csv").write_text("ident,name\nKSFO,San Francisco International\n")
    (source / "ny.csv").write_text("ident,name\nKJFK,John F Kennedy International\nKLGA,LaGuardia\n")
    ok(home, env, "publish", "--run-id", "r1", "--dataset", "airports", "--dir", str(source), "--seal")
    ok(home, env, "run")


def test_a_run_on_s3_artifacts_is_valid_verified_and_collectable(tmp_path: Path, moto_server: MotoServer,
                                                                 s3_bucket: str) -> None:
    # Given a home whose artifacts are in a bucket, after a run of the reference pipeline
    home, env = tmp_path / "home", environment(moto_server, s3_bucket)
    publish_and_run(home, env, tmp_path)
    # Then every partition is valid, the objects are in the bucket, and none on local disk but the cache
    ledger = json.loads(ok(home, env, "state", "inspect", "--format", "json"))
    assert {(e["partition"], e["status"]) for e in ledger} == {("ca", "valid"), ("ny", "valid")}
    stored = bucket_objects(moto_server, s3_bucket)
    assert stored and all(key.startswith("objects/") for key in stored)
    assert not (home / "artifacts").exists() and (home / "artifacts-cache" / "objects").is_dir()
    # And the served view answers from this machine's working area
    hits = json.loads(ok(home, env, "query", "kennedy", "--format", "json"))
    assert [h["partition"] for h in hits] == ["ny"]
    # And an export reads the valid records through the bucket (and its cache)
    ok(home, env, "export", "airports", "--format", "jsonl", "--out", str(tmp_path / "airports.jsonl"))
    assert len((tmp_path / "airports.jsonl").read_text().splitlines()) == 3
    # When the local cache is lost entirely, Then verify still passes: it checks the bucket
    shutil.rmtree(home / "artifacts-cache")
    report = json.loads(ok(home, env, "artifacts", "verify", "--repair", "--format", "json"))
    assert report["ok"] and report["objects"] == len(stored) and report["views"] == report["manifests"]
    assert report["findings"] == []  # views are written on demand: missing ones are no damage
    assert len(list((home / "artifacts-cache" / "runs").rglob("manifest.json"))) == report["manifests"]
    # When an orphan object (a losing duplicate's) is in the bucket and gc runs without grace
    orphan = b"left behind by a duplicate that lost its manifest key"
    digest = hashlib.sha256(orphan).hexdigest()
    moto_server.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/objects/{digest[:2]}/{digest}", Body=orphan)
    dry = ok(home, env, "gc", "--min-age", "0", "--dry-run")
    assert "would delete 1 unreferenced object(s)" in dry
    assert f"objects/{digest[:2]}/{digest}" in bucket_objects(moto_server, s3_bucket)
    done = ok(home, env, "gc", "--min-age", "0")
    # Then only the orphan is gone, and verify still passes
    assert "deleted 1 unreferenced object(s)" in done
    assert bucket_objects(moto_server, s3_bucket) == stored
    assert json.loads(ok(home, env, "artifacts", "verify", "--format", "json"))["ok"]


def test_an_object_tampered_in_the_bucket_fails_verify(tmp_path: Path, moto_server: MotoServer,
                                                       s3_bucket: str) -> None:
    # Given a completed run on S3, one of whose objects is replaced in the bucket
    home, env = tmp_path / "home", environment(moto_server, s3_bucket)
    publish_and_run(home, env, tmp_path)
    manifest = json.loads(ok(home, env, "manifest", "show", "r1", "--stage", "normalize", "--format", "json"))[0]
    records = next(a for a in manifest["artifacts"] if a["name"] == "records")
    moto_server.client().put_object(Bucket=s3_bucket, Key=f"{PREFIX}/{records['path']}", Body=b"{}\n")
    # When verify runs, Then it exits 1 naming the object and the stage to run again
    done = cli(home, env, "artifacts", "verify", "--format", "json")
    assert done.returncode == 1, done.stderr[-2000:]
    findings = json.loads(done.stdout)["findings"]
    assert {f["path"] for f in findings} == {records["path"]}  # content-addressed: other stages may share it
    normalize = next(f for f in findings if f["stage"] == "normalize")
    assert "--resume-from normalize" in normalize["advice"]


@pytest.mark.parametrize("value, says", [
    (f"s3://{ACCESS_KEY}:{SECRET_KEY}@bucket/prefix", "credentials"),
    ("ftp://example.org/artifacts", "s3://BUCKET"),
    ("s3://No_Such-Bucket!/x", "not an S3 bucket name"),
    ("s3://bucket/a/../b", "'..'"),
])
def test_a_bad_artifacts_setting_is_one_clear_line_and_changes_nothing(tmp_path: Path, value: str, says: str) -> None:
    # Given a mistyped --artifacts
    home = tmp_path / "home"
    done = subprocess.run([*STAGEBUS, "--home", str(home), "--artifacts", value, "state", "inspect"],
                          capture_output=True, text=True, timeout=60)
    # Then one line says what is wrong, without echoing a secret, the exit is non-zero, no home is made
    assert done.returncode != 0
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert SECRET_KEY not in done.stdout + done.stderr
    assert not home.exists()


def test_s3_artifacts_without_boto3_name_the_extra(tmp_path: Path) -> None:
    # Given an environment where boto3 cannot be imported
    code = ("import sys; sys.modules['boto3'] = None; sys.argv = ['stagebus', *sys.argv[1:]]; "
            "from stagebus.cli import main; main()")
    home = tmp_path / "home"
    (tmp_path / "t.csv").write_text("a,b\n1,x\n")
    subprocess.run([*STAGEBUS, "--home", str(home), "publish", "--dataset", "d", "--partition", "p", "--file",
                    str(tmp_path / "t.csv"), "--seal"], check=True, capture_output=True, timeout=60)
    # When a command is asked to use S3 artifacts
    done = subprocess.run([sys.executable, "-c", code, "--home", str(home), "--artifacts", "s3://bucket/x", "gc"],
                          capture_output=True, text=True, timeout=60)
    # Then one line names the extra to install
    assert done.returncode != 0
    assert "stagebus[s3]" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
