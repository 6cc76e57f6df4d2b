"""Store and broker URLs as stagebus shows and accepts them.

Every URL that goes into a message or a log line goes through :func:`redact_url` first, so no
password or token ever reaches output. :func:`require_host` refuses a network URL with no host
(``redis://`` would otherwise silently mean localhost).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from stagebus.errors import InvalidInput

MASK = "***"
# Query parameters that carry a secret (redis-py reads ``?password=``, AMQP clients a few others).
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:password|passwd|pass|pwd|token|secret|access_token|api_key|apikey)=)[^&;#]*")
_SCHEME = re.compile(r"(?s)([A-Za-z][A-Za-z0-9+.\-]*://)(.*)")
# Schemes whose URL names a server; ``unix://`` and ``sqlite:///`` name a path instead.
NETWORK_SCHEMES = ("redis", "rediss", "amqp", "amqps")


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (``redis://user:***@host:6379/0``), fit for
    messages and logs. A userinfo without a password is taken to be a token and masked whole
    (``redis://***@host``); so are secret query parameters (``?password=***``). A URL too
    malformed to tell its userinfo from its host keeps only its scheme (``redis://***``)."""
    match = _SCHEME.fullmatch(url)
    if match is None:
        return _mask_query(url)
    scheme, rest = match.groups()
    at = rest.rfind("@")  # a raw password may itself hold "@"; the host never does
    if at >= 0 and not rest.startswith("/"):
        userinfo, after = rest[:at], rest[at + 1:]
        if any(c in userinfo for c in "/?#"):
            # "/", "?" or "#" before the last "@": a raw password or an "@" in the path or query;
            # either way nothing here can be shown safely.
            return f"{scheme}{MASK}"
        user, colon, _password = userinfo.partition(":")
        shown = f"{user}:{MASK}" if colon and user else MASK
        return f"{scheme}{shown}@{_mask_query(after)}"
    return scheme + _mask_query(rest)


def _mask_query(text: str) -> str:
    return _SECRET_QUERY.sub(lambda m: m.group(1) + MASK, text)


def require_host(url: str, what: str) -> None:
    """Refuse, with :class:`InvalidInput`, a ``redis://``/``amqp://`` URL that names no host,
    or one too malformed to parse: neither may silently mean localhost."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise InvalidInput(f"malformed {what} URL {redact_url(url)!r}: {exc}") from None
    if parts.scheme.lower() in NETWORK_SCHEMES and not parts.hostname:
        raise InvalidInput(f"{what} URL {redact_url(url)!r} names no host: "
                           f"use {parts.scheme}://HOST[:PORT]/… (localhost must be spelt out)")
