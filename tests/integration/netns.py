"""Hosts made of Linux network namespaces, for the tests that need separate machines.

A "switch" namespace holds a bridge; each host is a namespace with its own
address on one /24, wired to the bridge by a veth pair. Cutting a host's link
(its switch port down) drops its packets without a refusal, as a failed
uplink would. Needs root (CAP_NET_ADMIN) and ``ip``: ``network_or_skip``
skips the test saying why, or fails it when ``SWARM_REQUIRE_NETNS=1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs ``ip ARGS`` and returns the finished process (raises on failure when ``check``)."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def unavailable(reason: str) -> None:
    """Skips the test for want of network namespaces, or fails it under ``SWARM_REQUIRE_NETNS=1``."""
    if os.environ.get("SWARM_REQUIRE_NETNS") == "1":
        pytest.fail(f"SWARM_REQUIRE_NETNS=1 but {reason}", pytrace=False)
    pytest.skip(f"{reason} (network namespaces need root with CAP_NET_ADMIN and iproute2)")


class Network:
    """A switch namespace with a bridge, and one namespace per host wired to it.

    Args:
        hosts: the hosts' names, in address order.
        subnet: the first three octets of the hosts' /24 (host i gets ``.i+1``).
        prefix: the namespaces' name prefix (so that concurrent tests never collide).
    """

    def __init__(self, hosts: tuple[str, ...], subnet: str = "10.213.0", prefix: str = "sw") -> None:
        tag = uuid.uuid4().hex[:5]
        self.switch = f"{prefix}s{tag}"
        self.ns: dict[str, str] = {}
        self.addr: dict[str, str] = {}
        self.port: dict[str, str] = {}  # the switch side of a host's link
        self.subnet = subnet
        self.prefix = prefix
        self.tag = tag
        self.made: list[str] = []
        for host in hosts:
            self._name(host)

    def _name(self, host: str) -> None:
        i = len(self.ns)
        self.ns[host] = f"{self.prefix}{self.tag}{i}"
        self.addr[host] = f"{self.subnet}.{i + 1}"
        self.port[host] = f"p{self.tag}{i}"

    def up(self) -> None:
        """Makes the switch and every host."""
        ip("netns", "add", self.switch)
        self.made.append(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.ns:
            self._wire(host)

    def add_host(self, host: str) -> None:
        """Adds one more host to the running network (a site that joins later)."""
        self._name(host)
        self._wire(host)

    def _wire(self, host: str) -> None:
        ns = self.ns[host]
        ip("netns", "add", ns)
        self.made.append(ns)
        link = ("type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("link", "add", self.port[host], "netns", self.switch, *link)
        ip("-n", self.switch, "link", "set", self.port[host], "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{self.addr[host]}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")

    def cut(self, host: str) -> None:
        """Takes the host's switch port down: its packets are dropped, nothing is refused."""
        ip("-n", self.switch, "link", "set", self.port[host], "down")

    def restore(self, host: str) -> None:
        """Brings the host's switch port up again."""
        ip("-n", self.switch, "link", "set", self.port[host], "up")

    def down(self) -> None:
        """Deletes every namespace made (which deletes their ends of the links)."""
        for ns in reversed(self.made):
            ip("netns", "delete", ns, check=False)
        self.made.clear()

    def exec(self, host: str) -> list[str]:
        """The command prefix that runs a program inside the host's namespace."""
        return ["ip", "netns", "exec", self.ns[host]]

    def reachable(self, src: str, dst: str, port: int) -> bool:
        """True when a TCP connection from ``src`` to ``dst``:``port`` succeeds within 2 s."""
        code = "import socket,sys; socket.create_connection(sys.argv[1:3], 2)"
        cmd = [*self.exec(src), sys.executable, "-c", code, self.addr[dst], str(port)]
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0


def network_or_skip(hosts: tuple[str, ...], subnet: str = "10.213.0", prefix: str = "sw") -> Network:
    """A network of ``hosts``, up; skips (or fails, see module doc) when namespaces cannot be made."""
    if shutil.which("ip") is None:
        unavailable("no `ip` command (iproute2)")
    if os.geteuid() != 0:
        unavailable("not running as root")
    net = Network(hosts, subnet, prefix)
    try:
        net.up()
    except subprocess.CalledProcessError as exc:
        net.down()
        unavailable(f"could not make network namespaces: {exc.stderr.strip()}")
    return net
