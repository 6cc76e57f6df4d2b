"""Who is calling: the ``X-API-Key`` header checked against the keys projection.

Stable names for other routers mounted in the app (the web inspector's ``/ui``):

- :func:`authenticate` — FastAPI dependency returning the :class:`Caller` (owner, key id, rate),
  or raising the 401 ``UNAUTHORIZED`` error body.
- :func:`require_owner` — FastAPI dependency returning just the caller's owner (a ``str``).
- :func:`rate_limited` — :func:`authenticate` plus one hit of the key's rate limit.
- :func:`check_key` and :func:`pipelines_of` — the same check and tenant scope over any
  projections connection (``stagebus ui`` on its own, behind the keys).

The projections are caught up before a check whenever the last catch-up is older than
:data:`AUTH_STALENESS_S` (0.25 s), so a key revoked by any process is refused by every API
process within that (well within the 1 s the service promises). The
presented key is hashed (SHA-256) and compared in constant time; it is never logged or echoed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Annotated, NamedTuple

from fastapi import Depends, Request, Response, Security
from fastapi.security import APIKeyHeader

from stagebus.api import keys
from stagebus.api.batches import pipeline_name
from stagebus.api.errors import ApiError
from stagebus.projections.api_keys import read_key_by_hash
from stagebus.projections.api_resources import read_pipelines

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="An API key from `stagebus keys create` (sbk_…).")


AUTH_STALENESS_S = 0.25  # keys are read at most this stale: a revocation applies within it


class Caller(NamedTuple):
    owner: str
    key_id: str
    rate: str


def authenticate(request: Request, api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None) -> Caller:
    service = request.app.state.service
    return check_key(lambda: service.fresh(max_age_s=AUTH_STALENESS_S), api_key, unknown=service.fresh)


def check_key(connection: Callable[[], sqlite3.Connection], api_key: str | None, *,
              unknown: Callable[[], sqlite3.Connection] | None = None) -> Caller:
    """The caller ``api_key`` belongs to, checked against the keys projection that
    ``connection()`` reads (asked only for a well-formed key); raises the 401 error otherwise.
    ``unknown``: a fresher read, asked when the key is not found at all (a key created an instant
    ago, within ``connection``'s staleness); a revoked key is found, so revocation stays bounded
    by that staleness and a known key costs no extra read."""
    if not api_key:
        raise ApiError("UNAUTHORIZED", "send an API key in the X-API-Key header")
    if not keys.well_formed(api_key):
        raise ApiError("UNAUTHORIZED", "the API key is not valid")
    key_hash = keys.hash_key(api_key)
    state = read_key_by_hash(connection(), key_hash)
    if state is None and unknown is not None:
        state = read_key_by_hash(unknown(), key_hash)
    if state is None or not keys.matches(api_key, state.key_hash) or not state.active:
        raise ApiError("UNAUTHORIZED", "the API key is not valid")
    return Caller(state.owner, state.key_id, state.rate)


def pipelines_of(conn: sqlite3.Connection, owner: str) -> set[str]:
    """The stagebus pipelines (``api-<id>``) of ``owner``'s API pipelines: what the web inspector
    lets that owner see."""
    names: set[str] = set()
    after = 0
    while page := read_pipelines(conn, owner, after=after, limit=500):
        names.update(pipeline_name(row.pipeline_id) for row in page)
        after = page[-1].position
    return names


def require_owner(caller: Annotated[Caller, Depends(authenticate)]) -> str:
    return caller.owner


def rate_limited(request: Request, response: Response, caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
    response.headers.update(request.app.state.rate_limits.hit(caller.key_id, caller.rate))
    return caller
