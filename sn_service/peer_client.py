"""Fetching from other sites' services: blobs verified by sha256, small JSON documents."""

from __future__ import annotations

import hashlib
import json
import ssl
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from sn_service.identity import PeerTLS


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
    """

    def __init__(self, tls: PeerTLS | None = None, timeout_s: float = 20.0, connect_timeout_s: float = 10.0) -> None:
        self.tls = tls
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        if tls is not None:
            context = ssl.create_default_context(cafile=str(tls.ca))
            context.check_hostname = tls.check_hostname
            context.load_cert_chain(str(tls.cert), str(tls.key))
            if hasattr(tls, "trust_in"):  # MSPTLS: organisations added later are trusted too
                tls.trust_in(context)
            self._client = httpx.Client(timeout=timeout_s, verify=context)
        else:
            self._client = httpx.Client(timeout=timeout_s)

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
        url = f"{endpoint.rstrip('/')}/v1/blobs/{sha256}"
        if self._unverifiable(expected_identity):
            raise BlobFetchError(endpoint, sha256, "no ledger identity to check the server's certificate against")
        try:
            with self._client.stream("GET", url, timeout=self._timeout(timeout_s or self.timeout_s)) as resp:
                wrong = self._wrong_server(resp, expected_identity)
                if wrong:
                    raise BlobFetchError(endpoint, sha256, wrong)
                if resp.status_code != 200:
                    resp.read()
                    raise BlobFetchError(endpoint, sha256, f"HTTP {resp.status_code}: {resp.text[:200]}")
                data = self._read_capped(resp, max_bytes)
                if data is None:
                    raise BlobFetchError(endpoint, sha256, f"larger than the {max_bytes} bytes allowed")
        except httpx.HTTPError as exc:
            raise BlobFetchError(endpoint, sha256, f"{type(exc).__name__}: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobFetchError(endpoint, sha256, "its bytes do not match the hash on the ledger", tampered=True)
        return data

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
        url = f"{endpoint.rstrip('/')}{path}"
        if self._unverifiable(expected_identity):
            raise PeerRequestError(endpoint, path, "no ledger identity to check the server's certificate against")
        try:
            with self._client.stream("GET", url, timeout=self._timeout(timeout_s)) as resp:
                wrong = self._wrong_server(resp, expected_identity)
                if wrong:
                    raise PeerRequestError(endpoint, path, wrong)
                body = self._read_capped(resp, max_bytes)
                if body is None:
                    raise PeerRequestError(endpoint, path, f"larger than the {max_bytes} bytes allowed")
        except httpx.HTTPError as exc:
            raise PeerRequestError(endpoint, path, f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise PeerRequestError(endpoint, path, f"HTTP {resp.status_code}: {body[:200].decode(errors='replace')}")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise PeerRequestError(endpoint, path, f"the answer is not JSON: {exc}") from exc

    def _timeout(self, timeout_s: float) -> httpx.Timeout:
        return httpx.Timeout(timeout_s, connect=min(timeout_s, self.connect_timeout_s))

    def _unverifiable(self, expected_identity: str | None) -> bool:
        # Without host-name checks (MSP certificates), the ledger's identity is the only check of the server.
        return self.tls is not None and not self.tls.check_hostname and expected_identity is None

    def _server_identity(self, resp: httpx.Response) -> str | None:
        """The identity in the TLS server certificate of ``resp``'s connection, or None without one."""
        from cryptography import x509

        assert self.tls is not None
        stream = resp.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        der = ssl_object.getpeercert(True) if ssl_object is not None else None
        return self.tls.identity_of(x509.load_der_x509_certificate(der)) if der else None

    def _wrong_server(self, resp: httpx.Response, expected: str | None) -> str | None:
        """Over mutual TLS, why the server is not the node ``expected`` the ledger names; None when it is."""
        if self.tls is None or expected is None:
            return None
        found = self._server_identity(resp)
        if found is None:
            return "no server certificate on a TLS connection"
        if found != expected:
            return f"the server is {found}, not {expected} as the ledger says"
        return None

    @staticmethod
    def _read_capped(resp: httpx.Response, max_bytes: int) -> bytes | None:
        """The response body, or None as soon as it grows past ``max_bytes`` (the rest is not read)."""
        chunks, total = [], 0
        for chunk in resp.iter_bytes():
            total += len(chunk)
            if total > max_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Closes the connection pool."""
        self._client.close()
