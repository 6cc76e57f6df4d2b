"""The HTTP service's one error body and the exception handlers that produce it.

Every non-2xx answer is ``{"error": {"code": "...", "message": "..."}}``; validation errors add
``"details": [{"loc": [...], "msg": "..."}]``. Errors::

    ApiError(code, status, message)          raised by routes, dependencies and the service
      <- any StagebusError                   mapped by :func:`install_handlers` (InvalidInput -> 400)
    starlette HTTPException (404, 405)       routing, mapped to NOT_FOUND / METHOD_NOT_ALLOWED
    RequestValidationError (FastAPI's 422)   mapped to 400 VALIDATION_ERROR with details
    anything else                            500 INTERNAL_ERROR (:class:`InternalErrors`), logged by type
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stagebus.errors import InvalidInput, StagebusError, StoreUnavailable

log = logging.getLogger("stagebus.api")

# Every error code, its status, and what it means: documented in the OpenAPI spec.
CODES: dict[str, tuple[int, str]] = {
    "VALIDATION_ERROR": (400, "The request or its config is invalid; `details` lists every problem."),
    "INVALID_BODY": (400, "The batch body is not a JSON array, NDJSON or a multipart file of records."),
    "INVALID_CURSOR": (400, "The paging cursor is not one this API returned."),
    "UNAUTHORIZED": (401, "The X-API-Key header is missing, malformed, unknown or revoked."),
    "NOT_FOUND": (404, "No such route."),
    "PIPELINE_NOT_FOUND": (404, "No pipeline with this id is visible to the caller."),
    "BATCH_NOT_FOUND": (404, "No batch with this id in this pipeline is visible to the caller."),
    "METHOD_NOT_ALLOWED": (405, "The route does not take this method."),
    "PIPELINE_HAS_ACTIVE_BATCHES": (409, "The pipeline has batches pending or processing."),
    "PIPELINE_VERSION_CONFLICT": (409, "Another update of the pipeline won; read it and retry."),
    "IDEMPOTENCY_KEY_REUSED": (409, "The Idempotency-Key was used for a batch with other records."),
    "SOURCE_NOT_READY": (409, "The source dataset has nothing to read: unknown, no valid partition yet, "
                         "`as_of` outside the log, or an artifact failed its sha256 check."),
    "PAYLOAD_TOO_LARGE": (413, "The body is larger than the configured limit."),
    "TOO_MANY_RECORDS": (413, "The batch has more records than the configured limit."),
    "UNSUPPORTED_MEDIA_TYPE": (415, "Send application/json, application/x-ndjson or multipart/form-data."),
    "RATE_LIMITED": (429, "The key's rate limit is spent; retry after `Retry-After` seconds."),
    "INTERNAL_ERROR": (500, "The server failed; the request may be retried."),
    "UNAVAILABLE": (503, "The event log cannot be reached right now."),
}


class ApiError(Exception):
    """An answer other than 2xx, with one of :data:`CODES`."""

    def __init__(self, code: str, message: str, *, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = CODES[code][0]
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status, headers=exc.headers)


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """pydantic/FastAPI errors as ``{loc, msg}``: never the input (it may hold a secret)."""
    return [{"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "invalid"))} for err in errors]


def install_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = validation_details(exc.errors())
        return error_response(ApiError("VALIDATION_ERROR", "the request is invalid", details=details))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            return error_response(ApiError("METHOD_NOT_ALLOWED", f"{request.method} is not allowed here",
                                           headers=dict(exc.headers or {})))
        if exc.status_code == 404:
            return error_response(ApiError("NOT_FOUND", "no such route"))
        code = next((c for c, (s, _) in CODES.items() if s == exc.status_code), "INTERNAL_ERROR")
        return error_response(ApiError(code, str(exc.detail)))

    async def stagebus_error(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, InvalidInput):
            return error_response(ApiError("VALIDATION_ERROR", str(exc), details=[]))
        if isinstance(exc, StoreUnavailable):
            return error_response(ApiError("UNAVAILABLE", "the event log is unavailable"))
        log.error("request failed: %s", type(exc).__name__)
        return error_response(ApiError("INTERNAL_ERROR", "internal error"))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(StagebusError, stagebus_error)
    app.add_middleware(InternalErrors)


class InternalErrors:
    """Any other exception: 500 ``INTERNAL_ERROR``, logged by type only (its message may quote
    request data). A pure ASGI middleware, so the error stops here instead of reaching the
    server's own traceback logging."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            log.error("request failed: %s", type(exc).__name__, exc_info=log.isEnabledFor(logging.DEBUG))
            if scope["type"] != "http" or started:
                raise
            await error_response(ApiError("INTERNAL_ERROR", "internal error"))(scope, receive, send)
