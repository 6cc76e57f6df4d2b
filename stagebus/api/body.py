"""Request bodies: the size limit (a pure ASGI middleware, so no route reads past it) and the
batch formats — a JSON array, NDJSON (one JSON value a line) or a ``multipart/form-data`` file
in either format."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stagebus.api.errors import ApiError, error_body

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")
MULTIPART = "multipart/form-data"
_ANY = msgspec.json.Decoder()


class BodyLimit:
    """Answer 413 ``PAYLOAD_TOO_LARGE`` to a body over ``max_bytes``: at once when
    ``Content-Length`` says so, else as soon as the streamed body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _too_large(send, self.max_bytes)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await _too_large(send, self.max_bytes)


class _TooLarge(StarletteHTTPException):
    """Raised from ``receive``: an HTTPException, so that FastAPI's body reader lets it through
    and the one handler answers 413 when a route was reading."""

    def __init__(self) -> None:
        super().__init__(413, "the body is larger than the configured limit")


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(error_body("PAYLOAD_TOO_LARGE", f"the body is larger than {limit} bytes")).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


async def read_records(request: Request, max_records: int) -> list[Any]:
    """The batch's records, or :class:`ApiError` (400 INVALID_BODY, 413 TOO_MANY_RECORDS, 415)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media in JSON_TYPES:
        records = _json_array(await request.body())
    elif media in NDJSON_TYPES:
        records = _ndjson(await request.body())
    elif media == MULTIPART:
        records = await _multipart(request)
    else:
        raise ApiError("UNSUPPORTED_MEDIA_TYPE", f"cannot read a batch from {media or 'a body without a type'!r}; "
                       "send application/json, application/x-ndjson or multipart/form-data")
    if not records:
        raise ApiError("INVALID_BODY", "the batch has no records")
    if len(records) > max_records:
        raise ApiError("TOO_MANY_RECORDS", f"the batch has {len(records)} records, the limit is {max_records}")
    return records


def snapshot_position(data: bytes) -> int | None:
    """A dataset source's submit body: empty, ``{}`` or ``{"as_of": position}``."""
    if not data.strip():
        return None
    try:
        value = _ANY.decode(data)
    except msgspec.DecodeError as exc:
        raise ApiError("INVALID_BODY", f"the body is not JSON: {exc}") from None
    if not isinstance(value, dict) or set(value) - {"as_of"}:
        raise ApiError("INVALID_BODY", 'a dataset-source pipeline takes an empty body or {"as_of": position}')
    as_of = value.get("as_of")
    if as_of is not None and (not isinstance(as_of, int) or isinstance(as_of, bool) or as_of < 0):
        raise ApiError("INVALID_BODY", "as_of must be a log position (an integer >= 0)")
    return as_of


def _json_array(data: bytes) -> list[Any]:
    try:
        value = _ANY.decode(data)
    except msgspec.DecodeError as exc:
        raise ApiError("INVALID_BODY", f"the body is not JSON: {exc}") from None
    if not isinstance(value, list):
        raise ApiError("INVALID_BODY", "a JSON batch must be an array of records")
    return value


def _ndjson(data: bytes) -> list[Any]:
    records, problems = [], []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(_ANY.decode(line))
        except msgspec.DecodeError as exc:
            problems.append({"loc": ["body", f"line {number}"], "msg": str(exc)})
    if problems:
        raise ApiError("INVALID_BODY", f"{len(problems)} NDJSON line(s) are not JSON", details=problems[:100])
    return records


async def _multipart(request: Request) -> list[Any]:
    try:
        form = await request.form(max_files=1, max_fields=10)
    except Exception as exc:  # python-multipart's and starlette's parse errors alike
        raise ApiError("INVALID_BODY", f"the multipart body cannot be read: {type(exc).__name__}") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ApiError("INVALID_BODY", "a multipart batch needs a file field named 'file'")
    data = await upload.read()
    await form.close()
    return _json_array(data) if data.lstrip()[:1] == b"[" else _ndjson(data)
