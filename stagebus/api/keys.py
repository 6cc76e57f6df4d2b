"""API keys: ``sbk_`` + 48 hex digits (192 random bits) + 8 hex digits of CRC-32 checksum.

The checksum lets a typo or a truncated paste be refused without a lookup, and the prefix
makes a leaked key easy to find by secret scanners. Only :func:`hash_key` of a key is ever
stored (SHA-256 suits random keys: there is nothing to brute-force); :func:`matches` compares
in constant time. Key ids (``key_…``) are public handles for ``keys list`` / ``keys revoke``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib

from limits import parse

from stagebus.errors import InvalidInput

PREFIX = "sbk_"
_BODY_HEX = 48
_SHAPE = re.compile(rf"^{PREFIX}([0-9a-f]{{{_BODY_HEX}}})([0-9a-f]{{8}})$")
SHOWN = len(PREFIX) + 8  # characters of a key kept for display ("sbk_1a2b3c4d…")


def new_key() -> str:
    body = secrets.token_hex(_BODY_HEX // 2)
    return f"{PREFIX}{body}{_checksum(body)}"


def new_key_id() -> str:
    return f"key_{secrets.token_hex(8)}"


def _checksum(body: str) -> str:
    return f"{zlib.crc32(body.encode()):08x}"


def well_formed(key: str) -> bool:
    match = _SHAPE.match(key)
    return match is not None and hmac.compare_digest(_checksum(match.group(1)), match.group(2))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), stored_hash)


def shown(key: str) -> str:
    return key[:SHOWN] + "…"


def check_rate(rate: str) -> str:
    """A `limits` rate string ("100/minute", "10 per second"); raises InvalidInput."""
    try:
        parse(rate)
    except ValueError:
        raise InvalidInput(f"rate {rate!r} is not a rate like 100/minute or 10/second") from None
    return rate


def check_owner(owner: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", owner):
        raise InvalidInput(f"owner {owner!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return owner


_ANYWHERE = re.compile(rf"{PREFIX}[0-9A-Za-z]+")


def redact(text: str) -> str:
    """``text`` with anything shaped like a key masked: for log lines that quote a request."""
    return _ANYWHERE.sub(PREFIX + "***", text)
