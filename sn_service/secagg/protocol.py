"""One secure round without I/O: a site masks and answers reveals; the leader unmasks.

A round's contributors are frozen by ``Close``; each registered a fresh
X25519 public key with its submission (the submission's 64 hex digits). Site
``u`` then, with ``n`` contributors and threshold ``t = n // 2 + 1``:

1. draws a self-mask seed ``b_u`` and splits it into ``n`` Shamir shares,
   sealing share ``v`` into an envelope only ``v`` (and ``u``) can open;
2. uploads ``y_u = q_u + PRG(b_u) + sum_v +-PRG(s_uv)`` in Z_2^56, where
   ``q_u`` is its weight times its model in fixed point and ``s_uv`` the
   pairwise seed it shares with ``v`` (``+`` if ``u < v``, else ``-``).

The leader seals the survivors ``S`` (those whose masked blob and envelopes
it holds, at least ``t``) on the ledger; the others are dropped ``D``. It
asks every contributor for its shares of ``b_u`` for ``u`` in ``S`` and its
pairwise seeds with the other side of ``S | D``. Then
``sum_{u in S} y_u - PRG(b_u) -+ PRG(s_uv)`` is ``sum q_u``: the weighted
mean and nothing else.

The Bonawitz rule: a site never reveals both a share of ``b_x`` (to anyone
but ``x``) and a pairwise seed of dropped ``x`` -- together they would unmask
``x``'s model. ``SiteRound.reveal`` refuses the second kind, whatever the
leader asks.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from sn_service.secagg import shamir
from sn_service.secagg.crypto import (
    RING_MASK,
    RoundKey,
    SecAggError,
    add_prgs,
    dequantise,
    envelope_key,
    frac_bits,
    open_sealed,
    pairwise_seed,
    quantise,
    seal,
)

MASKED_MAGIC = b"SWARM-SECAGG-MASKED-2\n"  # then a JSON header line, then VALUE_BYTES per value
# A masked value on the wire: its ring element (below 2^56) as a little-endian uint64. Seven bytes would do;
# the eighth (always 0) spares a pack and an unpack pass over every contribution, and the payload, 8-byte
# aligned after a padded header line, is read in place as a uint64 array.
VALUE_BYTES = 8
MAX_HEADER_BYTES = 4096


def threshold(n: int) -> int:
    """How many shares recover a self-mask seed: a majority of the round's contributors."""
    return n // 2 + 1


def share_points(contributors: list[str]) -> dict[str, int]:
    """Each contributor's Shamir x coordinate: 1 + its place in name order."""
    return {node: i + 1 for i, node in enumerate(sorted(contributors))}


def _envelope_context(task: str, round_no: int, sender: str, recipient: str) -> str:
    return f"{task}/{round_no}/{sender}->{recipient}"


def masked_buffer(header: dict, count: int) -> tuple[memoryview, np.ndarray]:
    """A masked contribution's buffer with its header written, and its payload as a uint64 array to fill.

    The blob: magic, one JSON header line (padded with spaces so that the payload starts 8-byte aligned),
    then ``count`` ring values, VALUE_BYTES each, little-endian. The masking writes the values straight
    into the buffer: no packed copy, no ``bytes`` of it.
    """
    head = MASKED_MAGIC + json.dumps(header, sort_keys=True).encode()
    head += b" " * (-(len(head) + 1) % VALUE_BYTES) + b"\n"
    buffer = np.empty(len(head) + VALUE_BYTES * count, dtype=np.uint8)
    buffer[: len(head)] = np.frombuffer(head, dtype=np.uint8)
    return memoryview(buffer).toreadonly(), buffer[len(head) :].view("<u8")


