"""Integrity of what is served: serve applies only a verified index object, a partition names the
content hash it serves, and a served record edited behind the store's back is refused by query."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from stagebus.errors import ArtifactCorrupted
from stagebus.stages import query
from stagebus.stages.served import served_path
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
    # Then the served view is untouched and query answers as before
    after = query.search(root, "stones")
    assert after == before and after[0].record["blurb"] == "Moss, stones and water."


def test_each_served_partition_names_its_content_hash_and_index(tmp_path: Path) -> None:
    # Given a served run
    root = tmp_path / "art"
    run = run_until(root, tmp_path, "serve")
    # Then the served partition names the content hash the index computed and the index object
    with closing(sqlite3.connect(run.artifact_path("index", "index"))) as conn:
        indexed = conn.execute("SELECT dataset, partition, content_hash FROM partitions").fetchall()
    with closing(sqlite3.connect(served_path(root))) as conn:
        rows = conn.execute("SELECT dataset, partition, content_hash, index_sha256 FROM partitions").fetchall()
    assert rows == [(*indexed[0], run.manifest("index").artifacts[0].sha256)]


def test_a_tampered_served_record_is_refused_by_query(tmp_path: Path) -> None:
    # Given a served run whose served record is edited
    root = tmp_path / "art"
    run_until(root, tmp_path, "serve")
    with closing(sqlite3.connect(served_path(root))) as conn:
        conn.execute("UPDATE records SET record = replace(record, 'Moss', 'Mass')")
        conn.commit()
    # When queried, Then a clear integrity error names the record and the run serving it
    with pytest.raises(ArtifactCorrupted, match=r"served record books/all#2 \(served by run run-1\) is corrupted"):
        query.search(root, "stones")


def test_serve_refuses_a_tampered_index_object_and_serves_nothing(tmp_path: Path) -> None:
    # Given a run indexed, whose index object is then edited
    root = tmp_path / "art"
    run = run_until(root, tmp_path, "index")
    replace_bytes(run.artifact_path("index", "index"), b"Moss, stones", b"Mass, stones")
    # When serve runs, Then it fails on integrity, nothing is served and no copy is left behind
    with pytest.raises(ArtifactCorrupted):
        run.execute("serve")
    assert not served_path(root).exists()
    assert list((root / "served").glob("*")) == []
