"""Fetching blobs from other sites' services, verified by sha256."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import httpx


class BlobFetchError(Exception):
    """A blob could not be had from a peer, or its bytes did not match its hash."""

    def __init__(self, endpoint: str, sha256: str, reason: str, tampered: bool = False) -> None:
        super().__init__(f"blob {sha256[:12]}... from {endpoint}: {reason}")
        self.endpoint = endpoint
        self.sha256 = sha256
        self.reason = reason
        self.tampered = tampered


@dataclass(frozen=True)
class TLSConfig:
    """Client side of mutual TLS: our certificate and key, and the swarm CA."""

    cert: str
    key: str
    ca: str


class PeerClient:
    """Downloads blobs by hash from peers' ``GET /v1/blobs/{sha256}``.

    Args:
        tls: client certificate and CA for mTLS; None for plain HTTP.
        timeout_s: per-request timeout.
    """

    def __init__(self, tls: TLSConfig | None = None, timeout_s: float = 60.0) -> None:
        if tls is not None:
            self._client = httpx.Client(timeout=timeout_s, verify=tls.ca, cert=(tls.cert, tls.key))
        else:
            self._client = httpx.Client(timeout=timeout_s)

    def fetch(self, endpoint: str, sha256: str, max_bytes: int) -> bytes:
        """The blob's bytes; raises BlobFetchError when unreachable, missing, too big or tampered."""
        url = f"{endpoint.rstrip('/')}/v1/blobs/{sha256}"
        try:
            with self._client.stream("GET", url) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise BlobFetchError(endpoint, sha256, f"HTTP {resp.status_code}: {resp.text[:200]}")
                chunks, total = [], 0
                for chunk in resp.iter_bytes():
                    total += len(chunk)
                    if total > max_bytes:
                        raise BlobFetchError(endpoint, sha256, f"larger than the {max_bytes} bytes allowed")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise BlobFetchError(endpoint, sha256, f"{type(exc).__name__}: {exc}") from exc
        data = b"".join(chunks)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobFetchError(endpoint, sha256, "its bytes do not match the hash on the ledger", tampered=True)
        return data

    def close(self) -> None:
        """Closes the connection pool."""
        self._client.close()
