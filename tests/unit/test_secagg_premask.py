"""Secure aggregation's fast paths: the PRG into a given buffer, the wire format."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sn_service.secagg.crypto import RING_MASK, pack, prg, unpack

# ---------------------------------------------------------------- PRG and wire format


def _keystream(seed: bytes, count: int) -> np.ndarray:
    """The AES-256-CTR keystream in one call: what ``prg`` must return, however it fills its buffer."""
    raw = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor().update(bytes(8 * count))
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64)


@pytest.mark.parametrize("count", [0, 1, 2, 3, 5, 1000, 4097])
def test_the_prg_is_the_aes_ctr_keystream_into_a_new_or_a_given_buffer(count):
    seed = bytes(range(32))
    assert np.array_equal(prg(seed, count), _keystream(seed, count))
    out = np.full(count, 7, dtype=np.uint64)
    assert prg(seed, count, out=out) is out
    assert np.array_equal(out, _keystream(seed, count))
    with pytest.raises(ValueError, match="contiguous uint64 array"):
        prg(seed, count + 1, out=out)


@pytest.mark.parametrize("count", [0, 1, 2, 3, 1001])
def test_pack_is_the_low_seven_bytes_of_each_value_and_unpack_inverts_it(count):
    values = np.random.default_rng(count).integers(0, 2**63, count, dtype=np.int64).view(np.uint64)
    packed = pack(values)  # high bits beyond 2^56 are dropped
    reference = (values & RING_MASK).astype("<u8").view(np.uint8).reshape(-1, 8)[:, :7].tobytes()
    assert packed == reference
    assert np.array_equal(unpack(packed), values & RING_MASK)
    assert np.array_equal(unpack(memoryview(b"xx" + packed)[2:]), values & RING_MASK)  # in place, any offset
