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
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from sn_service.secagg import shamir
from sn_service.secagg.crypto import (
    RING_BYTES,
    RoundKey,
    SecAggError,
    dequantise,
    envelope_key,
    frac_bits,
    open_sealed,
    pack,
    pairwise_seed,
    prg,
    quantise,
    seal,
    unpack,
)

MASKED_MAGIC = b"SWARM-SECAGG-MASKED-1\n"  # then a JSON header line, then RING_BYTES per value


def threshold(n: int) -> int:
    """How many shares recover a self-mask seed: a majority of the round's contributors."""
    return n // 2 + 1


def share_points(contributors: list[str]) -> dict[str, int]:
    """Each contributor's Shamir x coordinate: 1 + its place in name order."""
    return {node: i + 1 for i, node in enumerate(sorted(contributors))}


def _envelope_context(task: str, round_no: int, sender: str, recipient: str) -> str:
    return f"{task}/{round_no}/{sender}->{recipient}"


def encode_masked(header: dict, values: np.ndarray) -> bytes:
    """A masked contribution: magic, one JSON header line, then the ring values (RING_BYTES each, little-endian)."""
    return MASKED_MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + pack(values)


def decode_masked(data: bytes) -> tuple[dict, np.ndarray]:
    """The header and ring values of a masked contribution; raises SecAggError if malformed."""
    if not data.startswith(MASKED_MAGIC):
        raise SecAggError("not a masked contribution (bad magic)")
    end = data.find(b"\n", len(MASKED_MAGIC))
    if end < 0 or end - len(MASKED_MAGIC) > 4096:
        raise SecAggError("masked contribution has no header line")
    try:
        header = json.loads(data[len(MASKED_MAGIC) : end])
    except ValueError as exc:
        raise SecAggError(f"masked contribution header is not JSON: {exc}") from None
    payload = data[end + 1 :]
    if not isinstance(header, dict) or len(payload) != RING_BYTES * header.get("count", -1):
        raise SecAggError(
            f"masked contribution holds {len(payload)} bytes, its header says {header.get('count')} values"
        )
    return header, unpack(payload)


@dataclass
class SiteRound:
    """This site's part in one secure round: its key, its model until masked, what it revealed.

    Args:
        task, round_no, site: where this is.
        values: the model's float weights, flattened (float64).
        weight: the site's public weight in the mean.
        key: the round key (a fresh one by default).
    """

    task: str
    round_no: int
    site: str
    values: np.ndarray | None
    weight: int
    key: RoundKey = field(default_factory=RoundKey)
    masked: tuple[bytes, bytes] | None = None
    # subject -> kind ("b" or "seed") -> recipients it was revealed to
    revealed: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    @property
    def public_hex(self) -> str:
        """The round's public key, to submit to the ledger."""
        return self.key.public_hex

    def mask(self, keys: Mapping[str, str], weights: Mapping[str, int]) -> tuple[bytes, bytes]:
        """The masked contribution and the sealed shares of its self-mask seed, for the frozen contributors.

        ``keys``: every contributor's public key (from the ledger); ``weights``: their weights.
        Forgets the plain model afterwards; the same two blobs again on a second call.
        """
        if self.masked is not None:
            return self.masked
        if keys.get(self.site) != self.public_hex:
            raise SecAggError(
                f"the ledger has key {str(keys.get(self.site))[:16]}... for {self.site} in round {self.round_no}, "
                f"not this service's {self.public_hex[:16]}...: another process submitted for this site"
            )
        if self.values is None:
            raise SecAggError(f"round {self.round_no}: this site's model is gone; it cannot mask it")
        contributors = sorted(keys)
        bits = frac_bits(sum(int(weights[n]) for n in contributors))
        points = share_points(contributors)
        b_seed = secrets.token_bytes(32)
        shares = shamir.split(b_seed, threshold(len(contributors)), [points[n] for n in contributors])
        envelopes = {}
        for node in contributors:
            k = envelope_key(self.key, keys[node], self.task, self.round_no, self.site, node)
            context = _envelope_context(self.task, self.round_no, self.site, node)
            envelopes[node] = seal(k, shamir.encode(shares[points[node]]), context).hex()
        count = self.values.size
        y = quantise(self.values, self.weight, bits)
        y += prg(b_seed, count)
        for node in contributors:
            if node == self.site:
                continue
            mask = prg(pairwise_seed(self.key, keys[node], self.task, self.round_no, self.site, node), count)
            if self.site < node:
                y += mask
            else:
                y -= mask
        header = {"task": self.task, "round": self.round_no, "node": self.site, "frac_bits": bits, "count": count}
        shares_blob = json.dumps(
            {"task": self.task, "round": self.round_no, "node": self.site, "envelopes": envelopes}, sort_keys=True
        ).encode()
        self.masked = (encode_masked(header, y), shares_blob)
        self.values = None  # the plain model is not needed any more
        return self.masked

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


def unmask(
    task: str,
    round_no: int,
    keys: Mapping[str, str],
    weights: Mapping[str, int],
    survivors: list[str],
    masked: Mapping[str, bytes],
    answers: Mapping[str, dict],
) -> np.ndarray:
    """The weighted mean of the survivors' models from their masked blobs and the reveals.

    ``answers``: each answering contributor's ``SiteRound.reveal`` result. Raises SecAggError
    naming what is missing when too few shares or a needed seed did not come.
    """
    contributors = sorted(keys)
    n, t = len(contributors), threshold(len(contributors))
    if len(survivors) < t:
        raise SecAggError(f"{len(survivors)} survivors of {n} contributors; unmasking needs at least t={t}")
    bits = frac_bits(sum(int(weights[c]) for c in contributors))
    points = share_points(contributors)
    dropped = [c for c in contributors if c not in survivors]
    total: np.ndarray | None = None
    count = None
    for u in survivors:
        header, y = decode_masked(masked[u])
        expected = {"task": task, "round": round_no, "node": u, "frac_bits": bits}
        if {k: header.get(k) for k in expected} != expected or (count is not None and header["count"] != count):
            raise SecAggError(f"the masked contribution of {u} is for {header}, not {expected}")
        count = header["count"]
        total = y.copy() if total is None else total + y
    assert total is not None and count is not None
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
        total -= prg(shamir.combine(shares, t), count)
    for u in survivors:
        for v in dropped:
            hex_seed = answers.get(u, {}).get("seeds", {}).get(v) or answers.get(v, {}).get("seeds", {}).get(u)
            if hex_seed is None:
                raise SecAggError(
                    f"the pairwise mask of {u} (survivor) and {v} (dropped) cannot be removed: neither revealed "
                    "its seed (both unreachable, or refused)"
                )
            mask = prg(bytes.fromhex(hex_seed), count)
            if u < v:
                total -= mask
            else:
                total += mask
    return dequantise(total, bits, sum(int(weights[u]) for u in survivors))
