"""Shamir's t-of-n secret sharing of 32-byte secrets over GF(2^521 - 1).

Any ``t`` shares give the secret back (Lagrange interpolation at 0); fewer
say nothing about it. Share ``x`` coordinates are 1..n, one per site.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

PRIME = (1 << 521) - 1  # a Mersenne prime above every 32-byte secret
SHARE_BYTES = 66  # ceil(521 / 8)


def split(secret: bytes, t: int, xs: list[int]) -> dict[int, int]:
    """Shares ``secret`` among the points ``xs`` (distinct, 1 <= x < PRIME); any ``t`` recover it."""
    if len(secret) > 64:
        raise ValueError(f"a secret of {len(secret)} bytes is too long for this field (at most 64)")
    if not 1 <= t <= len(xs):
        raise ValueError(f"threshold t={t} must be between 1 and the number of shares {len(xs)}")
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise ValueError(f"share points must be distinct and in 1..PRIME-1, got {xs}")
    coefficients = [int.from_bytes(secret, "big")] + [secrets.randbelow(PRIME) for _ in range(t - 1)]
    shares = {}
    for x in xs:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        shares[x] = y
    return shares


def combine(shares: Mapping[int, int], t: int, length: int = 32) -> bytes:
    """The secret from at least ``t`` shares ``{x: y}`` (the first ``t`` by x are used)."""
    if len(shares) < t:
        raise ValueError(f"{len(shares)} shares cannot recover a secret shared with threshold {t}")
    points = sorted(shares.items())[:t]
    secret = 0
    for i, (xi, yi) in enumerate(points):
        num = den = 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                num = num * (-xj) % PRIME
                den = den * (xi - xj) % PRIME
        secret = (secret + yi * num * pow(den, -1, PRIME)) % PRIME
    if secret >= 1 << (8 * length):
        raise ValueError("the shares do not belong to one secret (inconsistent or corrupted)")
    return secret.to_bytes(length, "big")


def encode(y: int) -> bytes:
    """A share's value as fixed-length bytes."""
    return y.to_bytes(SHARE_BYTES, "big")


def decode(data: bytes) -> int:
    """The inverse of ``encode``."""
    if len(data) != SHARE_BYTES:
        raise ValueError(f"a share has {SHARE_BYTES} bytes, got {len(data)}")
    y = int.from_bytes(data, "big")
    if y >= PRIME:
        raise ValueError("a share value is outside the field")
    return y
