"""``swarm-launch``: run a whole swarm on one machine.

Starts one swarm-network service and one training process per site on free
loopback ports with a shared embedded ledger (or a Fabric network), prefixes
every log line with its site, fails loudly when any process fails, and stops
every process it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from sn_service import __version__


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_file(data_dir: Path, pid: int) -> dict | None:
    """What the swarm-sn of process ``pid`` wrote to DATA_DIR/service.json (its ports and URL), or None yet."""
    try:
        facts = json.loads((data_dir / "service.json").read_text())
    except (OSError, ValueError):
        return None
    return facts if facts.get("pid") == pid else None


@dataclass
class Managed:
    """A child process the launcher started, and where its output goes."""

    name: str
    role: str
    proc: subprocess.Popen
    log_path: Path
    threads: list[threading.Thread] = field(default_factory=list)


class SwarmLauncher:
    """Starts, watches and stops the processes of a local swarm.

    Args:
        sites: the site names.
        workdir: each site's data and logs go to ``workdir/<site>``.
        ledger: ``embedded`` or ``fabric``.
        fabric_profile: the connection profile for ``fabric``.
        echo: print children's output (prefixed) to this stream.
        service_args: extra ``swarm-sn`` options for every site.
        mtls: sites fetch blobs from each other over mutual TLS: on the
            embedded ledger with a swarm CA and site certificates made in
            ``workdir/identities`` (kept, reused on the next run); on Fabric
            with the organisations' MSP certificates.
    """

    def __init__(
        self,
        sites: list[str],
        workdir: Path,
        ledger: str = "embedded",
        fabric_profile: Path | None = None,
        echo: IO[str] | None = sys.stdout,
        service_args: list[str] | None = None,
        mtls: bool = False,
    ) -> None:
        self.sites = sites
        self.workdir = workdir
        self.ledger = ledger
        self.fabric_profile = fabric_profile
        self.echo = echo
        self.children_echo = True
        self.service_args = service_args or []
        self.mtls = mtls
        self.ledger_path = workdir / "ledger.sqlite"
        self.ports: dict[str, int] = {}
        self.peer_ports: dict[str, int] = {}
        self.children: list[Managed] = []
        self._echo_lock = threading.Lock()

    # ------------------------------------------------------------------ processes

    def _spawn(self, name: str, role: str, cmd: list[str], env: dict[str, str]) -> Managed:
        site_dir = self.workdir / name
        site_dir.mkdir(parents=True, exist_ok=True)
        log_path = site_dir / f"{role}.log"
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group: we stop it and its children together
            text=True,
            bufsize=1,
        )
        managed = Managed(name, role, proc, log_path)
        thread = threading.Thread(target=self._pump, args=(managed,), daemon=True)
        thread.start()
        managed.threads.append(thread)
        self.children.append(managed)
        return managed

    def _pump(self, managed: Managed) -> None:
        prefix = f"[{managed.name} {managed.role}] "
        with open(managed.log_path, "a", encoding="utf-8") as log:
            assert managed.proc.stdout is not None
            for line in managed.proc.stdout:
                log.write(line)
                log.flush()
                if self.echo is not None and self.children_echo:
                    with self._echo_lock:
                        self.echo.write(prefix + line)
                        self.echo.flush()

    def say(self, message: str) -> None:
        """A launcher line on the echo stream."""
        if self.echo is not None:
            with self._echo_lock:
                self.echo.write(f"[swarm-launch] {message}\n")
                self.echo.flush()

    def service_url(self, site: str) -> str:
        """The local URL of a site's service."""
        return f"http://127.0.0.1:{self.ports[site]}"

    def _identities(self) -> dict[str, Path]:
        """The swarm CA and each site's certificate under ``workdir/identities`` (made once, then reused)."""
        from sn_service.tls.identity import CA_CERT, SITE_CERT, create_ca, issue_site

        root = self.workdir / "identities"
        if not (root / "ca" / CA_CERT).is_file():
            create_ca(root / "ca")
        folders = {}
        for site in self.sites:
            folders[site] = root / site
            if not (folders[site] / SITE_CERT).is_file():
                issue_site(root / "ca", site, folders[site])
        return folders

    def start_services(self, timeout_s: float = 60.0) -> None:
        """Starts one service per site and waits until each answers /v1/health."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        tls_dirs = self._identities() if self.mtls and self.ledger == "embedded" else {}
        for site in self.sites:
            (self.workdir / site / "service.json").unlink(missing_ok=True)
            cmd = [
                sys.executable,
                "-m",
                "sn_service.cli.swarm_sn",
                "--site",
                site,
                "--port",
                "0",  # the service binds a free port itself and says which (no race for a port)
                "--data-dir",
                str(self.workdir / site),
                "--ledger",
                self.ledger,
                *self.service_args,
            ]
            if self.ledger == "embedded":
                cmd += ["--ledger-path", str(self.ledger_path)]
            else:
                cmd += ["--fabric-profile", str(self.fabric_profile)]
            if self.mtls:
                cmd += ["--peer-port", "0"]
                if site in tls_dirs:
                    cmd += ["--tls-dir", str(tls_dirs[site])]
            self._spawn(site, "sn", cmd, env)
        deadline = time.monotonic() + timeout_s
        for site, child in zip(self.sites, self.children, strict=True):
            while True:
                if child.proc.poll() is not None:
                    raise RuntimeError(
                        f"the service of {site} exited with code {child.proc.returncode} at start; see {child.log_path}"
                    )
                bound = service_file(self.workdir / site, child.proc.pid)
                if bound is not None:
                    self.ports[site], self.peer_ports[site] = bound["port"], bound["peer_port"]
                    try:
                        if httpx.get(self.service_url(site) + "/v1/health", timeout=1.0).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the service of {site} did not answer within {timeout_s:.0f} s")
                time.sleep(0.1)
        ports = {s: f"port {self.ports[s]}" + (f", mTLS {self.peer_ports[s]}" if self.mtls else "") for s in self.sites}
        self.say("services up: " + ", ".join(f"{s} on {ports[s]}" for s in self.sites))

    def start_training(
        self, script: str, script_args: list[str], task: str, site_env: dict[str, dict[str, str]] | None = None
    ) -> None:
        """Starts the training script once per site, pointed at its service.

        ``site_env``: extra environment per site name (``"*"``: every site), as
        HPE's run scripts pass ``--ml-e MAX_EPOCHS=...`` to each node.
        """
        site_env = site_env or {}
        for index, site in enumerate(self.sites):
            env = dict(
                os.environ,
                **site_env.get("*", {}),
                **site_env.get(site, {}),
                PYTHONUNBUFFERED="1",
                SWARM_SN_URL=self.service_url(site),
                SWARM_SITE=site,
                SWARM_SITE_INDEX=str(index),
                SWARM_NUM_SITES=str(len(self.sites)),
                SWARM_TASK=task,
                SWARM_OUTPUT_DIR=str(self.workdir / site),
            )
            self._spawn(site, "train", [sys.executable, script, *script_args], env)
        self.say(f"training started: {script} at {len(self.sites)} sites, task {task}")

    def progress_line(self) -> str:
        """One line: the round of each task and what each site's service is doing."""
        parts, rounds = [], set()
        for site in self.sites:
            try:
                status = httpx.get(self.service_url(site) + "/v1/status", timeout=1.0).json()
            except (httpx.HTTPError, ValueError):
                parts.append(f"{site}: no answer")
                continue
            doing = "training"
            for task in status["tasks"].values():
                if "current_round" in task:
                    rounds.add(task["current_round"])
                for job in task.get("running_syncs", []):
                    doing = f"{job['phase']} ({job['waiting_for']})" if job["waiting_for"] else job["phase"]
                if task.get("status") == "done":
                    doing = "done"
            parts.append(f"{site}: {doing}")
        head = f"round {max(rounds)}" if rounds else "joining"
        return f"{head} | " + " | ".join(parts)

    def wait(self, timeout_s: float, progress_every_s: float | None = None) -> int:
        """Waits for every training process; returns 0, or 1 on the first failure.

        With ``progress_every_s``, prints a progress line whenever it changes
        (and at least that often).
        """
        last_line, last_time = "", 0.0
        deadline = time.monotonic() + timeout_s
        trainers = [c for c in self.children if c.role == "train"]
        services = [c for c in self.children if c.role == "sn"]
        while True:
            for child in services:
                if child.proc.poll() is not None:
                    self.say(
                        f"FAILED: the service of {child.name} exited with code {child.proc.returncode}; "
                        f"see {child.log_path}"
                    )
                    return 1
            codes = [c.proc.poll() for c in trainers]
            for child, code in zip(trainers, codes, strict=True):
                if code not in (None, 0):
                    self.say(
                        f"FAILED: training at {child.name} exited with code {code}; "
                        f"stopping the swarm (log: {child.log_path})"
                    )
                    return 1
            if all(code == 0 for code in codes):
                self.say("every site finished training")
                return 0
            if progress_every_s is not None:
                line = self.progress_line()
                if line != last_line or time.monotonic() - last_time > progress_every_s:
                    self.say(line)
                    last_line, last_time = line, time.monotonic()
            if time.monotonic() > deadline:
                running = [c.name for c, code in zip(trainers, codes, strict=True) if code is None]
                self.say(f"FAILED: timeout after {timeout_s:.0f} s; still training: {', '.join(running)}")
                return 1
            time.sleep(0.2)

    def stop(self, grace_s: float = 10.0) -> None:
        """Stops every process this launcher started (SIGTERM, then SIGKILL)."""
        for child in self.children:
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in self.children:
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
            for thread in child.threads:
                thread.join(timeout=2)

    def latest_merged(self, task: str) -> str | None:
        """The sha256 of the task's latest merged model, from the ledger (None before the first merge)."""
        if self.ledger == "embedded":
            from sn_service.ledger import EmbeddedLedger

            ledger: Any = EmbeddedLedger(self.ledger_path, identity="launcher", create=False)
        else:
            from sn_service.ledger.fabric import FabricLedger

            ledger = FabricLedger.from_profile(self.fabric_profile, self.sites[0])
        try:
            latest = ledger.get_task(task)["latest_merged"]
        finally:
            ledger.close()
        return latest["sha256"] if latest else None

    def summary(self, task: str) -> str:
        """The ledger's round history of the task, one line."""
        if self.ledger != "embedded":
            return ""
        from sn_service.ledger import EmbeddedLedger

        try:
            ledger = EmbeddedLedger(self.ledger_path, identity="launcher", create=False)
        except Exception as exc:  # never make an empty ledger where the swarm's should be
            return f"no history for task {task}: {exc}"
        try:
            history = ledger.get_history(task)["rounds"]
        except Exception as exc:
            return f"no history for task {task}: {exc}"
        finally:
            ledger.close()
        failovers = sum(r["failovers"] for r in history)
        merged = sum(1 for r in history if r["status"] == "done")
        abandoned = len(history) - merged
        return (
            f"task {task}: {merged} rounds merged, {failovers} failovers"
            + (f", {abandoned} rounds abandoned" if abandoned else "")
            + f"; ledger {self.ledger_path}"
        )


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of ``swarm-launch``."""
    p = argparse.ArgumentParser(
        prog="swarm-launch",
        description="Run a swarm on this machine: one swarm-network service and one training process "
        "per site. Arguments after the script go to the script.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("script", help="the training script (uses SwarmCallback)")
    p.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments for the script")
    p.add_argument("--sites", type=int, default=3, help="how many sites (default 3)")
    p.add_argument("--names", help="comma-separated site names (default site-a, site-b, ...)")
    p.add_argument("--task", help="the task name (default: the script's name and the time)")
    p.add_argument("--workdir", type=Path, help="where sites keep data and logs (default .runs/TASK)")
    p.add_argument("--ledger", choices=["embedded", "fabric"], default="embedded")
    p.add_argument("--fabric-profile", type=Path, default=Path(".fabric/connection.json"))
    p.add_argument(
        "--mtls",
        action="store_true",
        help="sites exchange weights over mutual TLS: embedded ledger with a swarm CA made in WORKDIR/identities; "
        "Fabric with the organisations' MSP certificates",
    )
    p.add_argument(
        "--keep-rounds",
        type=int,
        metavar="N",
        help="each site keeps the blobs of the last N rounds (swarm-sn's default: 20; 0 keeps every blob)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="[SITE:]NAME=VALUE",
        help="set NAME=VALUE in every site's training process, or only SITE's (repeatable), "
        "e.g. --env MIN_PEERS=3 --env site-a:MAX_EPOCHS=1",
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before the run is failed (default 3600)")
    p.add_argument("--quiet", action="store_true", help="do not echo the sites' logs (they are still written)")
    p.add_argument(
        "--progress",
        action="store_true",
        help="instead of the sites' logs, show one line per change: the round and what each site is doing",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``swarm-launch``."""
    from sn_service.tls.identity import IdentityError

    args = build_parser().parse_args(argv)
    if args.names:
        sites = [n.strip() for n in args.names.split(",") if n.strip()]
    else:
        if not 1 <= args.sites <= 26:
            print(f"swarm-launch: --sites {args.sites}: use 1 to 26, or name them with --names", file=sys.stderr)
            return 2
        sites = [f"site-{chr(ord('a') + i)}" for i in range(args.sites)]
    if len(set(sites)) != len(sites):
        print(f"swarm-launch: site names must be unique, got {sites}", file=sys.stderr)
        return 2
    if not Path(args.script).is_file():
        print(f"swarm-launch: no such training script: {args.script}", file=sys.stderr)
        return 2
    if args.ledger == "fabric" and not args.fabric_profile.is_file():
        print(
            f"swarm-launch: --ledger fabric needs a running network; no profile at {args.fabric_profile} "
            "(start one with scripts/start_network.sh)",
            file=sys.stderr,
        )
        return 2
    site_env: dict[str, dict[str, str]] = {}
    for item in args.env:
        target, _, assignment = item.rpartition(":") if ":" in item.split("=", 1)[0] else ("", "", item)
        name, eq, value = assignment.partition("=")
        if not eq or not name.isidentifier() or (target and target not in sites):
            print(
                f"swarm-launch: --env {item!r}: use NAME=VALUE or SITE:NAME=VALUE with SITE one of {', '.join(sites)}",
                file=sys.stderr,
            )
            return 2
        site_env.setdefault(target or "*", {})[name] = value
    task = args.task or f"{Path(args.script).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    workdir = args.workdir or Path(".runs") / task
    quiet = args.quiet or args.progress
    if args.keep_rounds is not None and args.keep_rounds < 0:
        print(f"swarm-launch: --keep-rounds {args.keep_rounds}: give 0 (keep every blob) or N >= 1", file=sys.stderr)
        return 2
    launcher = SwarmLauncher(
        sites,
        workdir,
        args.ledger,
        args.fabric_profile,
        None if quiet else sys.stdout,
        service_args=[] if args.keep_rounds is None else ["--keep-rounds", str(args.keep_rounds)],
        mtls=args.mtls,
    )
    if args.progress:
        launcher.echo = sys.stdout  # the launcher's own lines only: children's output goes to their logs
        launcher.children_echo = False

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    code = 1
    try:
        launcher.start_services()
        launcher.start_training(args.script, args.script_args, task, site_env)
        code = launcher.wait(args.timeout, progress_every_s=10.0 if args.progress else None)
    except KeyboardInterrupt:
        launcher.say("interrupted: stopping every site")
        code = 130
    except (RuntimeError, IdentityError) as exc:
        launcher.say(f"FAILED: {exc}")
        code = 1
    finally:
        launcher.stop()
    line = launcher.summary(task)
    if line:
        launcher.say(line)
    launcher.say(f"logs: {workdir}/<site>/sn.log and train.log")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
