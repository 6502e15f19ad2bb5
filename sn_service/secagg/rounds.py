"""Secure rounds on the ledger and between the sites: the I/O around ``protocol``.

The round driver calls in at five points of a secure task's round:

* ``prepare`` as soon as the round before is merged (the site's trainer
  starts on the next batches): make the round key, ``AdvertiseKey`` it, and
  sum the self mask and the pairwise masks with the keys the others
  advertise while everyone trains (the masks do not depend on the model);
* ``key_for`` when it submits: the site's round key, submitted instead of a
  blob hash (the plain model stays in this process's memory, never in the
  blob store where peers could fetch it);
* ``premask`` while the round is open: in the background, sum the masks of
  the keys advertised or submitted since (a submitted key cannot change; a
  site that submits another key than it advertised has its advertised one
  taken out), and quantise the model, so that little is left to do once the
  round closes;
* ``contribute`` once the round closed: mask, store the masked blob and the
  sealed shares, ``SubmitMasked`` their hashes;
* ``lead`` when this site leads: wait for the masked models (all, or until
  half the leader's time is gone), fetch and verify them, ``Seal`` the
  survivors, ask every contributor for its reveals, unmask, publish.

``answer`` serves the leader's reveal request (``POST /v1/secagg/reveal``):
it believes nothing of the request but the envelopes (authenticated by their
AEAD), checks the survivors and the requester against the ledger, and keeps
to the Bonawitz rule across leaders.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sn_service import contract
from sn_service.ledger.base import ContractError, now_ms
from sn_service.peer_client import BlobFetchError, PeerRequestError
from sn_service.secagg.crypto import SecAggError
from sn_service.secagg.protocol import MASKED_MAGIC, MAX_HEADER_BYTES, VALUE_BYTES, MaskedSum, SiteRound, threshold
from swarm_wire import safetensors_files, serialization

if TYPE_CHECKING:
    from sn_service.round_protocol import RoundDriver, WaitState

REVEAL_PATH = "/v1/secagg/reveal"


@dataclass
class _Entry:
    site_round: SiteRound
    arrays: list[np.ndarray]  # this site's plain model: the initial round publishes it; its int tensors
    premask_job: Future | None = None
    premasked: frozenset[tuple[str, str]] = frozenset()  # the (node, key) the latest premask job was given
    quantised: bool = False  # a premask job was given the weights to quantise the model for
    own_blobs: dict[str, bytes | memoryview] = field(default_factory=dict)  # sha256 -> our masked and shares blobs


class SecureRounds:
    """This site's secure rounds, keyed by (task, round); the few latest are kept."""

    KEEP = 8
    ADVERTISE_POLL_S = 0.1  # how often a site that advertised its key reads the others' while it trains
    ADVERTISE_POLL_MAX_S = 2.0  # ... backing off to this while no new key comes

    def __init__(self, driver: RoundDriver) -> None:
        self.driver = driver
        self._rounds: dict[tuple[str, int], _Entry] = {}
        self._lock = threading.Lock()
        # One thread: a site premasks one round at a time, and leaves the other core to the swarm.
        self._premasker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="secagg-premask")
        # One thread: advertising the next round's key and summing the masks of the keys others advertise.
        self._advertiser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="secagg-advertise")
        self._closing = threading.Event()
        self._no_advertising = False  # set when the ledger's contract turns out to have no AdvertiseKey

    def close(self) -> None:
        """Stops the background threads (a running premask finishes; queued ones are dropped)."""
        self._closing.set()
        self._premasker.shutdown(wait=False, cancel_futures=True)
        self._advertiser.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ site side

    def _keep(self, task: str, round_no: int, entry: _Entry) -> _Entry:
        """Holds ``entry`` as (task, round)'s, and only the KEEP latest rounds; called holding the lock."""
        self._rounds[(task, round_no)] = entry
        for old in sorted(self._rounds)[: max(0, len(self._rounds) - self.KEEP)]:
            del self._rounds[old]
        return entry

    def key_for(self, task: str, round_no: int, layout: str, blob: bytes, arrays: list | None, weight: int) -> str:
        """This site's public key for ``round_no`` (made on first call), holding on to the plain model.

        If ``prepare`` advertised a key for the round, that key, given the model now.
        """
        with self._lock:
            entry = self._rounds.get((task, round_no))
            if entry is None or not entry.arrays:  # none yet, or advertised by prepare and waiting for the model
                if arrays is None:
                    arrays = serialization.from_bytes(blob, layout)
                floats = [a.ravel() for a in arrays if a.dtype.kind == "f"]
                values = np.concatenate(floats).astype(np.float64) if floats else np.zeros(0)
                try:
                    given = entry is not None and entry.site_round.set_model(values, weight)
                except SecAggError as exc:  # not the model the key was made for: a fresh key then
                    self.driver.log.warning("round %d: %s; submitting a fresh key", round_no, exc)
                    given = False
                if not given:
                    fresh = SiteRound(task, round_no, self.driver.site, values, weight)
                    entry = self._keep(task, round_no, _Entry(fresh, []))
                assert entry is not None
                entry.arrays = list(arrays)
                for (other_task, other_round), other in self._rounds.items():
                    if other_task == task and other_round < round_no:  # a sync moved on: free its mask sum
                        other.site_round.drop_premask()
            return entry.site_round.public_hex

    def prepare(self, task: str, round_no: int, layout: str) -> None:
        """Once the round before ``round_no`` is merged: advertise our key of ``round_no`` and premask.

        Returns at once. In the background: makes the round's key, ``AdvertiseKey``s it, then sums the
        self mask and the pairwise masks with the keys the others advertise, reading the round every
        ADVERTISE_POLL_S (backing off to ADVERTISE_POLL_MAX_S while no new key comes; the task every 20th
        time) while it is open, until every expected site's key is in or this site submits
        (``premask`` takes over from there). Anything that fails here only leaves more to do at Close.
        """
        count = _float_count(layout)
        with self._lock:
            if (task, round_no) in self._rounds or self._no_advertising:
                return  # made already (by a sync that got there first), or the ledger cannot take it
            waiting = SiteRound(task, round_no, self.driver.site, None, 0, count=count)
            entry = self._keep(task, round_no, _Entry(waiting, []))
        try:
            self._advertiser.submit(self._advertise, task, round_no, entry)
        except RuntimeError:  # shutting down
            return

    def abandon(self, task: str, round_no: int) -> None:
        """Drops this site's round ``round_no`` of ``task``, abandoned: nothing of it is unmasked any more."""
        with self._lock:
            entry = self._rounds.pop((task, round_no), None)
        if entry is not None:
            entry.site_round.drop_premask()

    def forget(self, task: str) -> None:
        """Drops this site's rounds of ``task`` (it left): their keys and mask sums are freed, advertising stops."""
        with self._lock:
            for key in [k for k in self._rounds if k[0] == task]:
                self._rounds.pop(key).site_round.drop_premask()

    def _advertise(self, task: str, round_no: int, entry: _Entry) -> None:
        d, site_round = self.driver, entry.site_round
        try:  # a hint: an unreachable ledger is not waited out for long (nor is a service that stops held up)
            d._ledger(d.ledger.advertise_key, time.monotonic() + 10.0, task, round_no, d.site, site_round.public_hex)
        except ContractError as exc:  # the round moved on, or this site submitted already: nothing to win
            if exc.code == "UNKNOWN_FUNCTION":  # a contract of before AdvertiseKey: do not ask again
                self._no_advertising = True
                d.log.warning(
                    "the ledger's contract has no AdvertiseKey (a chaincode older than this service?): secure "
                    "rounds mask at Close, slower; deploy this version's chaincode (%s)",
                    exc,
                )
            else:
                d.log.debug("round %d: key not advertised: %s", round_no, exc)
            return
        except Exception as exc:  # a hint only: Submit carries the key anyway
            d.log.warning("round %d: could not advertise the round key (%s); masking at Close instead", round_no, exc)
            return
        deadline = time.monotonic() + 120.0
        summed: dict[str, str] = {}  # the keys in our mask sum
        seen: dict[str, str] = {}  # the keys of the read before
        reads, wait_s = 0, self.ADVERTISE_POLL_S
        while not self._closing.is_set() and time.monotonic() < deadline:
            try:
                if reads % 20 == 0:  # who is expected changes rarely: the task is read now and then only
                    rec = d.ledger.get_task(task)
                rnd = d.ledger.get_round(task, round_no)
                reads += 1
            except Exception as exc:  # premask at submit and mask at Close do the rest
                d.log.debug("round %d: stopped reading advertised keys: %s", round_no, exc)
                return
            if rnd["status"] != "open" or d.site in rnd["submissions"] or entry.site_round.has_model:
                return  # from our submission on, premask (called by the round driver) carries on
            if self._rounds.get((task, round_no)) is not entry:
                return  # forgotten (this site left the task)
            keys = _round_keys(rnd)
            everyone = all(n in keys for n in contract.expected_nodes(rec))
            # Keys come in one by one: they are summed once every expected one is in, or once no new one
            # came for a poll. One pass over the sum for many keystreams costs much less than one pass each.
            if keys != summed and (everyone or keys == seen):
                try:
                    site_round.premask(keys)
                except (SecAggError, ValueError) as exc:  # a bad key: mask() at Close says what is wrong
                    d.log.warning("round %d: premasking stopped: %s", round_no, exc)
                    return
                summed = keys
            if everyone:
                return
            # Quiet rounds are read less and less often (a site registered but gone never advertises).
            wait_s = self.ADVERTISE_POLL_S if keys != seen else min(2 * wait_s, self.ADVERTISE_POLL_MAX_S)
            seen = keys
            self._closing.wait(wait_s)

    def premask(self, rec: dict, rnd: dict) -> None:
        """While our round is open: sums our masks with the keys advertised or submitted so far, in the background.

        Returns at once; a job runs when there are keys its predecessors were not given, or the model to
        quantise. ``contribute`` (``SiteRound.mask``) takes over from wherever it got to, under the round's lock.
        """
        entry = self._rounds.get((rec["task"], rnd["round"]))
        if entry is None or entry.site_round.masked is not None:
            return
        sub = rnd["submissions"].get(self.driver.site)
        if sub is None or sub["sha256"] != entry.site_round.public_hex:
            return  # not our submission of this round (yet)
        keys = _round_keys(rnd)
        if set(keys.items()) <= entry.premasked and entry.quantised:
            return
        if entry.premask_job is not None and not entry.premask_job.done():
            return
        entry.premasked, entry.quantised = frozenset(keys.items()), True
        # The weights the round will likely sum to: those submitted, and the largest again for each site
        # still expected (a wrong guess costs one more quantisation at Close, nothing else).
        weights = [int(sub["weight"]) for sub in rnd["submissions"].values()]
        waiting = [n for n in contract.expected_nodes(rec) if n not in rnd["submissions"]]
        total = sum(weights) + len(waiting) * max(weights)
        try:
            entry.premask_job = self._premasker.submit(self._premask, entry.site_round, keys, total, rnd["round"])
        except RuntimeError:  # shutting down
            return

    def _premask(self, site_round: SiteRound, keys: dict[str, str], total_weight: int, round_no: int) -> None:
        try:
            site_round.premask(keys, total_weight)
        except (SecAggError, ValueError) as exc:  # mask() at Close computes it again and says what is wrong
            self.driver.log.warning("round %d: premasking stopped: %s", round_no, exc)

    def contribute(self, rec: dict, rnd: dict, deadline: float, wait: WaitState) -> None:
        """Masks this site's model for the closed round and submits the hashes (once)."""
        task, round_no, d = rec["task"], rnd["round"], self.driver
        node = d.site
        if node not in rnd["contributors"] or node in rnd.get("masked", {}):
            return
        entry = self._rounds.get((task, round_no))
        if entry is None:
            d.log.warning("round %d: this service holds no key of its submission (restarted?); not masking", round_no)
            return
        keys, weights = _keys_and_weights(rnd)
        with wait.timed("secagg: mask"):
            masked, shares = entry.site_round.mask(keys, weights)
            # The leader fetches the masked blob as soon as its hash is on the ledger: served from memory
            # meanwhile, it is written to the store off the round's critical path.
            masked_sha, shares_sha = hashlib.sha256(masked).hexdigest(), d.store.put(shares)
            d.serve_then_store(masked, masked_sha)
        entry.own_blobs = {masked_sha: masked, shares_sha: shares}  # if we lead: no read back from the store
        # Only the float tensors' shapes are needed from here on (the integer ones are kept): no plain copy.
        entry.arrays = [
            np.broadcast_to(np.zeros((), a.dtype), a.shape) if a.dtype.kind == "f" else a for a in entry.arrays
        ]
        with wait.timed("secagg: submit masked"):
            try:
                d._ledger(d.ledger.submit_masked, deadline, task, round_no, node, masked_sha, shares_sha)
            except ContractError as exc:
                if exc.code not in ("ROUND_NOT_CLOSED", "TASK_DONE"):
                    raise
                return
        leader = rnd["contributors"][rnd["leader_index"]]
        d._notify(rec, [leader], round_no)
        d.log.info(
            "round %d: submitted masked model %s... (%d bytes; %d of %d masks summed before close)",
            round_no,
            masked_sha[:12],
            len(masked),
            entry.site_round.premasked_streams,
            len(keys),
        )

    def answer(self, task: str, round_no: int, requester: str | None, envelopes: dict[str, str]) -> dict:
        """This site's reveals for the round's sealed survivors, to the current leader only."""
        d = self.driver
        # The leader asks right after its Seal committed; on Fabric our organisation's peer may see the
        # block a moment later: read again for a little while before refusing.
        give_up = time.monotonic() + 3.0
        while True:
            rnd = d.ledger.get_round(task, round_no)
            sealed_by_leader = (
                rnd["status"] == "closed"
                and rnd.get("sealed", {}).get("by") == (rnd["contributors"][rnd["leader_index"]])
            )
            if sealed_by_leader or time.monotonic() > give_up:
                break
            time.sleep(0.1)
        rec = d.ledger.get_task(task)
        if rnd["status"] != "closed" or "sealed" not in rnd:
            raise SecAggError(f"round {round_no} of {task} is {rnd['status']} and not sealed: nothing to reveal")
        leader = rnd["contributors"][rnd["leader_index"]]
        if requester is not None and rec["nodes"][leader]["identity"] != requester:
            raise SecAggError(f"only the round's leader {leader} may ask for reveals")
        if rnd["sealed"]["by"] != leader:
            raise SecAggError(f"round {round_no} was sealed by {rnd['sealed']['by']}, not by its leader {leader}")
        entry = self._rounds.get((task, round_no))
        if entry is None:
            raise SecAggError(f"this service holds no key for round {round_no} of {task} (restarted?)")
        keys, _ = _keys_and_weights(rnd)
        with self._lock:  # one reveal at a time: the Bonawitz rule reads and writes what was revealed
            out = entry.site_round.reveal(keys, rnd["sealed"]["survivors"], envelopes, recipient=leader)
        d.log.info(
            "round %d: revealed %d self-mask shares and %d pairwise seeds to %s%s",
            round_no,
            len(out["b_shares"]),
            len(out["seeds"]),
            leader,
            f"; refused {sorted(out['refused'])}" if out["refused"] else "",
        )
        return out

    # ------------------------------------------------------------------ leader side

    def lead(self, rec: dict, rnd: dict, deadline: float, wait: WaitState) -> None:
        """As leader of a secure round: publishes the weighted mean (or, in round 0, our own weights)."""
        d, task, round_no = self.driver, rec["task"], rnd["round"]
        entry = self._rounds.get((task, round_no))
        if rnd["previous_merged_sha256"] is None:
            # The first round aligns the starting point (untrained weights): everyone takes the leader's.
            if entry is None:
                d.log.error("round %d: this service holds no model of its submission; waiting for failover", round_no)
                return
            self._publish(rec, rnd, entry.arrays, deadline, wait, "leader's initial weights", len(rnd["contributors"]))
            return
        t0 = time.perf_counter()
        contributors = rnd["contributors"]
        need = max(threshold(len(contributors)), min(rec["spec"]["min_peers"], len(contributors)))
        try:
            summed, shares = self._collect_masked(rec, rnd, deadline, wait)
        except SecAggError as exc:  # the round's weights do not fit the ring: every site refused to mask too
            d.log.error("round %d: cannot sum the masked models: %s", round_no, exc)
            return
        survivors = sorted(summed.nodes)
        if len(survivors) < need:
            d.log.error(
                "round %d: %d masked models verified of %d contributors (%s); unmasking needs %d; "
                "a site that reaches more takes over after our deadline",
                round_no,
                len(survivors),
                len(contributors),
                ", ".join(survivors) or "none",
                need,
            )
            return
        try:
            with wait.timed("lead: seal"):
                d._ledger(d.ledger.seal, deadline, task, round_no, d.site, survivors)
        except ContractError as exc:
            d.log.warning("round %d: could not seal: %s", round_no, exc)
            return
        dropped = [n for n in contributors if n not in summed.nodes]
        d._set_wait(wait, "merging", f"asking {len(contributors)} sites for their reveals")
        with wait.timed("lead: reveals"):
            answers = self._collect_reveals(rec, rnd, survivors, shares)
        try:
            with wait.timed("lead: unmask"):
                mean = summed.unmask(survivors, answers)
        except SecAggError as exc:
            d.log.error("round %d: cannot unmask: %s", round_no, exc)
            return
        if entry is None:
            d.log.error("round %d: this service holds no model of its own (restarted?); cannot lead", round_no)
            return
        merged = _unflatten(mean, entry.arrays)
        how = f"secure mean of {len(survivors)}" + (f", dropped {', '.join(sorted(dropped))}" if dropped else "")
        if self._publish(rec, rnd, merged, deadline, wait, how, len(survivors)):
            d.metrics.merge_seconds.observe(time.perf_counter() - t0)

    def _collect_masked(
        self, rec: dict, rnd: dict, deadline: float, wait: WaitState
    ) -> tuple[MaskedSum, dict[str, dict]]:
        """The sum of the masked blobs we could get and verify, and their share envelopes by node.

        Fetches each as soon as the ledger shows it, until every contributor's is in or half
        our time is gone (a site that died before masking does not hold the round longer), and
        adds it to the sum as it arrives.
        """
        d, task, round_no = self.driver, rec["task"], rnd["round"]
        count = _float_count(rec["spec"]["layout"])
        until_ms = rnd["leader_deadline_ms"] - rec["spec"]["leader_timeout_ms"] // 2
        timeout_s = d.leader_wait_s(rnd)

        own = self._rounds.get((task, round_no))
        own_blobs = own.own_blobs if own is not None else {}

        def get(node: str, sha: str, max_bytes: int) -> bytes | memoryview:
            if sha in own_blobs:  # ours, as masked (its hash is what we submitted)
                return own_blobs[sha]
            if d.store.has(sha):
                return d.store.get(sha)
            info = rec["nodes"][node]
            data = d.peers.fetch(info["endpoint"], sha, max_bytes, info["identity"], timeout_s)
            d.metrics.bytes_received.inc(len(data))
            # Kept, in the background, off the round's path: what the leader was sent, masked (an audit of a
            # secure round finds in its leader's store the masked models it unmasked, nothing in the clear).
            d._writes.submit(d._store_quietly, data, sha)
            return data

        keys, weights = _keys_and_weights(rnd)
        summed = MaskedSum(task, round_no, keys, weights, count)

        def both(node: str, entry: dict) -> dict:
            masked = get(node, entry["sha256"], VALUE_BYTES * count + len(MASKED_MAGIC) + MAX_HEADER_BYTES + 1)
            shares = json.loads(bytes(get(node, entry["shares_sha256"], 1 << 20)))  # 1 MiB comes as a buffer
            summed.add(node, masked)  # only with its shares: a survivor needs both
            return shares

        wakeup = d._wakeup(task)
        jobs: dict = {}
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(rnd["contributors"])))) as pool:
            while True:
                wakeup.clear()
                with wait.timed("ledger reads"):
                    rnd = d._ledger(d.ledger.get_round, deadline, task, round_no)
                for node, entry in rnd.get("masked", {}).items():
                    if node not in jobs:
                        jobs[node] = pool.submit(both, node, entry)
                missing = [n for n in rnd["contributors"] if n not in jobs]
                if not missing or now_ms() >= until_ms or time.monotonic() > deadline or rnd["status"] != "closed":
                    break
                d._set_wait(wait, "merging", f"waiting for the masked models of {', '.join(missing)}")
                with wait.timed("lead: wait for masked"):
                    wakeup.wait(max(d.poll_s, 0.05))
            shares: dict[str, dict] = {}
            with wait.timed("lead: fetch"):
                for node, job in jobs.items():
                    try:
                        shares[node] = job.result()
                    except (BlobFetchError, ValueError) as exc:
                        d.rejected_blobs.append({"round": round_no, "node": node, "reason": str(exc)})
                        d.log.error("round %d: masked contribution of %s not had: %s", round_no, node, exc)
        return summed, shares

    def _collect_reveals(self, rec: dict, rnd: dict, survivors: list[str], shares: dict[str, dict]) -> dict[str, dict]:
        """Every reachable contributor's reveals (ours locally), in parallel."""
        d, task, round_no = self.driver, rec["task"], rnd["round"]
        timeout_s = d.leader_wait_s(rnd)

        def ask(node: str) -> dict:
            envelopes = {u: shares[u]["envelopes"][node] for u in survivors if node in shares[u]["envelopes"]}
            if node == d.site:
                return self.answer(task, round_no, None, envelopes)
            info = rec["nodes"][node]
            body = {"task": task, "round": round_no, "envelopes": envelopes}
            return d.peers.post_json(info["endpoint"], REVEAL_PATH, body, info["identity"], timeout_s)

        answers: dict[str, dict] = {}
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(rnd["contributors"])))) as pool:
            jobs = {node: pool.submit(ask, node) for node in rnd["contributors"]}
            for node, job in jobs.items():
                try:
                    answer = job.result()
                    if not isinstance(answer, dict):
                        raise SecAggError(f"answer is a {type(answer).__name__}, not an object")
                    answers[node] = answer
                except (PeerRequestError, SecAggError, ContractError) as exc:
                    d.log.warning("round %d: no reveals from %s: %s", round_no, node, exc)
        return answers

    def _publish(
        self, rec: dict, rnd: dict, merged: list[np.ndarray], deadline: float, wait: WaitState, how: str, n: int
    ) -> bool:
        d, task, round_no = self.driver, rec["task"], rnd["round"]
        with wait.timed("lead: serialise"):
            blob, merged_sha = safetensors_files.to_buffer(merged)
        # Published only once another site holds it (and our store, written meanwhile).
        if not d.held_elsewhere(rec, rnd, blob, merged_sha, wait, stored=d.store_later(blob, merged_sha)):
            return False
        try:
            with wait.timed("lead: publish"):
                d._ledger(d.ledger.publish, deadline, task, round_no, d.site, merged_sha)
        except ContractError as exc:
            if exc.code in ("NOT_LEADER", "ROUND_NOT_CLOSED", "NOT_SEALED", "TASK_DONE"):
                d.log.warning("round %d: could not publish: %s", round_no, exc)
                return False
            raise
        d._notify(rec, list(rec["nodes"]), round_no)
        d.log.info("round %d: led the merge of %d models (%s) -> %s...", round_no, n, how, merged_sha[:12])
        d.metrics.rounds_led.inc()
        return True


