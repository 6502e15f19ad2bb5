"""The Fabric ledger against a real Fabric network running the real swarm chaincode.

The network comes from ``scripts/start_network.sh``. In order of preference:

1. ``SWARM_FABRIC_PROFILE=/path/to/connection.json``: that network, as it is;
2. ``.fabric/connection.json`` of a network already up: used, left running
   (unless ``SWARM_FABRIC_PRIVATE=1``);
3. otherwise a private network is started for this module (its own folder
   and ports, so a developer's network is never touched) and stopped after.

Without the Fabric toolchain (the commands built by ``scripts/install_fabric.sh``
and Go for the chaincode) the tests are skipped, saying why; with
``SWARM_REQUIRE_FABRIC=1`` they fail instead (and a missing toolchain is built).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from sn_service.contract import ContractError
from sn_service.ledger.base import LedgerUnavailable

pytestmark = [pytest.mark.fabric, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
SITES = ("site-a", "site-b", "site-c")
REQUIRED = os.environ.get("SWARM_REQUIRE_FABRIC") == "1"
LAYOUT = "f32[4,2];f32[2]"
FABRIC_COMMANDS = ("peer", "orderer", "configtxgen", "cryptogen", "osnadmin")


def _unavailable(reason: str) -> None:
    """Skips, or fails when SWARM_REQUIRE_FABRIC=1."""
    if REQUIRED:
        pytest.fail(f"SWARM_REQUIRE_FABRIC=1 but {reason}", pytrace=False)
    pytest.skip(f"{reason} (set SWARM_REQUIRE_FABRIC=1 to make this a failure)")


def _go() -> str | None:
    if shutil.which("go"):
        return shutil.which("go")
    return "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None


def _toolchain_missing() -> str | None:
    try:
        import fabric_protos  # noqa: F401
        import grpc  # noqa: F401
    except ImportError as exc:
        return f"the Fabric client's Python packages are missing ({exc})"
    if _go() is None:
        return "no Go toolchain (needed to build the chaincode and the Fabric commands)"
    tools = Path(os.environ.get("FABRIC_TOOLS_DIR", REPO / ".tools" / "fabric")) / "bin"
    missing = [c for c in FABRIC_COMMANDS if not (tools / c).is_file()]
    if missing and not REQUIRED:  # building them takes minutes: only when asked to
        return f"the Fabric commands are not built ({', '.join(missing)} missing in {tools}: scripts/install_fabric.sh)"
    return None


def _ledgers(profile: Path, **options) -> dict:
    from sn_service.ledger.fabric import FabricLedger

    return {site: FabricLedger.from_profile(profile, site, **options) for site in SITES}


def _serving(profile: Path) -> str | None:
    """None when the network of ``profile`` answers a query through every site's peer, else why not."""
    try:
        ledgers = _ledgers(profile, evaluate_timeout_s=10)
    except Exception as exc:
        return f"{profile}: {exc}"
    try:
        for site, ledger in ledgers.items():
            try:
                ledger.get_task("no-such-task-" + uuid.uuid4().hex[:8])
            except ContractError as exc:
                if exc.code != "TASK_NOT_FOUND":
                    return f"{site}: unexpected {exc}"
            except Exception as exc:
                return f"{site}: {exc}"
        return None
    finally:
        for ledger in ledgers.values():
            ledger.close()


def _free_port_block(size: int = 50) -> int:
    """A base port with ``size`` free ports above it on 127.0.0.1."""
    for base in range(21050, 60000, 1000):
        free = True
        for port in range(base, base + size):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            return base
    raise RuntimeError("no free block of ports on 127.0.0.1")


