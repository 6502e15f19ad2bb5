"""Mutual TLS between the sites of a Fabric swarm, with the organisations' MSP certificates.

On Fabric a site already has an identity: the certificate its organisation's
MSP CA issued, with which it signs every transaction. The chaincode records
it as ``<MSPID>::<subject>``. The peer API uses the same certificate and key
for mutual TLS, so no second PKI is needed, and the check that a peer "is the
site registered on the ledger" is a comparison of two strings:

- a site trusts exactly the MSP CAs of the swarm's organisations (the
  ``msp_ca_cert`` of every site in the connection profile), nothing else;
- the identity of a peer's certificate is ``<MSPID of the CA that issued
  it>::<its subject>``, the string the chaincode computes for that
  certificate; it must be a node of a task this site takes part in (server
  side) or the very node the ledger says holds the blob (client side).

MSP certificates name people, not hosts, so the client does not check host
names; it checks the server's identity against the ledger instead, which is
the stronger check.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from sn_service.ledger.fabric_profile import ProfileError, profile_file, read_profile
from sn_service.tls.identity import IdentityError
from sn_service.tls.x509_names import FABRIC_IDENTITY_SEPARATOR, fabric_identity, go_subject_string

#: The identity given to a certificate no trusted organisation issued (never a registered node).
UNKNOWN_PREFIX = "unknown::"


@dataclass(frozen=True)
class MSPTLS:
    """A Fabric site's peer-API TLS material: its MSP certificate and key, and the organisations' CAs.

    Use ``from_profile``. ``cas`` maps each organisation's MSP ID to its CA certificate.
    """

    cert: Path
    key: Path
    ca: Path
    mspid: str
    cas: dict[str, x509.Certificate] = field(repr=False)
    #: SSL contexts trusting ``ca``, given more CAs when organisations join (``refresh``).
    contexts: list[ssl.SSLContext] = field(default_factory=list, repr=False, compare=False)
    check_hostname = False
    source = "Fabric MSP"

    @classmethod
    def from_profile(cls, profile: str | Path, site: str, bundle_dir: str | Path) -> MSPTLS:
        """Reads ``site``'s MSP certificate and key and every site's ``msp_ca_cert`` from the profile.

        Writes the CA bundle (public certificates only) to
        ``bundle_dir/msp-cas.pem``. Raises IdentityError naming what is
        missing and what to do.
        """
        profile = Path(profile)
        try:
            sites = read_profile(profile, site)["sites"]
        except ProfileError as exc:
            raise IdentityError(str(exc)) from exc

        def path_of(entry_site: str, *keys: str) -> Path:
            where, value = f"{profile}: sites.{entry_site}", sites[entry_site]
            for key in keys:
                where += f".{key}"
                value = value.get(key) if isinstance(value, dict) else None
            if not isinstance(value, str) or not value:
                hint = (
                    " (profiles written before mutual TLS on Fabric lack it: run scripts/start_network.sh "
                    "again, it rewrites the profile)"
                    if keys == ("msp_ca_cert",)
                    else ""
                )
                raise IdentityError(f"{where} is missing{hint}")
            try:
                return profile_file(profile, value, where)
            except ProfileError as exc:
                raise IdentityError(str(exc)) from None

        cas: dict[str, x509.Certificate] = {}
        pems: list[bytes] = []
        for name in sorted(sites):
            mspid = sites[name].get("mspid") if isinstance(sites[name], dict) else None
            if not isinstance(mspid, str) or not mspid:
                raise IdentityError(f"{profile}: sites.{name}.mspid is missing")
            pem = path_of(name, "msp_ca_cert").read_bytes()
            try:
                ca = x509.load_pem_x509_certificate(pem)
            except ValueError as exc:
                raise IdentityError(f"{profile}: sites.{name}.msp_ca_cert is not a PEM certificate: {exc}") from exc
            if mspid in cas and cas[mspid] != ca:
                raise IdentityError(f"{profile}: two different MSP CA certificates for {mspid}")
            if mspid not in cas:
                cas[mspid] = ca
                pems.append(pem if pem.endswith(b"\n") else pem + b"\n")
        bundle_dir = Path(bundle_dir)
        bundle_dir.mkdir(parents=True, exist_ok=True)
        bundle = bundle_dir / "msp-cas.pem"
        tmp = bundle.with_suffix(".tmp")
        tmp.write_bytes(b"".join(pems))
        tmp.replace(bundle)
        tls = cls(
            cert=path_of(site, "client", "cert"),
            key=path_of(site, "client", "key"),
            ca=bundle,
            mspid=sites[site]["mspid"],
            cas=cas,
        )
        own = x509.load_pem_x509_certificate(tls.cert.read_bytes())
        if not tls.identity_of(own).startswith(tls.mspid + FABRIC_IDENTITY_SEPARATOR):
            raise IdentityError(
                f"{tls.cert} was not issued by the MSP CA of {tls.mspid} given in {profile}: "
                "the profile's client certificate and msp_ca_cert do not belong together"
            )
        return tls

    def identity(self) -> str:
        """This site's identity: the one the chaincode records for its transactions."""
        return self.identity_of(x509.load_pem_x509_certificate(self.cert.read_bytes()))

    def identity_of(self, cert: x509.Certificate) -> str:
        """``<MSPID>::<subject>`` for a certificate one of the organisations' CAs signed.

        TLS has verified the chain already; this finds which organisation's CA
        it was (by issuer name and signature). A certificate none of them
        issued gets ``unknown::<subject>``, which no registered node has.
        """
        for mspid, ca in self.cas.items():
            if ca.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return fabric_identity(mspid, cert)
        return UNKNOWN_PREFIX + go_subject_string(cert.subject)

    def trust_in(self, context: ssl.SSLContext) -> ssl.SSLContext:
        """Registers an SSL context built on ``ca``: ``refresh`` adds newly trusted CAs to it."""
        self.contexts.append(context)
        return context

    def refresh(self, profile: str | Path, site: str) -> list[str]:
        """Trusts the organisations added to the profile since; returns their MSP IDs.

        A site that joins a running swarm is added to every profile
        (``scripts/fabric_host.sh site-profile``); this reads it again, adds the
        new organisations' CAs to this object and to every registered SSL
        context (new connections trust them, open ones are unaffected). An
        organisation whose CA changed, or that left the profile, needs a
        restart: IdentityError says so.
        """
        new = MSPTLS.from_profile(profile, site, self.ca.parent / "next")  # the bundle in use stays until taken
        changed = sorted(m for m in self.cas if m in new.cas and new.cas[m] != self.cas[m])
        gone = sorted(m for m in self.cas if m not in new.cas)
        if changed or gone:
            raise IdentityError(
                f"{profile}: the MSP CA of {', '.join(changed + gone)} changed or was removed; "
                "restart swarm-sn to trust the new set of organisations"
            )
        added = sorted(m for m in new.cas if m not in self.cas)
        for mspid in added:
            self.cas[mspid] = new.cas[mspid]
        if added:
            new.ca.replace(self.ca)
            pem = self.ca.read_text(encoding="ascii")
            for context in self.contexts:
                context.load_verify_locations(cadata=pem)
        return added


def watch_profile(tls: MSPTLS, profile: str | Path, site: str, interval_s: float = 2.0) -> threading.Event:
    """Re-reads the profile whenever it changes (a thread) so that organisations added later are trusted.

    Returns an event; set it to stop watching.
    """
    log = logging.getLogger("sn_service.msp_tls")
    profile = Path(profile)
    stop = threading.Event()

    def mtime() -> float:
        try:
            return profile.stat().st_mtime
        except OSError:
            return 0.0

    def run() -> None:
        seen = mtime()
        while not stop.wait(interval_s):
            now = mtime()
            if now == seen:
                continue
            seen = now
            try:
                added = tls.refresh(profile, site)
            except IdentityError as exc:
                log.warning("profile %s changed but was not taken: %s", profile, exc)
                continue
            if added:
                log.info("now trusting the MSP CA of %s for blobs (from %s)", ", ".join(added), profile)

    threading.Thread(target=run, name="msp-profile-watch", daemon=True).start()
    return stop
