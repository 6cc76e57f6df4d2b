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

from stagebus.errors import InvalidInput
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
    with closing(_connect(Path(artifact_root) / pointer.snapshot)) as conn:
        rows = conn.execute(sql, params).fetchall()
    return [_hit(row, text) for row in rows]


def _connect(path: Path) -> sqlite3.Connection:
    """A read-only connection to an immutable snapshot (no locks, no journal files)."""
    if not path.is_file():
        raise InvalidInput(f"the served snapshot {path} is missing: publish again with the serve stage")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)


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
