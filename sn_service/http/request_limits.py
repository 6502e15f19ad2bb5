"""Limits on what one HTTP request may cost a service: body size, body time, concurrent uploads.

A service must survive a careless or hostile caller on its own machine (the
callback API) or a registered peer: a body of any size, a body that never
finishes, thousands of abandoned uploads. ``RequestLimits`` is a pure ASGI
middleware in front of every route:

- a body larger than its route allows is refused with 413 as soon as that is
  known (from ``Content-Length``, else while it streams), without reading
  the rest; JSON routes allow ``max_json_bytes``, the blob uploads get a cap
  from their task's model, which their router enforces;
- a body that stalls for ``idle_timeout_s``, or that arrives slower than
  ``min_bytes_per_s`` on average after the first ``idle_timeout_s``, is
  answered with 408 and the connection is closed;
- at most ``max_uploads`` blob bodies are read at once; more get 503 with
  ``Retry-After`` (a site's callback uploads one at a time);
- a client that goes away mid-body is one log line, not a traceback.

Every refusal is the API's usual JSON error and echoes nothing of the input.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

log = logging.getLogger("sn_service.requests")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Routes whose body is a model's weights: their router caps it by the task's model size.
BLOB_UPLOADS = frozenset({("POST", "/v1/local/syncs"), ("POST", "/v1/local/checkin")})
# And POSTs under this prefix: a leader handing its merged model over (``/v1/merged/<sha256>``).
BLOB_UPLOAD_PREFIX = "/v1/merged/"


def is_blob_upload(method: str, path: str) -> bool:
    """Whether the route's body is a model's weights (capped by its router, counted among the uploads)."""
    return (method, path) in BLOB_UPLOADS or (method == "POST" and path.startswith(BLOB_UPLOAD_PREFIX))


def body_error(status: int, code: str, message: str, close: bool = True) -> HTTPException:
    """An API error raised while a body is read; the connection is closed after it (the rest is not read)."""
    headers = {"Connection": "close"} if close else None
    return HTTPException(status_code=status, detail={"error": code, "message": message}, headers=headers)


class RequestLimits:
    """ASGI middleware enforcing body size and time limits (see the module docstring).

    Args:
        app: the ASGI app.
        max_json_bytes: the largest body of a route that is not a blob upload.
        idle_timeout_s: the longest wait for the next piece of a body.
        min_bytes_per_s: past ``idle_timeout_s``, a body must average at least this rate.
        max_uploads: blob uploads read at the same time.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_json_bytes: int = 4 << 20,
        idle_timeout_s: float = 30.0,
        min_bytes_per_s: float = 256 * 1024,
        max_uploads: int = 4,
    ) -> None:
        self.app = app
        self.max_json_bytes = max_json_bytes
        self.idle_timeout_s = idle_timeout_s
        self.min_bytes_per_s = min_bytes_per_s
        self.max_uploads = max_uploads
        self.uploads = 0
        self.abandoned = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_upload = is_blob_upload(scope["method"], scope["path"])
        limit = None if is_upload else self.max_json_bytes
        declared = _content_length(scope)
        if limit is not None and declared is not None and declared > limit:
            await _respond(
                send, 413, "TOO_LARGE", f"the body has {declared} bytes; at most {limit} are allowed on {scope['path']}"
            )
            return
        if is_upload and self.uploads >= self.max_uploads:
            await _respond(
                send,
                503,
                "BUSY",
                f"{self.uploads} uploads are being read already; retry in a second",
                {"Retry-After": "1"},
            )
            return
        body = _BodyReader(
            receive, limit, self.idle_timeout_s, self.min_bytes_per_s, lambda: self._gone(scope, declared)
        )
        if is_upload:
            self.uploads += 1
        try:
            await self.app(scope, body.receive, send)
        except ClientDisconnect:
            pass  # logged once by _gone; nobody is left to answer
        finally:
            if is_upload:
                self.uploads -= 1

    def _gone(self, scope: Scope, declared: int | None) -> None:
        self.abandoned += 1
        log.warning(
            "%s %s: the client went away before its body was complete (%s bytes declared); dropped",
            scope["method"],
            scope["path"],
            declared if declared is not None else "no length",
        )


class _BodyReader:
    """Wraps ASGI ``receive``: counts, caps and times the request body while it is incomplete."""

    def __init__(
        self,
        receive: Receive,
        limit: int | None,
        idle_timeout_s: float,
        min_bytes_per_s: float,
        on_gone: Callable[[], None],
    ) -> None:
        self._receive = receive
        self._on_gone = on_gone
        self.limit = limit
        self.idle_timeout_s = idle_timeout_s
        self.min_bytes_per_s = min_bytes_per_s
        self.received = 0
        self.complete = False
        self.started = time.monotonic()

    async def receive(self) -> Message:
        if self.complete:
            # After the body, receive() only waits for a disconnect (streamed responses): no limits.
            return await self._receive()
        try:
            async with asyncio.timeout(self.idle_timeout_s):  # no extra task per message, unlike wait_for
                message = await self._receive()
        except TimeoutError:
            raise body_error(
                408,
                "BODY_TIMEOUT",
                f"no body data for {self.idle_timeout_s:g} s after {self.received} bytes; send the whole body at once",
            ) from None
        if message["type"] == "http.disconnect":
            self.complete = True
            self._on_gone()
            raise ClientDisconnect()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.limit is not None and self.received > self.limit:
                raise body_error(413, "TOO_LARGE", f"the body passed {self.limit} bytes, the most allowed here")
            elapsed = time.monotonic() - self.started
            if elapsed > self.idle_timeout_s and self.received < self.min_bytes_per_s * elapsed:
                raise body_error(
                    408,
                    "BODY_TIMEOUT",
                    f"the body arrives too slowly: {self.received} bytes in {elapsed:.0f} s "
                    f"(at least {self.min_bytes_per_s / 1024:.0f} KiB/s are needed)",
                )
            if not message.get("more_body", False):
                self.complete = True
        return message


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _respond(send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
    """Sends a JSON error before the app sees the request; closes the connection (its body is not read)."""
    body = json.dumps({"detail": {"error": code, "message": message}}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
