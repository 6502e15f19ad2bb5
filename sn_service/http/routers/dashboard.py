"""The dashboard: a live page of each task's sites, rounds and training metrics.

``GET /dashboard`` serves a static page (``sn_service/http/dashboard/``) that
polls ``GET /v1/dashboard/{task}``. That endpoint reads only what this site
can know: the ledger's records of the task and its rounds, this service's own
syncs, and each registered site's training metrics from that site's peer API
(``GET /v1/metrics-history/{task}``), fetched with a short timeout so a site
that does not answer shows as unreachable and never holds up the page.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from sn_service.contract import closable
from sn_service.http.errors import api_error
from sn_service.http.routers.status import ledger_snapshot
from sn_service.peer_client import PeerRequestError
from sn_service.round_protocol import now_ms
from sn_service.service import SwarmNetworkService

STATIC_DIR = Path(__file__).resolve().parents[1] / "dashboard"
STATIC_FILES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
PEER_TIMEOUT_S = 1.5

router = APIRouter(tags=["dashboard"])


@router.get("/dashboard", include_in_schema=False)
async def page() -> FileResponse:
    """The dashboard page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")


@router.get("/dashboard/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    """The page's script and style sheet."""
    if name not in STATIC_FILES:
        raise api_error(404, "NOT_FOUND", f"the dashboard has no file {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name], headers={"cache-control": "no-cache"})


def checked_history(body: object) -> list[dict]:
    """A peer's metric history, kept only if it is the shape we serve: rounds of finite numbers."""
    rounds = body.get("rounds") if isinstance(body, dict) else None
    if not isinstance(rounds, list):
        raise ValueError("the answer has no list of rounds")
    out = []
    for entry in rounds:
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        if not isinstance(metrics, dict) or type(entry.get("round")) is not int:
            raise ValueError("a round entry is not {round, metrics}")
        numbers = {
            str(k)[:64]: float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        }
        ts = entry.get("ts_ms")
        out.append({"round": entry["round"], "metrics": numbers, "ts_ms": ts if type(ts) is int else None})
    return out


async def _site_metrics(
    service: SwarmNetworkService, task: str, nodes: dict, last: int, known: dict[tuple[str, str], list]
) -> dict[str, dict]:
    """Every registered site's metric history.

    A site that does not answer is marked unreachable, with the history it
    last gave (``known``), so its curve does not vanish while it is down.
    """

    async def one(node: str, info: dict) -> dict:
        if node == service.site:
            return {"reachable": True, "error": None, "rounds": service.training_metrics_history(task, last)["rounds"]}
        try:
            body = await asyncio.to_thread(
                service.peers.get_json,
                info["endpoint"],
                f"/v1/metrics-history/{task}?last={last}",
                info.get("identity"),
                PEER_TIMEOUT_S,
            )
            rounds = checked_history(body)
            known[(task, node)] = rounds
            return {"reachable": True, "error": None, "rounds": rounds}
        except (PeerRequestError, ValueError) as exc:
            return {"reachable": False, "error": str(exc)[:300], "rounds": known.get((task, node), [])}

    names = sorted(nodes)
    answers = await asyncio.gather(*(one(n, nodes[n]) for n in names))
    return dict(zip(names, answers, strict=True))


def _known_histories(request: Request) -> dict[tuple[str, str], list]:
    """Each (task, site)'s last metric history fetched, kept with the app."""
    if not hasattr(request.app.state, "dashboard_histories"):
        request.app.state.dashboard_histories = {}
    return request.app.state.dashboard_histories


@router.get("/v1/dashboard/{task}")
async def dashboard_data(
    task: str,
    request: Request,
    recent: int = Query(default=20, ge=0, le=200),
    rounds: int = Query(default=500, ge=1, le=5000),
) -> dict:
    """Everything the dashboard shows of a task: ledger records, this site's syncs, every site's metrics.

    ``recent``: how many finished rounds to list; ``rounds``: how many
    rounds of metrics to chart.
    """
    service: SwarmNetworkService = request.app.state.service
    rec, current, finished = await ledger_snapshot(service.ledger, task, recent)
    now = now_ms()
    close = None
    if current["status"] == "open":
        ok, why = closable(rec, current, now)
        close = {"closable": ok, "why": why}
    spec = {k: v for k, v in rec["spec"].items() if k != "layout"}  # the layout can be large; the page needs no more
    spec["tensors"] = len(rec["spec"]["layout"].split(";"))
    syncs = [j.as_dict() for j in list(service.jobs.values()) if j.task == task and j.state == "running"]
    return {
        "site": service.site,
        "joined": service.task_spec(task) is not None,
        "now_ms": now,
        "task": {**rec, "spec": spec},
        "round": current,
        "close": close,
        "recent": finished[::-1],
        "syncs": syncs,
        "metrics": await _site_metrics(service, task, rec["nodes"], rounds, _known_histories(request)),
    }
