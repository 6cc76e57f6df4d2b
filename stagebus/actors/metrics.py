"""Health and metrics of a fleet, as the relay sees it: from the projections and the broker.

``/metrics`` speaks the Prometheus text format (no client library needed for a handful of
gauges); ``/healthz`` answers 200 while the relay's loop is going, 503 once it has stalled.
Both are served by :class:`HealthServer`, a stdlib HTTP server in a daemon thread, off unless
a port is asked for.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from dramatiq.broker import Broker

log = logging.getLogger("stagebus.metrics")

TASK_STATES = ("pending", "running", "retrying", "complete", "reused", "failed")


class QueueDepth(NamedTuple):
    ready: int  # waiting to be fetched
    unacked: int  # fetched by a worker, not yet acknowledged (running or prefetched)
    delayed: int  # waiting out a retry backoff
    dead: int  # dead-lettered after their last retry


def queue_depths(broker: Broker, queues: Iterable[str]) -> dict[str, QueueDepth]:
    """Messages per stage queue, for the Redis, RabbitMQ and in-memory brokers."""
    depths: dict[str, QueueDepth] = {}
    for queue in queues:
        if hasattr(broker, "namespace") and hasattr(broker, "client"):  # RedisBroker
            depths[queue] = _redis_depth(broker.client, broker.namespace, queue)
        elif hasattr(broker, "get_queue_message_counts"):  # RabbitmqBroker
            ready, delayed, dead = broker.get_queue_message_counts(queue)
            depths[queue] = QueueDepth(ready, 0, delayed, dead)
        elif hasattr(broker, "queues") and isinstance(broker.queues, dict) and queue in broker.queues:
            depths[queue] = QueueDepth(broker.queues[queue].qsize(), 0, 0, len(getattr(broker, "dead_letters", [])))
    return depths


def _redis_depth(client: Any, namespace: str, queue: str) -> QueueDepth:
    # Key names from dramatiq's brokers/redis/dispatch.lua: a list of ids plus a hash of bodies
    # per queue, "<queue>.DQ" for delayed messages, a sorted set "<queue>.XQ" for dead letters.
    name = f"{namespace}:{queue}"
    pipe = client.pipeline(transaction=False)
    pipe.llen(name)
    pipe.hlen(f"{name}.msgs")
    pipe.hlen(f"{name}.DQ.msgs")
    pipe.zcard(f"{name}.XQ")
    ready, outstanding, delayed, dead = (int(n) for n in pipe.execute())
    return QueueDepth(ready, max(outstanding - ready, 0), delayed, dead)


def stage_task_counts(runs: Iterable[Any]) -> dict[tuple[str, str, str], int]:
    """``(pipeline, stage, state) -> tasks`` over every run's stage summaries."""
    counts: dict[tuple[str, str, str], int] = {}
    for run in runs:
        for s in run.stage_summaries:
            if not s.selected:
                continue
            running = s.running - s.retrying
            for state, n in zip(TASK_STATES, (s.pending, running, s.retrying, s.complete, s.reused, s.failed),
                                strict=True):
                key = (run.pipeline, s.stage, state)
                counts[key] = counts.get(key, 0) + n
    return counts


def stage_durations(runs: Iterable[Any]) -> dict[tuple[str, str], tuple[float, float]]:
    """``(pipeline, stage) -> (mean, max)`` seconds of the tasks that did the work, over all runs."""
    totals: dict[tuple[str, str], tuple[float, int, float]] = {}
    for run in runs:
        for s in run.stage_summaries:
            if s.complete:
                total, n, peak = totals.get((run.pipeline, s.stage), (0.0, 0, 0.0))
                totals[(run.pipeline, s.stage)] = (total + s.latency_mean_s * s.complete, n + s.complete,
                                                   max(peak, s.latency_max_s))
    return {key: (total / n, peak) for key, (total, n, peak) in totals.items()}


def render_prometheus(runs: list[Any], depths: dict[str, QueueDepth], relay: dict[str, float]) -> str:
    """The Prometheus text exposition of the fleet's state."""
    lines: list[str] = []

    def family(name: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        for labels, value in samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")

    counts = sorted(stage_task_counts(runs).items())
    family("stagebus_stage_tasks", "Stage tasks by pipeline, stage and state, over every run.",
           ((dict(pipeline=p, stage=s, state=state), n) for (p, s, state), n in counts))
    durations = sorted(stage_durations(runs).items())
    family("stagebus_stage_duration_seconds_mean", "Mean duration of completed stage tasks.",
           ((dict(pipeline=p, stage=s), mean) for (p, s), (mean, _) in durations))
    family("stagebus_stage_duration_seconds_max", "Longest completed stage task.",
           ((dict(pipeline=p, stage=s), peak) for (p, s), (_, peak) in durations))
    family("stagebus_queue_messages", "Broker messages per stage queue and state.",
           ((dict(queue=q, state=state), getattr(d, state)) for q, d in sorted(depths.items())
            for state in QueueDepth._fields))
    for name, value in sorted(relay.items()):
        family(f"stagebus_relay_{name}", f"Relay {name.replace('_', ' ')}.", [({}, value)])
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class HealthServer:
    """``GET /healthz`` (JSON, 200 or 503) and ``GET /metrics`` on ``host:port``, in a daemon thread."""

    def __init__(self, port: int, health: Callable[[], tuple[bool, dict[str, Any]]],
                 metrics: Callable[[], str], host: str = "0.0.0.0") -> None:
        handler = _handler(health, metrics)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="stagebus-health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(health: Callable[[], tuple[bool, dict[str, Any]]],
             metrics: Callable[[], str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server dispatches to
            try:
                if self.path.split("?")[0] == "/healthz":
                    ok, body = health()
                    self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
                elif self.path.split("?")[0] == "/metrics":
                    self._send(200, "text/plain; version=0.0.4; charset=utf-8", metrics().encode())
                else:
                    self._send(404, "text/plain", b"not found: try /healthz or /metrics\n")
            except Exception as exc:  # a scrape must never take the relay down
                log.warning("health endpoint failed: %s", exc)
                self._send(500, "text/plain", f"error: {exc}\n".encode())

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
            log.debug("health: " + format, *args)

    return Handler
