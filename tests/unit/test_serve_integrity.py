"""The served snapshot is a verified copy: editing the index object cannot edit what is served,
and an edited snapshot is refused by ``query`` with a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stagebus.errors import ArtifactCorrupted
from stagebus.stages import query
from stagebus.stages.serve import read_pointer
from support.reference import RUN_STAGES, ReferenceRun

BOOKS = [
    {"id": "b1", "title": "The Art of Tea", "blurb": "Brewing green tea and oolong."},
    {"id": "b3", "title": "Quiet Gardens", "blurb": "Moss, stones and water."},
]


def replace_bytes(path: Path, old: bytes, new: bytes) -> None:
    """Edit a file in place (same inode: a hard link to it sees the edit too)."""
    data = path.read_bytes()
    assert old in data and len(old) == len(new)
    with path.open("r+b") as fh:
        fh.seek(data.index(old))
        fh.write(new)


def run_until(root: Path, sources: Path, last: str) -> ReferenceRun:
    run = ReferenceRun(root).open()
    source = sources / "books.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in BOOKS))
    run.publish("books", "all", source)
    run.run_partition_stages()
    run.seal()
    for stage in RUN_STAGES[: RUN_STAGES.index(last) + 1]:
        run.execute(stage)
    return run


def test_tampering_the_index_object_after_serve_does_not_change_query_results(tmp_path: Path) -> None:
    # Given a served run
    root = tmp_path / "art"
    run = run_until(root, tmp_path, "serve")
    before = query.search(root, "stones")
    # When the index object is edited behind the store's back
    replace_bytes(run.artifact_path("index", "index"), b"Moss, stones", b"Mass, stones")
    # Then the served snapshot is untouched and query answers as before
    after = query.search(root, "stones")
    assert after == before and after[0].record["blurb"] == "Moss, stones and water."


def test_a_tampered_served_snapshot_is_refused_by_query(tmp_path: Path) -> None:
    # Given a served run whose snapshot file is edited
    root = tmp_path / "art"
    run_until(root, tmp_path, "serve")
    pointer = read_pointer(root)
    assert pointer is not None
    replace_bytes(root / pointer.snapshot, b"Moss, stones", b"Mass, stones")
    # When queried, Then a clear integrity error names the snapshot and both hashes
    with pytest.raises(ArtifactCorrupted, match="served snapshot") as caught:
        query.search(root, "stones")
    assert pointer.sha256 in str(caught.value) and pointer.snapshot in str(caught.value)


def test_serve_refuses_a_tampered_index_object(tmp_path: Path) -> None:
    # Given a run indexed, whose index object is then edited
    root = tmp_path / "art"
    run = run_until(root, tmp_path, "index")
    replace_bytes(run.artifact_path("index", "index"), b"Moss, stones", b"Mass, stones")
    # When serve runs, Then it fails on integrity and nothing is served
    with pytest.raises(ArtifactCorrupted):
        run.execute("serve")
    assert read_pointer(root) is None
    assert list((root / "served" / "snapshots").glob("*")) == []


def test_serving_again_repairs_a_tampered_snapshot(tmp_path: Path) -> None:
    # Given a served snapshot that was edited
    root = tmp_path / "art"
    run = run_until(root, tmp_path, "serve")
    pointer = read_pointer(root)
    assert pointer is not None
    replace_bytes(root / pointer.snapshot, b"Moss, stones", b"Mass, stones")
    # When the index is served again (serve is never reused)
    again = ReferenceRun(root, store=run.store, run_id="run-2", reuse=True).open()
    again.publish("books", "all", tmp_path / "books.jsonl")
    again.run_all()
    # Then the snapshot holds the index's bytes again and query reads it
    assert (root / pointer.snapshot).read_bytes() == run.artifact_path("index", "index").read_bytes()
    assert query.search(root, "stones")[0].record["blurb"] == "Moss, stones and water."
