"""The peer API: other sites fetch blobs by sha256, a round's leader hands its merge over, the training metrics."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from sn_service.http.blob_response import BlobResponse
from sn_service.http.errors import api_error
from sn_service.http.routers.local import read_body, stream_body
from sn_service.http.schemas import ErrorBody
from sn_service.round_protocol import HandoverRefused
from sn_service.tls.peer_tls import peer_certificate
from swarm_wire.names import NAME_PATTERN, NAME_RE

if TYPE_CHECKING:
    from sn_service.service import SwarmNetworkService


async def registered_peer(request: Request) -> None:
    """Over mutual TLS, refuses callers whose certificate is not a site registered in one of our tasks.

    The caller's identity is left in ``request.state.peer_identity`` for the route (None without TLS).
    """
    service = request.app.state.service
    request.state.peer_identity = None
    if service.tls is None:
        return
    cert = peer_certificate(request)
    if cert is None:
        raise api_error(403, "NO_CLIENT_CERTIFICATE", "the peer API answers only over mutual TLS")
    identity = service.tls.identity_of(cert)
    if not await asyncio.to_thread(service.is_registered_identity, identity):
        raise api_error(403, "UNKNOWN_SITE", f"{identity} is not a site registered in any task this site takes part in")
    request.state.peer_identity = identity


MEMORY_CHUNK_BYTES = 4 << 20  # a blob served from memory goes out in copies of this size, not whole

router = APIRouter(
    prefix="/v1",
    tags=["peer"],
    dependencies=[Depends(registered_peer)],
    responses={400: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}},
)


@router.get("/blobs/{sha256}", response_class=FileResponse)
async def get_blob(sha256: str, request: Request) -> Response:
    """Serves a stored blob; its name is its sha256, so the fetcher can verify it."""
    service = request.app.state.service
    store = service.store
    if not store.valid_sha(sha256):
        raise api_error(400, "INVALID_ARGUMENT", "the blob name must be 64 lowercase hex characters")
    held = service.driver.serving(sha256)  # before the file: it leaves this map only once the file is whole
    if held is not None:
        view = memoryview(held).cast("B")
        service.metrics.bytes_sent.inc(view.nbytes)

        async def chunks() -> AsyncIterator[bytes]:
            for begin in range(0, view.nbytes, MEMORY_CHUNK_BYTES):
                yield bytes(view[begin : begin + MEMORY_CHUNK_BYTES])

        return StreamingResponse(
            chunks(), media_type="application/octet-stream", headers={"content-length": str(view.nbytes)}
        )
    path = store.path(sha256)
    if not path.is_file():
        raise api_error(404, "NO_SUCH_BLOB", f"this site holds no blob {sha256}")
    service.metrics.bytes_sent.inc(path.stat().st_size)
    return BlobResponse(path, media_type="application/octet-stream")


@router.post("/merged/{sha256}", status_code=204, response_class=Response)
async def hand_over_merged(
    sha256: str,
    request: Request,
    task: str = Query(pattern=NAME_PATTERN),
    round_no: int = Query(ge=0, alias="round"),
) -> Response:
    """The round's leader hands over the merged model it is about to publish (the body, safetensors).

    Taken only from the node the ledger names as the round's leader (or publisher), only as the
    bytes of ``sha256``, and only as a model of the task's layout: the same checks as a fetch.
    A site that holds it already answers at once, without reading the body.
    """
    service = request.app.state.service
    if not service.store.valid_sha(sha256):
        raise api_error(400, "INVALID_ARGUMENT", "the blob name must be 64 lowercase hex characters")
    spec = service.task_spec(task)
    if spec is None:
        raise api_error(404, "NOT_JOINED", f"this site has not joined task {task!r}")
    if service.store.has(sha256):
        return Response(status_code=204)
    with service.driver.receiving(sha256) as arriving:  # a sync told of the publish meanwhile waits for it
        return await _take_handover(request, service, sha256, task, round_no, spec, arriving.add)


async def _take_handover(
    request: Request,
    service: SwarmNetworkService,
    sha256: str,
    task: str,
    round_no: int,
    spec: dict,
    on_chunk: Callable[[int], None],
) -> Response:
    """``hand_over_merged`` once the checks that need no body are passed."""
    if service.streams(task):  # a model too big for memory: the body goes to a temporary file of the store
        limit = service.max_blob_bytes(task)
        incoming = service.store.incoming(max_bytes=limit, sha256=sha256, size_hint=limit)
        await stream_body(request, incoming, limit, on_chunk)
        try:
            taken = await asyncio.to_thread(
                service.driver.accept_handover_file,
                task,
                round_no,
                sha256,
                incoming,
                spec["layout"],
                request.state.peer_identity,
            )
        except HandoverRefused as exc:
            service.metrics.rejected_blobs.labels(reason=exc.code.lower()).inc()
            raise api_error(exc.status, exc.code, str(exc)) from None
        finally:
            incoming.abort()  # a no-op once committed
        if taken:
            service.metrics.bytes_received.inc(incoming.size)
        return Response(status_code=204)
    digest = hashlib.sha256()
    data = await read_body(request, service.max_blob_bytes(task), on_chunk, digest)
    try:
        taken = await asyncio.to_thread(
            service.driver.accept_handover,
            task,
            round_no,
            sha256,
            data,
            spec["layout"],
            request.state.peer_identity,
            digest.hexdigest(),
        )
    except HandoverRefused as exc:
        service.metrics.rejected_blobs.labels(reason=exc.code.lower()).inc()
        raise api_error(exc.status, exc.code, str(exc)) from None
    if taken:
        service.metrics.bytes_received.inc(len(data))
    return Response(status_code=204)


@router.get("/metrics-history/{task}")
async def metrics_history(task: str, request: Request, last: int = Query(default=500, ge=1, le=5000)) -> dict:
    """This site's training metrics per round of ``task`` (its last ``last`` rounds), for the sites' dashboards."""
    service = request.app.state.service
    if not NAME_RE.fullmatch(task):
        raise api_error(400, "INVALID_ARGUMENT", f"task {task!r} is not a valid name")
    if service.task_spec(task) is None:
        raise api_error(404, "NOT_JOINED", f"this site has not joined task {task!r}")
    return service.training_metrics_history(task, last)


@router.post("/notify", status_code=204, response_class=Response)
async def notify(
    request: Request,
    task: str = Query(pattern=NAME_PATTERN),
    round_no: int = Query(ge=0, alias="round"),
) -> Response:
    """A peer changed a round of ``task`` (closed it, published its merge): re-read the ledger now.

    Only a hint: nothing is taken from it but the wake-up, so it needs no more trust than reaching the
    peer API; a site that is not woken finds the change at its next poll.
    """
    request.app.state.service.driver.wake(task)
    return Response(status_code=204)
