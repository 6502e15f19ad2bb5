"""Health and status: what this site and the ledger say about its tasks."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

router = APIRouter(prefix="/v1", tags=["status"])


@router.get("/health")
async def health(request: Request) -> dict:
    """Liveness: the service answers."""
    return {"ok": True, "site": request.app.state.service.site}


@router.get("/status")
async def status(request: Request) -> dict:
    """Tasks, rounds, who is awaited, the leader and its deadline, counters."""
    return await asyncio.to_thread(request.app.state.service.status)
