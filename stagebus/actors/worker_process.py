"""One fleet worker process: ``python -m stagebus.actors.worker_process``, what ``stagebus
worker`` starts once per ``--processes`` and restarts when it dies.

It is what dramatiq's CLI runs in each of its worker processes (build the broker, emit
``process_boot``, start a :class:`dramatiq.Worker`, stop it on SIGTERM), without dramatiq's
master, which shuts every process down when one dies (see :mod:`stagebus.actors.supervisor`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading

import dramatiq

FLEET_MODULE = "stagebus.actors.fleet"
LOG_FORMAT = "[%(asctime)s] [PID %(process)d] [%(threadName)s] [%(name)s] [%(levelname)s] %(message)s"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stagebus-worker-process")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--queues", nargs="*", default=None)
    parser.add_argument("--shutdown-timeout-ms", type=int, default=600_000)
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    level = logging.DEBUG if args.verbose else getattr(logging, os.environ.get("STAGEBUS_LOG_LEVEL", "INFO"), 20)
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    log = logging.getLogger("stagebus.worker")
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor turns Ctrl-C into SIGTERM
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fleet = importlib.import_module(FLEET_MODULE)  # builds the worker from STAGEBUS_*
    broker = fleet.broker
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, queues=set(args.queues) if args.queues else None, worker_threads=args.threads)
    worker.start()
    log.info("Worker process is ready for action.")
    stop.wait()
    log.info("Stopping worker process...")
    worker.stop(timeout=args.shutdown_timeout_ms)
    fleet.worker.close()
    broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
