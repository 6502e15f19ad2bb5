"""What the callback and the swarm-network service agree on, with neither importing the other.

- ``swarm_wire.serialization``: the weights wire format (safetensors bytes, layouts, fingerprints,
  the largest blob a layout allows);
- ``swarm_wire.safetensors_files``: the same format written, checked and memory-mapped as files, chunk
  by chunk, for models of gigabytes;
- ``swarm_wire.options``: the merge methods and weightings every side checks;
- ``swarm_wire.names``: the patterns of task, site and metric names, and of sha256 digests.

No Keras and no web framework here: numpy and safetensors only.
"""
