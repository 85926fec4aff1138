"""How the API answers what went wrong: ``{"error": kind, "message": sentence}`` with the
status of the error's class, whether vmkit, FastAPI or pydantic found it."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from ..errors import InvalidInputError, VmkitError, to_body
from .models import Error

log = logging.getLogger("vmkit.api")
# Every route may answer these, with an Error body (in the schema of each route).
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error} for code in (401, 404, 409, 413, 422, 500, 502, 507)}


def add_error_handlers(app: FastAPI, routes: Iterable[BaseRoute]) -> None:
    """Make every error of ``app`` leave as an Error body; ``routes``: all of its routes,
    each on its own (not the routers that hold them), for the allow header of a 405."""
    known = list(routes)

    @app.exception_handler(VmkitError)
    async def vmkit_error(request: Request, exc: VmkitError) -> JSONResponse:
        return JSONResponse(to_body(exc), status_code=exc.status)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error in %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal", "message": f"vmkitd failed: {exc!r}; "
                             "see vmkitd's log"}, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body": bytes that are not text
            return JSONResponse(to_body(InvalidInputError(
                "the body could not be read: send JSON in UTF-8 (content-type: "
                "application/json)")), status_code=422)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        message = f"{request.method} {request.url.path}: {exc.detail}; see /docs for the API"
        headers = exc.headers
        if exc.status_code == 405:  # every method of the path, not only the first route's
            allowed = ", ".join(sorted(allowed_methods(known, request.scope)))
            headers = {"allow": allowed}
            message = (f"{request.url.path} does not take {request.method}, only {allowed}; "
                       "see /docs for the API")
        return JSONResponse({"error": kind, "message": message}, status_code=exc.status_code,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid_input",
                             "message": validation_message(exc.errors()[0])}, status_code=422)


def allowed_methods(routes: Iterable[BaseRoute], scope: Mapping[str, Any]) -> set[str]:
    """The methods that some route takes on this request's path."""
    methods: set[str] = set()
    for route in routes:
        match, _ = route.matches({**scope, "type": "http"})
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return methods


def validation_message(error: Mapping[str, Any]) -> str:
    """One sentence for the first thing pydantic found wrong in a request."""
    loc = list(error["loc"])
    if loc and loc[0] in ("body", "path", "query"):  # where it was sent, not a field's name
        loc = loc[1:]
    where = ".".join(str(p) for p in loc)
    if error["type"] == "vmkit":  # one of vmkit's own checks: its message says it all
        return str(error["msg"])
    if error["type"] == "extra_forbidden":
        return f"unknown field {where!r}: see /docs for the fields this request takes"
    if error["type"] == "missing":
        return f"{where} is required"
    if error["type"] == "json_invalid":
        return f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'syntax')})"
    if not where or where.isdigit():  # the body as a whole is wrong (loc: body or body.0)
        return (f"the body is not the JSON object this request takes ({error['msg']}): send "
                "one, with content-type: application/json; see /docs")
    return f"{where}: {error['msg']}"
