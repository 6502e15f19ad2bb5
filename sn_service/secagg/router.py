"""The peer API of secure aggregation: the round's leader asks a site for its reveals."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from sn_service.http.errors import api_error
from sn_service.http.routers.peer import registered_peer
from sn_service.http.schemas import ErrorBody, Strict
from sn_service.ledger.base import ContractError
from sn_service.secagg.crypto import SecAggError
from swarm_wire.names import NAME_PATTERN


class RevealRequest(Strict):
    """Which round, and the envelopes the survivors sealed to the asked site (from their shares blobs)."""

    task: str = Field(pattern=NAME_PATTERN)
    round: int = Field(ge=0)
    envelopes: dict[str, str] = Field(max_length=10_000)


router = APIRouter(
    prefix="/v1/secagg",
    tags=["peer"],
    dependencies=[Depends(registered_peer)],
    responses={400: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)


@router.post("/reveal")
async def reveal(body: RevealRequest, request: Request) -> dict:
    """This site's shares of the survivors' self masks and its pairwise seeds with the dropped.

    Only for a round the ledger shows sealed by its current leader, to that
    leader (over mutual TLS); never both kinds for one site (the Bonawitz rule).
    """
    service = request.app.state.service
    try:
        return await asyncio.to_thread(
            service.driver.secure.answer, body.task, body.round, request.state.peer_identity, dict(body.envelopes)
        )
    except (SecAggError, ContractError) as exc:
        raise api_error(400, "NO_REVEAL", str(exc)) from None
