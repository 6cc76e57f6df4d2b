"""Bounded retries for store I/O that can fail transiently (busy database, reset connection)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

import tenacity

from stagebus.errors import StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")

ATTEMPTS = 8
MAX_WAIT_S = 2.0


def retrying(is_transient: Callable[[BaseException], bool], what: str,
             attempts: int = ATTEMPTS) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Retry transient failures with jittered exponential backoff, then raise one clear error."""

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        retry = tenacity.retry(
            retry=tenacity.retry_if_exception(is_transient),
            stop=tenacity.stop_after_attempt(attempts),
            wait=tenacity.wait_random_exponential(multiplier=0.05, max=MAX_WAIT_S),
            reraise=True,
        )(fn)

        def call(*args: P.args, **kwargs: P.kwargs) -> T:
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
