"""``swarm-identity``: make a swarm CA and issue site identities (see ``sn_service.tls.identity``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sn_service import __version__
from sn_service.tls.identity import CA_KEY, IdentityError, create_ca, issue_site


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``swarm-identity``."""
    p = argparse.ArgumentParser(prog="swarm-identity", description="Make a swarm CA and issue site identities.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    ca = sub.add_parser("init-ca", help="make a CA: ca.key and ca.crt in --dir")
    ca.add_argument("--dir", required=True, type=Path)
    ca.add_argument("--name", default="swarm-ca")
    issue = sub.add_parser("issue", help="issue a site's site.key and site.crt (with ca.crt) into --out")
    issue.add_argument("--ca", required=True, type=Path, help="the CA folder made by init-ca")
    issue.add_argument("--site", required=True, help="the site's node name (its certificate's CN)")
    issue.add_argument("--out", required=True, type=Path)
    issue.add_argument("--host", action="append", default=[], help="an extra host name or IP the site serves at")
    args = p.parse_args(argv)
    try:
        if args.command == "init-ca":
            path = create_ca(args.dir, args.name)
            print(f"CA certificate {path}; keep {args.dir / CA_KEY} secret")
        else:
            tls = issue_site(args.ca, args.site, args.out, ("127.0.0.1", "localhost", *args.host))
            print(f"{args.site}: certificate {tls.cert}, key {tls.key}, CA {tls.ca}; identity {tls.identity()}")
    except IdentityError as exc:
        print(f"swarm-identity: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
