"""The Fabric connection profile (``swarm-fabric-profile/1``): the one reader of it.

``scripts/start_network.sh`` and ``scripts/fabric_host.sh site-profile``
write it (see ``fabric-network/README.md``). ``read_profile`` reads the
document and finds a site in it, ``profile_file`` resolves a file it names;
``load_profile`` gives what the ledger client needs, and
``sn_service.tls.msp_tls`` reads the organisations' MSP CAs with the same two.
Every problem is a ``ProfileError`` naming the file, the key and what to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROFILE_FORMAT = "swarm-fabric-profile/1"


class ProfileError(ValueError):
    """The connection profile is missing, malformed, or names files that do not exist."""


def read_profile(path: str | Path, site: str) -> dict:
    """The profile document at ``path``, checked to be one and to name ``site`` under ``sites``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(
            f"no Fabric connection profile at {path}: start the network with scripts/start_network.sh"
        ) from None
    except OSError as exc:
        raise ProfileError(f"cannot read the Fabric connection profile {path}: {exc}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"the Fabric connection profile {path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ProfileError(f"the Fabric connection profile {path} must be a JSON object")
    fmt = doc.get("format")
    if fmt is not None and fmt != PROFILE_FORMAT:
        raise ProfileError(f"{path}: profile format {fmt!r} is not supported (expected {PROFILE_FORMAT!r})")
    sites = _get(doc, "sites", str(path), dict)
    if site not in sites:
        known = ", ".join(sorted(sites)) or "none"
        raise ProfileError(f"{path}: no site {site!r} in 'sites' (the profile has: {known})")
    return doc


def profile_file(path: str | Path, value: str, where: str) -> Path:
    """The file a profile names at ``where``: relative to the profile's folder, and existing."""
    p = Path(value)
    if not p.is_absolute():
        p = Path(path).parent / p
    if not p.is_file():
        raise ProfileError(f"{where}: no such file {p}")
    return p


@dataclass(frozen=True)
class SiteProfile:
    """What one site needs to reach the ledger, read from the connection profile."""

    site: str
    channel: str
    chaincode: str
    mspid: str
    gateway_address: str
    tls_ca_cert: Path
    server_name_override: str | None
    client_cert: Path
    client_key: Path


def _get(obj: Any, key: str, where: str, kind: type = str) -> Any:
    if not isinstance(obj, dict):
        raise ProfileError(f"{where} must be a JSON object")
    if key not in obj:
        raise ProfileError(f"{where} has no {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is str and not value):
        raise ProfileError(f"{where}.{key} must be a non-empty {'string' if kind is str else kind.__name__}")
    return value


def load_profile(path: str | Path, site: str) -> SiteProfile:
    """Reads ``site``'s settings from the connection profile of ``scripts/start_network.sh``.

    The profile (``swarm-fabric-profile/1``, see ``fabric-network/README.md``)
    holds ``channel``, ``chaincode`` and ``sites.<site>`` with ``mspid``,
    ``peer.gateway_address``, ``peer.tls_ca_cert``, optional
    ``peer.ssl_target_name_override``, and ``client.cert`` / ``client.key``.
    Relative file paths are taken from the profile's folder. Every missing
    key or file is reported by name (``ProfileError``).
    """
    doc = read_profile(path, site)
    where = str(path)
    channel = _get(doc, "channel", where)
    chaincode = _get(doc, "chaincode", where)
    entry = doc["sites"][site]
    where = f"{path}: sites.{site}"
    mspid = _get(entry, "mspid", where)
    peer = _get(entry, "peer", where, dict)
    client = _get(entry, "client", where, dict)
    override = peer.get("ssl_target_name_override")
    if override is not None and (not isinstance(override, str) or not override):
        raise ProfileError(f"{where}.peer.ssl_target_name_override must be a non-empty string")

    def file(section: dict, key: str, sub: str) -> Path:
        return profile_file(path, _get(section, key, f"{where}.{sub}"), f"{where}.{sub}.{key}")

    return SiteProfile(
        site=site,
        channel=channel,
        chaincode=chaincode,
        mspid=mspid,
        gateway_address=_get(peer, "gateway_address", f"{where}.peer"),
        tls_ca_cert=file(peer, "tls_ca_cert", "peer"),
        server_name_override=override,
        client_cert=file(client, "cert", "client"),
        client_key=file(client, "key", "client"),
    )
