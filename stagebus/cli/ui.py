"""``stagebus ui``: serve the read-only web inspector of a home on its own.

It opens the log and projections read-only and changes no file. With no API keys configured it
is open to whoever can reach it, so it listens on loopback only and refuses any other address.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from stagebus.cli._context import AppContext, get_context, make_settings
from stagebus.errors import InvalidInput
from stagebus.settings import Settings

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_keys_configured(settings: Settings) -> bool:
    """Whether the HTTP service has keys in this home (``stagebus keys create``): then the
    inspector asks for one on every page. Read from the projections, read-only."""
    from stagebus.projections.api_keys import read_keys
    from stagebus.projections.reader import Projections
    from stagebus.store import open_store

    store = open_store(settings.store_url, readonly=True)
    try:
        with Projections(store, settings.projections_path, readonly=True) as projections:
            projections.catch_up()
            return any(key.active for key in read_keys(projections.connection()))
    finally:
        store.close()


def ui(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback only without API keys).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8081,
    home: Annotated[Path | None, typer.Option("--home", help="The home to inspect (as the global --home).",
                                              show_default=False)] = None,
) -> None:
    """Serve the read-only web inspector (ledger, partitions and their "why", runs, rejects, log)
    at http://HOST:PORT/ui/. Changes no file of the home."""
    app_context = get_context(ctx)
    if home is not None:
        app_context.close()
        app_context = AppContext(make_settings(str(home), app_context.settings.store or None, None,
                                              app_context.settings.artifacts or None))
    app_context.require_log()  # one clear line for a home with no log, before listening
    settings = app_context.settings
    app_context.close()
    keys = api_keys_configured(settings)
    if not keys and not is_loopback(host):
        raise InvalidInput(f"--host {host} is not a loopback address: with no API keys configured the inspector "
                           "is open to anyone who reaches it, so it listens on 127.0.0.1, ::1 or localhost only")
    import uvicorn

    from stagebus.api.inspector import create_app

    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"stagebus ui: read-only inspector of {settings.home} at http://{shown}:{port}/ui/", err=True)
    if keys:
        typer.echo("stagebus ui: API keys exist: every page asks for X-API-Key and shows that owner's pipelines",
                   err=True)
    else:
        typer.echo("stagebus ui: no API keys are configured: the inspector is open, so it listens on loopback only",
                   err=True)
    uvicorn.run(create_app(settings, behind_keys=keys), host=host.strip("[]"), port=port, log_level="warning",
                access_log=False)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
