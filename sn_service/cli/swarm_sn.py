"""``swarm-sn``: start one site's swarm-network service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import socket
import sys
from collections.abc import Generator
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn

from sn_service import __version__
from sn_service.blob_store import BlobStore
from sn_service.http.app import create_app
from sn_service.ledger import Ledger, LedgerUnavailable, open_ledger
from sn_service.ledger.base import ContractError
from sn_service.peer_client import PeerClient
from sn_service.service import SwarmNetworkService
from sn_service.tls.identity import IdentityError, PeerTLS, SiteTLS
from sn_service.tls.peer_tls import FastPeerCertProtocol, server_ssl_options


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of ``swarm-sn``."""
    p = argparse.ArgumentParser(
        prog="swarm-sn",
        description="Run one site's swarm-network service: it coordinates merge rounds for the "
        "training script on this site (SwarmCallback) with the other sites, through a ledger.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--site", required=True, help="this site's node name, e.g. site-a")
    p.add_argument(
        "--port",
        type=int,
        required=True,
        help="TCP port to listen on; 0 lets the system pick a free one (the ports taken are written to "
        "DATA_DIR/service.json)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--advertise",
        help="the URL other sites reach this service at (default http://HOST:PORT, or https://HOST:PEER_PORT "
        "with --peer-port); it must name an address they can dial: with --host 0.0.0.0 give this one",
    )
    p.add_argument("--data-dir", required=True, type=Path, help="where this site keeps its blobs and logs")
    p.add_argument("--ledger", choices=["embedded", "fabric"], default="embedded")
    p.add_argument(
        "--ledger-path", type=Path, help="embedded ledger: the SQLite file shared by the sites of this machine"
    )
    p.add_argument("--fabric-profile", type=Path, help="fabric ledger: the connection profile JSON")
    p.add_argument(
        "--identity", help="the caller identity on the embedded ledger (default: from --tls-dir, else embedded::SITE)"
    )
    p.add_argument(
        "--tls-dir",
        type=Path,
        help="embedded ledger: site.crt, site.key and ca.crt (from swarm-identity issue) for the mutual-TLS "
        "blob listener on --peer-port (on Fabric the organisation's MSP certificate is used instead)",
    )
    p.add_argument(
        "--peer-port",
        type=int,
        help="serve blobs to the other sites over mutual TLS on this port (embedded ledger: needs --tls-dir; "
        "Fabric: with the site's MSP certificate and the organisations' MSP CAs from the profile)",
    )
    p.add_argument("--sync-timeout", type=float, default=600.0, help="seconds one sync may take (default 600)")
    p.add_argument(
        "--keep-rounds",
        type=int,
        default=20,
        metavar="N",
        help="keep the blobs (contributions and merged models) of each task's last N rounds and its latest merged "
        "model; older ones are deleted after each sync (default 20; 0 keeps every blob, e.g. for an audit)",
    )
    p.add_argument(
        "--prune-grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="never delete a blob stored (or stored again) this recently (default 10)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="answer 408 to a request whose body stalls this long (or arrives slower than 256 KiB/s on average "
        "after that) (default 30)",
    )
    p.add_argument(
        "--stream-above-bytes",
        type=int,
        default=256 << 20,
        metavar="BYTES",
        help="a task whose model's blobs may be larger than this is streamed end to end: uploads, fetches and "
        "hand-overs go to the blob store chunk by chunk, blobs are checked from disk and merged a column chunk at "
        "a time; smaller models stay in memory, which is faster (default 268435456, 256 MiB)",
    )
    p.add_argument(
        "--huge-pages",
        choices=["auto", "on", "off"],
        default="auto",
        help="whether numpy asks the kernel for transparent huge pages for this service's arrays of 4 MB and more "
        "(numpy's own default: on). auto: only while a task's blobs may be 128 MiB or more: on virtual machines "
        "whose host takes freed memory back, a new huge page is often a fault the host serves; smaller models "
        "synced 10-30%% faster without them, a 200 MB one 1.8x slower (docs/benchmarks.md). "
        "NUMPY_MADVISE_HUGEPAGE in the environment, if set, wins (default auto)",
    )
    p.add_argument(
        "--min-transfer-rate",
        type=float,
        default=10.0,
        metavar="MB_PER_S",
        help="a blob of N MB fetched from or handed to a peer may take 20 s + N / this rate in all (within the "
        "leader's deadline); each read still gives up after 20 s without data (default 10)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


class DataDirInUse(Exception):
    """Another swarm-sn holds this data folder."""


def lock_data_dir(data_dir: Path) -> int:
    """Takes this process's lock on ``data_dir`` (held until exit); raises DataDirInUse naming the holder."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / ".swarm-sn.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise DataDirInUse(
            f"--data-dir {data_dir} is in use by another swarm-sn (pid {holder}): give each service its own "
            "data folder, and each site one service"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free one), before anything else starts; raises OSError.

    Binding here, not in uvicorn, makes ``--port 0`` possible: a launcher then never hands a port
    that someone else takes before the service binds it.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]  # fmt: skip
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def write_service_file(data_dir: Path, **facts: object) -> None:
    """DATA_DIR/service.json: this process's pid, ports and URLs (written atomically)."""
    tmp = data_dir / "service.json.tmp"
    tmp.write_text(json.dumps({"pid": os.getpid(), **facts}))
    os.replace(tmp, data_dir / "service.json")


def remembered_tasks(data_dir: Path) -> list[str]:
    """The tasks a service with this data folder has joined (its tasks.json), if any."""
    try:
        return sorted(json.loads((data_dir / "tasks.json").read_text()))
    except (OSError, ValueError):
        return []


class _PeerServer(uvicorn.Server):
    """The second listener: the first one owns the signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _serve_both(
    local: uvicorn.Server, peer: uvicorn.Server, local_sock: socket.socket, peer_sock: socket.socket
) -> None:
    peer_task = asyncio.create_task(peer.serve(sockets=[peer_sock]))
    try:
        await local.serve(sockets=[local_sock])
    finally:
        peer.should_exit = True
        await peer_task


def host_url(scheme: str, host: str, port: int) -> str:
    """``scheme://host:port``, an IPv6 literal in brackets (``--host ::1`` -> ``https://[::1]:8443``)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def advertised_endpoint_problem(endpoint: str, advertise_given: bool, tls: bool) -> str | None:
    """Why other sites could not reach ``endpoint`` (the address written on the ledger), or None.

    An unspecified address (``0.0.0.0``, ``::``) means "every interface" to a
    listener but is no address to dial: a site that wrote it on the ledger
    would never be reached.
    """
    where = "--advertise" if advertise_given else "the default endpoint (from --host and the port)"
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as exc:
        return f"{where} {endpoint!r} is not a URL: {exc}"
    wanted = "https" if tls else "http"
    if parts.scheme != wanted or not parts.hostname or port is None:
        return f"{where} {endpoint!r} must be {wanted}://HOST:PORT (blobs are served over {wanted.upper()})"
    try:
        unspecified = ipaddress.ip_address(parts.hostname).is_unspecified
    except ValueError:
        unspecified = False  # a host name
    if unspecified:
        hint = (
            "give --advertise with this host's address the other sites reach, e.g. "
            f"--advertise {wanted}://192.0.2.10:{port}"
        )
        return f"{where} is {endpoint}: {parts.hostname} is no address another site can reach; {hint}"
    return None


def fabric_peer_problem(ledger: Ledger, site: str, profile: Path) -> str | None:
    """Why this site's own Fabric peer does not serve the chaincode, or None (checked once at start).

    A query of a task that does not exist must come back as the contract's
    ``TASK_NOT_FOUND``: then the peer, the channel and the chaincode answer.
    """
    address = getattr(ledger, "gateway_address", "?")
    try:
        ledger.get_task("swarm-sn-start-check")
    except ContractError:
        return None
    except LedgerUnavailable as exc:
        return (
            f"cannot reach {site}'s Fabric peer at {address} (sites.{site}.peer.gateway_address in {profile}): "
            f"{exc}. Check the address and that the peer runs (scripts/fabric_host.sh site-join)"
        )
    except Exception as exc:  # any other answer: say which peer gave it
        return f"{site}'s Fabric peer at {address} (from {profile}) did not serve the chaincode: {exc}"
    return f"{site}'s Fabric peer at {address} answered a query of an unknown task without TASK_NOT_FOUND"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``swarm-sn``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format=f"%(asctime)s [{args.site}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    tls: PeerTLS | None = None
    if args.keep_rounds < 0:
        print(
            f"swarm-sn: --keep-rounds {args.keep_rounds}: give 0 (keep every blob) or a number of rounds >= 1",
            file=sys.stderr,
        )
        return 2
    if not args.body_timeout > 0:
        print(f"swarm-sn: --body-timeout {args.body_timeout}: give a number of seconds > 0", file=sys.stderr)
        return 2
    if args.prune_grace < 0:
        print(f"swarm-sn: --prune-grace {args.prune_grace}: give a number of seconds >= 0", file=sys.stderr)
        return 2
    if args.stream_above_bytes < 0:
        print(f"swarm-sn: --stream-above-bytes {args.stream_above_bytes}: give a number of bytes >= 0", file=sys.stderr)
        return 2
    if not args.min_transfer_rate > 0:
        print(f"swarm-sn: --min-transfer-rate {args.min_transfer_rate}: give MB/s > 0", file=sys.stderr)
        return 2
    if args.tls_dir is not None and args.peer_port is None:
        print("swarm-sn: --tls-dir needs --peer-port PORT for the mutual-TLS blob listener", file=sys.stderr)
        return 2
    if args.ledger == "fabric" and args.tls_dir is not None:
        print(
            "swarm-sn: on Fabric a site's TLS identity is its organisation's MSP certificate (its ledger identity); "
            "drop --tls-dir and give --peer-port only",
            file=sys.stderr,
        )
        return 2
    if args.ledger == "embedded" and args.peer_port is not None and args.tls_dir is None:
        print(
            "swarm-sn: --peer-port serves blobs over mutual TLS and needs --tls-dir DIR "
            "(make it with swarm-identity init-ca and issue)",
            file=sys.stderr,
        )
        return 2
    try:
        lock_data_dir(args.data_dir)
    except DataDirInUse as exc:
        print(f"swarm-sn: {exc}", file=sys.stderr)
        return 2
    try:
        if args.tls_dir is not None:
            tls = SiteTLS.from_dir(args.tls_dir)
        elif args.peer_port is not None and args.fabric_profile is not None:
            from sn_service.tls.msp_tls import MSPTLS

            tls = MSPTLS.from_profile(args.fabric_profile, args.site, args.data_dir / "peer-tls")
    except IdentityError as exc:
        print(f"swarm-sn: {exc}", file=sys.stderr)
        return 2
    # Checked before the ledger and the sockets are opened; a port of 0 (picked when bound) changes nothing here.
    requested = args.advertise or (
        host_url("https", args.host, args.peer_port) if tls is not None else host_url("http", args.host, args.port)
    )
    problem = advertised_endpoint_problem(requested, args.advertise is not None, tls is not None)
    if problem is not None:
        print(f"swarm-sn: {problem}", file=sys.stderr)
        return 2
    if args.ledger == "embedded":
        if args.ledger_path is None:
            print("swarm-sn: --ledger embedded needs --ledger-path FILE (shared by the sites)", file=sys.stderr)
            return 2
        identity = args.identity or (tls.identity() if tls else f"embedded::{args.site}")
        joined = remembered_tasks(args.data_dir)
        try:
            # A new swarm's services create the ledger; a site that has joined tasks on it expects it.
            ledger = open_ledger("embedded", identity=identity, create=not joined, path=str(args.ledger_path))
        except LedgerUnavailable as exc:
            print(
                f"swarm-sn: {exc}. This site has joined {', '.join(joined)} on that ledger "
                f"({args.data_dir}/tasks.json)",
                file=sys.stderr,
            )
            return 2
    else:
        if args.fabric_profile is None:
            print(
                "swarm-sn: --ledger fabric needs --fabric-profile FILE (see fabric-network/README.md)", file=sys.stderr
            )
            return 2
        try:
            ledger = open_ledger("fabric", identity="", profile=str(args.fabric_profile), site=args.site)
        except ValueError as exc:  # ProfileError: names the key or file
            print(f"swarm-sn: {exc}", file=sys.stderr)
            return 2
        problem = fabric_peer_problem(ledger, args.site, args.fabric_profile)
        if problem is not None:
            print(f"swarm-sn: {problem}", file=sys.stderr)
            ledger.close()
            return 2
        if tls is not None and tls.identity() != ledger.identity:
            print(
                f"swarm-sn: the peer TLS identity {tls.identity()} is not the ledger identity {ledger.identity}",
                file=sys.stderr,
            )
            return 2
    local_host = args.host if tls is None else "127.0.0.1"  # with mTLS the callback's API stays on loopback
    try:
        local_sock = listen_socket(local_host, args.port)
        args.port = local_sock.getsockname()[1]
        peer_sock = listen_socket(args.host, args.peer_port) if tls is not None else None
        if peer_sock is not None:
            args.peer_port = peer_sock.getsockname()[1]
    except OSError as exc:
        print(
            f"swarm-sn: cannot listen on {args.host}, port {args.port} or {args.peer_port}: {exc.strerror}; "
            "choose another --port / --peer-port (0 lets the system pick one)",
            file=sys.stderr,
        )
        return 2
    store = BlobStore(args.data_dir / "blobs")
    store.discard_incoming()  # this process holds the data folder's lock: any half-written blob is a crash's
    if tls is not None:
        endpoint = args.advertise or host_url("https", args.host, args.peer_port)
        peers = PeerClient(tls, min_rate_bytes_per_s=args.min_transfer_rate * 1e6)
    else:
        endpoint = args.advertise or host_url("http", args.host, args.port)
        peers = PeerClient(min_rate_bytes_per_s=args.min_transfer_rate * 1e6)
    service = SwarmNetworkService(
        args.site,
        ledger,
        store,
        peers,
        endpoint,
        sync_timeout_s=args.sync_timeout,
        tls=tls,
        state_file=args.data_dir / "tasks.json",
        keep_rounds=args.keep_rounds,
        prune_grace_s=args.prune_grace,
        body_timeout_s=args.body_timeout,
        stream_above_bytes=args.stream_above_bytes,
        huge_pages=None if "NUMPY_MADVISE_HUGEPAGE" in os.environ else args.huge_pages,
    )
    write_service_file(
        args.data_dir,
        site=args.site,
        port=args.port,
        peer_port=args.peer_port,
        url=host_url("http", "127.0.0.1" if local_host in ("0.0.0.0", "::") else local_host, args.port),
        endpoint=endpoint,
    )
    service.recover()
    logging.getLogger("sn_service").info(
        "swarm-network service for %s on %s (ledger %s, peer TLS %s, data %s, pid %d)",
        args.site,
        endpoint,
        args.ledger,
        f"{tls.source}, as {tls.identity()}" if tls else "off",
        args.data_dir,
        os.getpid(),
    )
    if tls is None:
        app = create_app(service)
        uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False)).run(
            sockets=[local_sock]
        )  # uvicorn stops gracefully on SIGINT and SIGTERM
    else:
        # The callback's API stays on loopback; blobs go out only over mutual TLS.
        local = uvicorn.Server(
            uvicorn.Config(
                create_app(service, ("local", "status")),
                host="127.0.0.1",
                port=args.port,
                log_level="warning",
                access_log=False,
            )
        )
        peer = _PeerServer(
            uvicorn.Config(
                create_app(service, ("peer",)),
                host=args.host,
                port=args.peer_port,
                log_level="warning",
                access_log=False,
                http=FastPeerCertProtocol,
                **server_ssl_options(str(tls.cert), str(tls.key), str(tls.ca)),
            )
        )
        assert peer_sock is not None
        if hasattr(tls, "trust_in"):  # Fabric: trust organisations added to the profile later
            from sn_service.tls.msp_tls import watch_profile

            peer.config.load()
            tls.trust_in(peer.config.ssl)
            watch_profile(tls, args.fabric_profile, args.site)
        asyncio.run(_serve_both(local, peer, local_sock, peer_sock))
    service.shutdown()
    ledger.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
