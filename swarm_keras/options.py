"""The merge methods and weightings, as ``swarm_wire.options`` defines them (kept here for existing imports)."""

from swarm_wire.options import MERGE_METHODS, MERGE_WEIGHTINGS

__all__ = ["MERGE_METHODS", "MERGE_WEIGHTINGS"]
