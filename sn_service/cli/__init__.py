"""The service's commands: ``swarm-sn`` (one site's service), ``swarm-launch`` (a swarm on this machine),
``swarm-status`` (what a task waits for) and ``swarm-identity`` (a swarm CA and site certificates)."""
