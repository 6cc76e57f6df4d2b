"""Search the served snapshot: what ``stagebus query TEXT`` answers.

User text never reaches FTS5 syntax: every whitespace-separated word is quoted as an FTS5 string
(a phrase: ``os.path.join`` matches the tokens os, path, join in a row) and the words are ANDed,
so any input, operators and quotes included, is a plain search and never a syntax error.
Hits are ranked by bm25 (``score`` is the negated bm25: higher is better), ties by record order.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import msgspec

from stagebus.artifacts.integrity import check_object
from stagebus.errors import ArtifactCorrupted, InvalidInput
from stagebus.stages.index import searchable_text
from stagebus.stages.serve import read_pointer

SNIPPET_CHARS = 160
# Every word is one more FTS5 phrase to intersect: bound what a user can ask for.
MAX_QUERY_TERMS = 32
MAX_QUERY_CHARS = 1000
_WORD = re.compile(r"[^\W_]", re.UNICODE)  # a letter or digit: what the FTS tokenizer keeps
_SPACES = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # FTS5 reads its query as a C string: NUL would end it
_RECORD = msgspec.json.Decoder(dict[str, Any])


class Hit(msgspec.Struct, frozen=True, kw_only=True):
    dataset: str
    partition: str
    index: int  # the record's line in its raw partition file
    score: float
    links_in: int
    links_out: int
    snippet: str
    record: dict[str, Any]


def match_expression(text: str) -> str | None:
    """The FTS5 query for user text, or None when it has nothing searchable.

    Raises :class:`InvalidInput` for more than :data:`MAX_QUERY_CHARS` characters or
    :data:`MAX_QUERY_TERMS` words."""
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidInput(f"query is {len(text)} characters long; ask with at most {MAX_QUERY_CHARS} characters")
    words = [w for w in _CONTROL.sub(" ", text).split() if _WORD.search(w)]
    if len(words) > MAX_QUERY_TERMS:
        raise InvalidInput(f"query has {len(words)} words; ask with at most {MAX_QUERY_TERMS} words")
    if not words:
        return None
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


def search(artifact_root: Path, text: str, dataset: str | None = None, limit: int = 10) -> list[Hit]:
    """The best ``limit`` records of the served snapshot matching every word of ``text``.

    Raises :class:`InvalidInput` when nothing has been served yet under ``artifact_root``.
    """
    if limit < 1:
        raise InvalidInput(f"limit must be at least 1, not {limit}")
    expression = match_expression(text)
    pointer = read_pointer(Path(artifact_root))
    if pointer is None:
        raise InvalidInput(f"nothing is served under {artifact_root}: run the pipeline to publish an index")
    if expression is None:
        return []
    sql = ("SELECT r.dataset, r.partition, r.record_index, bm25(records_fts), r.links_in, r.links_out, r.record "
           "FROM records_fts JOIN records r ON r.id = records_fts.rowid WHERE records_fts MATCH ?")
    params: list[Any] = [expression]
    if dataset is not None:
        sql += " AND r.dataset = ?"
        params.append(dataset)
    sql += " ORDER BY bm25(records_fts), r.id LIMIT ?"
    params.append(limit)
    with closing(_connect(Path(artifact_root) / pointer.snapshot, pointer.sha256)) as conn:
        rows = conn.execute(sql, params).fetchall()
    return [_hit(row, text) for row in rows]


def _connect(path: Path, sha256: str) -> sqlite3.Connection:
    """A read-only connection to an immutable snapshot (no locks, no journal files), verified first."""
    if not path.is_file():
        raise InvalidInput(f"the served snapshot {path} is missing: publish again with the serve stage")
    verify_snapshot(path, sha256)
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)


def verify_snapshot(path: Path, sha256: str) -> None:
    """Raise :class:`ArtifactCorrupted` unless the snapshot's bytes hash to ``sha256``.

    A snapshot verified once is not hashed again while its inode, size, mtime and ctime stay the
    same: any write changes ctime, which no user can set back, so a long-lived reader hashes each
    snapshot once and still notices an edit.
    """
    st = path.stat()
    stamp = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, sha256)
    if stamp in _VERIFIED:
        return
    problem = check_object(path, sha256, st.st_size)
    if problem is not None:
        raise ArtifactCorrupted(f"the served snapshot {path} is corrupted: {problem}; "
                                f"serve the index again (stagebus run with --resume-from serve)")
    _VERIFIED.add(stamp)


_VERIFIED: set[tuple[object, ...]] = set()


def _hit(row: tuple[Any, ...], text: str) -> Hit:
    dataset, partition, index, bm25, links_in, links_out, record_json = row
    record = _RECORD.decode(record_json)
    return Hit(dataset=dataset, partition=partition, index=index, score=-bm25, links_in=links_in,
               links_out=links_out, snippet=snippet(record, text), record=record)


def snippet(record: dict[str, Any], text: str) -> str:
    """A short window of the record's text around the first query word found in it."""
    body = _SPACES.sub(" ", " ".join(searchable_text(record))).strip()
    lowered = body.lower()
    positions = [p for w in text.lower().split() if _WORD.search(w) and (p := lowered.find(w)) >= 0]
    start = max(0, min(positions) - SNIPPET_CHARS // 4) if positions else 0
    window = body[start:start + SNIPPET_CHARS]
    return ("…" if start else "") + window + ("…" if start + SNIPPET_CHARS < len(body) else "")
