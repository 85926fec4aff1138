"""The REST API: HTTP in, service calls, JSON out. It parses and renders; it never runs QEMU.

``create_app`` puts the pieces together: error bodies (errors.py), the bearer token on the
TCP listener (auth.py), the guards against malformed paths and oversized bodies (guards.py),
the dashboard's static files, and one router per resource (routes/).
"""

from __future__ import annotations

from pathlib import Path

import fastapi.routing
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..server import Server
from .auth import token_middleware
from .errors import ERRORS, add_error_handlers
from .forward import Forward
from .guards import Guards
from .routes import (backups, cluster, console, events, forensics, forks, guest, hosts, images,
                     migrations, networks, portable, runs, snapshots, stats, templates, vms)

UI_DIR = Path(__file__).parent.parent / "ui" / "static"


def create_app(server: Server, token: str | None = None, ui_url: str | None = None) -> FastAPI:
    """The API of ``server``; ``token``: required on every request (the TCP listener);
    ``ui_url``: where the dashboard is served (the TCP listener's /ui/), for /v1/info."""
    app = FastAPI(title="vmkit", version=__version__, responses=ERRORS,
                  description="Run and manage QEMU virtual machines.")
    app.add_middleware(Forward, server=server, token=token)  # innermost: after both
    app.add_middleware(Guards)  # added first, so it runs after the token check
    if token is not None:
        app.middleware("http")(token_middleware(token))

    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True, check_dir=False), name="ui")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    routers = [events.router(server), hosts.router(server, ui_url), images.router(server),
               vms.router(server), runs.router(server), guest.router(server, token),
               snapshots.router(server), backups.router(server),
               forks.router(server), templates.router(server), portable.router(server),
               networks.router(server), forensics.router(server), stats.router(server),
               migrations.router(server), console.router(server, token),
               cluster.router(server)]
    # Every route on its own: app.routes may hold the routers rather than their routes.
    routes = [*app.routes, *(route for router in routers for route in router.routes)]
    for router in routers:
        app.include_router(router)
    add_error_handlers(app, routes)
    _build_routes_now(app)
    return app


def _build_routes_now(app: FastAPI) -> None:
    """Recent FastAPI (0.165 here) builds an included router's routes when a request first
    walks past them: tens of milliseconds on a first request, which the dashboard's form
    (filled from two first requests) and its users would wait for. Build them now."""
    route_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if route_contexts is not None:  # older versions built them in include_router
        for _ in route_contexts(app.routes):
            pass
