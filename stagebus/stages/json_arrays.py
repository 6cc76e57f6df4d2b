"""Reading a ``.json`` partition: a top-level array of objects (one record per element) or one object.

The file is never loaded whole: a scanner reads it in blocks, tracks string and bracket depth,
and cuts the array into elements at its top-level commas; each element is decoded on its own
(msgspec), so memory is bounded by the largest element, and an element longer than
``max_element_bytes`` is a reject, skipped without being held. A bad element (invalid JSON, not
an object, nested too deep) is a reject with its number; the elements after it still come out.

``Row.index`` is the element's 1-based position in the array (a single object is element 1).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Generator, Iterator
from typing import BinaryIO

import msgspec

from stagebus.errors import PermanentStageError
from stagebus.stages.parsing import MAX_LINE_BYTES, MAX_RECORD_DEPTH, Row, json_kind, nesting_exceeds, too_deep_error

_BLOCK = 1 << 20
_PREVIEW = 200
# A whole object nesting at most two levels (the common record: one match, its brackets balanced),
# a whole string, or one structural byte; a lone quote is a string the block cuts in two.
_STRING = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_FLAT = rb'[\[{](?:[^"{}\[\]]++|' + _STRING + rb')*+[\]}]'
_TOKENS = re.compile(rb'\{(?:[^"{}\[\]]++|' + _STRING + rb'|' + _FLAT + rb')*+\}|' + _STRING + rb'|[\[\]{},"]',
                     re.S)
_IN_STRING = re.compile(rb'["\\]')
_SPACE = b" \t\r\n"
_DECODE = msgspec.json.Decoder()
_OPEN, _CLOSE, _COMMA, _QUOTE = b"[{", b"]}", ord(","), ord('"')


def parse_json(fh: BinaryIO, encoding: str = "utf-8", max_element_bytes: int = MAX_LINE_BYTES) -> Iterator[Row]:
    head = _first_byte(fh)
    if head is None:
        return
    if head == b"{":
        yield _single_object(fh, encoding, max_element_bytes)
    elif head == b"[":
        yield from _Elements(fh, encoding, max_element_bytes)
    else:
        raise PermanentStageError(f"a .json partition must hold an array of objects or one object, not {head!r}...")


def _first_byte(fh: BinaryIO) -> bytes | None:
    """The first byte that is not whitespace or a UTF-8 byte-order mark, consumed; None if there is none."""
    start = True
    while block := fh.read(_BLOCK):
        if start and block.startswith(codecs.BOM_UTF8):
            block = block[len(codecs.BOM_UTF8):]
        start = False
        stripped = block.lstrip(_SPACE)
        if stripped:
            # Put back what follows the first byte: a seekable file (ingest reads its own copy) rewinds.
            fh.seek(-(len(stripped) - 1), 1)
            return stripped[:1]
    return None


def _single_object(fh: BinaryIO, encoding: str, limit: int) -> Row:
    data = b"{" + fh.read(limit)
    if len(data) > limit:
        preview = data[:_PREVIEW]
        while fh.read(_BLOCK):
            pass
        return Row(1, None, f"element 1: longer than {limit} bytes", _shown(preview))
    return decode_element(1, data, encoding)


def decode_element(number: int, data: bytes, encoding: str = "utf-8") -> Row:
    """One element's record, or a reject naming the element and what is wrong with it."""
    try:
        text: str | bytes = data if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else data.decode(encoding)
    except UnicodeDecodeError:
        return Row(number, None, f"element {number}: text is not valid {encoding}", _shown(data))
    try:
        value = _DECODE.decode(text)
    except msgspec.DecodeError as exc:
        return Row(number, None, f"element {number}: invalid JSON: {exc}", _shown(data))
    except RecursionError:
        return Row(number, None, f"element {number}: {too_deep_error()}", _shown(data))
    if nesting_exceeds(value):
        return Row(number, None, f"element {number}: {too_deep_error()}", _shown(data))
    if not isinstance(value, dict):
        return Row(number, None, f"element {number}: a record must be a JSON object, not {json_kind(value)}",
                   _shown(data))
    return Row(number, value)


