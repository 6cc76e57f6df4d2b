"""``stagebus relay`` and ``stagebus worker``: the two kinds of fleet process.

Both read ``STAGEBUS_STORE`` (a ``redis://…`` log for a fleet), ``STAGEBUS_BROKER``
(``redis://…`` or ``amqp://…``) and ``STAGEBUS_HOME`` (projections of the relay, the shared
artifact directory), plus ``STAGEBUS_PIPELINES`` for pipelines beyond the reference one.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Annotated

import typer

from stagebus.actors.fleet_setup import FleetSettings, open_fleet_broker, stage_queues
from stagebus.actors.supervisor import child_argv, supervise
from stagebus.cli._context import get_context
from stagebus.errors import InvalidInput
from stagebus.pipeline.registry import fleet_pipelines
from stagebus.store.urls import require_host


def fleet_settings(ctx: typer.Context, broker: str | None) -> FleetSettings:
    """The app's settings (global ``--home``/``--store``/``--log-level``) plus fleet-only ones."""
    base = get_context(ctx).settings
    given = base.model_dump()
    if broker is not None:
        given["broker"] = broker
    require_host(given["broker"], "broker")  # before the relay opens (and may create) the log
    return FleetSettings(**given)


BrokerOption = Annotated[str | None, typer.Option(
    "--broker", envvar="STAGEBUS_BROKER", show_default="STAGEBUS_BROKER",
    help="Broker URL: redis://… or amqp://…")]


def relay(
    ctx: typer.Context,
    reconcile_every: Annotated[float, typer.Option(
        "--reconcile-every", min=0.05, help="Seconds between full reconciliations of every run.")] = 5.0,
    redelivery: Annotated[float, typer.Option(
        "--redelivery", min=0.0, help="Seconds before a ready task that has not started is sent again.")] = 60.0,
    health_port: Annotated[int | None, typer.Option(
        "--health-port", min=0, max=65535, help="Serve /healthz and /metrics on this port (off by default).")] = None,
    health_every: Annotated[float, typer.Option(
        "--health-every", min=0.1, help="Seconds between health lines in the log.")] = 10.0,
    lease_ttl: Annotated[float, typer.Option(
        "--lease-ttl", min=0.5, help="Seconds a dead leader's lease outlives it before a standby takes over.")] = 5.0,
    broker: BrokerOption = None,
) -> None:
    """Route the log to the stage queues: one relay is active (a lease), others stand by.

    Stops cleanly on SIGTERM or Ctrl-C and hands the lease over at once."""
    from stagebus.actors.metrics import HealthServer
    from stagebus.actors.relay_process import RelayProcess

    settings = fleet_settings(ctx, broker)
    process = RelayProcess(settings, reconcile_every_s=reconcile_every, redelivery_s=redelivery,
                           lease_ttl_s=lease_ttl, health_every_s=health_every)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = None
    try:
        if health_port is not None:
            server = HealthServer(health_port, process.health, process.metrics).start()
            typer.echo(f"relay: /healthz and /metrics on port {server.port}", err=True)
        process.run(stop)
    finally:
        if server is not None:
            server.stop()
        process.close()


def worker(
    ctx: typer.Context,
    processes: Annotated[int, typer.Option("--processes", "-p", min=1, help="Worker processes.")] = 2,
    threads: Annotated[int, typer.Option("--threads", "-t", min=1, help="Threads per worker process.")] = 8,
    queues: Annotated[str | None, typer.Option(
        "--queues", "-Q", help="Stage queues to serve, comma-separated (default: every stage).")] = None,
    worker_timeout: Annotated[int | None, typer.Option(
        "--worker-timeout", min=10, help="Milliseconds an idle worker waits on the broker before polling again.")
    ] = None,
    shutdown_timeout: Annotated[float | None, typer.Option(
        "--shutdown-timeout", min=0.0, help="Seconds a stopping worker lets running tasks finish.")] = None,
    broker: BrokerOption = None,
) -> None:
    """Run stage worker processes that serve the stage queues.

    Each process is a dramatiq worker of ``stagebus.actors.fleet``; one that dies is started
    again (with backoff) and the log says so. SIGTERM lets running tasks finish; one cut short
    leaves no manifest and the relay sends it again."""
    settings = fleet_settings(ctx, broker)
    known = stage_queues(fleet_pipelines(settings))
    wanted = [q.strip() for q in (queues or "").split(",") if q.strip()]
    unknown = [q for q in wanted if q not in known]
    if unknown:
        raise InvalidInput(f"--queues: no stage named {', '.join(map(repr, unknown))} (stages: {', '.join(known)})")
    open_fleet_broker(settings).close()  # a bad broker URL fails here, in one line, not in each child
    env = {**os.environ, "STAGEBUS_HOME": str(settings.home), "STAGEBUS_STORE": settings.store,
           "STAGEBUS_BROKER": settings.broker, "STAGEBUS_LOG_LEVEL": settings.log_level}
    if worker_timeout is not None:
        env["dramatiq_worker_timeout"] = str(worker_timeout)  # read by dramatiq.worker on import
    argv = child_argv(threads, wanted, shutdown_timeout, settings.log_level == "DEBUG")
    raise typer.Exit(supervise(argv, env, processes))


def register(app: typer.Typer) -> None:
    app.command("relay")(relay)
    app.command("worker")(worker)
