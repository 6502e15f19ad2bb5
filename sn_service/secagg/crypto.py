"""The cryptography of secure aggregation: keys, masks, envelopes and the fixed-point ring.

Each site makes a fresh X25519 key pair per round and registers the public
key on the ledger with its submission. Two sites' Diffie-Hellman secret,
through HKDF with distinct labels, gives them (a) the seed of their pairwise
mask and (b) the key of the envelope that carries one site's secret share to
the other. The private key itself is never revealed: a dropped site's masks
are removed with the pairwise seeds its survivors reveal, so a revealed seed
opens nothing but that one pair's mask of that round.

Masks live in Z_2^56: numpy uint64 arithmetic wraps at 2^64, a multiple of
2^56, so sums are reduced once at the end, and a masked value travels in 7
bytes (a float32 model masked is 1.75 times its size, not 2). Weights are
quantised to fixed point with ``frac_bits`` fractional bits, chosen from the
round's total weight so that the sum of every weighted value cannot wrap:
|w x| <= w * MAX_ABS and sum(w) * MAX_ABS * 2^frac_bits < 2^55.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

RING_BITS = 56
RING_MASK = np.uint64((1 << RING_BITS) - 1)
MAX_ABS = 2.0**16  # the largest |weight value| secure aggregation accepts
MAX_FRAC_BITS = 40
MIN_FRAC_BITS = 16
_ZERO_NONCE12 = bytes(12)


class SecAggError(ValueError):
    """A secure-aggregation step cannot go on; the message says what is wrong and what to do."""


class RoundKey:
    """A site's X25519 key pair for one round; the public half goes on the ledger as 64 hex digits."""

    def __init__(self, private: X25519PrivateKey | None = None) -> None:
        self._private = private or X25519PrivateKey.generate()
        self.public_hex = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    @classmethod
    def from_bytes(cls, raw: bytes) -> RoundKey:
        """A key pair from its 32 private bytes (tests)."""
        return cls(X25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """The 32 private bytes (tests only: the protocol never reveals them)."""
        return self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def agree(self, other_public_hex: str) -> bytes:
        """The Diffie-Hellman secret with another site's public key."""
        try:
            other = X25519PublicKey.from_public_bytes(bytes.fromhex(other_public_hex))
        except ValueError as exc:
            raise SecAggError(f"{other_public_hex[:16]}... is not an X25519 public key: {exc}") from None
        return self._private.exchange(other)


def _hkdf(secret: bytes, info: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info.encode()).derive(secret)


def pairwise_seed(key: RoundKey, other_public_hex: str, task: str, round_no: int, a: str, b: str) -> bytes:
    """The seed of the pairwise mask of sites ``a`` and ``b`` in one round (both compute the same)."""
    lo, hi = sorted((a, b))
    return _hkdf(key.agree(other_public_hex), f"swarm-secagg/mask/{task}/{round_no}/{lo}/{hi}")


def envelope_key(key: RoundKey, other_public_hex: str, task: str, round_no: int, sender: str, recipient: str) -> bytes:
    """The key of the envelope ``sender`` seals to ``recipient`` (one per direction and round)."""
    return _hkdf(key.agree(other_public_hex), f"swarm-secagg/share/{task}/{round_no}/{sender}/{recipient}")


def seal(key: bytes, plaintext: bytes, context: str) -> bytes:
    """Encrypts and authenticates ``plaintext`` bound to ``context`` (a key is used once: fixed nonce)."""
    return ChaCha20Poly1305(key).encrypt(_ZERO_NONCE12, plaintext, context.encode())


def open_sealed(key: bytes, ciphertext: bytes, context: str) -> bytes:
    """Decrypts an envelope; raises SecAggError if it was not sealed with this key and context."""
    from cryptography.exceptions import InvalidTag

    try:
        return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE12, ciphertext, context.encode())
    except InvalidTag:
        raise SecAggError(f"envelope {context} does not open: not sealed for this site, or altered") from None


_zeros = bytes(0)
_zeros_lock = threading.Lock()


def _zero_bytes(n: int) -> bytes:
    """``n`` zero bytes to encrypt into a keystream (one buffer, grown as needed, shared read-only)."""
    global _zeros
    with _zeros_lock:
        if len(_zeros) < n:
            _zeros = bytes(n)
        return _zeros


def prg(seed: bytes, count: int, out: np.ndarray | None = None) -> np.ndarray:
    """``count`` pseudo-random uint64 values from a 32-byte seed: the AES-256-CTR keystream (AES-NI: ~7 GB/s).

    ``out``: a uint64 array of ``count`` values to write into (a caller that adds many streams reuses one
    buffer instead of allocating each); a new array by default.
    """
    if out is None:
        out = np.empty(count, dtype=np.uint64)
    elif out.dtype != np.uint64 or out.shape != (count,) or not out.flags.c_contiguous:
        raise ValueError(f"out must be a contiguous uint64 array of {count} values, not {out.dtype}{out.shape}")
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    size = 8 * count
    # update_into wants a block of room beyond what it writes: all but the last block straight into ``out``,
    # the last block through update() (the counter runs on across the two calls).
    head = max(0, size - 16)
    raw = memoryview(out.view(np.uint8).reshape(-1) if count else bytearray(0))
    if head:
        encryptor.update_into(memoryview(_zero_bytes(head))[:head], raw)
    raw[head:size] = encryptor.update(bytes(size - head))
    return out


