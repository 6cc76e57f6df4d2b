"""The read-only web inspector: server-rendered pages over a home's log and projections.

Pages (under ``/ui``): overview, ledger (filters, sort, keyset paging), partition (history
across runs, tasks and manifests, "why" with links to the log positions it rests on), runs and
run (the plan drawn as a graph, stage counts, failures with tracebacks, lineage, the resume
command), rejects, log (tail with filters, each event's fields, verify on demand). Nothing here
writes: the log and the projections are opened read-only (projections that lag the log are
caught up in memory, never on disk).

Serving it
----------
On its own (``stagebus ui``)::

    app = create_app(settings)                  # FastAPI app with the inspector under /ui

Inside the HTTP service, behind its key auth and tenant scope, one line in ``create_app``::

    app.include_router(create_inspector(settings, owner_dependency=current_owner,
                                        owner_pipelines=pipelines_of_owner))

``owner_dependency`` is any FastAPI dependency that returns the caller's owner (and raises, e.g.
401, when the key is missing or wrong); it runs for every inspector route, static assets
included. ``owner_pipelines(owner)`` names the pipelines that owner may see; runs of other
pipelines, their partitions, rejects and events are then 404 or left out of lists, as in the
API. Without ``owner_pipelines`` an authenticated caller sees everything.
"""

# No "from __future__ import annotations": FastAPI reads the signature of scope() below, whose
# dependency is local.

import contextlib
from collections.abc import AsyncIterator, Callable, Collection
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Security
from fastapi.responses import RedirectResponse

from stagebus.api.inspector.queries import EVERYTHING, Inspector, Scope
from stagebus.api.inspector.routes import create_router
from stagebus.settings import Settings

__all__ = ["Inspector", "Scope", "create_app", "create_inspector"]


def create_inspector(settings: Settings | Inspector, *, owner_dependency: Callable[..., Any] | None = None,
                     owner_pipelines: Callable[[Any], Collection[str]] | None = None,
                     prefix: str = "/ui") -> APIRouter:
    """The inspector as an :class:`APIRouter` with its routes under ``prefix``, to include in an app."""
    inspector = settings if isinstance(settings, Inspector) else Inspector(settings)
    if owner_dependency is None:
        return create_router(inspector, prefix=prefix)
    owner_of = owner_dependency

    def scope(owner: Annotated[Any, Depends(owner_of)]) -> Scope:
        return EVERYTHING if owner_pipelines is None else Scope(frozenset(owner_pipelines(owner)))

    return create_router(inspector, scope=scope, prefix=prefix)


def create_app(settings: Settings, *, behind_keys: bool = False) -> FastAPI:
    """The inspector alone (``stagebus ui``): ``/`` redirects to ``/ui/``. ``behind_keys``: every
    page asks for an ``X-API-Key`` of the HTTP service's keys, and shows only that key owner's
    pipelines (as the service does)."""
    inspector = Inspector(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        inspector.close()

    app = FastAPI(title="stagebus inspector", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    if behind_keys:
        from stagebus.api.auth import API_KEY_HEADER, check_key, pipelines_of
        from stagebus.api.errors import install_handlers

        def owner(api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None) -> str:
            caller = inspector.read(lambda i: {"caller": check_key(lambda: i.projections().connection(), api_key)})
            return str(caller["caller"].owner)

        def visible(owner: str) -> set[str]:
            return inspector.read(lambda i: {"names": pipelines_of(i.projections().connection(), owner)})["names"]

        install_handlers(app)
        app.include_router(create_inspector(inspector, owner_dependency=owner, owner_pipelines=visible))
    else:
        app.include_router(create_inspector(inspector))

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    return app
