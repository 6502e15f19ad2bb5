"""Bad input on the multi-host path gets a clear error naming it.

``scripts/fabric_host.sh`` (per-host Fabric tooling) and ``swarm-sn`` on a
site's host, given what an operator may get wrong: an unreachable address,
a missing export folder, another organisation's certificate, a private key
in what is about to be sent, a wrong peer address, a missing key file. Only
cryptogen runs (no Fabric process), so this takes seconds; skipped without
the Fabric commands unless ``SWARM_REQUIRE_FABRIC=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sn_service.cli.launcher import free_port

from .conftest import run_swarm_sn

pytestmark = [pytest.mark.fabric]

REPO = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("FABRIC_TOOLS_DIR", REPO / ".tools" / "fabric"))


@pytest.fixture(scope="module")
def tools() -> Path:
    missing = [c for c in ("cryptogen", "configtxgen") if not (TOOLS / "bin" / c).is_file()]
    if missing or shutil.which("jq") is None or shutil.which("openssl") is None:
        reason = f"the Fabric commands ({', '.join(missing)}) or jq/openssl are missing; scripts/install_fabric.sh"
        if os.environ.get("SWARM_REQUIRE_FABRIC") == "1":
            pytest.fail(f"SWARM_REQUIRE_FABRIC=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return TOOLS


def host(home: Path, command: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "fabric_host.sh"), command, "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def refused(proc: subprocess.CompletedProcess, *words: str) -> str:
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    for word in words:
        assert word in text, f"{word!r} not in: {text}"
    return text


def swarm_sn(profile: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_swarm_sn(
        "site-a", data, "--ledger", "fabric", "--fabric-profile", str(profile), *extra, port=free_port(), timeout_s=120
    )


@pytest.fixture(scope="module")
def two_sites(tools, tmp_path_factory):
    """Two sites' host folders (keys made by site-init), each with the other's export."""
    root = tmp_path_factory.mktemp("hosts")
    a, b = root / "site-a", root / "site-b"
    ok(host(a, "site-init", "--org", "1", "--site", "site-a", "--address", "127.0.0.1"))
    ok(host(b, "site-init", "--org", "2", "--site", "site-b", "--address", "127.0.0.1"))
    return a, b


def test_an_unreachable_address_is_refused(tools, tmp_path):
    text = refused(host(tmp_path / "h", "site-init", "--org", "1", "--site", "s", "--address", "0.0.0.0"), "0.0.0.0")
    assert "this host's own address" in text
    refused(host(tmp_path / "o", "orderer-init", "--address", "orderer.example"), "IPv4 address")


def test_the_export_holds_public_material_only(two_sites):
    a, _ = two_sites
    export = a / "export" / "Org1MSP"
    files = sorted(str(p.relative_to(export)) for p in export.rglob("*") if p.is_file())
    assert files == [
        "msp/cacerts/ca.org1.example.com-cert.pem",
        "msp/config.yaml",
        "msp/tlscacerts/tlsca.org1.example.com-cert.pem",
        "org.env",
        "peer-tls-ca.crt",
    ]
    assert not any(b"PRIVATE KEY" in p.read_bytes() for p in export.rglob("*") if p.is_file())


def test_a_missing_export_folder_is_named(two_sites, tmp_path):
    a, _ = two_sites
    missing = tmp_path / "Org2MSP"
    refused(host(a, "site-profile", "--org", str(missing)), f"no such export folder: {missing}")


def test_an_export_carrying_this_hosts_own_ca_under_another_name_is_refused(two_sites, tmp_path):
    a, b = two_sites
    fake = tmp_path / "Org2MSP"
    shutil.copytree(b / "export" / "Org2MSP", fake)
    own_ca = a / "export" / "Org1MSP" / "msp" / "cacerts" / "ca.org1.example.com-cert.pem"
    shutil.copy(own_ca, fake / "msp" / "cacerts" / "ca.org2.example.com-cert.pem")
    refused(
        host(a, "site-profile", "--org", str(fake)), "says it is Org2MSP but its MSP CA is this host's own (Org1MSP)"
    )


def test_a_private_key_in_an_export_is_never_taken(tools, two_sites, tmp_path):
    _, b = two_sites
    tainted = tmp_path / "Org2MSP"
    shutil.copytree(b / "export" / "Org2MSP", tainted)
    key = next((b / "crypto").rglob("priv_sk"))
    shutil.copy(key, tainted / "msp" / "stray_sk")
    orderer = tmp_path / "orderer"
    ok(host(orderer, "orderer-init", "--address", "127.0.0.1"))
    refused(
        host(orderer, "orderer-create-channel", "--org", str(tainted)),
        "private key material in the export folder",
        str(tainted / "msp" / "stray_sk"),
    )
    assert not (orderer / "pids" / "orderer.pid").exists()  # nothing was started


def test_swarm_sn_names_a_wrong_peer_address_a_foreign_certificate_and_a_missing_file(two_sites, tmp_path):
    a, b = two_sites
    ok(host(a, "site-profile", "--org", str(b / "export" / "Org2MSP")))
    profile = json.loads((a / "connection.json").read_text())
    assert sorted(profile["sites"]) == ["site-a", "site-b"]
    assert "client" not in profile["sites"]["site-b"] and "peer" not in profile["sites"]["site-b"]

    def variant(name: str, change) -> Path:
        doc = json.loads(json.dumps(profile))
        change(doc["sites"]["site-a"])
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        return path

    # a wrong peer address: nothing listens there
    port = free_port()
    wrong = variant("wrong-peer", lambda s: s["peer"].update(gateway_address=f"127.0.0.1:{port}"))
    proc = swarm_sn(wrong, tmp_path / "d1")
    refused(proc, f"cannot reach site-a's Fabric peer at 127.0.0.1:{port}", "sites.site-a.peer.gateway_address")

    # another organisation's certificate as this site's identity
    b_user = b / "crypto" / "peerOrganizations" / "org2.example.com" / "users" / "User1@org2.example.com" / "msp"
    foreign = variant(
        "foreign-cert",
        lambda s: s["client"].update(
            cert=str(b_user / "signcerts" / "User1@org2.example.com-cert.pem"), key=str(b_user / "keystore" / "priv_sk")
        ),
    )
    proc = swarm_sn(foreign, tmp_path / "d2", "--peer-port", str(free_port()))
    refused(proc, "User1@org2.example.com-cert.pem was not issued by the MSP CA of Org1MSP")

    # a missing key file
    gone = tmp_path / "gone_sk"
    missing = variant("missing-key", lambda s: s["client"].update(key=str(gone)))
    refused(swarm_sn(missing, tmp_path / "d3"), "sites.site-a.client.key: no such file", str(gone))
    refused(swarm_sn(missing, tmp_path / "d4", "--peer-port", str(free_port())), "sites.site-a.client.key", str(gone))

    # --host 0.0.0.0 without --advertise would put 0.0.0.0 on the ledger as this site's address
    proc = swarm_sn(a / "connection.json", tmp_path / "d5", "--peer-port", "30406", "--host", "0.0.0.0")
    refused(proc, "https://0.0.0.0:30406", "no address another site can reach", "--advertise")
    proc = swarm_sn(a / "connection.json", tmp_path / "d6", "--peer-port", "0", "--advertise", "https://0.0.0.0:1")
    refused(proc, "--advertise is https://0.0.0.0:1")
