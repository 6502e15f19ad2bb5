"""``swarm-sn``: start one site's swarm-network service."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import uvicorn

from sn_service.app import create_app
from sn_service.blob_store import BlobStore
from sn_service.ledger import open_ledger
from sn_service.peer_client import PeerClient
from sn_service.service import SwarmNetworkService


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of ``swarm-sn``."""
    p = argparse.ArgumentParser(
        prog="swarm-sn",
        description="Run one site's swarm-network service: it coordinates merge rounds for the "
        "training script on this site (SwarmCallback) with the other sites, through a ledger.",
    )
    p.add_argument("--site", required=True, help="this site's node name, e.g. site-a")
    p.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--advertise",
        help="the URL other sites reach this service at (default http://HOST:PORT)",
    )
    p.add_argument("--data-dir", required=True, type=Path, help="where this site keeps its blobs and logs")
    p.add_argument("--ledger", choices=["embedded", "fabric"], default="embedded")
    p.add_argument(
        "--ledger-path", type=Path, help="embedded ledger: the SQLite file shared by the sites of this machine"
    )
    p.add_argument("--fabric-profile", type=Path, help="fabric ledger: the connection profile JSON")
    p.add_argument("--identity", help="the caller identity on the embedded ledger (default embedded::SITE)")
    p.add_argument("--sync-timeout", type=float, default=600.0, help="seconds one sync may take (default 600)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``swarm-sn``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format=f"%(asctime)s [{args.site}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    if args.ledger == "embedded":
        if args.ledger_path is None:
            print("swarm-sn: --ledger embedded needs --ledger-path FILE (shared by the sites)", file=sys.stderr)
            return 2
        ledger = open_ledger("embedded", identity=args.identity or f"embedded::{args.site}", path=str(args.ledger_path))
    else:
        if args.fabric_profile is None:
            print(
                "swarm-sn: --ledger fabric needs --fabric-profile FILE (see fabric-network/README.md)", file=sys.stderr
            )
            return 2
        ledger = open_ledger("fabric", identity="", profile=str(args.fabric_profile), site=args.site)
    store = BlobStore(args.data_dir / "blobs")
    endpoint = args.advertise or f"http://{args.host}:{args.port}"
    service = SwarmNetworkService(args.site, ledger, store, PeerClient(), endpoint, sync_timeout_s=args.sync_timeout)
    app = create_app(service)
    logging.getLogger("sn_service").info(
        "swarm-network service for %s on %s (ledger %s, data %s, pid %d)",
        args.site,
        endpoint,
        args.ledger,
        args.data_dir,
        os.getpid(),
    )
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    server.run()  # uvicorn stops gracefully on SIGINT and SIGTERM
    service.shutdown()
    ledger.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
