"""Secure aggregation for ``merge_method="mean"``: the leader sees masked blobs and the weighted mean only.

After Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving
Machine Learning", CCS 2017, on a ledger instead of a server (see
docs/secure-aggregation.md):

* ``shamir`` — t-of-n secret sharing over a prime field.
* ``crypto`` — X25519 round keys, pairwise and self masks (AES-256-CTR as the
  PRG), share envelopes (ChaCha20-Poly1305), fixed point in Z_2^56.
* ``protocol`` — one site's part of a round (mask, answer reveals under the
  Bonawitz rule) and the leader's unmasking, pure functions and state, no I/O.
* ``rounds`` — the I/O: the ledger and the peers, called by the round driver.
"""
