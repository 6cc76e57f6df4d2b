"""What is on disk under a directory, to prove a read-only command changed nothing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every file and directory under root: mode, mtime and (for files) content hash."""
    state: dict[str, tuple[object, ...]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        state[str(path.relative_to(root))] = (info.st_mode, info.st_mtime_ns, info.st_size, digest)
    return state


def become_nobody() -> None:
    """``preexec_fn`` of a child that must run as user nobody (it can write nothing of root's)."""
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
