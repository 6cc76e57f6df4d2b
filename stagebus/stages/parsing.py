"""Reading a raw partition (CSV, JSON lines; JSON arrays in :mod:`.json_arrays`) into records, one
error per malformed row.

A malformed row never stops the file: it comes out as a :class:`Row` with an ``error`` and the
row's raw text, and parsing goes on with the next row. Only a file that cannot be read at all
(unknown format or encoding, a broken CSV header) raises :class:`PermanentStageError`.

Row numbers (``Row.index``) are 1-based line numbers of the row's first line in the file (for a
JSON array: the element's 1-based position).
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO, Literal, NamedTuple
from urllib.parse import urlparse

import msgspec

from stagebus.errors import PermanentStageError

Format = Literal["csv", "jsonl", "json"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl", "json")
EXTENSIONS: dict[str, Format] = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
# A quoted CSV field may span lines; past this many, an unclosed quote is taken to be broken
# quoting rather than a very long field, so one stray quote cannot swallow the rest of a file.
MAX_ROW_LINES = 1000
# Nesting a record may have: far more than any real record needs, and well below where decoding
# (RecursionError) or a later stage's re-encoding (pydantic's serialization depth) would fail.
MAX_RECORD_DEPTH = 128
# A source line longer than this is a reject; it is skipped in bounded reads, never held whole.
MAX_LINE_BYTES = 16 << 20
_SKIP_CHUNK = 1 << 20
CSV_BATCH = 2000  # lines parsed by one csv.reader call on the fast path
_PREVIEW = 200
_JSON = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class Row:
    index: int
    record: dict[str, Any] | None  # None when the row is malformed
    error: str | None = None
    raw: str = ""


class Dialect(NamedTuple):
    format: Format
    delimiter: str = ","
    encoding: str = "utf-8"


def dialect_of(uri: str, metadata: Mapping[str, str]) -> Dialect:
    """The partition's format from its URI's extension; ``format``/``delimiter``/``encoding``
    metadata keys override. Raises :class:`PermanentStageError` when it cannot be told."""
    suffix = PurePosixPath(urlparse(uri).path).suffix.lower()
    fmt = metadata.get("format", "").lower() or EXTENSIONS.get(suffix)
    if fmt not in FORMATS:
        raise PermanentStageError(
            f"cannot tell the format of {uri!r}: name it {', '.join(EXTENSIONS)}, "
            f"or publish it with metadata format={'|'.join(FORMATS)}"
        )
    delimiter = metadata.get("delimiter", "\t" if suffix == ".tsv" else ",")
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise PermanentStageError(f"metadata delimiter {delimiter!r} must be one character other than a quote")
    encoding = metadata.get("encoding", "utf-8")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise PermanentStageError(f"metadata encoding {encoding!r} is not a known text encoding") from None
    return Dialect(fmt, delimiter, encoding)  # type: ignore[arg-type]


def parse(fh: BinaryIO, dialect: Dialect, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Row]:
    if dialect.format == "jsonl":
        return parse_jsonl(fh, dialect.encoding, max_line_bytes)
    if dialect.format == "json":
        from stagebus.stages.json_arrays import parse_json  # it builds on this module's rows

        return parse_json(fh, dialect.encoding, max_line_bytes)
    return parse_csv(fh, dialect.delimiter, dialect.encoding, max_line_bytes)


class _Overlong(bytes):
    """The start of a line longer than the limit; the rest of it was skipped, never held in memory."""


def _overlong_error(number: int, limit: int) -> str:
    return f"line {number}: longer than {limit} bytes"


def _read_lines(fh: BinaryIO, limit: int) -> Iterator[bytes]:
    """Lines of at most ``limit`` bytes (the final ``\\n`` excluded), read in bounded pieces; a longer one
    comes out as an :class:`_Overlong` preview."""
    while raw := fh.readline(limit + 1):
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield raw
            continue
        while (rest := fh.readline(_SKIP_CHUNK)) and not rest.endswith(b"\n"):
            pass
        yield _Overlong(raw[:_PREVIEW])


def _lines(fh: BinaryIO, encoding: str, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str | None, bytes]]:
    """(line number, decoded text or None when undecodable, raw bytes) without line endings."""
    return _numbered(enumerate(_read_lines(fh, limit), start=1), encoding)


def _numbered(raws: Iterable[tuple[int, bytes]], encoding: str) -> Iterator[tuple[int, str | None, bytes]]:
    for number, raw in raws:
        yield _decoded(number, raw, encoding)


def _decoded(number: int, raw: bytes, encoding: str) -> tuple[int, str | None, bytes]:
    if isinstance(raw, _Overlong):
        return number, None, raw
    raw = raw.rstrip(b"\r\n")
    if number == 1 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        text: str | None = raw.decode(encoding)
    except UnicodeDecodeError:
        text = None
    return number, text, raw


def _shown(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def parse_jsonl(fh: BinaryIO, encoding: str = "utf-8", max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Row]:
    for number, text, raw in _lines(fh, encoding, max_line_bytes):
        if isinstance(raw, _Overlong):
            yield Row(number, None, _overlong_error(number, max_line_bytes), _shown(raw))
        elif text is None:
            yield Row(number, None, f"line {number}: text is not valid {encoding}", _shown(raw))
        elif not text.strip():
            continue
        else:
            try:
                value = _JSON.decode(text)
            except msgspec.DecodeError as exc:
                yield Row(number, None, f"line {number}: invalid JSON: {exc}", text)
                continue
            except RecursionError:
                value = None
                deep: str | None = too_deep_error()
            else:
                deep = too_deep_error() if nesting_exceeds(value) else None
            if deep is not None:
                yield Row(number, None, f"line {number}: {deep}", text)
            elif isinstance(value, dict):
                yield Row(number, value)
            else:
                yield Row(number, None, f"line {number}: a record must be a JSON object, not {json_kind(value)}",
                          text)


def too_deep_error() -> str:
    return f"a record may nest at most {MAX_RECORD_DEPTH} levels deep"


_SCALARS = frozenset({str, int, float, bool, type(None)})  # exact types: a subclass takes the long way


def nesting_exceeds(value: object, limit: int | None = None) -> bool:
    """Whether ``value`` nests lists/dicts deeper than ``limit`` (default :data:`MAX_RECORD_DEPTH`).

    Iterative, so a deep value cannot exhaust the stack while it is measured."""
    limit = MAX_RECORD_DEPTH if limit is None else limit
    if isinstance(value, dict) and limit >= 1 and _SCALARS.issuperset(map(type, value.values())):
        return False  # a flat record, the common case: one level (checked in C, no call per value)
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def json_kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def parse_csv(fh: BinaryIO, delimiter: str = ",", encoding: str = "utf-8",
              max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Row]:
    source = zip(itertools.count(1), _read_lines(fh, max_line_bytes))
    lines = _PushbackLines(_numbered(source, encoding))
    header = _header(lines, delimiter, encoding, max_line_bytes)
    if header is None:
        return
    # Batches of lines go through one csv.reader while every row is one well-quoted line (the
    # common case); the first batch that is not falls back, for the rest of the file, to the
    # line-by-line reader below, which finds multi-line fields and names each bad row.
    while batch := list(itertools.islice(source, CSV_BATCH)):
        rows = _one_line_rows(batch, header, delimiter, encoding)
        if rows is None:
            rest = _PushbackLines(_numbered(itertools.chain(batch, source), encoding))
            yield from _rows(rest, header, delimiter, encoding, max_line_bytes)
            return
        yield from rows


def _one_line_rows(batch: list[tuple[int, bytes]], header: list[str], delimiter: str,
                   encoding: str) -> list[Row] | None:
    """The rows of ``batch`` when each non-blank line is exactly one well-quoted row, else None."""
    numbers, texts = [], []
    for number, raw in batch:
        if isinstance(raw, _Overlong) or raw.count(b'"') % 2:
            return None
        _, text, _ = _decoded(number, raw, encoding)
        if text is None:
            return None
        if text.strip():
            numbers.append(number)
            texts.append(text)
    reader = csv.reader(texts, delimiter=delimiter, strict=True)
    rows, width = [], len(header)
    try:
        for at, fields in enumerate(reader):
            if reader.line_num != at + 1:
                return None  # a row took more than its line
            number = numbers[at]
            if len(fields) != width:
                rows.append(Row(number, None, f"line {number}: {len(fields)} fields, the header has {width}",
                                texts[at]))
            else:
                rows.append(Row(number, dict(zip(header, fields, strict=True))))
    except csv.Error:
        return None
    return rows if len(rows) == len(texts) else None


def _rows(lines: _PushbackLines, header: list[str], delimiter: str, encoding: str,
          max_line_bytes: int) -> Iterator[Row]:
    for first, block in lines.rows(delimiter):
        number, text, raw = first
        overlong = next((n for n, _, r in block or [first] if isinstance(r, _Overlong)), None)
        if overlong is not None:
            yield Row(number, None, _overlong_error(overlong, max_line_bytes), _shown(raw))
            continue
        if block is None:
            shown = _shown(raw) if text is None else text
            yield Row(number, None, f"line {number}: broken quoting (a quoted field is never closed)", shown)
            continue
        decoded = [t is not None for _, t, _ in block]
        joined = "\n".join(t if t is not None else _shown(r) for _, t, r in block)
        if not joined.strip():
            continue
        fields, error = _split(joined, delimiter)
        if error is not None and len(block) > 1:
            # A stray quote made us join lines that are separate rows: refuse only the first.
            lines.push_back(block[1:])
            yield Row(number, None, f"line {number}: broken quoting: {error}", text or _shown(raw))
        elif error is not None:
            yield Row(number, None, f"line {number}: broken quoting: {error}", joined)
        elif not all(decoded):
            yield Row(number, None, f"line {number}: text is not valid {encoding}", joined)
        elif len(fields) != len(header):
            yield Row(number, None, f"line {number}: {len(fields)} fields, the header has {len(header)}", joined)
        else:
            yield Row(number, dict(zip(header, fields, strict=True)))


def _header(lines: _PushbackLines, delimiter: str, encoding: str, max_line_bytes: int) -> list[str] | None:
    for number, text, raw in lines:
        if isinstance(raw, _Overlong):
            raise PermanentStageError(f"CSV header (line {number}) is longer than {max_line_bytes} bytes")
        if text is None:
            raise PermanentStageError(f"CSV header (line {number}) is not valid {encoding}")
        if not text.strip():
            continue
        fields, error = _split(text, delimiter)
        if error is not None:
            raise PermanentStageError(f"CSV header (line {number}) cannot be read: {error}")
        names = [f.strip() for f in fields]
        for position, name in enumerate(names, start=1):
            if not name:
                raise PermanentStageError(f"CSV header (line {number}): column {position} has no name")
        duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
        if duplicates:
            raise PermanentStageError(f"CSV header (line {number}) repeats column(s) {', '.join(duplicates)}")
        return names
    return None


def _split(text: str, delimiter: str) -> tuple[list[str], str | None]:
    """One CSV row's fields, or the reason it is not exactly one well-quoted row."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        return [], str(exc)
    if len(rows) != 1:
        return [], "a quote inside an unquoted field"
    return rows[0], None


