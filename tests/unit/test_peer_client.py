"""PeerClient: a peer that drops connection attempts is reported within the connect timeout."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from sn_service.peer_client import BlobFetchError, PeerClient, PeerRequestError


@pytest.fixture
def silent_port():
    """A loopback port whose accept queue is full: further connection attempts get no answer,
    like a host cut off the network (packets dropped, nothing refused)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        fillers.append(sock)
    time.sleep(0.2)
    yield port
    for sock in [*fillers, server]:
        sock.close()


def test_fetch_from_a_peer_that_drops_connections_fails_at_the_connect_timeout(silent_port):
    client = PeerClient(timeout_s=30.0, connect_timeout_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(BlobFetchError) as info:
        client.fetch(f"http://127.0.0.1:{silent_port}", "0" * 64, 1024)
    assert time.monotonic() - t0 < 10.0  # not the 30 s read timeout
    assert "ConnectTimeout" in info.value.reason


def test_json_from_a_peer_that_drops_connections_fails_at_the_connect_timeout(silent_port):
    client = PeerClient(connect_timeout_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(PeerRequestError) as info:
        client.get_json(f"http://127.0.0.1:{silent_port}", "/v1/status", timeout_s=30.0)
    assert time.monotonic() - t0 < 10.0
    assert "ConnectTimeout" in info.value.reason


def test_fetch_from_a_peer_that_accepts_but_never_answers_fails_at_the_timeout():
    """Like a peer cut off while a kept-alive connection to it is reused: the request goes out, nothing comes back."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    accepted = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(BlobFetchError) as info:
            PeerClient(timeout_s=0.5).fetch(f"http://127.0.0.1:{port}", "0" * 64, 1024)
        assert time.monotonic() - t0 < 10.0
        assert "ReadTimeout" in info.value.reason
    finally:
        for sock in [*accepted, server]:
            sock.close()
