"""Health and status: what this site and the ledger say about its tasks."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter(tags=["status"])


@router.get("/v1/health")
async def health(request: Request) -> dict:
    """Liveness: the service answers."""
    return {"ok": True, "site": request.app.state.service.site}


@router.get("/v1/status")
async def status(request: Request) -> dict:
    """Tasks, rounds, who is awaited, the leader and its deadline, counters."""
    return await asyncio.to_thread(request.app.state.service.status)


@router.get("/metrics", include_in_schema=True)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: syncs, rounds, latency, bytes, merge time, failovers, rejected blobs."""
    return Response(request.app.state.service.metrics.render(), media_type=CONTENT_TYPE_LATEST)
