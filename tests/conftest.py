"""Settings for every test."""

from hypothesis import settings

# Property tests check correctness, not speed: hypothesis's default 200 ms deadline per example
# fails them on a loaded 2-core CI machine (seen: krum's permutation test).
settings.register_profile("swarm", deadline=None)
settings.load_profile("swarm")
