"""PeerClient: a peer that drops connection attempts is reported within the connect timeout."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time

import pytest

from sn_service.blob_store import BlobStore
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


# ---------------------------------------------------------------------------- streamed fetches


class ScriptedPeer:
    """A loopback HTTP server that answers every request with ``respond(sock)`` (raw bytes, any pace)."""

    def __init__(self, respond) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.respond = respond
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.recv(65536)
            self.respond(conn)

    def close(self) -> None:
        for sock in [*self.conns, self.server]:
            sock.close()


def _head(length: int | None) -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Connection: close\r\n"
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n{size}\r\n".encode()


BLOB = bytes(range(256)) * 4000  # 1 MB
SHA = hashlib.sha256(BLOB).hexdigest()


def _fetch(respond, tmp_path, **kw):
    peer = ScriptedPeer(respond)
    store = BlobStore(tmp_path / "store")
    try:
        size = PeerClient(**kw).fetch_to_store(peer.url, SHA, len(BLOB), store)
        return store, size, None
    except BlobFetchError as exc:
        return store, None, exc
    finally:
        peer.close()


def _stored_files(store: BlobStore) -> list:
    return [p for p in store.root.rglob("*") if p.is_file()]


def test_a_streamed_fetch_stores_the_blob_under_its_hash(tmp_path):
    store, size, error = _fetch(lambda s: s.sendall(_head(len(BLOB)) + BLOB), tmp_path)
    assert error is None and size == len(BLOB) and store.get(SHA) == BLOB


@pytest.mark.parametrize(
    ("case", "respond", "reason"),
    [
        ("tampered", lambda s: s.sendall(_head(len(BLOB)) + BLOB[:-1] + b"x"), "do not match the hash"),
        ("declared too large", lambda s: s.sendall(_head(len(BLOB) + 1) + BLOB + b"x"), "larger than the"),
        (
            "too large, no length",
            lambda s: (s.sendall(_head(None) + BLOB + b"x"), s.shutdown(socket.SHUT_WR)),
            "larger than",
        ),
        ("truncated", lambda s: (s.sendall(_head(len(BLOB)) + BLOB[:1000]), s.shutdown(socket.SHUT_WR)), "truncated"),
        ("cut short, no length", lambda s: (s.sendall(_head(None) + BLOB[:1000]), s.shutdown(socket.SHUT_WR)), "match"),
        ("not found", lambda s: s.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}"), "HTTP 404"),
    ],
)
def test_a_refused_streamed_fetch_says_why_and_leaves_nothing_in_the_store(tmp_path, case, respond, reason):
    store, size, error = _fetch(respond, tmp_path)
    assert size is None and error is not None and reason in error.reason, (case, error)
    assert error.tampered == (case in ("tampered", "cut short, no length"))
    assert _stored_files(store) == []


def test_a_stalled_streamed_fetch_gives_up_after_the_read_timeout(tmp_path):
    def stall(sock):
        sock.sendall(_head(len(BLOB)) + BLOB[:1000])
        time.sleep(5)

    t0 = time.monotonic()
    store, _, error = _fetch(stall, tmp_path, timeout_s=0.5)
    assert error is not None and "ReadTimeout" in error.reason and time.monotonic() - t0 < 4
    assert _stored_files(store) == []


def test_a_trickling_peer_gives_up_when_the_transfer_takes_longer_than_its_size_allows(tmp_path):
    def trickle(sock):
        sock.sendall(_head(len(BLOB)))
        for i in range(0, len(BLOB), 100):
            sock.sendall(BLOB[i : i + 100])  # every read gets data: only the whole transfer's bound stops it
            time.sleep(0.05)

    # Each read waits up to 3 s, far longer than the 50 ms between sends, even on a busy machine (a
    # 0.5 s per-read timeout once fired first there); the whole transfer may take 3 s + 1 MB / (1 MB/s).
    client = PeerClient(timeout_s=3.0, min_rate_bytes_per_s=1e6)
    assert client.transfer_timeout_s(len(BLOB)) == pytest.approx(3.0 + len(BLOB) / 1e6)
    t0 = time.monotonic()
    store, _, error = _fetch(trickle, tmp_path, timeout_s=3.0, min_rate_bytes_per_s=1e6)
    assert error is not None and "took more than" in error.reason, error
    assert time.monotonic() - t0 < 30
    assert _stored_files(store) == []


# ---------------------------------------------------------------------------- fetches into memory

BIG = bytes(range(256)) * 4500  # 1.15 MB: read into one buffer (serialization.BIG_BUFFER_BYTES), not bytes
BIG_SHA = hashlib.sha256(BIG).hexdigest()


@pytest.mark.parametrize(
    ("case", "respond", "reason"),
    [
        ("whole", lambda s: s.sendall(_head(len(BIG)) + BIG), None),
        ("tampered", lambda s: s.sendall(_head(len(BIG)) + BIG[:-1] + b"x"), "do not match the hash"),
        ("declared too large", lambda s: s.sendall(_head(len(BIG) + 1) + BIG + b"x"), "larger than the"),
        ("truncated", lambda s: (s.sendall(_head(len(BIG)) + BIG[:5000]), s.shutdown(socket.SHUT_WR)), "ReadError"),
        ("refused", lambda s: s.sendall(_head(len(BIG)).replace(b"200 OK", b"500 Oops") + BIG), "HTTP 500"),
    ],
)
def test_a_big_body_is_read_into_one_buffer_and_checked_like_any_other(case, respond, reason):
    peer = ScriptedPeer(respond)
    try:
        if reason is None:
            body = PeerClient(timeout_s=5).fetch(peer.url, BIG_SHA, len(BIG))
            assert isinstance(body, memoryview) and body.readonly and body == BIG
        else:
            with pytest.raises(BlobFetchError) as info:
                PeerClient(timeout_s=5).fetch(peer.url, BIG_SHA, len(BIG))
            assert reason in info.value.reason, (case, info.value.reason)
    finally:
        peer.close()
