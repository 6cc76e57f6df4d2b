"""Leadership for relays: several may run, one is active. A lease with a fencing token.

Redis: ``SET key token NX PX ttl`` to take, a compare-and-renew script to keep, and a fencing
counter (``INCR``) bumped on every takeover so a paused ex-leader can tell it was replaced.
SQLite homes on one machine: an ``flock`` on ``<home>/relay.lock`` (released by the kernel when
the holder dies, so takeover needs no timeout).
"""

from __future__ import annotations

import fcntl
import os
import uuid
from pathlib import Path
from typing import Any, Protocol

from stagebus.store.keys import RedisKeys

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class Lease(Protocol):
    fence: int

    @property
    def held(self) -> bool:
        """Whether the last :meth:`acquire` took or kept the lease (no I/O)."""
        ...

    def acquire(self) -> bool:
        """Take the lease if free, or keep it if held; False while another relay holds it."""
        ...

    def release(self) -> None: ...


class RedisLease:
    def __init__(self, client: Any, keys: RedisKeys, ttl_ms: int = 5_000) -> None:
        self.client = client
        self.keys = keys
        self.ttl_ms = ttl_ms
        self.token = f"{os.getpid()}-{uuid.uuid4().hex}"
        self.fence = 0
        self._held = False
        self._renew = client.register_script(_RENEW)

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self) -> bool:
        if self._held and self._renew(keys=[self.keys.relay_lease], args=[self.token, self.ttl_ms]):
            return True
        self._held = bool(self.client.set(self.keys.relay_lease, self.token, nx=True, px=self.ttl_ms))
        if self._held:
            self.fence = int(self.client.incr(self.keys.relay_fence))
        return self._held

    def release(self) -> None:
        if self._held and self.client.get(self.keys.relay_lease) in (self.token, self.token.encode()):
            self.client.delete(self.keys.relay_lease)
        self._held = False


class FileLease:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fence = 0
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        self.fence = int(os.read(fd, 32) or b"0") + 1
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, str(self.fence).encode())
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