def _float_count(layout: str) -> int:
    """How many float values a model of ``layout`` has: what a masked contribution holds."""
    tensors = serialization.parse_layout(layout)
    return sum(int(np.prod(shape, dtype=np.int64)) for dt, shape in tensors if dt.kind == "f")


def _round_keys(rnd: dict) -> dict[str, str]:
    """The keys of an open round's sites: those advertised, and those submitted (which win)."""
    keys = {node: advert["key"] for node, advert in rnd.get("advertised", {}).items()}
    keys.update({node: sub["sha256"] for node, sub in rnd["submissions"].items()})
    return keys


def _keys_and_weights(rnd: dict) -> tuple[dict[str, str], dict[str, int]]:
    """The contributors' round keys and weights, as the ledger froze them at Close."""
    subs = rnd["submissions"]
    return (
        {n: subs[n]["sha256"] for n in rnd["contributors"]},
        {n: int(subs[n]["weight"]) for n in rnd["contributors"]},
    )


def _unflatten(mean: np.ndarray, like: list[np.ndarray]) -> list[np.ndarray]:
    """The mean's float tensors in ``like``'s shapes and dtypes; other tensors from ``like`` itself."""
    out, offset = [], 0
    for a in like:
        if a.dtype.kind == "f":
            out.append(mean[offset : offset + a.size].reshape(a.shape).astype(a.dtype))
            offset += a.size
        else:
            out.append(a.copy())
    if offset != mean.size:
        raise SecAggError(f"the unmasked mean has {mean.size} values, the model {offset}")
    if not all(np.isfinite(a).all() for a in out if a.dtype.kind == "f"):
        raise SecAggError("the unmasked mean is not finite")
    return out
