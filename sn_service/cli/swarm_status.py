"""``swarm-status``: what a task is doing and, if stuck, on whom it waits."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

from sn_service import __version__
from sn_service.contract import ContractError
from sn_service.ledger.base import LedgerUnavailable
from sn_service.round_protocol import now_ms
from sn_service.status_view import RECENT, render_task, snapshot


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of ``swarm-status``."""
    p = argparse.ArgumentParser(
        prog="swarm-status",
        description="Show a swarm task: its sites, the current round, who submitted, who is awaited and "
        "since when, the leader and its deadline, recent rounds.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a site's swarm-network service, e.g. http://127.0.0.1:30305")
    where.add_argument("--ledger-path", type=Path, help="an embedded ledger file (works with every service down)")
    p.add_argument("--task", help="the task (default: every task the service joined; required with --ledger-path)")
    p.add_argument("--watch", type=float, metavar="SECONDS", help="redraw every SECONDS until interrupted")
    return p


def _privacy_per_site(url: str, task: str) -> dict[str, dict[str, float]]:
    """Each site's latest differential-privacy metrics (``dp_*``), as the service's dashboard gathers them."""
    try:
        r = httpx.get(f"{url.rstrip('/')}/v1/dashboard/{task}", params={"recent": 0, "rounds": 50}, timeout=10)
        sites = r.json()["metrics"] if r.status_code == 200 else {}
    except (httpx.HTTPError, ValueError, KeyError):
        return {}
    out = {}
    for node, history in sites.items():
        for entry in reversed(history.get("rounds", [])):
            dp = {k: v for k, v in entry.get("metrics", {}).items() if k.startswith("dp_")}
            if dp:
                out[node] = dp
                break
    return out


def _render_from_service(url: str, task: str | None) -> str:
    status = httpx.get(f"{url.rstrip('/')}/v1/status", timeout=10).json()
    tasks = [task] if task else sorted(status["tasks"])
    if not tasks:
        return f"{status['site']}: no task joined yet"
    out = []
    for name in tasks:
        r = httpx.get(f"{url.rstrip('/')}/v1/tasks/{name}", params={"recent": RECENT}, timeout=10)
        if r.status_code != 200:
            out.append(f"task {name}: {r.json().get('detail', r.text)}")
            continue
        body = r.json()
        privacy = _privacy_per_site(url, name)
        out.append(render_task(body["task"], body["round"], body["recent"], body["now_ms"], privacy))
    for problem in status.get("problems", []):
        out.insert(0, f"{status['site']}: PROBLEM: {problem}")
    waits = [j for t in status["tasks"].values() for j in t.get("running_syncs", [])]
    for job in waits:
        out.append(
            f"  {status['site']} sync {job['sync_id'][:8]}: {job['phase']}: {job['waiting_for']} ({job['waiting_s']} s)"
        )
    return "\n".join(out)


def _render_from_ledger(path: Path, task: str) -> str:
    from sn_service.ledger import EmbeddedLedger

    try:
        ledger = EmbeddedLedger(path, identity="swarm-status", create=False)
    except LedgerUnavailable as exc:
        raise FileNotFoundError(str(exc)) from None
    try:
        rec, current, recent = snapshot(ledger, task)
    finally:
        ledger.close()
    return render_task(rec, current, recent, now_ms())


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``swarm-status``."""
    args = build_parser().parse_args(argv)
    if args.ledger_path and not args.task:
        print("swarm-status: --ledger-path needs --task NAME", file=sys.stderr)
        return 2
    while True:
        try:
            if args.url:
                text = _render_from_service(args.url, args.task)
            else:
                text = _render_from_ledger(args.ledger_path, args.task)
        except httpx.HTTPError as exc:
            text = f"swarm-status: the service at {args.url} does not answer: {exc}"
            if not args.watch:
                print(text, file=sys.stderr)
                return 1
        except (ContractError, FileNotFoundError) as exc:
            print(f"swarm-status: {exc}", file=sys.stderr)
            return 1
        if args.watch:
            print("\033[2J\033[H" + time.strftime("%H:%M:%S ") + text, flush=True)
            try:
                time.sleep(args.watch)
            except KeyboardInterrupt:
                return 0
        else:
            print(text)
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
