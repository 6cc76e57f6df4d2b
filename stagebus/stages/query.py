"""Search the served view: what ``stagebus query TEXT`` answers.

User text never reaches FTS5 syntax: every whitespace-separated word is quoted as an FTS5 string
(a phrase: ``os.path.join`` matches the tokens os, path, join in a row) and the words are ANDed,
so any input, operators and quotes included, is a plain search and never a syntax error.

Ranking: the best :data:`CANDIDATES` matches by bm25, with a match in a record's name-like fields
(``name``, ``title``, ``label`` by default; the index stage's ``name_fields``) weighing
:data:`NAME_WEIGHT` times one elsewhere, are re-ranked by how the query matches the name: the
whole name first, then a name that starts with the query's words, then one that holds them in a
row, then the rest; bm25 orders each tier, then record order. ``score`` is the negated bm25.

Each hit is checked against the digest the index stage computed for it, and carries the run that
serves its partition; with a ``ledger`` lookup, a hit whose partition the ledger shows ``invalid``
(a newer run failed it, or was abandoned) is marked ``stale`` with that ``failed_run``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import msgspec

from stagebus.errors import ArtifactCorrupted, InvalidInput
from stagebus.projections import LedgerEntry
from stagebus.stages.index import name_keys, record_digest, searchable_text
from stagebus.stages.served import open_reader

SNIPPET_CHARS = 160
NAME_WEIGHT = 10.0
CANDIDATES = 100
# Every word is one more FTS5 phrase to intersect: bound what a user can ask for.
MAX_QUERY_TERMS = 32
MAX_QUERY_CHARS = 1000
_WORD = re.compile(r"[^\W_]", re.UNICODE)  # a letter or digit: what the FTS tokenizer keeps
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_SPACES = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # FTS5 reads its query as a C string: NUL would end it
_RECORD = msgspec.json.Decoder(dict[str, Any])
_NAMES = msgspec.json.Decoder(list[str])

LedgerLookup = Callable[[str, str], LedgerEntry]


class Hit(msgspec.Struct, frozen=True, kw_only=True):
    dataset: str
    partition: str
    index: int  # the record's line in its raw partition file
    score: float
    links_in: int
    links_out: int
    snippet: str
    record: dict[str, Any]
    run_id: str  # the run whose output serves this partition
    stale: bool = False  # the ledger shows the partition invalid: a newer run failed it
    failed_run: str | None = None


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


_SQL = (f"SELECT r.dataset, r.partition, r.record_index, bm25(records_fts, {NAME_WEIGHT}, 1.0), r.links_in, "
        "r.links_out, r.record, r.digest, records_fts.name, p.run_id, p.name_fields "
        "FROM records_fts JOIN records r ON r.id = records_fts.rowid "
        "JOIN partitions p ON p.dataset = r.dataset AND p.partition = r.partition WHERE records_fts MATCH ?")


def search(artifact_root: Path, text: str, dataset: str | None = None, limit: int = 10,
           ledger: LedgerLookup | None = None) -> list[Hit]:
    """The best ``limit`` served records matching every word of ``text``.

    Raises :class:`InvalidInput` when nothing has been served yet under ``artifact_root`` (and
    creates nothing), :class:`ArtifactCorrupted` when a hit does not match its digest.
    """
    if limit < 1:
        raise InvalidInput(f"limit must be at least 1, not {limit}")
    expression = match_expression(text)
    with closing(open_reader(Path(artifact_root))) as conn:
        if expression is None:
            return []
        sql, params = _SQL, list[Any]([expression])
        if dataset is not None:
            sql += " AND r.dataset = ?"
            params.append(dataset)
        sql += f" ORDER BY bm25(records_fts, {NAME_WEIGHT}, 1.0), r.id LIMIT ?"
        params.append(max(limit, CANDIDATES))
        rows = conn.execute(sql, params).fetchall()
    wanted = tokens(text)
    ranked = sorted(enumerate(rows), key=lambda item: (*name_rank(tokens(item[1][8]), wanted),
                                                       -fields_holding(item[1][6], wanted), item[0]))
    hits = [_hit(row, text) for _, row in ranked[:limit]]
    return [_mark_stale(hit, ledger) for hit in hits] if ledger is not None else hits


def tokens(text: str) -> list[str]:
    """Words as the FTS tokenizer sees them: case and diacritics folded."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))
    return _TOKEN.findall(folded)


def name_rank(name: list[str], wanted: list[str]) -> tuple[int, float]:
    """(tier, -coverage): tier 0 when the name is the query, 1 when the name holds the query's
    words in a row, 2 otherwise; coverage is the share of the name's words the query makes up."""
    if not holds(name, wanted):
        return 2, 0.0
    return (0 if name == wanted else 1), -len(wanted) / len(name)


def fields_holding(record_json: str, wanted: list[str]) -> int:
    """How many of the record's top-level fields hold the query's words in a row."""
    return sum(1 for value in _RECORD.decode(record_json).values()
               if any(holds(tokens(text), wanted) for text in searchable_text(value)))


def holds(words: list[str], wanted: list[str]) -> bool:
    n = len(wanted)
    return bool(wanted) and any(words[i:i + n] == wanted for i in range(len(words) - n + 1))


def _hit(row: tuple[Any, ...], text: str) -> Hit:
    dataset, partition, index, bm25, links_in, links_out, record_json, digest, _, run_id, names = row
    if record_digest(index, record_json, links_in, links_out) != digest:
        raise ArtifactCorrupted(
            f"the served record {dataset}/{partition}#{index} (served by run {run_id}) is corrupted: it does not "
            f"match its digest {digest}; serve the partition again from a run that changes it")
    record = _RECORD.decode(record_json)
    return Hit(dataset=dataset, partition=partition, index=index, score=-bm25, links_in=links_in,
               links_out=links_out, snippet=snippet(record, text, tuple(_NAMES.decode(names))), record=record,
               run_id=run_id)


def _mark_stale(hit: Hit, ledger: LedgerLookup) -> Hit:
    entry = ledger(hit.dataset, hit.partition)
    if entry.status != "invalid":
        return hit
    return msgspec.structs.replace(hit, stale=True, failed_run=entry.run_id)


def snippet(record: dict[str, Any], text: str, name_fields: tuple[str, ...] = ()) -> str:
    """``field: value`` for the record's name-like fields and each field matching a query word,
    matched words in ``[brackets]``, joined by `` · `` and cut to :data:`SNIPPET_CHARS`."""
    wanted = set(tokens(text))
    names = name_keys(record, name_fields)
    parts = []
    for key in [*names, *(k for k in sorted(record) if k not in names)]:
        value = _SPACES.sub(" ", " ".join(searchable_text(record[key]))).strip()
        if not value or (key not in names and not wanted & set(tokens(value))):
            continue
        parts.append(f"{key}: {_mark(value, wanted)}")
    body = " · ".join(parts)
    return body if len(body) <= SNIPPET_CHARS else body[:SNIPPET_CHARS - 1] + "…"


def _mark(value: str, wanted: set[str]) -> str:
    marked = _TOKEN.sub(lambda m: f"[{m.group()}]" if tokens(m.group()) and tokens(m.group())[0] in wanted
                        else m.group(), value)
    return _ADJACENT.sub(" ", marked)  # [San] [Francisco] -> [San Francisco]


_ADJACENT = re.compile(r"\] \[")
