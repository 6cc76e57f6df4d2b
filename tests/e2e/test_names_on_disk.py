"""Names that older versions accepted ('.' as a dataset or partition) still get a directory of their own."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgspec
from typer.testing import CliRunner, Result

from stagebus.artifacts.local import ArtifactStore
from stagebus.cli import app
from stagebus.cli._context import resolve_plan
from stagebus.events import Manifest, ManifestWritten, PartitionIngested, RunOpened, RunSealed
from stagebus.store import SqliteEventStore


def stagebus(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args])


def publish_as_an_older_version_did(home: Path, run_id: str, files: dict[tuple[str, str], Path]) -> None:
    """Append what ``publish`` stored before dot-only names were refused."""
    plan = resolve_plan("reference")
    events: list[object] = [RunOpened(run_id=run_id, pipeline=plan.name, pipeline_version=plan.version,
                                      plan=plan.plan)]
    for (dataset, partition), path in files.items():
        data = path.read_bytes()
        events.append(PartitionIngested(run_id=run_id, dataset=dataset, partition=partition,
                                        uri=path.resolve().as_uri(), content_hash=hashlib.sha256(data).hexdigest(),
                                        size=len(data)))
    events.append(RunSealed(run_id=run_id, partitions=tuple(f"{d}/{p}" for d, p in files)))
    home.mkdir(parents=True, exist_ok=True)
    with SqliteEventStore(home / "log.db") as store:
        store.append(events)  # type: ignore[arg-type]


def test_dot_named_partitions_of_one_run_keep_their_own_records_and_views(tmp_path: Path) -> None:
    # Given a log holding '.'/'foo' and 'foo'/'.' in one sealed run, each with rows of its own
    data = tmp_path / "data"
    data.mkdir()
    files = {}
    for (dataset, partition), city in {(".", "foo"): "Oslo", ("foo", "."): "Lima"}.items():
        path = data / f"{city}.csv"
        path.write_text("id,city\n" + "".join(f"{city}-{i},{city}\n" for i in range(300)))
        files[(dataset, partition)] = path
    home = tmp_path / "home"
    publish_as_an_older_version_did(home, "r1", files)
    # When the run is processed
    result = stagebus(home, "run")
    assert result.exit_code == 0, result.output
    assert stagebus(home, "artifacts", "views").exit_code == 0
    # Then both partitions are valid
    ledger = json.loads(stagebus(home, "state", "inspect", "--format", "json").stdout)
    assert {(row["dataset"], row["partition"], row["status"]) for row in ledger} == {
        (".", "foo", "valid"), ("foo", ".", "valid")}
    artifacts = ArtifactStore(home / "artifacts")
    with SqliteEventStore(home / "log.db", readonly=True) as store:
        for (dataset, partition), path in files.items():
            ref, city = f"{dataset}/{partition}", path.stem
            for stage in ("ingest", "normalize", "extract"):
                record = store.get(f"manifest/r1/{stage}/{ref}")
                assert record is not None
                event = record.event()
                assert isinstance(event, ManifestWritten)
                # And each record stage's output holds that partition's own rows, and only them
                outputs = [a for a in event.manifest.artifacts if a.name == "records"]
                assert len(outputs) == (0 if stage == "extract" else 1)
                for records in outputs:
                    rows = [json.loads(line) for line in artifacts.path(records).read_text().splitlines()]
                    assert {row["record"]["city"] for row in rows} == {city}, (stage, ref)
                    assert len(rows) == 300, (stage, ref)
                # And its browsable manifest.json is its own, not the other partition's
                view = msgspec.json.decode(artifacts.manifest_path("r1", stage, ref).read_bytes(), type=Manifest)
                assert view == event.manifest, (stage, ref)
    # And no two tasks share a directory
    dirs = [artifacts.manifest_path("r1", stage, f"{d}/{p}").parent for d, p in files for stage in ("ingest",)]
    assert len(set(dirs)) == 2
