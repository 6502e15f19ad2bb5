"""The swarm's settings that the callback, the service and the examples all check (no Keras here)."""

# How the leader merges (sn_service.merge implements each; the chaincode checks the same names).
MERGE_METHODS = ("mean", "coordmedian", "geomedian", "trimmedmean", "krum", "multikrum")
# What a site's contribution weighs: steps trained since the last merge x nodeWeightage, or nodeWeightage alone.
MERGE_WEIGHTINGS = ("steps", "node")
