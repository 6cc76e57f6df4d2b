"""``stagebus api``: serve the HTTP API (``/api/v1``) over this home's log and projections."""

from __future__ import annotations

from typing import Annotated

import pydantic
import typer

from stagebus.cli._context import get_context
from stagebus.errors import InvalidInput


def api(ctx: typer.Context,
        host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8080,
        workers: Annotated[int, typer.Option("--workers", min=1, max=64,
                                             help="Server processes sharing the port.")] = 1) -> None:
    """Serve the HTTP API under /api/v1, with its docs at /api/v1/docs.

    In embedded mode (STAGEBUS_BROKER unset or memory) this process also runs the stages, so
    submitted batches complete with nothing else running; with a Redis or AMQP broker it only
    appends to the log and the fleet processes the batches.

    Limits come from STAGEBUS_API_MAX_BODY_BYTES and STAGEBUS_API_MAX_BATCH_RECORDS, rate-limit
    storage from STAGEBUS_API_RATE_STORAGE, custom processors from STAGEBUS_PROCESSORS."""
    from stagebus.api.server import serve
    from stagebus.api.settings import ApiSettings

    app = get_context(ctx)
    try:
        api_settings = ApiSettings()
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        raise InvalidInput(f"{'.'.join(map(str, error['loc']))}: {error['msg']}") from None
    serve(app.settings, api_settings, host=host, port=port, workers=workers, log_level=app.settings.log_level)


def register(app: typer.Typer) -> None:
    app.command("api")(api)
