"""The swarm-network service: one per site, it drives merge rounds against a ledger."""

__version__ = "0.1.0"
