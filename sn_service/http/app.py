"""The swarm-network service's FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sn_service.http.request_limits import RequestLimits
from sn_service.http.routers import dashboard, local, peer, status
from sn_service.secagg import router as secagg_router
from sn_service.service import SwarmNetworkService

# What an error may quote of a caller's input: enough to recognise it, never a megabyte of it.
_QUOTE_CHARS = 120


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + f"... ({len(text)} characters)"


def validation_problems(exc: RequestValidationError, most: int = 5) -> list[dict]:
    """The first few validation errors, each its location, type and message; the input is not echoed."""
    return [
        {"loc": [_short(p) for p in err.get("loc", ())], "type": err.get("type", ""), "msg": _short(err.get("msg", ""))}
        for err in exc.errors()[:most]
    ]


def create_app(service: SwarmNetworkService, parts: tuple[str, ...] = ("local", "peer", "status")) -> FastAPI:
    """The HTTP app of one site's service, with the given routers.

    With mutual TLS the service runs two apps: ``("local", "status")`` on
    loopback for the callback, and ``("peer",)`` on the TLS listener.
    """
    app = FastAPI(
        title=f"swarm-network service ({service.site})",
        version="0.1.0",
        description="Coordinates merge rounds for one site: the callback's local API, the peer blob API and status.",
    )
    app.state.service = service
    app.add_middleware(RequestLimits, idle_timeout_s=service.body_timeout_s)
    if "local" in parts:
        app.include_router(local.router)
    if "peer" in parts:
        app.include_router(peer.router)
        app.include_router(secagg_router.router)
    if "status" in parts:
        app.include_router(status.router)
        app.include_router(dashboard.router)
    else:
        app.add_api_route("/v1/health", status.health, methods=["GET"])

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_problems(exc)
        problems = "; ".join(f"{'.'.join(err['loc'])}: {err['msg']}" for err in errors)
        return JSONResponse(
            status_code=422,
            content={"detail": {"error": "INVALID_REQUEST", "message": problems, "errors": errors}},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Our own errors carry {"error", "message"}; the framework's (404 route, 405, a body that
        # cannot be parsed) get the same shape, so every client reads one kind of error.
        detail = exc.detail
        if not isinstance(detail, dict):
            detail = {"error": _code_of_status(exc.status_code), "message": _short(detail)}
        return JSONResponse(status_code=exc.status_code, content={"detail": detail}, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the caller's fault: one JSON answer; the traceback still goes to the log.
        return JSONResponse(
            status_code=500,
            content={"detail": {"error": "INTERNAL", "message": f"internal error: {type(exc).__name__}"}},
        )

    return app


def _code_of_status(status: int) -> str:
    return {
        400: "BAD_REQUEST",
        404: "NOT_FOUND",
        405: "METHOD_NOT_ALLOWED",
        408: "BODY_TIMEOUT",
        413: "TOO_LARGE",
        415: "UNSUPPORTED_MEDIA_TYPE",
    }.get(status, f"HTTP_{status}")
