"""Swarm Learning for Keras: add ``SwarmCallback`` to ``model.fit``.

Importing this package does not import Keras; ``SwarmCallback`` loads it on
first use. The weights format is ``swarm_wire.serialization``, which the
swarm-network service shares; ``swarm_keras.serialization`` names it too.
"""

from typing import Any

__all__ = ["SwarmCallback"]
try:  # the one version string is pyproject.toml's, read from the installed package
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("swarm-keras")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "SwarmCallback":
        from swarm_keras.callback import SwarmCallback

        return SwarmCallback
    raise AttributeError(f"module 'swarm_keras' has no attribute {name!r}")
