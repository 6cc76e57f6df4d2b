"""Round-trip and append counters for the fleet bench, loaded by every process it starts.

``bench.fleet`` puts this directory first on the children's ``PYTHONPATH`` and sets
``STAGEBUS_BENCH_COUNTS`` to a directory; Python then imports this module at start-up. It counts,
per process, every request redis-py sends (one ``send_packed_command`` is one round trip: a
pipeline is one, a script call is one) and every call of the log's append script with how many
came back ``stale`` (sealed on a head that another appender had moved). Each process rewrites
``<dir>/<pid>.json`` every 50 ms, so the bench can read the totals of processes that are still
running. The same hook runs in the raw Dramatiq processes, so both sides are counted alike.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

COUNTS_DIR = os.environ.get("STAGEBUS_BENCH_COUNTS")
counts = {"round_trips": 0, "appends": 0, "stale": 0}


def _install(directory: Path) -> None:
    from redis.commands.core import Script
    from redis.connection import AbstractConnection

    send = AbstractConnection.send_packed_command
    call = Script.__call__

    def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        counts["round_trips"] += 1
        if os.environ.get("STAGEBUS_BENCH_COUNT_COMMANDS"):  # diagnosis: which commands, per process
            first = command[0] if isinstance(command, list | tuple) else command
            parts = bytes(first).split(b"\r\n")
            name = (parts[2] if len(parts) > 2 else b"?").decode(errors="replace").upper()
            if name == "EVALSHA" and len(parts) > 4:
                name += ":" + parts[4][:8].decode(errors="replace")
            if isinstance(command, list | tuple) and len(command) > 1:
                name = f"pipeline({name})"
            key = "cmd " + name
            counts[key] = counts.get(key, 0) + 1
        send(self, command, check_health)

    def script_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        reply = call(self, *args, **kwargs)
        if "'stale'" in str(self.script):  # the log's append script (its reply when the head moved)
            counts["appends"] += 1
            if isinstance(reply, list) and reply and reply[0] == b"stale":
                counts["stale"] += 1
        return reply

    AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
    Script.__call__ = script_call  # type: ignore[method-assign]

    def dump() -> None:
        path, tmp = directory / f"{os.getpid()}.json", directory / f".{os.getpid()}.tmp"
        while True:
            tmp.write_text(json.dumps(counts))
            os.replace(tmp, path)
            threading.Event().wait(0.05)

    def start() -> None:
        threading.Thread(target=dump, name="bench-counts", daemon=True).start()

    def forked() -> None:  # dramatiq's CLI forks its worker processes: they count on their own
        for name in counts:
            counts[name] = 0
        start()

    os.register_at_fork(after_in_child=forked)
    start()


if COUNTS_DIR:
    _install(Path(COUNTS_DIR))
