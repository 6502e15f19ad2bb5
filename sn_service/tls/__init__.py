"""Who a site is and who is on the other end: site identities, mutual TLS, X.509 names as Fabric writes them."""