@pytest.fixture(scope="module")
def profile(tmp_path_factory) -> Path:
    """The connection profile of a running network (see the module's docstring)."""
    given = os.environ.get("SWARM_FABRIC_PROFILE")
    if given:
        reason = _serving(Path(given))
        if reason:
            _unavailable(f"SWARM_FABRIC_PROFILE={given}: the network does not answer: {reason}")
        yield Path(given)
        return
    default = REPO / ".fabric" / "connection.json"
    private = os.environ.get("SWARM_FABRIC_PRIVATE") == "1"
    if not private and default.is_file() and _serving(default) is None:
        yield default  # a developer's network: used as it is, never stopped here
        return
    missing = _toolchain_missing()
    if missing:
        _unavailable(f"no running Fabric network to use, and {missing}")

    home = tmp_path_factory.mktemp("fabric-home")
    env = {
        **os.environ,
        "FABRIC_HOME": str(home),
        "FABRIC_PORT_BASE": str(_free_port_block()),
        "SITE_NAMES": ",".join(SITES),
    }
    log = tmp_path_factory.mktemp("fabric-log") / "start_network.log"
    started = time.monotonic()
    try:
        with log.open("w") as out:
            proc = subprocess.run(
                ["bash", str(REPO / "scripts" / "start_network.sh")],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=1200,
                check=False,
            )
        text = log.read_text(errors="replace")
        if proc.returncode != 0:
            _unavailable(f"scripts/start_network.sh failed (exit {proc.returncode}):\n{text[-4000:]}")
        path = home / "connection.json"
        reason = _serving(path)
        if reason:
            _unavailable(f"the network started by scripts/start_network.sh does not answer: {reason}\n{text[-2000:]}")
        print(f"started a private Fabric network in {home} in {time.monotonic() - started:.1f} s")
        yield path
    finally:
        subprocess.run(
            ["bash", str(REPO / "scripts" / "stop_network.sh"), "--clean"],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="module")
def ledgers(profile):
    """One FabricLedger per site, each with its own organisation's identity."""
    led = _ledgers(profile)
    yield led
    for ledger in led.values():
        ledger.close()


def _spec(**kw) -> dict:
    spec = {
        "fingerprint": hashlib.sha256(LAYOUT.encode()).hexdigest(),
        "layout": LAYOUT,
        "min_peers": 3,
        "merge_method": "mean",
        "quorum_wait_ms": 600_000,
        "leader_timeout_ms": 600_000,
        "max_rounds": 0,
    }
    spec.update(kw)
    return spec


def _eventually(check, timeout_s: float = 20.0):
    """``check()``'s value once it stops failing.

    Each site reads through its own peer, and a peer commits a block a few
    milliseconds after another: what one site just committed, another site
    sees only then (exactly as a site of a real swarm would).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except (AssertionError, ContractError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _seen_by_all(ledgers: dict, task: str, check) -> None:
    """Waits until every site's peer shows a task record for which ``check(record)`` holds."""
    for ledger in ledgers.values():

        def one(ledger=ledger) -> None:
            assert check(ledger.get_task(task))

        _eventually(one)


def _check(ok: bool) -> None:
    assert ok


def _registered_task(ledgers, spec: dict) -> str:
    """A new task of ``spec`` with every site registered, as every site's peer sees it."""
    task = _task()
    ledgers["site-a"].init_task(task, spec)
    _seen_by_all(ledgers, task, lambda rec: rec["spec"] == spec)
    for site, ledger in ledgers.items():
        ledger.register(task, site, f"https://{site}", spec["fingerprint"])
    _seen_by_all(ledgers, task, lambda rec: sorted(rec["nodes"]) == list(SITES))
    return task


