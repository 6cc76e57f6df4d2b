"""Names on disk: the one encoding of run, stage, dataset and partition names into path components.

Every directory keyed by names (``runs/…``, ``work/…``) is built by :func:`task_dir`, and every
component of it by :func:`encode_name`:

- bytes of ``A-Z a-z 0-9 - _ . =`` stay as they are, so common names (``airports``,
  ``state=CA``, ``2024-01-31``, ``v1.2``) read the same on disk as in the log;
- every other byte of the name's UTF-8 becomes ``%XX`` (uppercase hex), ``%`` itself included;
- a leading ``.`` becomes ``%2E``, so no component is ``.``, ``..`` or hidden (and no name can
  look like a temp file the sweep removes);
- the name ``_run`` becomes ``%5Frun``: ``_run`` is reserved for the run-level task's directory.

The two escapes produce ``%2E``/``%5F``, which the byte rule never does (``.`` and ``_`` are
kept), and decoding every ``%XX`` gives the name back: the encoding is injective, so two
distinct ``(run, stage, dataset, partition)`` never share a directory, and its output is ASCII
without ``/``. A component may hold at most :data:`NAME_MAX` bytes, so a name is bounded by
the length of its encoded form (:func:`encoded_length`): 255 plain characters, but only 21
emoji (4 UTF-8 bytes each, 12 on disk). Case-insensitive filesystems are not supported.

Homes written before this encoding keep working: names made of the kept bytes (nearly all) have
the same directories; for others (spaces, non-ASCII, a leading dot, ``%``) the old ``manifest.json``
views stay where they were (a view, never read back; the log is the record, objects are keyed
by content) and an in-flight item journal under an old path only means that attempt starts over.
"""

from __future__ import annotations

import string
from pathlib import PurePosixPath

from stagebus.events import RUN_SCOPE, split_partition_ref

NAME_MAX = 255  # bytes in one path component (Linux, macOS, most filesystems)
RUN_LEVEL_DIR = "_run"  # the run-level (fan-in) task's directory, in place of dataset/partition

_KEPT = frozenset((string.ascii_letters + string.digits + "-_.=").encode())
_BYTE = [chr(b) if b in _KEPT else f"%{b:02X}" for b in range(256)]


def encode_name(name: str) -> str:
    """The path component for one name. Injective; never empty-looking, hidden, or with a ``/``."""
    encoded = "".join([_BYTE[b] for b in name.encode("utf-8", "surrogatepass")])
    if encoded.startswith("."):
        return "%2E" + encoded[1:]
    if encoded == RUN_LEVEL_DIR:
        return "%5F" + encoded[1:]
    return encoded


def encoded_length(name: str) -> int:
    """Bytes :func:`encode_name` makes of ``name`` (ASCII: one byte per character)."""
    return len(encode_name(name))


def task_dir(run_id: str, stage: str, partition: str) -> PurePosixPath:
    """``<run>/<stage>/<dataset>/<partition>``, or ``<run>/<stage>/_run`` for a run-level task."""
    if partition == RUN_SCOPE:
        return PurePosixPath(encode_name(run_id), encode_name(stage), RUN_LEVEL_DIR)
    dataset, name = split_partition_ref(partition)
    return PurePosixPath(encode_name(run_id), encode_name(stage), encode_name(dataset), encode_name(name))
