"""The swarm-network service's FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from sn_service.routers import dashboard, local, peer, status
from sn_service.service import SwarmNetworkService


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
    if "local" in parts:
        app.include_router(local.router)
    if "peer" in parts:
        app.include_router(peer.router)
    if "status" in parts:
        app.include_router(status.router)
        app.include_router(dashboard.router)
    else:
        app.add_api_route("/v1/health", status.health, methods=["GET"])

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5])
        return JSONResponse(
            status_code=422,
            content={
                "detail": {
                    "error": "INVALID_REQUEST",
                    "message": problems,
                    "errors": jsonable_encoder(exc.errors()[:5]),
                }
            },
        )

    return app
