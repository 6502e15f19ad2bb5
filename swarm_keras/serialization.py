"""The weights wire format, defined in ``swarm_wire.serialization``; kept here for code that imports it from here."""

from swarm_wire.serialization import *  # noqa: F403
