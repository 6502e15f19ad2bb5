"""How fast a service's peer API takes in a large body over TLS: uvicorn's h11 protocol against httptools.

A leader hands each merged model over as a POST body (``/v1/merged/...``); at 50 M parameters that is a
190 MB body read over TLS by the receiving service's event loop. This starts a uvicorn server with the
service's own peer protocols (``sn_service.tls.peer_tls``: ``PeerCertProtocol`` is h11,
``FastPeerCertProtocol`` httptools), reads each body into one buffer as ``read_body`` does, and POSTs to
it with ``http.client`` as the peers do, over the peer API's mutual TLS (a swarm CA, two sites'
certificates). The two protocols are alternated, one server each run.

Run: .venv/bin/python benchmarks/bench_http_body.py [--mb 190] [--posts 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import socket
import ssl
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request, Response

from sn_service.tls.identity import SiteTLS, create_ca, issue_site
from sn_service.tls.peer_tls import server_ssl_options


def _identities(directory: Path) -> tuple[SiteTLS, SiteTLS]:
    """A swarm CA and two sites' certificates, as ``swarm-identity`` makes them (the peer API's mutual TLS)."""
    create_ca(directory / "ca")
    return issue_site(directory / "ca", "server", directory / "server"), issue_site(
        directory / "ca", "client", directory / "client"
    )


def _serve(protocol: str, sock: socket.socket, tls: SiteTLS) -> None:
    import uvicorn

    from sn_service.tls.peer_tls import FastPeerCertProtocol, PeerCertProtocol
    from swarm_wire import serialization

    app = FastAPI()

    @app.post("/body")
    async def body(request: Request) -> Response:
        size = int(request.headers["content-length"])
        buffer, got = serialization.new_buffer(size), 0
        t0 = time.perf_counter()
        async for chunk in request.stream():
            buffer[got : got + len(chunk)] = chunk
            got += len(chunk)
        return Response(f"{time.perf_counter() - t0:.6f}")

    http_protocol = FastPeerCertProtocol if protocol == "httptools" else PeerCertProtocol
    options = server_ssl_options(str(tls.cert), str(tls.key), str(tls.ca))  # client certificates required
    config = uvicorn.Config(app, log_level="warning", access_log=False, http=http_protocol, **options)
    uvicorn.Server(config).run(sockets=[sock])


def _post_all(port: int, body: memoryview, posts: int, tls: SiteTLS) -> list[float]:
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.load_cert_chain(str(tls.cert), str(tls.key))
    server_s = []
    for _ in range(posts):
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=120)
        conn.request("POST", "/body", body=body, headers={"Content-Length": str(len(body))})
        resp = conn.getresponse()
        server_s.append(float(resp.read()))
        conn.close()
    return server_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=int, default=190, help="body size in MiB (190: a 50 M-parameter model)")
    p.add_argument("--posts", type=int, default=5, help="POSTs per run")
    p.add_argument("--runs", type=int, default=3, help="runs per protocol, alternated")
    args = p.parse_args()
    body = memoryview(np.random.default_rng(0).integers(0, 255, args.mb << 20, dtype=np.uint8))
    results: dict[str, list[float]] = {"h11": [], "httptools": []}
    with tempfile.TemporaryDirectory() as tmp:
        server_tls, client_tls = _identities(Path(tmp))
        for _ in range(args.runs):
            for protocol in results:
                sock = socket.socket()
                sock.bind(("127.0.0.1", 0))
                sock.listen(16)
                server = multiprocessing.get_context("spawn").Process(
                    target=_serve, args=(protocol, sock, server_tls), daemon=True
                )
                server.start()
                port = sock.getsockname()[1]
                for _ in range(200):  # until it answers
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        time.sleep(0.05)
                try:
                    times = _post_all(port, body, args.posts, client_tls)
                finally:
                    server.terminate()
                    server.join(10)
                    sock.close()
                results[protocol].append(statistics.median(times))
                print(f"{protocol:>9}: server read {args.mb} MiB in {statistics.median(times) * 1000:.0f} ms (median)")
    h11, fast = statistics.median(results["h11"]), statistics.median(results["httptools"])
    print(f"median of runs: h11 {h11 * 1000:.0f} ms, httptools {fast * 1000:.0f} ms, ratio {fast / h11:.2f}")


if __name__ == "__main__":
    main()
