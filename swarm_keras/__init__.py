"""Swarm Learning for Keras: add ``SwarmCallback`` to ``model.fit``.

Importing this package does not import Keras; ``SwarmCallback`` loads it on
first use, so the swarm-network service can share the weights format
(``swarm_keras.serialization``) without TensorFlow.
"""

from typing import Any

__all__ = ["SwarmCallback"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "SwarmCallback":
        from swarm_keras.callback import SwarmCallback

        return SwarmCallback
    raise AttributeError(f"module 'swarm_keras' has no attribute {name!r}")