PRG_BLOCK = 1 << 15  # values per block of add_prgs: a block of the sum and of a keystream fit a core's L2 cache


def add_prgs(total: np.ndarray, streams: Sequence[tuple[bytes, int]], block: int = PRG_BLOCK) -> None:
    """Adds ``sign * prg(seed, total.size)`` for each ``(seed, sign)`` to ``total`` in place (mod 2^64).

    The same values as one ``total += prg(...)`` (or ``-=``) per stream, computed block by block: each
    block of ``total`` is read and written once for all the streams, and the keystreams never exist
    whole (a third less CPU for 16 streams of 1.8 M values here, and much less memory traffic).
    """
    if total.dtype != np.uint64 or total.ndim != 1 or not total.flags.c_contiguous:
        raise ValueError(f"total must be a contiguous 1-d uint64 array, not {total.dtype}{total.shape}")
    bad = [sign for _, sign in streams if sign not in (1, -1)]
    if bad:
        raise ValueError(f"a stream's sign is 1 or -1, not {bad[0]!r}")
    if not streams or total.size == 0:
        return
    encryptors = [(Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor(), sign) for seed, sign in streams]
    block = min(block, total.size)
    scratch = np.empty(block + 2, dtype=np.uint64)  # update_into wants a block of room beyond the data
    raw = memoryview(scratch).cast("B")
    zeros = memoryview(_zero_bytes(8 * block))
    for start in range(0, total.size, block):
        part = total[start : start + block]
        keystream = scratch[: part.size]
        for encryptor, sign in encryptors:  # CTR: each update_into goes on where the last one stopped
            encryptor.update_into(zeros[: 8 * part.size], raw)
            if sign > 0:
                part += keystream
            else:
                part -= keystream


def frac_bits(total_weight: int) -> int:
    """Fractional bits of the fixed point for a round whose weights sum to ``total_weight``."""
    if total_weight < 1:
        raise SecAggError(f"the round's weights sum to {total_weight}: secure aggregation needs a positive sum")
    bits = RING_BITS - 2 - math.ceil(math.log2(total_weight + 1)) - int(math.log2(MAX_ABS))
    if bits < MIN_FRAC_BITS:
        raise SecAggError(
            f"the round's weights sum to {total_weight}: too large for {MIN_FRAC_BITS}-bit precision in "
            f"Z_2^{RING_BITS}; use mergeWeighting='node' or a smaller nodeWeightage"
        )
    return min(bits, MAX_FRAC_BITS)


def quantise(values: np.ndarray, weight: int, bits: int, out: np.ndarray | None = None) -> np.ndarray:
    """``weight * values`` in fixed point, as ring elements (uint64); refuses values that could wrap.

    ``out``: a uint64 array of ``values.size`` to write into (e.g. a masked blob's payload); new by default.
    """
    values = np.asarray(values, dtype=np.float64)
    biggest = float(np.abs(values).max()) if values.size else 0.0
    if not biggest <= MAX_ABS:  # also NaN
        if not np.isfinite(values).all():
            raise SecAggError("the model has NaN or infinite weights; they cannot be masked (training diverged?)")
        raise SecAggError(
            f"a weight of magnitude {biggest:.4g} exceeds the secure aggregation bound {MAX_ABS:.0f}: the masked "
            f"sum could overflow Z_2^{RING_BITS}; rescale the model (or train without secureAggregation)"
        )
    if out is None:
        out = np.empty(values.size, dtype=np.uint64)
    elif out.dtype != np.uint64 or out.shape != (values.size,):
        raise ValueError(f"out must be a uint64 array of {values.size} values, not {out.dtype}{out.shape}")
    scaled = values.reshape(-1) * (weight * 2.0**bits)
    np.rint(scaled, out=scaled)
    np.copyto(out.view(np.int64), scaled, casting="unsafe")  # two's complement: -k is 2^64 - k
    out &= RING_MASK
    return out


def dequantise(total: np.ndarray, bits: int, total_weight: int) -> np.ndarray:
    """The weighted mean from the unmasked ring sum of ``weight * values`` (any uint64 representative).

    Works in ``total`` (a contiguous uint64 array, overwritten): the only new array is the mean. Each
    temporary of a model's size is fresh memory, which costs more than the arithmetic.
    """
    # Sign-extend the 56-bit value: shift it to the top of an int64 and back.
    np.bitwise_and(total, RING_MASK, out=total)
    np.left_shift(total, np.uint64(64 - RING_BITS), out=total)
    signed = total.view(np.int64)
    np.right_shift(signed, 64 - RING_BITS, out=signed)
    return np.divide(signed, 2.0**bits * total_weight)
