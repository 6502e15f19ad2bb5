"""Mutual TLS on Fabric with the organisations' MSP certificates: trust and identities, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509

from sn_service.cli import swarm_sn
from sn_service.tls.identity import IdentityError, create_ca, issue_site
from sn_service.tls.msp_tls import MSPTLS


def _org(tmp: Path, n: int) -> tuple[Path, Path, Path]:
    """An organisation's CA and one member's certificate and key (made like an MSP's)."""
    create_ca(tmp / f"org{n}-ca", name=f"ca.org{n}.example.com")
    member = issue_site(tmp / f"org{n}-ca", f"User1@org{n}.example.com", tmp / f"org{n}-user")
    return tmp / f"org{n}-ca" / "ca.crt", member.cert, member.key


def _profile(tmp: Path, orgs: int = 3, drop: str | None = None) -> Path:
    sites = {}
    for n in range(1, orgs + 1):
        ca, cert, key = _org(tmp, n)
        sites[f"site-{'abc'[n - 1]}"] = {
            "mspid": f"Org{n}MSP",
            "msp_ca_cert": str(ca),
            "client": {"cert": str(cert), "key": str(key)},
        }
    if drop:
        del sites["site-b"][drop]
    path = tmp / "connection.json"
    path.write_text(json.dumps({"format": "swarm-fabric-profile/1", "sites": sites}))
    return path


def test_a_certificate_stands_for_its_organisation_and_subject(tmp_path):
    profile = _profile(tmp_path)
    tls = MSPTLS.from_profile(profile, "site-a", tmp_path / "bundle")
    assert tls.mspid == "Org1MSP" and tls.check_hostname is False
    assert tls.identity() == "Org1MSP::CN=User1@org1.example.com,O=swarm"
    org2 = x509.load_pem_x509_certificate((tmp_path / "org2-user" / "site.crt").read_bytes())
    assert tls.identity_of(org2) == "Org2MSP::CN=User1@org2.example.com,O=swarm"
    # The bundle holds the three organisations' CAs, and nothing secret.
    bundle = (tmp_path / "bundle" / "msp-cas.pem").read_text()
    assert bundle.count("BEGIN CERTIFICATE") == 3 and "PRIVATE" not in bundle


def test_the_identity_is_the_one_the_chaincode_records(tmp_path):
    pytest.importorskip("fabric_protos")
    from sn_service.ledger.fabric_signing import Signer

    tls = MSPTLS.from_profile(_profile(tmp_path), "site-c", tmp_path / "bundle")
    # The Fabric ledger's signer names itself with the same string the peer API gives its certificate.
    signer = Signer("Org3MSP", tls.cert.read_bytes(), tls.key.read_bytes())
    assert tls.identity() == signer.identity == "Org3MSP::CN=User1@org3.example.com,O=swarm"


def test_a_stranger_is_nobody_even_with_a_copied_issuer_name(tmp_path):
    """A CA with the same name as Org1's but another key: the signature decides, not the name."""
    tls = MSPTLS.from_profile(_profile(tmp_path), "site-a", tmp_path / "bundle")
    create_ca(tmp_path / "fake-ca", name="ca.org1.example.com")
    fake = issue_site(tmp_path / "fake-ca", "User1@org1.example.com", tmp_path / "fake")
    cert = x509.load_pem_x509_certificate(fake.cert.read_bytes())
    assert tls.identity_of(cert).startswith("unknown::")


def test_profile_problems_are_named(tmp_path):
    with pytest.raises(IdentityError, match=r"sites.site-b.msp_ca_cert is missing.*start_network.sh again"):
        MSPTLS.from_profile(_profile(tmp_path, drop="msp_ca_cert"), "site-a", tmp_path / "bundle")
    with pytest.raises(IdentityError, match=r"no site 'site-x'.*site-a, site-b, site-c"):
        MSPTLS.from_profile(tmp_path / "connection.json", "site-x", tmp_path / "bundle")
    with pytest.raises(IdentityError, match="no Fabric connection profile"):
        MSPTLS.from_profile(tmp_path / "nope.json", "site-a", tmp_path / "bundle")


def test_the_peer_tls_and_the_ledger_client_read_the_profile_alike(tmp_path):
    """One reader (``fabric_profile``): the same file problem gets the same sentence on both paths."""
    from sn_service.ledger.fabric_profile import ProfileError, load_profile

    profile = _profile(tmp_path)
    doc = json.loads(profile.read_text())
    doc["sites"]["site-a"]["client"]["cert"] = "gone.crt"  # relative: taken from the profile's folder
    for name, text in {"moved.json": json.dumps(doc), "future.json": json.dumps({**doc, "format": "v9"})}.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(IdentityError) as by_tls:
            MSPTLS.from_profile(tmp_path / name, "site-a", tmp_path / "bundle")
        with pytest.raises(ProfileError) as by_ledger:
            load_profile(tmp_path / name, "site-a")
        if name == "moved.json":
            assert str(tmp_path / "gone.crt") in str(by_tls.value)
            assert "sites.site-a.client.cert: no such file" in str(by_tls.value)
        else:
            assert str(by_tls.value) == str(by_ledger.value)
            assert "profile format 'v9' is not supported" in str(by_tls.value)


def test_a_client_certificate_of_another_organisation_is_refused(tmp_path):
    profile = _profile(tmp_path)
    doc = json.loads(profile.read_text())
    doc["sites"]["site-a"]["client"] = doc["sites"]["site-b"]["client"]  # Org2's certificate under Org1
    doc["sites"]["site-a"]["msp_ca_cert"] = str(tmp_path / "org1-ca" / "ca.crt")
    profile.write_text(json.dumps(doc))
    with pytest.raises(IdentityError, match="not issued by the MSP CA of Org1MSP"):
        MSPTLS.from_profile(profile, "site-a", tmp_path / "bundle")


def test_swarm_sn_refuses_mixed_tls_options(tmp_path, capsys):
    base = ["--site", "site-a", "--port", "1", "--data-dir", str(tmp_path / "d")]
    code = swarm_sn.main(
        [*base, "--ledger", "fabric", "--fabric-profile", "p.json", "--tls-dir", "x", "--peer-port", "2"]
    )
    assert code == 2 and "MSP certificate" in capsys.readouterr().err
    code = swarm_sn.main([*base, "--ledger-path", str(tmp_path / "l.sqlite"), "--peer-port", "2"])
    assert code == 2 and "needs --tls-dir" in capsys.readouterr().err
    code = swarm_sn.main([*base, "--ledger-path", str(tmp_path / "l.sqlite"), "--tls-dir", "x"])
    assert code == 2 and "needs --peer-port" in capsys.readouterr().err


def test_an_organisation_added_to_the_profile_is_trusted_without_a_restart(tmp_path):
    """A site that joined the running swarm: the re-read profile adds its CA to the open TLS contexts."""
    import ssl

    profile = _profile(tmp_path, orgs=2)
    tls = MSPTLS.from_profile(profile, "site-a", tmp_path / "bundle")
    context = tls.trust_in(ssl.create_default_context(cafile=str(tls.ca)))
    assert context.cert_store_stats()["x509_ca"] == 2
    assert tls.refresh(profile, "site-a") == []  # nothing new
    doc = json.loads(profile.read_text())
    ca, cert, _key = _org(tmp_path, 4)
    doc["sites"]["site-d"] = {"mspid": "Org4MSP", "msp_ca_cert": str(ca)}
    profile.write_text(json.dumps(doc))
    org4 = x509.load_pem_x509_certificate(cert.read_bytes())
    assert tls.identity_of(org4).startswith("unknown::")
    assert tls.refresh(profile, "site-a") == ["Org4MSP"]
    assert tls.identity_of(org4) == "Org4MSP::CN=User1@org4.example.com,O=swarm"
    assert context.cert_store_stats()["x509_ca"] == 3
    # another CA for a member organisation is no addition: a restart decides
    doc["sites"]["site-b"]["msp_ca_cert"] = str(ca)
    doc["sites"]["site-b"]["mspid"] = "Org2MSP"
    doc["sites"]["site-d"]["msp_ca_cert"] = str(tmp_path / "org1-ca" / "ca.crt")
    profile.write_text(json.dumps(doc))
    with pytest.raises(IdentityError, match=r"MSP CA of Org2MSP, Org4MSP changed.*restart swarm-sn"):
        tls.refresh(profile, "site-a")


@pytest.mark.parametrize(
    ("endpoint", "given", "tls", "problem"),
    [
        ("https://10.0.0.5:30406", True, True, None),
        ("https://site-a.example:30406", True, True, None),
        ("http://127.0.0.1:30305", False, False, None),
        ("https://0.0.0.0:30406", False, True, "the default endpoint (from --host and the port) is https://0.0.0.0"),
        ("https://[::]:30406", True, True, "--advertise is https://[::]:30406: :: is no address"),
        ("http://10.0.0.5:30406", True, True, "must be https://HOST:PORT"),
        ("https://10.0.0.5", True, True, "must be https://HOST:PORT"),
    ],
)
def test_an_advertised_endpoint_nobody_can_dial_is_refused(endpoint, given, tls, problem):
    found = swarm_sn.advertised_endpoint_problem(endpoint, given, tls)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found, found


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("10.0.0.5", "https://10.0.0.5:8443"),
        ("site-a.example", "https://site-a.example:8443"),
        ("::1", "https://[::1]:8443"),
        ("[::1]", "https://[::1]:8443"),
        ("fd00::5", "https://[fd00::5]:8443"),
    ],
)
def test_a_host_becomes_a_url_an_ipv6_literal_in_brackets(host, url):
    assert swarm_sn.host_url("https", host, 8443) == url
    assert swarm_sn.advertised_endpoint_problem(url, False, True) is None