def decode_masked(data: bytes | bytearray | memoryview) -> tuple[dict, np.ndarray]:
    """The header and ring values (read-only, in place) of a masked contribution; raises SecAggError if malformed."""
    data = memoryview(data).cast("B")
    prefix = bytes(data[: len(MASKED_MAGIC) + MAX_HEADER_BYTES + 1])
    if not prefix.startswith(MASKED_MAGIC):
        raise SecAggError("not a masked contribution (bad magic)")
    end = prefix.find(b"\n", len(MASKED_MAGIC))
    if end < 0 or end - len(MASKED_MAGIC) > MAX_HEADER_BYTES:
        raise SecAggError("masked contribution has no header line")
    try:
        header = json.loads(prefix[len(MASKED_MAGIC) : end])
    except ValueError as exc:
        raise SecAggError(f"masked contribution header is not JSON: {exc}") from None
    payload = data[end + 1 :]
    if not isinstance(header, dict) or len(payload) != VALUE_BYTES * header.get("count", -1):
        raise SecAggError(
            f"masked contribution holds {len(payload)} bytes, its header says {header.get('count')} values"
        )
    values = np.frombuffer(payload, dtype="<u8")
    if values.size and values.max() > RING_MASK:
        raise SecAggError("masked contribution holds a value of 2^56 or more: not a ring element")
    return header, values


