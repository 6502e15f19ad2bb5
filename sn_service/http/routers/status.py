"""Health and status: what this site and the ledger say about its tasks."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from sn_service.http.errors import api_error, contract_http_error
from sn_service.ledger.base import ContractError, Ledger, LedgerUnavailable
from sn_service.round_protocol import now_ms
from sn_service.status_view import snapshot
from swarm_wire.names import NAME_RE

router = APIRouter(tags=["status"])


@router.get("/v1/health", responses={503: {"description": "the service answers but cannot do its job (problems)"}})
async def health(request: Request) -> JSONResponse:
    """Liveness and readiness: this site's name and process, and what keeps it from working (503 if anything)."""
    body = request.app.state.service.health()
    return JSONResponse(body, status_code=200 if body["ok"] else 503)


@router.get("/v1/status")
async def status(request: Request) -> dict:
    """Tasks, rounds, who is awaited, the leader and its deadline, counters."""
    return await asyncio.to_thread(request.app.state.service.status)


@router.get("/metrics", include_in_schema=True)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: syncs, rounds, latency, bytes, merge time, failovers, rejected blobs."""
    return Response(request.app.state.service.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/tasks/{task}")
async def task_detail(task: str, request: Request, recent: int = Query(default=5, ge=0, le=100)) -> dict:
    """The ledger's record of a task, its current round and its last ``recent`` rounds."""
    rec, current, rounds = await ledger_snapshot(request.app.state.service.ledger, task, recent)
    return {"task": rec, "round": current, "recent": rounds, "now_ms": now_ms()}


async def ledger_snapshot(ledger: Ledger, task: str, recent: int) -> tuple[dict, dict, list[dict]]:
    """``status_view.snapshot`` for a route: a bad task name is 400, a refusal its HTTP error, no ledger 503."""
    if not NAME_RE.fullmatch(task):
        raise api_error(400, "INVALID_ARGUMENT", f"task {task!r} is not a valid name")
    try:
        return await asyncio.to_thread(snapshot, ledger, task, recent)
    except ContractError as exc:
        raise contract_http_error(exc.code, exc.message) from exc
    except LedgerUnavailable as exc:
        raise api_error(503, "LEDGER_UNAVAILABLE", str(exc)) from exc
