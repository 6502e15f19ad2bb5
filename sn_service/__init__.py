"""The swarm-network service: one per site, it drives merge rounds against a ledger."""

try:  # the one version string is pyproject.toml's, read from the installed package
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("swarm-keras")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
