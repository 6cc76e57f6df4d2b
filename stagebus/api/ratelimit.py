"""Per-key rate limits with the `limits` library: a moving window per key id.

Storage is in memory for one process, or Redis (``redis://…``, ``redis+unix://…``) so that
several API processes spend one budget per key. Answers carry ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset``; a spent budget is a 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from stagebus.api.errors import ApiError
from stagebus.store.urls import redact_url


class RateLimits:
    def __init__(self, storage_url: str = "memory://") -> None:
        self.storage_url = storage_url
        self.storage = storage_from_string(storage_url)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self._items: dict[str, RateLimitItem] = {}

    def describe(self) -> str:
        return redact_url(self.storage_url)

    def hit(self, key_id: str, rate: str) -> dict[str, str]:
        """Spend one request of ``key_id``'s budget: its headers, or :class:`ApiError` 429."""
        item = self._items.get(rate)
        if item is None:
            item = self._items[rate] = parse(rate)
        allowed = self.limiter.hit(item, "stagebus-api", key_id)
        stats = self.limiter.get_window_stats(item, "stagebus-api", key_id)
        reset = max(math.ceil(stats.reset_time - time.time()), 0)
        headers = {"RateLimit-Limit": str(item.amount), "RateLimit-Remaining": str(max(stats.remaining, 0)),
                   "RateLimit-Reset": str(reset)}
        if not allowed:
            raise ApiError("RATE_LIMITED", f"rate limit {rate} exceeded",
                           headers={**headers, "Retry-After": str(max(reset, 1))})
        return headers
