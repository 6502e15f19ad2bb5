"""Ledger backends behind one interface: embedded (SQLite) and Fabric."""

from sn_service.ledger.base import Ledger, LedgerUnavailable
from sn_service.ledger.embedded import EmbeddedLedger, LedgerMissing

__all__ = ["EmbeddedLedger", "Ledger", "LedgerMissing", "LedgerUnavailable", "open_ledger"]


def open_ledger(kind: str, identity: str, create: bool = False, **options: str) -> Ledger:
    """Opens a ledger backend by name (``embedded`` or ``fabric``).

    ``create``: the embedded ledger's file may be made (a new swarm); otherwise it must exist.
    """
    if kind == "embedded":
        return EmbeddedLedger(options["path"], identity=identity, create=create)
    if kind == "fabric":
        from sn_service.ledger.fabric import FabricLedger  # grpc only when asked for

        return FabricLedger.from_profile(options["profile"], site=options["site"])
    raise ValueError(f"unknown ledger {kind!r}: use 'embedded' or 'fabric'")