Line = tuple[int, str | None, bytes]


class _PushbackLines:
    """Lines with push-back, grouped into CSV rows by quote balance."""

    def __init__(self, lines: Iterable[Line]) -> None:
        self._lines = iter(lines)
        self._back: deque[Line] = deque()

    def __iter__(self) -> Iterator[Line]:
        return self

    def __next__(self) -> Line:
        return self._back.popleft() if self._back else next(self._lines)

    def push_back(self, lines: list[Line]) -> None:
        self._back.extendleft(reversed(lines))

    def rows(self, delimiter: str) -> Iterator[tuple[Line, list[Line] | None]]:
        """(first line, every line of the row), or (first line, None) when its quote never closes.

        A line with an odd number of quotes continues on the next line only if it ends inside a
        quoted field (``5" screen`` is a literal quote). Quotes are counted in the raw bytes, so
        an undecodable line still has a known extent.
        """
        for first in self:
            if isinstance(first[2], _Overlong):  # its quotes are unknown: a row of its own
                yield first, [first]
                continue
            block, quotes = [first], first[2].count(b'"')
            if quotes % 2 and _split(first[1] or _shown(first[2]), delimiter)[1] is None:
                yield first, block
                continue
            while quotes % 2 and len(block) < MAX_ROW_LINES:
                nxt = next(self, None)
                if nxt is None:
                    break
                block.append(nxt)
                quotes += nxt[2].count(b'"')
            if quotes % 2:
                self.push_back(block[1:])
                yield first, None
            else:
                yield first, block
