"""Bounded retries for store I/O that can fail transiently (busy database, reset connection)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import tenacity

from stagebus.errors import StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")

ATTEMPTS = 8
MAX_WAIT_S = 2.0
FIRST_WAIT_S = 0.05


def retrying(is_transient: Callable[[BaseException], bool], what: str,
             attempts: int = ATTEMPTS) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Retry transient failures with jittered exponential backoff, then raise one clear error.

    The first attempt is a plain call: tenacity costs ~15 us a call, which a single SQLite
    append or a Redis lookup would otherwise pay every time. Only a transient failure enters it.
    """

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        # Attempts 2..n; the waits match a schedule that had counted the first attempt too.
        retry = tenacity.retry(
            retry=tenacity.retry_if_exception(is_transient),
            stop=tenacity.stop_after_attempt(max(attempts - 1, 1)),
            wait=tenacity.wait_random_exponential(multiplier=2 * FIRST_WAIT_S, max=MAX_WAIT_S),
            reraise=True,
        )(fn)

        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempts <= 1:
                    raise StoreUnavailable(f"{what}: {exc} (after {attempts} attempts)") from exc
            time.sleep(random.uniform(0, FIRST_WAIT_S))
            try:
                return retry(*args, **kwargs)
            except Exception as exc:
                if is_transient(exc):
                    raise StoreUnavailable(f"{what}: {exc} (after {attempts} attempts)") from exc
                raise

        call.__name__ = fn.__name__
        call.__doc__ = fn.__doc__
        return call

    return decorate