@dataclass
class SiteRound:
    """This site's part in one secure round: its key, its model until masked, what it revealed.

    The masks do not depend on the model, and each pairwise mask only on the two sites' round keys,
    which are on the ledger from their ``Submit``: ``premask`` sums the self mask and the pairwise
    masks of the keys submitted so far while the round is still open, and ``mask`` adds only what is
    left once ``Close`` has frozen the contributors (a key it used that is not a contributor's is
    taken out again: the result is the same sum as computed from scratch).

    A site may make its ``SiteRound`` before its model exists (``values`` None, ``count`` given), to
    advertise the key and premask while it trains; ``set_model`` brings the model once it is ready.

    Args:
        task, round_no, site: where this is.
        values: the model's float weights, flattened (float64); None until ``set_model``.
        weight: the site's public weight in the mean.
        key: the round key (a fresh one by default).
        count: how many float weights the model has (taken from ``values`` when they are given).
    """

    task: str
    round_no: int
    site: str
    values: np.ndarray | None
    weight: int
    key: RoundKey = field(default_factory=RoundKey)
    count: int = -1
    masked: tuple[memoryview, bytes] | None = None  # the masked blob and the shares blob, once masked
    # subject -> kind ("b" or "seed") -> recipients it was revealed to
    revealed: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    premasked_streams: int = 0  # keystreams premask computed before Close (of n: self mask and n - 1 pairwise)
    # The self-mask seed b_u, and the running sum of masks: PRG(b_u) and +-PRG(s_uv) for each v in
    # ``_masked_with`` (node -> the public key used). All three are forgotten once the model is masked.
    _b_seed: bytes | None = field(default_factory=lambda: secrets.token_bytes(32), init=False, repr=False)
    _mask_sum: np.ndarray | None = field(default=None, init=False, repr=False)
    _masked_with: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _mask_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _premask_off: bool = field(default=False, init=False, repr=False)
    # The model quantised while the round is open, with the fractional bits of the round's weights as
    # premask guessed them (``mask`` quantises again if the frozen contributors' weights need others).
    _quantised: tuple[int, np.ndarray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.values is not None:
            self.count = self.values.size
        elif self.count < 0:
            raise ValueError("a SiteRound needs the model's values or their count")

    def set_model(self, values: np.ndarray, weight: int) -> bool:
        """Gives a round made before its model was ready the model; False if it has one or is masked.

        Not under the mask lock, which a premask may hold for a while: nothing masks before the key is
        submitted, which is after this; a premask running now quantises the model or leaves it to the next.
        """
        if self.values is not None or self.masked is not None or self._b_seed is None:
            return False
        if values.size != self.count:
            raise SecAggError(
                f"round {self.round_no}: the model has {values.size} float weights, its round key was made "
                f"for {self.count}"
            )
        self.weight = weight
        self.values = values  # last: premask quantises once it sees the values (and so the weight)
        return True

    @property
    def has_model(self) -> bool:
        """Whether the model to mask is here (False before ``set_model`` and after masking)."""
        return self.values is not None

    @property
    def public_hex(self) -> str:
        """The round's public key, to submit to the ledger."""
        return self.key.public_hex

    def premask(self, keys: Mapping[str, str], total_weight: int | None = None) -> int:
        """Adds the self mask and the pairwise masks with ``keys`` (node -> public key) not yet in the sum.

        Called with the submissions of the still open round, as they come; ``mask`` finishes the sum
        for the frozen contributors. ``total_weight``: a guess of the weights the round will sum to
        (e.g. the submitted ones and as much again for each site still expected); the model is then
        quantised for it now, not after Close. Returns how many keystreams it computed; 0 once masked.
        """
        with self._mask_lock:
            if self.masked is not None or self._b_seed is None or self._premask_off:
                return 0
            done = self._sum_masks(keys, exact=False)
            self.premasked_streams += done
            # Once, with the model: a later guess is not likelier.
            if total_weight is not None and self.values is not None and self._quantised is None:
                self._quantise(frac_bits(total_weight))
            return done

    def _quantise(self, bits: int) -> np.ndarray:
        """The model quantised with ``bits`` fractional bits (kept: premask's work is not done twice)."""
        assert self.values is not None
        if self._quantised is None or self._quantised[0] != bits:
            self._quantised = (bits, quantise(self.values, self.weight, bits))
        return self._quantised[1]

    def _sum_masks(self, keys: Mapping[str, str], exact: bool) -> int:
        """Brings the running mask sum to the self mask and the pairwise masks with ``keys``, in one pass.

        ``exact``: also take out the masks of nodes not in ``keys`` (at Close: ``keys`` are the
        contributors). Returns how many keystreams it computed. Called holding the lock. Every seed
        is derived before the sum changes: a key that fails (SecAggError) leaves the sum as it was.
        """
        assert self._b_seed is not None
        streams: list[tuple[bytes, int]] = []
        fresh = self._mask_sum is None
        if fresh:
            streams.append((self._b_seed, 1))
        taken_out = []
        for node, summed in self._masked_with.items():  # a key summed that is not (or no more) the one
            if (exact or node in keys) and keys.get(node) != summed:
                streams.append((self._pairwise_seed(node, summed), -self._sign(node)))
                taken_out.append(node)
        added = {}
        for node in sorted(keys):
            if node == self.site or (node in self._masked_with and node not in taken_out):
                continue
            streams.append((self._pairwise_seed(node, keys[node]), self._sign(node)))
            added[node] = keys[node]
        if fresh:
            self._mask_sum = np.zeros(self.count, dtype=np.uint64)
        assert self._mask_sum is not None
        add_prgs(self._mask_sum, streams)
        for node in taken_out:
            del self._masked_with[node]
        self._masked_with.update(added)
        return len(streams)

    def _pairwise_seed(self, node: str, public_hex: str) -> bytes:
        return pairwise_seed(self.key, public_hex, self.task, self.round_no, self.site, node)

    def _sign(self, node: str) -> int:
        """How this site's pairwise mask with ``node`` enters its sum: + if its name sorts first, else -."""
        return 1 if self.site < node else -1

    def mask(self, keys: Mapping[str, str], weights: Mapping[str, int]) -> tuple[memoryview, bytes]:
        """The masked contribution and the sealed shares of its self-mask seed, for the frozen contributors.

        ``keys``: every contributor's public key (from the ledger); ``weights``: their weights.
        Forgets the plain model afterwards; the same two blobs again on a second call.
        """
        with self._mask_lock:
            if self.masked is not None:
                return self.masked
            if keys.get(self.site) != self.public_hex:
                raise SecAggError(
                    f"the ledger has key {str(keys.get(self.site))[:16]}... for {self.site} in round "
                    f"{self.round_no}, not this service's {self.public_hex[:16]}...: another process submitted "
                    "for this site"
                )
            if self._b_seed is None:
                raise SecAggError(f"round {self.round_no}: this site's model is gone; it cannot mask it")
            if self.values is None:
                raise SecAggError(f"round {self.round_no}: this site's key was advertised, its model never given")
            contributors = sorted(keys)
            bits = frac_bits(sum(int(weights[n]) for n in contributors))
            points = share_points(contributors)
            shares = shamir.split(self._b_seed, threshold(len(contributors)), [points[n] for n in contributors])
            envelopes = {}
            for node in contributors:
                k = envelope_key(self.key, keys[node], self.task, self.round_no, self.site, node)
                context = _envelope_context(self.task, self.round_no, self.site, node)
                envelopes[node] = seal(k, shamir.encode(shares[points[node]]), context).hex()
            # The mask sum brought to exactly the contributors: what premask summed of a key that is not a
            # contributor's is taken out, what it has not summed yet is added.
            self._sum_masks(keys, exact=True)
            assert self._mask_sum is not None
            header = {
                "task": self.task,
                "round": self.round_no,
                "node": self.site,
                "frac_bits": bits,
                "count": self.values.size,
            }
            blob, y = masked_buffer(header, self.values.size)  # y is written in place in the blob
            np.add(self._quantise(bits), self._mask_sum, out=y)
            y &= RING_MASK
            shares_blob = json.dumps(
                {"task": self.task, "round": self.round_no, "node": self.site, "envelopes": envelopes}, sort_keys=True
            ).encode()
            self.masked = (blob, shares_blob)
            # The plain model, the self-mask seed and the masks are not needed any more.
            self.values = self._b_seed = self._mask_sum = self._quantised = None
            self._masked_with = {}
            return self.masked

    def drop_premask(self) -> None:
        """Frees the running mask sum of a round that will not be masked, and premasks no more.

        ``mask`` would still work: it computes what is missing.
        """
        with self._mask_lock:
            self._premask_off = True
            self._mask_sum = self._quantised = None
            self._masked_with = {}

    def _allowed(self, subject: str, kind: str, recipient: str) -> bool:
        done = self.revealed.get(subject, {})
        if kind == "b":
            return not done.get("seed")
        return not (done.get("b", set()) - {subject})  # a share of b_x given back to x itself reveals nothing

    def _record(self, subject: str, kind: str, recipient: str) -> None:
        self.revealed.setdefault(subject, {}).setdefault(kind, set()).add(recipient)

    def reveal(
        self,
        keys: Mapping[str, str],
        survivors: list[str],
        envelopes: Mapping[str, str],
        recipient: str,
    ) -> dict:
        """What this site may reveal to ``recipient`` (the leader) for the sealed ``survivors``.

        ``envelopes``: for each survivor ``u``, the envelope ``u`` sealed to this site (from
        ``u``'s shares blob). Returns ``{"b_shares": {u: hex}, "seeds": {other: hex}, "refused":
        {subject: why}}``: shares of ``b_u`` for survivors, pairwise seeds between this site and
        each contributor on the other side of survivors | dropped. Never both kinds for one subject.
        """
        contributors = sorted(keys)
        if self.site not in keys or keys[self.site] != self.public_hex:
            raise SecAggError(f"this service holds no key of {self.site} for round {self.round_no}")
        unknown = sorted(set(survivors) - set(contributors))
        if unknown:
            raise SecAggError(f"survivors {unknown} are not contributors of round {self.round_no}")
        dropped = [n for n in contributors if n not in survivors]
        out: dict[str, dict[str, str]] = {"b_shares": {}, "seeds": {}, "refused": {}}
        for u in survivors:
            if u not in envelopes:
                continue
            if not self._allowed(u, "b", recipient):
                out["refused"][u] = f"{self.site} revealed a pairwise seed of {u} as dropped in this round"
                continue
            k = envelope_key(self.key, keys[u], self.task, self.round_no, u, self.site)
            share = open_sealed(
                k, bytes.fromhex(envelopes[u]), _envelope_context(self.task, self.round_no, u, self.site)
            )
            shamir.decode(share)
            out["b_shares"][u] = share.hex()
            self._record(u, "b", recipient)
        others = dropped if self.site in survivors else survivors
        for other in others:
            subject = other if self.site in survivors else self.site  # the dropped one of the pair
            if not self._allowed(subject, "seed", recipient):
                out["refused"][subject] = f"{self.site} revealed a share of {subject}'s self mask in this round"
                continue
            out["seeds"][other] = pairwise_seed(self.key, keys[other], self.task, self.round_no, self.site, other).hex()
            self._record(subject, "seed", recipient)
        return out


class MaskedSum:
    """The leader's sum of one round's masked contributions, each added as it arrives; then the unmasking.

    Adding a contribution while others are still on their way takes its decoding and its addition off
    the end of the round: what is left once the survivors are sealed is removing the masks.

    Args:
        task, round_no: the round.
        keys, weights: every contributor's public key and weight (from the ledger).
        count: how many values a contribution holds (the model's float values); by default, the first's.
    """

    def __init__(
        self, task: str, round_no: int, keys: Mapping[str, str], weights: Mapping[str, int], count: int | None = None
    ) -> None:
        self.task, self.round_no = task, round_no
        self.keys, self.weights = dict(keys), {n: int(w) for n, w in weights.items()}
        self.bits = frac_bits(sum(self.weights[c] for c in self.keys))
        self.count = count
        self.nodes: set[str] = set()  # whose contribution is in the sum
        self._total: np.ndarray | None = None
        self._lock = threading.Lock()

    def add(self, node: str, blob: bytes | memoryview) -> None:
        """Adds ``node``'s masked contribution; raises SecAggError (and adds nothing) if it is not one for here."""
        if node not in self.keys:
            raise SecAggError(f"{node} is not a contributor of round {self.round_no}")
        header, y = decode_masked(blob)
        expected = {"task": self.task, "round": self.round_no, "node": node, "frac_bits": self.bits}
        with self._lock:
            if {k: header.get(k) for k in expected} != expected or (
                self.count is not None and header["count"] != self.count
            ):
                raise SecAggError(
                    f"the masked contribution of {node} is for {header}, not {dict(expected, count=self.count)}"
                )
            if node in self.nodes:
                raise SecAggError(f"the masked contribution of {node} is in the sum already")
            self.count = header["count"]
            if self._total is None:
                self._total = y.copy()  # y is a view of the blob
            else:
                self._total += y
            self.nodes.add(node)

    def unmask(self, survivors: list[str], answers: Mapping[str, dict]) -> np.ndarray:
        """The weighted mean of the ``survivors`` (exactly the contributions added) from the reveals.

        ``answers``: each answering contributor's ``SiteRound.reveal`` result. Raises SecAggError
        naming what is missing when too few shares or a needed seed did not come.
        """
        contributors = sorted(self.keys)
        n, t = len(contributors), threshold(len(contributors))
        if len(survivors) < t:
            raise SecAggError(f"{len(survivors)} survivors of {n} contributors; unmasking needs at least t={t}")
        with self._lock:
            if set(survivors) != self.nodes:
                raise SecAggError(
                    f"the survivors {sorted(survivors)} are not the contributions summed {sorted(self.nodes)}"
                )
            total, count = self._total, self.count
            self._total = None  # unmasked in place: the sum is used once
        assert total is not None and count is not None
        points = share_points(contributors)
        dropped = [c for c in contributors if c not in survivors]
        streams: list[tuple[bytes, int]] = []  # every mask to take out, in one pass over the sum
        for u in survivors:
            shares = {
                points[w]: shamir.decode(bytes.fromhex(a["b_shares"][u]))
                for w, a in answers.items()
                if u in a.get("b_shares", {})
            }
            if len(shares) < t:
                refused = [a["refused"][u] for a in answers.values() if u in a.get("refused", {})]
                raise SecAggError(
                    f"only {len(shares)} shares of {u}'s self mask came back, {t} are needed"
                    + (f" (refused: {'; '.join(refused)})" if refused else "")
                    + f"; {len(answers)} of {n} contributors answered"
                )
            streams.append((shamir.combine(shares, t), -1))
        for u in survivors:
            for v in dropped:
                hex_seed = answers.get(u, {}).get("seeds", {}).get(v) or answers.get(v, {}).get("seeds", {}).get(u)
                if hex_seed is None:
                    raise SecAggError(
                        f"the pairwise mask of {u} (survivor) and {v} (dropped) cannot be removed: neither revealed "
                        "its seed (both unreachable, or refused)"
                    )
                streams.append((bytes.fromhex(hex_seed), -1 if u < v else 1))
        add_prgs(total, streams)
        return dequantise(total, self.bits, sum(self.weights[u] for u in survivors))


def unmask(
    task: str,
    round_no: int,
    keys: Mapping[str, str],
    weights: Mapping[str, int],
    survivors: list[str],
    masked: Mapping[str, bytes],
    answers: Mapping[str, dict],
) -> np.ndarray:
    """The weighted mean of the survivors' models from their masked blobs and the reveals (``MaskedSum`` at once).

    ``answers``: each answering contributor's ``SiteRound.reveal`` result. Raises SecAggError
    naming what is missing when too few shares or a needed seed did not come.
    """
    summed = MaskedSum(task, round_no, keys, weights)
    for u in survivors:
        summed.add(u, masked[u])
    return summed.unmask(survivors, answers)
