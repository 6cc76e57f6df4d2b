"""The inspector's routes: thin, one per page; each asks :class:`~.queries.Inspector` for its data
and renders a Jinja2 template. A page asked with ``?fragment=1`` renders only its live part,
which ``static/live.js`` polls to refresh a page in progress without reloading it."""

# No "from __future__ import annotations": FastAPI reads these signatures, whose Annotated
# dependency (Seen) is local to create_router.

from collections.abc import Callable
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stagebus.api.inspector.dag import plan_svg
from stagebus.api.inspector.queries import (
    EVERYTHING,
    PAGE_SIZE,
    REJECTS_SHOWN,
    RUNS_PAGE,
    Inspector,
    NotFound,
    Scope,
)
from stagebus.errors import InvalidInput, StagebusError
from stagebus.projections.ledger_pages import LedgerFilter

STATIC = {"live.js": "text/javascript; charset=utf-8", "inspector.css": "text/css; charset=utf-8"}
ScopeDependency = Callable[..., Scope]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("stagebus.api.inspector", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.globals["plan_svg"] = lambda plan, stages: jinja2.utils.markupsafe.Markup(plan_svg(plan, stages))
    env.filters["short"] = lambda value, n=12: (value or "")[:n]
    return env


def _blank(value: str | None) -> str | None:
    """A form field left empty means no filter."""
    return value if value else None


class Pages:
    """Renders a page (or its live fragment) from what the inspector returns, mapping a missing
    thing to 404 and bad input to 400, both as a page that says what was wrong."""

    def __init__(self, inspector: Inspector, prefix: str) -> None:
        self.inspector = inspector
        self.prefix = prefix
        self.env = _environment()

    def base(self, request: Request) -> str:
        return str(request.scope.get("root_path", "")) + self.prefix

    def render(self, request: Request, name: str, compute: Callable[[Inspector], dict[str, Any]],
               title: str) -> HTMLResponse:
        fragment = request.query_params.get("fragment") == "1"
        try:
            data = self.inspector.read(compute)
        except NotFound as exc:
            return self._error(request, 404, str(exc))
        except InvalidInput as exc:
            return self._error(request, 400, str(exc))
        except StagebusError as exc:
            return self._error(request, 503, str(exc))
        params = {k: v for k, v in request.query_params.items() if k != "fragment"}
        context = {"live": False, **data, "base": self.base(request), "title": title, "page_name": name,
                   "params": params, "qs": lambda **changes: _qs(params, changes), "path": request.url.path}
        context["fragment_url"] = request.url.path + "?" + urlencode({**params, "fragment": "1"})
        template = f"_{name}.html" if fragment else f"{name}.html"
        html = self.env.get_template(template).render(context)
        return HTMLResponse(html, headers={"X-Inspector-Live": "1" if data.get("live") else "0",
                                           "Cache-Control": "no-store"})

    def _error(self, request: Request, status: int, message: str) -> HTMLResponse:
        html = self.env.get_template("error.html").render(
            base=self.base(request), title=f"{status}", page_name="error", status=status, message=message, live=False,
            params={}, path=request.url.path)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _qs(params: dict[str, str], changes: dict[str, Any]) -> str:
    """The current query string with ``changes`` applied (a None value removes the parameter)."""
    merged = {**params}
    for key, value in changes.items():
        if value is None or value == "":
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return "?" + urlencode(merged) if merged else ""


def create_router(inspector: Inspector, *, scope: ScopeDependency | None = None, prefix: str = "/ui") -> APIRouter:
    """The inspector's pages under ``prefix``; ``scope`` is the dependency that says what the
    caller may see (it runs for every route, so no page can forget it)."""
    pages = Pages(inspector, prefix)
    see: ScopeDependency = scope or (lambda: EVERYTHING)
    Seen = Annotated[Scope, Depends(see)]
    router = APIRouter(prefix=prefix, dependencies=[Depends(see)], include_in_schema=False)

    @router.get("", response_class=HTMLResponse)
    def root(request: Request) -> Response:
        return RedirectResponse(pages.base(request) + "/", status_code=307)

    @router.get("/", response_class=HTMLResponse)
    def overview(request: Request, who: Seen) -> HTMLResponse:
        return pages.render(request, "overview", lambda i: i.overview(who), "Overview")

    @router.get("/ledger", response_class=HTMLResponse)
    def ledger(request: Request, who: Seen, dataset: str | None = None, status: str | None = None,
               run: str | None = None, q: str | None = None, sort: str = "partition", order: str = "asc",
               after: str | None = None, before: str | None = None,
               limit: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE) -> HTMLResponse:
        f = LedgerFilter(dataset=_blank(dataset), status=_blank(status), run_id=_blank(run), text=_blank(q),
                         pipelines=who.pipelines)
        return pages.render(request, "ledger", lambda i: i.ledger(
            f, sort=sort, descending=order == "desc", after=_blank(after), before=_blank(before), limit=limit),
            "Ledger")

    @router.get("/partition", response_class=HTMLResponse)
    def partition(request: Request, who: Seen, dataset: str, partition: str,
                  run: str | None = None) -> HTMLResponse:
        return pages.render(request, "partition", lambda i: i.partition(dataset, partition, _blank(run), who),
                            f"{dataset}/{partition}")

    @router.get("/runs", response_class=HTMLResponse)
    def runs(request: Request, who: Seen, before: Annotated[int | None, Query(ge=1)] = None,
             limit: Annotated[int, Query(ge=1, le=200)] = RUNS_PAGE) -> HTMLResponse:
        return pages.render(request, "runs", lambda i: i.runs(before, limit, who), "Runs")

    @router.get("/runs/{run_id}", response_class=HTMLResponse)
    def run(request: Request, who: Seen, run_id: str) -> HTMLResponse:
        return pages.render(request, "run", lambda i: i.run(run_id, who), f"Run {run_id}")

    @router.get("/rejects", response_class=HTMLResponse)
    def rejects(request: Request, who: Seen, run: str | None = None, stage: str | None = None,
                dataset: str | None = None, partition: str | None = None,
                limit: Annotated[int, Query(ge=1, le=10_000)] = REJECTS_SHOWN) -> HTMLResponse:
        return pages.render(request, "rejects", lambda i: i.rejects(
            _blank(run), _blank(stage), _blank(dataset), _blank(partition), limit, who), "Rejects")

    @router.get("/log", response_class=HTMLResponse)
    def log(request: Request, who: Seen, type: str | None = None, key: str | None = None,
            before: Annotated[int | None, Query(ge=1)] = None,
            limit: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE) -> HTMLResponse:
        return pages.render(request, "log", lambda i: i.log(type_name=_blank(type), key=_blank(key), before=before,
                                                            limit=limit, scope=who), "Log")

    @router.get("/log/verify", response_class=HTMLResponse)
    def verify(request: Request, who: Seen) -> HTMLResponse:
        return pages.render(request, "verify", lambda i: {"result": i.verify(), "live": False}, "Verify the log")

    @router.get("/log/{position}", response_class=HTMLResponse)
    def event(request: Request, who: Seen, position: int) -> HTMLResponse:
        return pages.render(request, "event", lambda i: i.event(position, who), f"Event {position}")

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        body = resources.files("stagebus.api.inspector").joinpath("static", name).read_bytes()
        return Response(body, media_type=STATIC[name], headers={"Cache-Control": "max-age=3600"})

    return router
