"""Site identities: a swarm CA and one key and certificate per site (ECDSA P-256).

``swarm-identity init-ca --dir ca/`` makes the CA; ``swarm-identity issue
--ca ca/ --site site-a --out site-a/`` issues a site's key and certificate.
A site's service serves blobs over mutual TLS with them; its ledger identity
is ``x509::<certificate subject>``. Existing keys are never overwritten.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sn_service.tls.x509_names import go_subject_string

CA_CERT, CA_KEY = "ca.crt", "ca.key"
SITE_CERT, SITE_KEY = "site.crt", "site.key"
IDENTITY_PREFIX = "x509::"


class IdentityError(ValueError):
    """A CA or site identity could not be made or read; the message says what to do."""


class PeerTLS(Protocol):
    """What the mutual-TLS peer API needs, whoever issued the certificates.

    ``SiteTLS`` (a swarm CA made by ``swarm-identity``) and
    ``sn_service.tls.msp_tls.MSPTLS`` (the Fabric organisations' MSP CAs) both fit.
    """

    cert: Path  #: this site's certificate (PEM), served and presented as a client
    key: Path  #: its private key (PEM)
    ca: Path  #: the CA certificates a peer's certificate must chain to (PEM bundle)
    check_hostname: bool  #: whether a server certificate must name the host dialled
    source: str  #: where the certificates come from, for log lines

    def identity(self) -> str:
        """This site's identity on the ledger."""
        ...

    def identity_of(self, cert: x509.Certificate) -> str:
        """The ledger identity a verified peer certificate stands for."""
        ...


@dataclass(frozen=True)
class SiteTLS:
    """A site's TLS material: its certificate and key, and the swarm CA."""

    cert: Path
    key: Path
    ca: Path

    @classmethod
    def from_dir(cls, folder: str | Path) -> SiteTLS:
        """Reads ``site.crt``, ``site.key`` and ``ca.crt`` from one folder (what ``issue`` writes)."""
        folder = Path(folder)
        paths = cls(folder / SITE_CERT, folder / SITE_KEY, folder / CA_CERT)
        for p in (paths.cert, paths.key, paths.ca):
            if not p.is_file():
                raise IdentityError(f"{p} is missing: issue the site's identity with `swarm-identity issue`")
        return paths

    #: Peers are named by certificate subjects, and the site certificates carry their hosts.
    check_hostname = True
    #: Where the certificates come from, for log lines.
    source = "swarm CA"

    def identity(self) -> str:
        """This site's ledger identity: ``x509::`` and its certificate's subject."""
        return identity_of(x509.load_pem_x509_certificate(self.cert.read_bytes()))

    def identity_of(self, cert: x509.Certificate) -> str:
        """The ledger identity of a peer's (already verified) certificate."""
        return identity_of(cert)


def identity_of(cert: x509.Certificate) -> str:
    """The ledger identity a certificate stands for."""
    return IDENTITY_PREFIX + go_subject_string(cert.subject)


def _write_new(path: Path, data: bytes, private: bool = False) -> None:
    """Writes a file that must not exist yet (keys are never overwritten)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, 0o600 if private else 0o644)
    except FileExistsError:
        raise IdentityError(
            f"{path} exists already; refusing to overwrite it (move it away to make a new one)"
        ) from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def create_ca(folder: str | Path, name: str = "swarm-ca", days: int = 3650) -> Path:
    """Makes a self-signed CA (``ca.key``, ``ca.crt``) in ``folder``; returns the certificate's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "swarm")]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_new(folder / CA_KEY, _key_pem(key), private=True)
    _write_new(folder / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
    return folder / CA_CERT


def issue_site(
    ca_folder: str | Path,
    site: str,
    out: str | Path,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    days: int = 825,
) -> SiteTLS:
    """Issues a site's key and certificate (server and client use) signed by the CA; copies ``ca.crt`` beside."""
    ca_folder, out = Path(ca_folder), Path(out)
    try:
        ca_key = serialization.load_pem_private_key((ca_folder / CA_KEY).read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate((ca_folder / CA_CERT).read_bytes())
    except FileNotFoundError as exc:
        raise IdentityError(
            f"no CA in {ca_folder} ({exc.filename} missing): run `swarm-identity init-ca` first"
        ) from exc
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise IdentityError(f"{ca_folder / CA_KEY} is not an ECDSA key")
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(site)]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [x509.NameAttribute(NameOID.COMMON_NAME, site), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "swarm")]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
            critical=False,  # type: ignore[arg-type]
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_new(out / SITE_KEY, _key_pem(key), private=True)
    _write_new(out / SITE_CERT, cert.public_bytes(serialization.Encoding.PEM))
    if not (out / CA_CERT).exists():
        _write_new(out / CA_CERT, (ca_folder / CA_CERT).read_bytes())
    return SiteTLS(out / SITE_CERT, out / SITE_KEY, out / CA_CERT)
