"""Abandoning a run its producer will never finish: one keyed ``RunAbandoned`` event.

From then on the gate refuses the run's tasks, readiness skips it, and the ledger shows its
undecided partitions as invalid with the reason instead of pending (see the ledger's rules).
"""

from __future__ import annotations

from typing import NamedTuple

from stagebus.actors.gate import run_of
from stagebus.errors import InvalidInput
from stagebus.events import RunAbandoned
from stagebus.store import EventStore


class Abandoned(NamedTuple):
    position: int  # of the stored event, or of the one that already held the key
    stored: bool  # False: the run was abandoned before; nothing was appended


def abandon_run(store: EventStore, run_id: str, reason: str = "") -> Abandoned:
    """Abandon ``run_id``. Idempotent; an unknown run is refused (nothing stored)."""
    if run_of(store, run_id) is None:
        raise InvalidInput(f"unknown run {run_id!r}")
    if "\n" in reason or len(reason) > 500:
        raise InvalidInput("--reason must be one line of at most 500 characters")
    event = RunAbandoned(run_id=run_id, reason=reason.strip())
    outcome = store.append_one(event)
    if outcome.stored:
        return Abandoned(outcome.position or 0, True)
    existing = store.get(event.key)
    return Abandoned(existing.position if existing else 0, False)