def _shown(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace").strip()


class _Elements:
    """The elements of the array whose ``[`` was just read, as rows."""

    def __init__(self, fh: BinaryIO, encoding: str, limit: int) -> None:
        self.fh, self.encoding, self.limit = fh, encoding, limit
        self.depth = 1  # inside the array
        self.in_string = False
        self.escaped = False  # the block ended on a backslash inside a string
        self.parts: list[bytes] = []
        self.size = 0
        self.overlong: bytes | None = None  # the preview of an element past the limit
        self.too_deep = False
        self.number = 0

    def __iter__(self) -> Iterator[Row]:
        while block := self.fh.read(_BLOCK):
            end = yield from self._scan(block)
            if end is not None:
                yield from self._after_array(block[end:])
                return
        # The file ended inside the array: what is left of it is one reject, saying so.
        row = self._element(b"")
        number = row.index if row is not None else self.number + 1
        shown = row.raw if row is not None and row.record is None else ""
        yield Row(number, None, f"element {number}: the file ends before the array is closed (truncated?)", shown)

    def _scan(self, block: bytes) -> Generator[Row, None, int | None]:
        """Rows of the elements that end in ``block``; returns where the array closed, or None."""
        start = pos = 0
        if self.in_string:
            closed = self._string_end(block, 0)
            if closed is None:
                self._keep(block)
                return None
            pos = closed
        while True:
            for match in _TOKENS.finditer(block, pos):
                at = match.start()
                byte = block[at]
                if match.end() - at > 1:
                    continue  # a whole string or flat object: nothing inside it counts
                if byte == _QUOTE:
                    close = self._string_end(block, at + 1)  # a string the block cuts: finish it by hand
                    if close is None:
                        self._keep(block[start:])
                        return None
                    pos = close
                    break
                if byte == _COMMA:
                    if self.depth == 1:
                        row = self._element(block[start:at])
                        if row is not None:
                            yield row
                        start = at + 1
                elif byte in _OPEN:
                    self.depth += 1
                    self.too_deep = self.too_deep or self.depth - 1 > MAX_RECORD_DEPTH
                elif byte in _CLOSE:
                    self.depth -= 1
                    if self.depth == 0:
                        row = self._element(block[start:at])
                        if row is not None:
                            yield row
                        return at + 1
            else:
                self._keep(block[start:])
                return None

    def _string_end(self, block: bytes, pos: int) -> int | None:
        """The position after the closing quote of the string ``pos`` is inside, or None (the block ends first)."""
        self.in_string = True
        if self.escaped:
            self.escaped, pos = False, pos + 1
        while (match := _IN_STRING.search(block, pos)) is not None:
            if block[match.start()] == _QUOTE:
                self.in_string = False
                return match.end()
            pos = match.start() + 2
            if pos > len(block):
                self.escaped = True
                return None
        return None

    def _keep(self, piece: bytes) -> None:
        """Hold an unfinished element's bytes, up to the limit; past it only a preview."""
        if self.overlong is not None:
            return
        self.size += len(piece)
        if self.size > self.limit:
            self.overlong = b"".join(self.parts)[:_PREVIEW] + piece[:_PREVIEW]
            self.parts.clear()
        else:
            self.parts.append(piece)

    def _element(self, tail: bytes) -> Row | None:
        """The element that ends with ``tail``, decoded; None for an empty one (``[]``, a trailing comma)."""
        self._keep(tail)
        data, overlong, deep = b"".join(self.parts), self.overlong, self.too_deep
        self.parts, self.size, self.overlong, self.too_deep = [], 0, None, False
        if overlong is None and not data.strip(_SPACE):
            return None
        self.number += 1
        if overlong is not None:
            return Row(self.number, None, f"element {self.number}: longer than {self.limit} bytes", _shown(overlong))
        if deep:
            return Row(self.number, None, f"element {self.number}: {too_deep_error()}", _shown(data[:_PREVIEW]))
        return decode_element(self.number, data, self.encoding)

    def _after_array(self, rest: bytes) -> Iterator[Row]:
        """After the closing ``]`` only whitespace may follow; anything else is one reject."""
        while True:
            if rest.strip(_SPACE):
                shown = _shown(rest.lstrip(_SPACE)[:_PREVIEW])
                yield Row(self.number + 1, None, "data after the array's closing ]", shown)
                return
            rest = self.fh.read(_BLOCK)
            if not rest:
                return
