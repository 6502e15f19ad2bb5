"""Mutual TLS for the peer API: who is on the other end of a connection.

uvicorn does not put the client certificate into the ASGI scope, so a small
HTTP protocol subclass records each TLS connection's peer certificate by the
client's (address, port), which the request's scope does carry.
"""

from __future__ import annotations

import asyncio
import ssl

from cryptography import x509
from fastapi import Request
from uvicorn.protocols.http.h11_impl import H11Protocol

_PEER_CERTS: dict[tuple[str, int], bytes] = {}


class _RecordsPeerCert:
    """Mixed into a uvicorn HTTP protocol: remembers each connection's client certificate."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Records the TLS peer certificate (DER) of a new connection."""
        super().connection_made(transport)  # type: ignore[misc]
        ssl_object = transport.get_extra_info("ssl_object")
        peer = transport.get_extra_info("peername")
        self._peer_key = (peer[0], peer[1]) if peer else None
        if ssl_object is not None and self._peer_key is not None:
            der = ssl_object.getpeercert(True)
            if der:
                _PEER_CERTS[self._peer_key] = der

    def connection_lost(self, exc: Exception | None) -> None:
        """Forgets the connection's certificate."""
        if getattr(self, "_peer_key", None) is not None:
            _PEER_CERTS.pop(self._peer_key, None)
        super().connection_lost(exc)  # type: ignore[misc]


class PeerCertProtocol(_RecordsPeerCert, H11Protocol):
    """uvicorn's h11 protocol (pure Python), remembering each connection's client certificate."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed
    FastPeerCertProtocol: type = PeerCertProtocol
else:

    class FastPeerCertProtocol(_RecordsPeerCert, HttpToolsProtocol):  # type: ignore[no-redef]
        """uvicorn's httptools protocol (a C parser), remembering each connection's client certificate.

        Receiving a 190 MB body over mutual TLS, h11 took 724-840 ms where this took 596-716 ms (0.75-0.86x;
        ``benchmarks/bench_http_body.py``, 2 shared cores): a leader's hand-over of a merged model is such a
        body.
        """


def peer_certificate(request: Request) -> x509.Certificate | None:
    """The verified client certificate of the request's connection, if any."""
    if request.client is None:
        return None
    der = _PEER_CERTS.get((request.client.host, request.client.port))
    return x509.load_der_x509_certificate(der) if der else None


def server_ssl_options(cert: str, key: str, ca: str) -> dict:
    """uvicorn.Config options for a TLS listener that requires a client certificate from the CA."""
    return {"ssl_certfile": cert, "ssl_keyfile": key, "ssl_ca_certs": ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
