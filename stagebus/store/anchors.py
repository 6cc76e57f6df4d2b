"""Anchors: ``(position, hash)`` pairs recorded outside the log that its head must still honour.

The hash chain shows an edit in the middle of the log, but not a log that lost its tail, was
rolled back to an older copy, or was re-chained from a forged event on: each of those is again a
valid chain. Only something kept elsewhere can tell — the projections' checkpoints (they record
the hash of the last event they applied) or an anchor an operator stored from ``stagebus log
head``. :func:`check_anchor` holds the log to one of them.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from stagebus.errors import InvalidInput
from stagebus.store.base import GENESIS_HASH, EventStore

_ANCHOR = re.compile(r"(\d+):([0-9a-f]{64})")

# Said with every failed anchor: replay rebuilds the projections from the damaged log, and so
# overwrites the checkpoint that is the evidence (and the position to restore to).
ADVICE = ("restore the log from a backup taken at or after that position; do not run `stagebus replay` "
          "over it (that would rebuild the projections from the damaged log and overwrite the checkpoint "
          "that caught this)")


class Anchor(NamedTuple):
    position: int
    hash: str
    source: str  # who recorded it, for the message: "--expect", "projections checkpoint"

    def __str__(self) -> str:
        return f"{self.position}:{self.hash}"


def parse_anchor(text: str, source: str = "--expect") -> Anchor:
    """``POSITION:HASH`` as ``stagebus log head`` prints it; :class:`InvalidInput` otherwise."""
    match = _ANCHOR.fullmatch(text.strip().lower())
    if match is None:
        raise InvalidInput(f"{source}: expected POSITION:HASH as `stagebus log head` prints it "
                           f"(a position and 64 hex digits), got {text[:100]!r}")
    return Anchor(int(match.group(1)), match.group(2), source)


def head_anchor(store: EventStore) -> Anchor:
    """The log's head as an anchor: its last position and that event's chain hash."""
    head = store.head()
    if head == 0:
        return Anchor(0, GENESIS_HASH, "head")
    last = next(iter(store.read(after=head - 1, limit=1)), None)
    if last is None:  # the head moved under us is impossible (append-only); a damaged backend
        return Anchor(0, GENESIS_HASH, "head")
    return Anchor(last.position, last.hash, "head")


def check_anchor(store: EventStore, anchor: Anchor) -> str | None:
    """``None`` when the log has ``anchor.hash`` at ``anchor.position``, else a one-line finding."""
    if anchor.position == 0:
        return None if anchor.hash == GENESIS_HASH else (
            f"{anchor.source} records hash {anchor.hash[:12]}… at position 0, where only the genesis hash can be")
    found = next(iter(store.read(after=anchor.position - 1, limit=1)), None)
    if found is None or found.position != anchor.position:
        end = store.head()
        return (f"the log lost or rewrote events after position {end}: the {anchor.source} records position "
                f"{anchor.position} (hash {anchor.hash[:12]}…) but the log ends at {end}; {ADVICE}")
    if found.hash != anchor.hash:
        return (f"the log lost or rewrote events at or before position {anchor.position}: the {anchor.source} "
                f"records hash {anchor.hash[:12]}… there, the log has {found.hash[:12]}…; {ADVICE}")
    return None