def _at_once(call) -> dict[str, object]:
    """``call(site)`` for every site in threads of their own, started together: each result, or its exception."""
    results: dict[str, object] = {}

    def run(site: str) -> None:
        try:
            results[site] = call(site)
        except Exception as exc:  # the caller reports it
            results[site] = exc

    threads = [threading.Thread(target=run, args=(s,)) for s in SITES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _task() -> str:
    return "it-" + uuid.uuid4().hex[:16]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_identity_matches_what_the_chaincode_sees(ledgers):
    """InitTask records its caller: the chaincode's identity string must equal ours, for every org."""
    for site, ledger in ledgers.items():
        task = _task()
        before = int(time.time() * 1000)
        record = ledger.init_task(task, _spec())
        assert record["created_by"] == ledger.identity, site
        assert ledger.identity.startswith(f"Org{SITES.index(site) + 1}MSP::CN=User1@org")
        # The transaction time is the proposal's timestamp (this machine's clock).
        assert before - 1000 <= record["created_ms"] <= int(time.time() * 1000) + 1000


def test_init_register_get_task(ledgers):
    a, b = ledgers["site-a"], ledgers["site-b"]
    task, spec = _task(), _spec()
    created = a.init_task(task, spec)
    assert created["task"] == task and created["spec"] == spec and created["current_round"] == 0
    assert created["status"] == "open" and created["nodes"] == {}
    # The same spec again: a no-op returning the task; another spec: SPEC_MISMATCH.
    assert b.init_task(task, dict(spec)) == created
    with pytest.raises(ContractError) as err:
        b.init_task(task, _spec(min_peers=2))
    assert err.value.code == "SPEC_MISMATCH"

    _seen_by_all(ledgers, task, lambda rec: rec["spec"] == spec)
    for site, ledger in ledgers.items():
        if site == "site-c":
            _seen_by_all(ledgers, task, lambda rec: {"site-a", "site-b"} <= set(rec["nodes"]))
            with pytest.raises(ContractError) as err:
                ledger.register(task, "site-a", "https://c", spec["fingerprint"])  # another org's node
            assert err.value.code == "IDENTITY_MISMATCH"
        record = ledger.register(task, site, f"https://{site}.example:9443", spec["fingerprint"])
        node = record["nodes"][site]
        assert node["identity"] == ledger.identity and node["status"] == "active"
    _seen_by_all(ledgers, task, lambda rec: sorted(rec["nodes"]) == list(SITES))
    seen = b.get_task(task)
    assert {n: v["identity"] for n, v in seen["nodes"].items()} == {s: ledgers[s].identity for s in SITES}

    # Contract refusals arrive with the embedded ledger's codes.
    with pytest.raises(ContractError) as err:
        a.register(task, "site-z", "https://z", spec["fingerprint"])  # one identity, one node
    assert err.value.code == "IDENTITY_IN_USE"
    with pytest.raises(ContractError) as err:
        a.register(task, "site-a", "https://a", _sha("other model"))
    assert err.value.code == "FINGERPRINT_MISMATCH"
    with pytest.raises(ContractError) as err:
        a.get_task(_task())
    assert err.value.code == "TASK_NOT_FOUND"
    with pytest.raises(ContractError) as err:
        a.invoke("NoSuchFunction", task)
    assert err.value.code == "UNKNOWN_FUNCTION"
    assert b.get_task(task) == seen  # refusals wrote nothing


def test_concurrent_round_over_three_orgs(ledgers):
    """Three sites write the same task record at once (MVCC conflicts are retried), then close and publish."""
    task = _registered_task(ledgers, _spec())
    results = _at_once(lambda site: ledgers[site].submit(task, 0, site, _sha(site), 10 + SITES.index(site)))
    errors = {s: r for s, r in results.items() if isinstance(r, Exception)}
    assert not errors, errors
    expected = {s: (_sha(s), 10 + SITES.index(s)) for s in SITES}

    def all_submitted(ledger) -> dict:
        rec = ledger.get_round(task, 0)
        assert {n: (s["sha256"], s["weight"]) for n, s in rec["submissions"].items()} == expected
        return rec

    round0 = [_eventually(lambda led=led: all_submitted(led)) for led in ledgers.values()][1]
    # Same hash again: idempotent; another hash: DUPLICATE_SUBMISSION.
    assert ledgers["site-a"].submit(task, 0, "site-a", _sha("site-a"), 10)["submissions"] == round0["submissions"]
    with pytest.raises(ContractError) as err:
        ledgers["site-a"].submit(task, 0, "site-a", _sha("something else"), 10)
    assert err.value.code == "DUPLICATE_SUBMISSION"

    closed = ledgers["site-c"].close_round(task, 0)
    assert closed["status"] == "closed" and sorted(closed["contributors"]) == list(SITES)
    leader = closed["contributors"][closed["leader_index"]]
    other = next(s for s in SITES if s != leader)
    for led in ledgers.values():
        _eventually(lambda led=led: _check(led.get_round(task, 0)["status"] == "closed"))
    with pytest.raises(ContractError) as err:
        ledgers[other].publish(task, 0, other, _sha("merged"))
    assert err.value.code == "NOT_LEADER"
    ledgers[leader].publish(task, 0, leader, _sha("merged"))
    _seen_by_all(ledgers, task, lambda rec: rec["current_round"] == 1)
    record = ledgers["site-a"].get_task(task)
    assert record["current_round"] == 1
    assert record["latest_merged"] == {"round": 0, "sha256": _sha("merged"), "node": leader}
    history = ledgers["site-b"].get_history(task)
    assert [r["round"] for r in history["rounds"]] == [0] and history["rounds"][0]["status"] == "done"


def test_advertised_round_keys_go_through_the_chaincode_beside_concurrent_submits(ledgers):
    """AdvertiseKey on Fabric: each site's advertisement is a record of its own, so it commits beside a Submit."""
    task = _registered_task(ledgers, _spec(secure_aggregation=True))
    a = ledgers["site-a"]
    for site, ledger in ledgers.items():
        ledger.submit(task, 0, site, _sha(site), 1)
    leader = ledgers["site-b"].close_round(task, 0)["contributors"][0]
    ledgers[leader].publish(task, 0, leader, _sha("merged"))
    _seen_by_all(ledgers, task, lambda rec: rec["current_round"] == 1)

    def act(site: str) -> dict:  # two sites advertise while the third submits, at once
        if site == "site-c":
            return ledgers[site].submit(task, 1, site, _sha("key c"), 3)
        return ledgers[site].advertise_key(task, 1, site, _sha(f"key {site}"))

    results = _at_once(act)
    assert not [r for r in results.values() if isinstance(r, Exception)], results
    rnd = _eventually(lambda: _check_round(a.get_round(task, 1), ["site-a", "site-b"]))
    assert {n: v["key"] for n, v in rnd["advertised"].items()} == {s: _sha(f"key {s}") for s in ("site-a", "site-b")}
    assert list(rnd["submissions"]) == ["site-c"]  # an advertisement is not a submission
    with pytest.raises(ContractError) as err:
        a.advertise_key(task, 1, "site-a", _sha("another key"))
    assert err.value.code == "DUPLICATE_SUBMISSION"
    with pytest.raises(ContractError) as err:
        ledgers["site-c"].advertise_key(task, 1, "site-c", _sha("key c"))  # it submitted already
    assert err.value.code == "DUPLICATE_SUBMISSION"


def test_a_round_every_contributor_failed_to_lead_is_abandoned_through_the_chaincode(ledgers):
    """Failover on Fabric: after the last contributor in leader order, the round is abandoned, the next opens."""
    task = _registered_task(ledgers, _spec(min_peers=2, quorum_wait_ms=0, leader_timeout_ms=1))
    a, c = ledgers["site-a"], ledgers["site-c"]
    for site in ("site-a", "site-b"):
        ledgers[site].submit(task, 0, site, _sha(site), 1)
    _eventually(lambda: _check(len(c.get_round(task, 0)["submissions"]) == 2))
    closed = c.close_round(task, 0)  # site-c has not submitted, but min_peers 2 and no quorum wait: it closes
    assert sorted(closed["contributors"]) == ["site-a", "site-b"]
    # Each failover needs the one before committed at the caller's peer, and a passed deadline (1 ms).
    first = c.failover(task, 0)
    assert first["status"] == "closed" and first["leader_index"] == 1
    _eventually(lambda: _check(a.get_round(task, 0)["leader_index"] == 1))
    last = a.failover(task, 0)
    assert last["status"] == "abandoned" and last["abandoned_by"] == "site-a" and last["failovers"] == 2
    assert last["merged_sha256"] is None
    _seen_by_all(ledgers, task, lambda rec: rec["current_round"] == 1 and rec["abandoned_rounds"] == 1)
    assert a.get_task(task)["latest_merged"] is None
    with pytest.raises(ContractError) as err:
        c.submit(task, 0, "site-c", _sha("site-c"), 1)
    assert err.value.code == "ROUND_CLOSED" and "abandoned" in str(err.value) and "round 1" in str(err.value)
    assert c.submit(task, 1, "site-c", _sha("site-c"), 1)["submissions"]["site-c"]["sha256"] == _sha("site-c")
    history = ledgers["site-b"].get_history(task)["rounds"]
    assert [r["status"] for r in history] == ["abandoned"]


def _check_round(rnd: dict, advertised: list[str]) -> dict:
    _check(sorted(rnd.get("advertised", {})) == advertised and "site-c" in rnd["submissions"])
    return rnd


def test_unreachable_peer_is_ledger_unavailable(profile):
    from sn_service.ledger.fabric import FabricLedger
    from sn_service.ledger.fabric_profile import load_profile

    site = load_profile(profile, "site-a")
    ledger = FabricLedger.from_profile(profile, "site-a", evaluate_timeout_s=2, endorse_timeout_s=2)
    ledger.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = FabricLedger(
        f"127.0.0.1:{port}",
        site.channel,
        site.chaincode,
        ledger.signer,
        site.tls_ca_cert.read_bytes(),
        site.server_name_override,
        evaluate_timeout_s=2,
        endorse_timeout_s=2,
    )
    try:
        with pytest.raises(LedgerUnavailable):
            dead.get_task("t")
    finally:
        dead.close()


def test_profile_names_every_site(profile):
    doc = json.loads(Path(profile).read_text())
    assert set(SITES) <= set(doc["sites"])


def test_three_sites_train_one_model_on_fabric(profile, tmp_path):
    """The core end-to-end swarm, its round state agreed by the chaincode on the real network."""

    from sn_service.ledger.fabric import FabricLedger

    from .conftest import check_swarm_run, launch_synthetic

    task = _task()
    workdir = tmp_path / "run"
    launch_synthetic(
        workdir,
        task,
        "--epochs",
        "2",
        "--samples",
        "320",
        "--sync-frequency",
        "4",
        launcher_args=("--ledger", "fabric", "--fabric-profile", str(profile), "--mtls", "--keep-rounds", "0"),
        timeout_s=900,
    )
    ledger = FabricLedger.from_profile(profile, "site-a")
    try:
        history = ledger.get_history(task)["rounds"]
        record = ledger.get_task(task)
    finally:
        ledger.close()
    identities = {info["identity"] for info in record["nodes"].values()}
    assert all(i.startswith(("Org1MSP::", "Org2MSP::", "Org3MSP::")) for i in identities), identities
    # --mtls: the blobs went over mutual TLS with the organisations' MSP certificates.
    assert all(info["endpoint"].startswith("https://") for info in record["nodes"].values()), record["nodes"]
    check_swarm_run(workdir, history, record, SITES, min_merges=3)


def test_three_sites_train_by_secure_aggregation_on_fabric(profile, tmp_path):
    """Secure aggregation through the chaincode's SubmitMasked and Seal: every merge sealed with all three sites."""
    from sn_service.ledger.fabric import FabricLedger

    from .conftest import launch_synthetic

    task = _task()
    workdir = tmp_path / "run"
    launch_synthetic(
        workdir,
        task,
        *("--epochs", "1", "--samples", "320", "--sync-frequency", "4", "--secure-aggregation"),
        launcher_args=("--ledger", "fabric", "--fabric-profile", str(profile), "--mtls", "--keep-rounds", "0"),
        timeout_s=900,
    )
    ledger = FabricLedger.from_profile(profile, "site-a")
    try:
        history = ledger.get_history(task)["rounds"]
        record = ledger.get_task(task)
    finally:
        ledger.close()
    assert record["spec"]["secure_aggregation"] is True
    merges = [r for r in history if r["previous_merged_sha256"] is not None]
    assert len(merges) >= 2
    for rnd in merges:
        assert rnd["sealed"]["survivors"] == sorted(SITES) and rnd["sealed"]["by"] == rnd["published_by"]
        assert sorted(rnd["masked"]) == sorted(SITES)
    finals = {(workdir / s / "final.safetensors").read_bytes() for s in SITES}
    assert len(finals) == 1 and hashlib.sha256(finals.pop()).hexdigest() == history[-1]["merged_sha256"]


def test_blobs_travel_over_mtls_with_the_organisations_msp_certificates(profile, tmp_path):
    """On Fabric the MSP certificates are the sites' TLS identities: only registered sites get blobs."""
    import ssl

    import httpx
    import numpy as np

    from sn_service.ledger.fabric import FabricLedger
    from sn_service.ledger.fabric_profile import load_profile
    from sn_service.peer_client import BlobFetchError, PeerClient
    from sn_service.tls.identity import create_ca, issue_site
    from sn_service.tls.msp_tls import MSPTLS
    from swarm_wire import serialization

    from .conftest import Services, small_spec, sync_round

    services = Services(tmp_path, ["--ledger", "fabric", "--fabric-profile", str(profile)])
    task = _task()
    try:
        urls = {s: services.start(s, "--peer-port", "0") for s in SITES}
        for url in urls.values():
            r = httpx.post(f"{url}/v1/local/join", json={"task": task, "spec": small_spec()}, timeout=60)
            assert r.status_code == 200, r.text
        rng = np.random.default_rng(0)
        for round_no in (0, 1):  # round 1 fetches every contribution from its site over mTLS
            results = sync_round(urls, task, rng, timeout_s=120)
            assert all(r["state"] == "done" and r["round"] == round_no for r in results.values()), results

        ledger = FabricLedger.from_profile(profile, "site-a")
        try:
            record = ledger.get_task(task)
            holder = ledger.get_round(task, 1)["published_by"]
        finally:
            ledger.close()
        for s in SITES:
            assert record["nodes"][s]["endpoint"] == f"https://127.0.0.1:{services.peer_ports[s]}"
            assert record["nodes"][s]["identity"].startswith(f"Org{SITES.index(s) + 1}MSP::CN=User1@")
        merged = results["site-a"]["merged_sha256"]
        url = f"https://127.0.0.1:{services.peer_ports[holder]}/v1/blobs/{merged}"
        other = next(s for s in SITES if s != holder)
        tls = {s: MSPTLS.from_profile(profile, s, tmp_path / "bundle" / s) for s in SITES}

        def get(cert: tuple[str, str] | None):
            context = ssl.create_default_context(cafile=str(tls[other].ca))
            context.check_hostname = False
            if cert is not None:
                context.load_cert_chain(*cert)
            with httpx.Client(verify=context, timeout=10) as client:
                return client.get(url)

        ok = get((str(tls[other].cert), str(tls[other].key)))
        assert ok.status_code == 200 and serialization.sha256_hex(ok.content) == merged

        # The organisation's admin: a valid Org member, but not the site registered on the ledger.
        client = load_profile(profile, other).client_cert
        admin_msp = client.parents[3] / client.parents[2].name.replace("User1@", "Admin@") / "msp"
        admin_cert = next((admin_msp / "signcerts").glob("*.pem"))
        r = get((str(admin_cert), str(admin_msp / "keystore" / "priv_sk")))
        assert r.status_code == 403 and r.json()["detail"]["error"] == "UNKNOWN_SITE", r.text
        assert r.json()["detail"]["message"].startswith(tls[other].mspid + "::CN=Admin@")

        # A certificate from a CA outside the swarm's organisations, or none: no handshake.
        create_ca(tmp_path / "rogue-ca")
        rogue = issue_site(tmp_path / "rogue-ca", "site-a", tmp_path / "rogue")
        with pytest.raises(httpx.HTTPError):
            get((str(rogue.cert), str(rogue.key)))
        with pytest.raises(httpx.HTTPError):
            get(None)

        # The fetching side checks the server is the node the ledger names.
        peers = PeerClient(tls[other])
        try:
            endpoint, nodes = record["nodes"][holder]["endpoint"], record["nodes"]
            assert peers.fetch(endpoint, merged, 1 << 20, nodes[holder]["identity"])
            wrong = next(s for s in SITES if s != holder)
            with pytest.raises(BlobFetchError, match="not " + nodes[wrong]["identity"][:20]):
                peers.fetch(endpoint, merged, 1 << 20, nodes[wrong]["identity"])
            with pytest.raises(BlobFetchError, match="no ledger identity"):
                peers.fetch(endpoint, merged, 1 << 20, None)
        finally:
            peers.close()
        for s in SITES:
            log = services.log(s)
            assert "peer TLS Fabric MSP" in log
            assert "PRIVATE KEY" not in log, "no secret is ever logged"
    finally:
        services.stop_all()


def _restart(home: Path, process: str) -> None:
    """Kills one network process (SIGKILL) by its recorded PID, then resumes the network."""
    import signal as _signal

    pid = int((home / "pids" / f"{process}.pid").read_text().split()[0])
    os.kill(pid, _signal.SIGKILL)
    time.sleep(2.0)  # down for a while, with the swarm running
    env = {**os.environ, "FABRIC_HOME": str(home)}
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "start_network.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_training_goes_on_when_the_orderer_and_a_peer_restart(profile, tmp_path):
    """Faults on Fabric: the services retry with backoff while the orderer, then a peer, are down."""
    import sys

    from sn_service.ledger.fabric import FabricLedger

    from .conftest import check_swarm_run

    task = _task()
    workdir = tmp_path / "run"
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sn_service.cli.launcher",
            "--sites",
            "3",
            "--task",
            task,
            "--workdir",
            str(workdir),
            "--ledger",
            "fabric",
            "--fabric-profile",
            str(profile),
            "--timeout",
            "900",
            "--keep-rounds",
            "0",  # every round is audited below
            "--quiet",
            str(REPO / "examples" / "synthetic" / "train.py"),
            "--epochs",
            "4",
            "--samples",
            "640",
            "--sync-frequency",
            "5",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ledger = FabricLedger.from_profile(profile, "site-a")

    def current_round() -> int:
        try:
            return ledger.get_task(task)["current_round"]
        except (ContractError, LedgerUnavailable):
            return -1

    try:
        for process, after_round in (("orderer", 2), ("peer-org2", 6)):
            deadline = time.monotonic() + 300
            while current_round() < after_round:
                assert launcher.poll() is None, launcher.stdout.read()[-4000:]
                assert time.monotonic() < deadline, f"no round {after_round} within 300 s"
                time.sleep(0.5)
            _restart(profile.parent, process)
        out, _ = launcher.communicate(timeout=900)
        assert launcher.returncode == 0, out[-5000:]
        history = ledger.get_history(task)["rounds"]
        record = ledger.get_task(task)
    finally:
        if launcher.poll() is None:
            launcher.terminate()  # SIGTERM: the launcher stops the services and trainers it started
            try:
                launcher.wait(30)
            except subprocess.TimeoutExpired:
                launcher.kill()
        ledger.close()
    assert len(history) > 6
    check_swarm_run(workdir, history, record, SITES, min_merges=6)
    logs = "".join((workdir / s / "sn.log").read_text() for s in SITES)
    assert "ledger unreachable" in logs, "the outage must be seen and retried, not silently absent"
