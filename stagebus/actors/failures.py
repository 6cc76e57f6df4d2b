"""What a stage task's error means, decided in one place (the table is in docs/failures.md).

- **data**: the input or the stage's contract is wrong; running again cannot help, so the task
  fails at once (``StageFailed(final=True)``, the partition turns ``invalid``).
- **infrastructure**: the machine is at fault (a full or failing disk, a read-only mount, a
  vanished file that may come back, an unreachable log); the attempt budget is not charged, the
  task waits (``StageFailed(infrastructure=True)``, task status ``waiting``) and runs again
  after a longer backoff, until the fault clears.
- **transient**: anything else (a bug, a flaky dependency): retried with the stage's retry
  policy, and failed for good once it is spent.
"""

from __future__ import annotations

import errno
from typing import Literal

from stagebus.errors import ContractError, InvalidInput, PermanentStageError, StoreUnavailable

Kind = Literal["data", "infrastructure", "transient"]

# A source that became a directory is data (someone replaced the file: publish it again); an
# unknown codec is configuration (the parser raises PermanentStageError for it); neither heals by
# waiting. A source that vanished (ENOENT) may come back (a remounted share): infrastructure.
DATA_ERRORS: tuple[type[BaseException], ...] = (
    ContractError, InvalidInput, PermanentStageError, IsADirectoryError, NotADirectoryError)
INFRASTRUCTURE_ERRNOS = frozenset({
    errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG, errno.ENOENT, errno.ESTALE,
    errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOTCONN, errno.ETIMEDOUT, errno.EACCES, errno.EPERM,
})


def classify(exc: BaseException) -> Kind:
    if isinstance(exc, DATA_ERRORS):
        return "data"
    if isinstance(exc, StoreUnavailable):
        return "infrastructure"
    if isinstance(exc, OSError) and exc.errno in INFRASTRUCTURE_ERRNOS:
        return "infrastructure"
    return "transient"


INFRA_MAX_BACKOFF_S = 60.0


def infrastructure_backoff_s(faults: int, first_s: float) -> float:
    """Seconds before the next try after the ``faults``-th infrastructure fault in a row: longer
    than a stage's retries (a disk is not freed in milliseconds), doubling from ``first_s``, capped
    so that recovery is noticed within a minute."""
    return min(first_s * 2 ** max(faults - 1, 0), INFRA_MAX_BACKOFF_S)


def describe(exc: BaseException) -> str:
    """The one-line reason a waiting task shows."""
    message = (str(exc).splitlines() or [""])[0][:500]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
