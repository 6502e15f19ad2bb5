"""Fetching from other sites' services: blobs verified by sha256, small JSON documents, wake-up calls.

The transport is the standard library's ``http.client`` over a small pool of
kept-alive connections per peer: it reads a multi-megabyte body with a few
large socket reads, several times faster than a pure-Python HTTP parser
(docs/benchmarks.md), and needs no dependency.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

from sn_service.blob_store import BlobRefused, BlobStore, StoreFull
from swarm_wire import safetensors_files, serialization

if TYPE_CHECKING:
    from sn_service.tls.identity import PeerTLS

STREAM_CHUNK_BYTES = 8 << 20  # one read of a streamed blob: a stalled peer times out on each


class BlobFetchError(Exception):
    """A blob could not be had from a peer, or its bytes did not match its hash."""

    def __init__(self, endpoint: str, sha256: str, reason: str, tampered: bool = False) -> None:
        super().__init__(f"blob {sha256[:12]}... from {endpoint}: {reason}")
        self.endpoint = endpoint
        self.sha256 = sha256
        self.reason = reason
        self.tampered = tampered


class PeerRequestError(Exception):
    """A JSON document could not be had from a peer: unreachable, refused, too big, not JSON, wrong server."""

    def __init__(self, endpoint: str, path: str, reason: str) -> None:
        super().__init__(f"{path} from {endpoint}: {reason}")
        self.endpoint = endpoint
        self.path = path
        self.reason = reason


class _TransportError(Exception):
    """A request failed on the wire; ``kind`` names how, as httpx would (ConnectTimeout, ReadError, ...)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class PeerClient:
    """Downloads blobs by hash from peers' ``GET /v1/blobs/{sha256}``, and small JSON documents.

    Args:
        tls: this site's certificate and key and the CAs to trust (``SiteTLS``
            or ``MSPTLS``); None for plain HTTP. Who a server is comes from
            ``tls.identity_of`` and is checked against the ledger.
        timeout_s: per-request timeout: the longest wait for each piece of an
            answer. A peer serves a stored file, so a healthy one answers in
            well under a second even when busy; a peer cut off the network on a
            kept-alive connection is found out only by this timeout.
        connect_timeout_s: the longest wait for a connection, within ``timeout_s``:
            a peer cut off the network drops packets rather than refusing.
        min_rate_bytes_per_s: a whole transfer of N bytes may take ``timeout_s`` + N / this rate
            (``transfer_timeout_s``): the time allowed grows with the blob, while each read still
            gives up after ``timeout_s`` without data.
    """

    MAX_IDLE_PER_PEER = 4

    def __init__(
        self,
        tls: PeerTLS | None = None,
        timeout_s: float = 20.0,
        connect_timeout_s: float = 10.0,
        min_rate_bytes_per_s: float = 10e6,
    ) -> None:
        self.tls = tls
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.min_rate_bytes_per_s = min_rate_bytes_per_s
        self._context: ssl.SSLContext | None = None
        if tls is not None:
            self._context = ssl.create_default_context(cafile=str(tls.ca))
            self._context.check_hostname = tls.check_hostname
            self._context.load_cert_chain(str(tls.cert), str(tls.key))
            if hasattr(tls, "trust_in"):  # MSPTLS: organisations added later are trusted too
                tls.trust_in(self._context)
        self._idle: dict[str, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ requests

    def fetch(
        self,
        endpoint: str,
        sha256: str,
        max_bytes: int,
        expected_identity: str | None = None,
        timeout_s: float | None = None,
    ) -> bytes:
        """The blob's bytes; raises BlobFetchError when unreachable, missing, too big or tampered.

        Over mutual TLS, the server's certificate must also be that of
        ``expected_identity``, the node the ledger says holds the blob.
        ``timeout_s`` (default: the client's) bounds connecting and each wait for data.
        """
        if self._unverifiable(expected_identity):
            raise BlobFetchError(endpoint, sha256, "no ledger identity to check the server's certificate against")
        digest = hashlib.sha256()  # of the body, hashed as it arrives
        try:
            status, body = self._request(
                "GET",
                endpoint,
                f"/v1/blobs/{sha256}",
                expected_identity,
                timeout_s or self.timeout_s,
                max_bytes,
                digest=digest,
            )
        except _TransportError as exc:
            raise BlobFetchError(endpoint, sha256, str(exc)) from None
        except _WrongServer as exc:
            raise BlobFetchError(endpoint, sha256, str(exc)) from None
        if body is None:
            raise BlobFetchError(endpoint, sha256, f"larger than the {max_bytes} bytes allowed")
        if status != 200:
            raise BlobFetchError(endpoint, sha256, f"HTTP {status}: {bytes(body[:200]).decode(errors='replace')}")
        if digest.hexdigest() != sha256:
            raise BlobFetchError(endpoint, sha256, "its bytes do not match the hash on the ledger", tampered=True)
        return body

    def transfer_timeout_s(self, nbytes: int) -> float:
        """How long a transfer of ``nbytes`` may take in all: ``timeout_s`` plus the bytes at the minimum rate."""
        return self.timeout_s + nbytes / self.min_rate_bytes_per_s

    def fetch_to_store(
        self,
        endpoint: str,
        sha256: str,
        max_bytes: int,
        store: BlobStore,
        expected_identity: str | None = None,
        timeout_s: float | None = None,
        total_s: float | None = None,
        check: Callable[[Path], object] | None = None,
    ) -> int:
        """Streams the blob into ``store`` (hashed as it arrives, never whole in memory); returns its size.

        Refused exactly as ``fetch`` refuses (BlobFetchError): unreachable, missing, larger than
        ``max_bytes`` (from ``Content-Length`` or while streaming), truncated, or tampered (not the bytes
        of ``sha256``); ``check(path)`` vets the complete file (e.g. ``check_file`` against the layout)
        and what it raises passes through. Whatever fails, nothing is left in the store.
        ``timeout_s`` (default: the client's) bounds connecting and each read; ``total_s`` (default
        ``transfer_timeout_s(max_bytes)``) the whole transfer, so a peer trickling bytes also gives up.
        """
        if self._unverifiable(expected_identity):
            raise BlobFetchError(endpoint, sha256, "no ledger identity to check the server's certificate against")
        per_read = timeout_s or self.timeout_s
        total = total_s or self.transfer_timeout_s(max_bytes)
        give_up = time.monotonic() + total
        try:
            conn, resp = self._open("GET", endpoint, f"/v1/blobs/{sha256}", expected_identity, per_read)
        except (_TransportError, _WrongServer) as exc:
            raise BlobFetchError(endpoint, sha256, str(exc)) from None
        complete = False
        try:
            if resp.status != 200:
                body = resp.read(1 << 16)
                raise BlobFetchError(endpoint, sha256, f"HTTP {resp.status}: {body[:200].decode(errors='replace')}")
            length = resp.getheader("content-length")
            declared = int(length) if length is not None and length.isdigit() else None
            if declared is not None and declared > max_bytes:
                raise BlobFetchError(endpoint, sha256, f"larger than the {max_bytes} bytes allowed")
            with store.incoming(max_bytes, sha256, size_hint=declared) as blob:
                while True:
                    if time.monotonic() > give_up:
                        raise _TransportError(
                            "ReadTimeout",
                            f"the transfer took more than {total:.0f} s ({blob.size} bytes by then; at least "
                            f"{self.min_rate_bytes_per_s / 1e6:g} MB/s are needed)",
                        )
                    # One socket read at a time (read1), each bounded by the time left: a peer that trickles
                    # bytes is stopped at the transfer's bound, one that stalls at the read timeout.
                    resp.swarm_socket.settimeout(max(0.05, min(per_read, give_up - time.monotonic())))  # type: ignore[attr-defined]
                    chunk = resp.read1(STREAM_CHUNK_BYTES)
                    if not chunk:
                        break
                    blob.write(chunk)
                    del chunk
                blob.commit(check, expected_size=declared)
            complete = True
            return blob.size
        except BlobRefused as exc:
            if exc.code == "TOO_LARGE":
                raise BlobFetchError(endpoint, sha256, f"larger than the {max_bytes} bytes allowed") from None
            if exc.code == "HASH_MISMATCH":
                raise BlobFetchError(
                    endpoint, sha256, "its bytes do not match the hash on the ledger", tampered=True
                ) from None
            raise BlobFetchError(endpoint, sha256, f"truncated: {exc}") from None
        except _TransportError as exc:
            raise BlobFetchError(endpoint, sha256, str(exc)) from None
        except TimeoutError as exc:
            raise BlobFetchError(endpoint, sha256, f"ReadTimeout: {exc or 'timed out'}") from None
        except StoreFull:
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise BlobFetchError(endpoint, sha256, f"ReadError: {type(exc).__name__}: {exc}") from None
        finally:
            if complete and not resp.will_close and resp.isclosed():
                self._release(endpoint, conn)
            else:
                conn.close()

    def post_file(
        self,
        endpoint: str,
        path: str,
        source: str | Path,
        expected_identity: str | None = None,
        timeout_s: float = 2.0,
    ) -> int:
        """POSTs the file ``source`` as the body, read chunk by chunk; returns the status. Raises PeerRequestError.

        Like ``post``: over mutual TLS the server must be ``expected_identity`` before a byte is sent.
        ``timeout_s`` bounds connecting, each write and the wait for the answer.
        """
        if self._unverifiable(expected_identity):
            raise PeerRequestError(endpoint, path, "no ledger identity to check the server's certificate against")
        with open(source, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            try:
                conn, resp = self._open("POST", endpoint, path, expected_identity, timeout_s, fh, size=size)
            except (_TransportError, _WrongServer) as exc:
                raise PeerRequestError(endpoint, path, str(exc)) from None
        try:
            resp.read(1 << 16)
            return resp.status
        except (OSError, http.client.HTTPException) as exc:
            raise PeerRequestError(endpoint, path, f"ReadError: {type(exc).__name__}: {exc}") from None
        finally:
            conn.close()

    def get_json(
        self,
        endpoint: str,
        path: str,
        expected_identity: str | None = None,
        timeout_s: float = 2.0,
        max_bytes: int = 1 << 20,
    ) -> Any:
        """A peer's JSON answer to ``GET path``; raises PeerRequestError.

        Verified like ``fetch``: over mutual TLS the server's certificate
        must be that of ``expected_identity``, the node the ledger names.
        """
        return self._json_request("GET", endpoint, path, expected_identity, timeout_s, max_bytes)

    def post(
        self,
        endpoint: str,
        path: str,
        expected_identity: str | None = None,
        timeout_s: float = 2.0,
        body: bytes | None = None,
    ) -> int:
        """POSTs ``body`` (none: a wake-up call); returns the status. Raises PeerRequestError.

        Over mutual TLS the server's certificate must be that of ``expected_identity``, checked
        before the body is sent: bytes go only to the node the ledger names.
        """
        if self._unverifiable(expected_identity):
            raise PeerRequestError(endpoint, path, "no ledger identity to check the server's certificate against")
        try:
            status, _ = self._request("POST", endpoint, path, expected_identity, timeout_s, 1 << 16, body)
        except (_TransportError, _WrongServer) as exc:
            raise PeerRequestError(endpoint, path, str(exc)) from None
        return status

    def post_json(
        self,
        endpoint: str,
        path: str,
        payload: Any,
        expected_identity: str | None = None,
        timeout_s: float = 10.0,
        max_bytes: int = 1 << 20,
    ) -> Any:
        """POSTs ``payload`` as JSON; returns the peer's JSON answer (200 only). Verified like ``get_json``."""
        data = json.dumps(payload).encode()
        return self._json_request("POST", endpoint, path, expected_identity, timeout_s, max_bytes, data)

    def _json_request(
        self,
        method: str,
        endpoint: str,
        path: str,
        expected_identity: str | None,
        timeout_s: float,
        max_bytes: int,
        payload: bytes = b"",
    ) -> Any:
        """The JSON answer of a 200; anything else raises PeerRequestError."""
        if self._unverifiable(expected_identity):
            raise PeerRequestError(endpoint, path, "no ledger identity to check the server's certificate against")
        try:
            status, body = self._request(
                method, endpoint, path, expected_identity, timeout_s, max_bytes, payload, "application/json"
            )
        except (_TransportError, _WrongServer) as exc:
            raise PeerRequestError(endpoint, path, str(exc)) from None
        if body is None:
            raise PeerRequestError(endpoint, path, f"larger than the {max_bytes} bytes allowed")
        if status != 200:
            raise PeerRequestError(endpoint, path, f"HTTP {status}: {bytes(body[:200]).decode(errors='replace')}")
        try:
            return json.loads(bytes(body) if isinstance(body, memoryview) else body)
        except ValueError as exc:
            raise PeerRequestError(endpoint, path, f"the answer is not JSON: {exc}") from exc

    # ------------------------------------------------------------------ transport

    def _request(
        self,
        method: str,
        endpoint: str,
        path: str,
        expected: str | None,
        timeout_s: float,
        max_bytes: int,
        payload: bytes | None = None,
        content_type: str | None = None,
        digest: hashlib._Hash | None = None,
    ) -> tuple[int, bytes | memoryview | None]:
        """(status, body) — body None if it passed ``max_bytes`` (the connection is then dropped).

        ``digest``: updated with the body's bytes as they are read (a big body's, while the rest arrives).

        A body of ``serialization.BIG_BUFFER_BYTES`` or more comes as a read-only view of a numpy buffer
        (``serialization.new_buffer``), read straight into it: no zeroed buffer first, no copy after.
        """
        conn, resp = self._open(method, endpoint, path, expected, timeout_s, payload, content_type)
        try:
            length = resp.getheader("content-length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                conn.close()
                return resp.status, None
            if length is not None and length.isdigit() and int(length) >= serialization.BIG_BUFFER_BYTES:
                body = safetensors_files.read_whole(resp, int(length), digest)
                if len(body) != int(length):  # readinto returns what came before the peer closed: cut short
                    raise http.client.IncompleteRead(b"", int(length) - len(body))
            else:
                body = resp.read(max_bytes + 1)
                if digest is not None:
                    digest.update(body)
            if len(body) > max_bytes:
                conn.close()
                return resp.status, None
            if resp.will_close or not resp.isclosed():
                conn.close()
            else:
                self._release(endpoint, conn)
            return resp.status, body
        except TimeoutError as exc:
            conn.close()
            raise _TransportError("ReadTimeout", str(exc) or "timed out") from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _TransportError("ReadError", f"{type(exc).__name__}: {exc}") from None
        except BaseException:
            conn.close()
            raise

    def _open(
        self,
        method: str,
        endpoint: str,
        path: str,
        expected: str | None,
        timeout_s: float,
        payload: bytes | BinaryIO | None = None,
        content_type: str | None = None,
        size: int | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Sends the request and reads the answer's head; the caller reads the body and closes or releases.

        ``payload``: bytes, or an open file of ``size`` bytes sent a megabyte at a time.
        """
        url = urlsplit(endpoint).path.rstrip("/") + path
        body_size = size if size is not None else len(payload or b"")  # type: ignore[arg-type]
        headers = {"Content-Length": str(body_size)} if method == "POST" else {}
        if payload and content_type:
            headers["Content-Type"] = content_type

        def send(conn: http.client.HTTPConnection) -> http.client.HTTPResponse:
            conn.sock.settimeout(timeout_s)  # type: ignore[union-attr]
            wrong = self._wrong_server(conn, expected)
            if wrong:  # before any byte of the body leaves
                raise _WrongServer(wrong)
            if hasattr(payload, "seek"):
                payload.seek(0)  # type: ignore[union-attr]
            conn.blocksize = 1 << 20  # a file body goes out a megabyte per write, not 8 KiB
            conn.request(method, url, body=payload or None, headers=headers)
            sock = conn.sock  # a response that closes its connection takes the socket away from conn
            resp = conn.getresponse()
            resp.swarm_socket = sock  # type: ignore[attr-defined]
            return resp

        conn, reused = self._connection(endpoint, timeout_s)
        try:
            try:
                resp = send(conn)
            except (ConnectionError, http.client.RemoteDisconnected, BrokenPipeError) as exc:
                if not reused:
                    raise _TransportError("ReadError", str(exc) or type(exc).__name__) from None
                # A kept-alive connection the server closed meanwhile: once more on a new one.
                conn.close()
                conn, reused = self._connection(endpoint, timeout_s, fresh=True)
                resp = send(conn)
            return conn, resp
        except TimeoutError as exc:
            conn.close()
            raise _TransportError("ReadTimeout", str(exc) or "timed out") from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if isinstance(exc, _TransportError):
                raise
            raise _TransportError("ReadError", f"{type(exc).__name__}: {exc}") from None
        except BaseException:
            conn.close()
            raise

    def _connection(
        self, endpoint: str, timeout_s: float, fresh: bool = False
    ) -> tuple[http.client.HTTPConnection, bool]:
        """An idle kept-alive connection to ``endpoint`` (reused: True), else a new one, connected."""
        if not fresh:
            with self._lock:
                idle = self._idle.get(endpoint)
                if idle:
                    return idle.pop(), True
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _TransportError("ConnectError", f"{endpoint!r} is not an http(s)://host:port address")
        connect_s = min(timeout_s, self.connect_timeout_s)
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            if self._context is None:
                raise _TransportError("ConnectError", f"{endpoint} needs TLS, and this site has no TLS identity")
            conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=connect_s,
                                               context=self._context)  # fmt: skip
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=connect_s)
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise _TransportError("ConnectTimeout", str(exc) or "timed out") from None
        except ssl.SSLError as exc:
            conn.close()
            raise _TransportError("ConnectError", f"TLS handshake failed: {exc}") from None
        except OSError as exc:
            conn.close()
            raise _TransportError("ConnectError", f"{type(exc).__name__}: {exc}") from None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
        return conn, False

    def _release(self, endpoint: str, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(endpoint, [])
            if len(idle) < self.MAX_IDLE_PER_PEER:
                idle.append(conn)
                return
        conn.close()

    def _unverifiable(self, expected_identity: str | None) -> bool:
        # Without host-name checks (MSP certificates), the ledger's identity is the only check of the server.
        return self.tls is not None and not self.tls.check_hostname and expected_identity is None

    def _server_identity(self, conn: http.client.HTTPConnection) -> str | None:
        """The identity in the TLS server certificate of ``conn``, or None without one."""
        from cryptography import x509

        assert self.tls is not None
        sock = conn.sock
        der = sock.getpeercert(True) if isinstance(sock, ssl.SSLSocket) else None
        return self.tls.identity_of(x509.load_der_x509_certificate(der)) if der else None

    def _wrong_server(self, conn: http.client.HTTPConnection, expected: str | None) -> str | None:
        """Over mutual TLS, why the server is not the node ``expected`` the ledger names; None when it is."""
        if self.tls is None or expected is None:
            return None
        found = self._server_identity(conn)
        if found is None:
            return "no server certificate on a TLS connection"
        if found != expected:
            return f"the server is {found}, not {expected} as the ledger says"
        return None

    def close(self) -> None:
        """Closes the kept-alive connections."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


class _WrongServer(Exception):
    """The TLS server is not the node the ledger names."""
