"""Secure aggregation's fast paths: masks summed before Close, the running sum at the leader, the wire format."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sn_service.secagg.crypto import RING_MASK, RoundKey, SecAggError, add_prgs, frac_bits, prg
from sn_service.secagg.protocol import MaskedSum, SiteRound, decode_masked, masked_buffer, unmask

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


@pytest.mark.parametrize(("count", "block"), [(0, 4), (1, 4), (7, 4), (8, 4), (1000, 64), (1000, 1 << 15)])
def test_streams_added_block_by_block_equal_each_stream_added_whole(count, block):
    seeds = [bytes([i]) * 32 for i in range(5)]
    signs = [1, -1, -1, 1, 1]
    start = np.random.default_rng(count).integers(0, 2**63, count, dtype=np.int64).view(np.uint64)
    expected = start.copy()
    for seed, sign in zip(seeds, signs, strict=True):
        if sign > 0:
            expected += prg(seed, count)
        else:
            expected -= prg(seed, count)
    total = start.copy()
    add_prgs(total, list(zip(seeds, signs, strict=True)), block=block)
    assert np.array_equal(total, expected)
    with pytest.raises(ValueError, match="sign is 1 or -1"):
        add_prgs(total, [(seeds[0], 2)])
    with pytest.raises(ValueError, match="contiguous 1-d uint64"):
        add_prgs(total.astype(np.int64), [(seeds[0], 1)])


def encode_masked(header: dict, values: np.ndarray) -> memoryview:
    """A masked contribution of ring ``values``, as ``SiteRound.mask`` writes one."""
    blob, payload = masked_buffer(header, values.size)
    np.bitwise_and(values, RING_MASK, out=payload)
    return blob


@pytest.mark.parametrize("count", [0, 1, 2, 3, 1001])
def test_a_masked_blob_holds_each_ring_value_as_8_aligned_little_endian_bytes(count):
    values = np.random.default_rng(count).integers(0, 2**63, count, dtype=np.int64).view(np.uint64)
    blob = encode_masked({"node": "site-a", "count": count}, values)  # high bits beyond 2^56 are dropped
    payload = bytes(blob)[len(bytes(blob)) - 8 * count :]
    assert (len(bytes(blob)) - 8 * count) % 8 == 0  # the header line is padded: the payload is read in place
    assert payload == (values & RING_MASK).astype("<u8").tobytes()
    header, decoded = decode_masked(bytes(blob))
    assert header == {"node": "site-a", "count": count}
    assert np.array_equal(decoded, values & RING_MASK)
    assert np.array_equal(decode_masked(memoryview(b"xx" + bytes(blob))[2:])[1], values & RING_MASK)  # any offset


def test_a_masked_blob_with_a_value_past_the_ring_or_the_wrong_length_is_refused():
    values = np.arange(4, dtype=np.uint64)
    blob = bytearray(encode_masked({"count": 4}, values))
    blob[-1] = 1  # the last value's top byte: 2^56 or more
    with pytest.raises(SecAggError, match="2\\^56 or more"):
        decode_masked(bytes(blob))
    with pytest.raises(SecAggError, match="holds 31 bytes, its header says 4 values"):
        decode_masked(bytes(blob[:-1]))
    with pytest.raises(SecAggError, match="bad magic"):
        decode_masked(b"SWARM-SECAGG-MASKED-1\n{}\n")


# ---------------------------------------------------------------- premasking

COUNT = 513


def _twins(seed: int = 0):
    """Two SiteRounds of one site with the same key, self-mask seed and model: one premasks, one does not."""
    rng = np.random.default_rng(seed)
    raw = rng.bytes(32)
    values = rng.standard_normal(COUNT) * 0.1
    a, b = (SiteRound("t", 4, "site-02", values.copy(), 3, key=RoundKey.from_bytes(raw)) for _ in range(2))
    b._b_seed = a._b_seed
    return a, b


def _other_keys(n: int) -> dict[str, str]:
    return {f"site-{i:02d}": RoundKey().public_hex for i in range(n) if i != 2}


def test_masks_summed_while_the_round_is_open_give_the_masked_blob_of_masking_at_close():
    fresh, early = _twins()
    keys = dict(_other_keys(5), **{"site-02": fresh.public_hex})
    weights = dict.fromkeys(keys, 2)
    # Submissions come in a few at a time; the self mask needs none.
    assert early.premask({"site-02": early.public_hex}) == 1
    assert early.premask({n: keys[n] for n in ("site-02", "site-04")}) == 1
    assert early.premask({n: keys[n] for n in ("site-00", "site-02", "site-04")}) == 1
    assert early.premasked_streams == 3
    assert early.mask(keys, weights)[0] == fresh.mask(keys, weights)[0]
    assert early.premask(keys) == 0  # masked: nothing more to do, and the sum is forgotten
    assert early._mask_sum is None and early._b_seed is None and early.values is None


@pytest.mark.parametrize("guess", [10, 11, 2, 5000])  # the round's weights sum to 10 (5 sites of weight 2)
def test_the_model_quantised_while_the_round_is_open_gives_the_same_blob_whatever_the_weights_guessed(guess):
    fresh, early = _twins(5)
    keys = dict(_other_keys(5), **{"site-02": fresh.public_hex})
    weights = dict.fromkeys(keys, 2)
    early.premask({n: keys[n] for n in ("site-02", "site-04")}, total_weight=guess)
    assert early._quantised is not None and early._quantised[0] == frac_bits(guess)
    early.premask(keys, total_weight=10)  # quantised once while open: a later guess leaves it to mask()
    assert early._quantised[0] == frac_bits(guess)
    assert early.mask(keys, weights)[0] == fresh.mask(keys, weights)[0]  # quantised again if the guess was off
    assert early._quantised is None  # forgotten with the model


def test_a_model_that_cannot_be_quantised_stops_premasking_with_the_reason_and_leaves_it_to_mask():
    fresh, early = _twins(6)
    early.values[7] = np.nan
    keys = dict(_other_keys(3), **{"site-02": fresh.public_hex})
    with pytest.raises(SecAggError, match="NaN or infinite"):
        early.premask(keys, total_weight=6)
    with pytest.raises(SecAggError, match="NaN or infinite"):
        early.mask(keys, dict.fromkeys(keys, 2))


def test_a_premasked_key_that_is_not_a_contributors_is_taken_out_again():
    fresh, early = _twins(1)
    keys = dict(_other_keys(4), **{"site-02": fresh.public_hex})
    weights = dict.fromkeys(keys, 1)
    stray = dict(keys, **{"site-09": RoundKey().public_hex, "site-00": RoundKey().public_hex})
    assert early.premask(stray) == 5  # self mask and four pairwise, one of them with another key of site-00
    assert early.mask(keys, weights)[0] == fresh.mask(keys, weights)[0]


def test_premasking_dropped_halfway_still_masks_the_same():
    fresh, early = _twins(2)
    keys = dict(_other_keys(6), **{"site-02": fresh.public_hex})
    weights = dict.fromkeys(keys, 1)
    assert early.premask({n: keys[n] for n in ("site-02", "site-05")}) == 2
    early.drop_premask()
    assert early.premask(keys) == 0  # dropped: premasks no more
    assert early.mask(keys, weights)[0] == fresh.mask(keys, weights)[0]


def test_a_key_that_is_not_one_leaves_the_mask_sum_as_it_was():
    fresh, early = _twins(4)
    keys = dict(_other_keys(4), **{"site-02": fresh.public_hex})
    weights = dict.fromkeys(keys, 1)
    assert early.premask({"site-02": early.public_hex}) == 1
    with pytest.raises(SecAggError, match="not an X25519 public key"):  # site-00's is fine, site-01's not
        early.premask(dict(keys, **{"site-01": "zz" * 32}))
    assert early._masked_with == {}  # neither summed nor marked summed
    assert early.mask(keys, weights)[0] == fresh.mask(keys, weights)[0]


def test_a_round_made_before_its_model_premasks_the_advertised_keys_and_masks_the_same_once_given_it():
    fresh, _ = _twins(7)
    early = SiteRound("t", 4, "site-02", None, 0, key=fresh.key, count=COUNT)
    early._b_seed = fresh._b_seed
    keys = dict(_other_keys(5), **{"site-02": fresh.public_hex})
    weights = dict.fromkeys(keys, 3)
    assert not early.has_model
    # While the site trains: the keys advertised so far, one of them (site-04's) not the one it will submit.
    advertised = dict({n: keys[n] for n in ("site-00", "site-02")}, **{"site-04": RoundKey().public_hex})
    assert early.premask(advertised, total_weight=15) == 3  # no model yet: nothing quantised
    assert early._quantised is None
    with pytest.raises(SecAggError, match="its model never given"):
        (waiting := SiteRound("t", 4, "site-02", None, 0, count=COUNT)).mask(
            {"site-02": waiting.public_hex}, {"site-02": 1}
        )
    with pytest.raises(SecAggError, match="has 5 float weights, its round key was made for 513"):
        early.set_model(np.zeros(5), 3)
    assert early.set_model(fresh.values.copy(), 3) and early.has_model
    assert not early.set_model(fresh.values.copy(), 3)  # once
    assert early.premask(keys, total_weight=15) == 4  # site-04's submitted key taken out and in, two more
    assert early._quantised is not None
    assert early.mask(keys, weights)[0] == fresh.mask(keys, weights)[0]
    assert not early.set_model(np.zeros(COUNT), 3)  # masked: no model taken any more
    with pytest.raises(ValueError, match="needs the model's values or their count"):
        SiteRound("t", 4, "site-02", None, 0)


def test_a_round_premasked_by_every_site_unmasks_to_the_weighted_mean_with_a_dropout():
    rng = np.random.default_rng(3)
    names = [f"site-{i:02d}" for i in range(5)]
    models = {s: rng.standard_normal(COUNT) * 0.1 for s in names}
    weights = {s: int(rng.integers(1, 9)) for s in names}
    sites = {s: SiteRound("t", 4, s, models[s].copy(), weights[s]) for s in names}
    keys = {s: r.public_hex for s, r in sites.items()}
    for i, s in enumerate(names):  # each saw a different part of the submissions before Close
        sites[s].premask({n: keys[n] for n in names[: i + 1]} | {s: keys[s]})
    dead = names[3]  # submitted its key, then died before masking: a contributor, dropped
    survivors = [s for s in names if s != dead]
    blobs = {u: sites[u].mask(keys, weights) for u in survivors}
    envelopes = {u: json.loads(blobs[u][1])["envelopes"] for u in survivors}
    answers = {w: sites[w].reveal(keys, survivors, {u: envelopes[u][w] for u in survivors}, "L") for w in survivors}
    mean = unmask("t", 4, keys, weights, survivors, {u: blobs[u][0] for u in survivors}, answers)
    expected = sum(weights[s] * models[s] for s in survivors) / sum(weights[s] for s in survivors)
    np.testing.assert_allclose(mean, expected, rtol=0, atol=1e-9)


# ---------------------------------------------------------------- the leader's running sum


def _masked_round(n: int = 3):
    names = [f"site-{i:02d}" for i in range(n)]
    models = {s: np.random.default_rng(i).standard_normal(COUNT) for i, s in enumerate(names)}
    sites = {s: SiteRound("t", 4, s, models[s].copy(), 1) for s in names}
    keys = {s: r.public_hex for s, r in sites.items()}
    weights = dict.fromkeys(names, 1)
    return names, models, sites, keys, weights, {u: sites[u].mask(keys, weights) for u in names}


def test_the_running_sum_refuses_a_second_copy_a_stranger_and_another_size():
    names, _models, _sites, keys, weights, blobs = _masked_round()
    summed = MaskedSum("t", 4, keys, weights, COUNT)
    summed.add(names[0], blobs[names[0]][0])
    with pytest.raises(SecAggError, match="in the sum already"):
        summed.add(names[0], blobs[names[0]][0])
    with pytest.raises(SecAggError, match="not a contributor"):
        summed.add("site-77", blobs[names[1]][0])
    with pytest.raises(SecAggError, match="is for"):
        summed.add(names[2], blobs[names[1]][0])  # site-01's blob offered as site-02's
    with pytest.raises(SecAggError, match="is for"):
        MaskedSum("t", 4, keys, weights, COUNT + 1).add(names[1], blobs[names[1]][0])
    assert summed.nodes == {names[0]}
    header, _ = decode_masked(blobs[names[0]][0])
    assert header["count"] == COUNT


def test_the_running_sum_unmasks_only_the_contributions_it_holds():
    names, models, sites, keys, weights, blobs = _masked_round()
    summed = MaskedSum("t", 4, keys, weights, COUNT)
    for u in reversed(names):  # in the order they arrive, not in name order
        summed.add(u, blobs[u][0])
    envelopes = {u: json.loads(blobs[u][1])["envelopes"] for u in names}
    answers = {w: sites[w].reveal(keys, names, {u: envelopes[u][w] for u in names}, "L") for w in names}
    with pytest.raises(SecAggError, match="not the contributions summed"):
        summed.unmask(names[:2], answers)
    np.testing.assert_allclose(summed.unmask(names, answers), np.mean([models[s] for s in names], 0), atol=1e-9)
