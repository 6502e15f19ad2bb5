"""HTTP routers: the callback's local API, the peer blob API, status."""
