"""Upcasters: turn a stored payload of an older schema version into the current shape.

``UPCASTERS[(tag, v)]`` takes the decoded payload of version ``v`` and returns version ``v + 1``.
They are chained until the type's current ``VERSION``; stored bytes are never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]


def _partition_ingested_v1_to_v2(payload: Payload) -> Payload:
    # v1 called the content hash ``sha256`` and had no metadata or record schema version.
    payload = dict(payload)
    payload["content_hash"] = payload.pop("sha256")
    payload.setdefault("metadata", {})
    payload.setdefault("schema_version", 1)
    return payload


UPCASTERS: dict[tuple[str, int], Callable[[Payload], Payload]] = {
    ("partition_ingested", 1): _partition_ingested_v1_to_v2,
}


def upcast(tag: str, version: int, current: int, payload: Payload) -> Payload:
    while version < current:
        step = UPCASTERS.get((tag, version))
        if step is None:
            raise LookupError(f"no upcaster for {tag} v{version}")
        payload = step(payload)
        version += 1
    return payload
