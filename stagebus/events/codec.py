"""The one place bytes become events and events become bytes.

The fast path decodes current-version payloads with a single ``msgspec.json.Decoder`` over the
whole union; older versions go through :mod:`stagebus.events.upcast` first.
"""

from __future__ import annotations

from typing import Any

import msgspec

from stagebus.errors import EventDecodeError
from stagebus.events.types import EVENT_TYPES, AnyEvent, Event
from stagebus.events.upcast import upcast

ENCODER = msgspec.json.Encoder(order="deterministic")
DECODER: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)  # type: ignore[arg-type]
_GENERIC = msgspec.json.Decoder(dict[str, Any])
CURRENT_VERSIONS: dict[str, int] = {tag: t.VERSION for tag, t in EVENT_TYPES.items()}


def encode(event: Event) -> bytes:
    """Canonical bytes of an event: deterministic key order, tag included."""
    return ENCODER.encode(event)


def decode(
    payload: bytes, *, type_name: str | None = None, version: int | None = None, position: int | None = None
) -> AnyEvent:
    """Decode a payload, upcasting it when ``version`` is older than the type's current one.

    Raises :class:`EventDecodeError` (naming ``position``) for malformed bytes, unknown types, a
    payload nested too deep to decode, or one whose tag disagrees with the stored ``type_name``.
    """
    try:
        current = CURRENT_VERSIONS.get(type_name or "", 0)
        if type_name is None or version is None or version == current:
            event: AnyEvent = DECODER.decode(payload)
            if type_name is not None and event.type_name != type_name:
                raise EventDecodeError(f"stored as {type_name!r} but its payload is {event.type_name!r}", position)
            return event
        if type_name not in CURRENT_VERSIONS:
            raise EventDecodeError(f"unknown event type {type_name!r}", position)
        if version > current:
            raise EventDecodeError(f"{type_name} v{version} is newer than this stagebus (v{current})", position)
        raw = upcast(type_name, version, current, _GENERIC.decode(payload))
        upcast_event: AnyEvent = msgspec.convert(raw, AnyEvent)  # type: ignore[arg-type]
        if upcast_event.type_name != type_name:
            raise EventDecodeError(f"stored as {type_name!r} but its payload is {upcast_event.type_name!r}", position)
        return upcast_event
    except RecursionError:
        raise EventDecodeError("payload is nested too deeply", position) from None
    except (msgspec.DecodeError, msgspec.ValidationError, LookupError, KeyError, TypeError, ValueError) as exc:
        raise EventDecodeError((str(exc).splitlines() or [type(exc).__name__])[0], position) from None


def to_builtins(event: Event) -> dict[str, Any]:
    """The event as plain JSON-able data, ``type`` tag first."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    return data
