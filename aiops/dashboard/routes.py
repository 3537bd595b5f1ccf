"""The dashboard's routes on the API app: ``/``, ``/ui/incidents/{id}``, ``/ui/models``, ``/ui/health``,
``/ui/config`` and the page script and stylesheet under ``/ui/static``.

Pages read what the JSON API reads (the store, the executor, the learner, the health callbacks)
plus the live views, under the same read rule (``dependencies``: the API's reader check). They
are kept out of the OpenAPI schema: they are for people, the JSON endpoints are the contract.
Every page is sent with a Content-Security-Policy allowing only this origin's script and style,
so even a name that slipped past escaping could not run, and with ``frame-ancestors 'none'`` so
the Approve button cannot be clickjacked from another site.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, FastAPI
from fastapi.params import Depends
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from aiops.dashboard import pages
from aiops.dashboard.markup import esc, page
from aiops.dashboard.views import DashboardViews

if TYPE_CHECKING:
    from aiops.api.app import ApiContext

STATIC = Path(__file__).parent / "static"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}  # fmt: skip


def _html(title: str, body: str, here: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(page(title, body, here), status_code=status, headers=HEADERS)


def mount(app: FastAPI, ctx: ApiContext, views: DashboardViews, dependencies: list[Depends] | None = None) -> None:
    """Add the dashboard to ``app``; ``views`` gives the live pipeline state the store does not hold."""
    ui = APIRouter(include_in_schema=False, dependencies=dependencies or [])

    def actions(**where: Any) -> list[dict[str, Any]]:
        return [a.model_dump() for a in ctx.executor.actions(**where)] if ctx.executor else []

    @ui.get("/", response_class=HTMLResponse)
    def incidents(show: Literal["all", "open"] = "all") -> HTMLResponse:
        targets = ctx.faults.fault_targets() if ctx.faults is not None else None
        return _html("Incidents", pages.incidents_page(ctx.store.incidents(), actions(), show, targets), "/")

    @ui.get("/ui/incidents/{incident_id}", response_class=HTMLResponse)
    def incident(incident_id: str) -> HTMLResponse:
        record = ctx.store.incident(incident_id)
        if record is None:
            return _html("Not found", f"<h1>No incident {esc(incident_id)}</h1>", "/", 404)
        similar = ctx.learner.similar(record) if ctx.learner else []
        body = pages.incident_page(record, actions(incident_id=incident_id), views, similar)
        return _html(f"Incident {incident_id}", body, "/")

    @ui.get("/ui/models", response_class=HTMLResponse)
    def models() -> HTMLResponse:
        learner = ctx.learner
        body = pages.models_page(learner.models() if learner else None, learner.pending() if learner else [])
        return _html("Models", body, "/ui/models")

    @ui.get("/ui/health", response_class=HTMLResponse)
    def health() -> HTMLResponse:
        return _html("Health", pages.health_page(ctx.health(), ctx.snapshot()), "/ui/health")

    @ui.get("/ui/config", response_class=HTMLResponse)
    def config() -> HTMLResponse:
        return _html("Configuration", pages.config_page(views.config(), views.playbooks()), "/ui/config")

    app.include_router(ui)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="dashboard-static")
