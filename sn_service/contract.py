"""The swarm contract: one pure state machine for the round protocol.

Every decision is a function of the ledger state, the transaction's
arguments, its caller identity and its timestamp (integer milliseconds).
There is no I/O, no clock and no randomness here, so the embedded ledger
(SQLite) and the Fabric chaincode (Go) can host the very same rules; the
JSON conformance vectors in ``contract/vectors/`` prove they agree.

State is a flat key -> JSON-object map:

* ``task/<task>`` — the task: its spec, its nodes, the current round and
  the latest merged model.
* ``round/<task>/<round:010d>`` — one merge round: submissions,
  contributors in leader order, the leader's deadline, the merged hash.
* ``advert/<task>/<round:010d>/<node>`` — a round key a node of a secure
  task advertised before submitting (``GetRound`` gathers them).

The schemas are documented in ``contract/README.md``.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from swarm_wire.names import NAME_RE, SHA256_RE
from swarm_wire.options import MERGE_METHODS

SPEC_FIELDS = (
    "fingerprint",
    "layout",
    "min_peers",
    "merge_method",
    "quorum_wait_ms",
    "leader_timeout_ms",
    "max_rounds",
)
# Optional spec fields: absent means off, and the normalised spec holds them only when on.
OPTIONAL_SPEC_FIELDS = ("secure_aggregation",)
TRANSACTIONS = (
    "InitTask",
    "Register",
    "Submit",
    "Close",
    "Publish",
    "Failover",
    "Finish",
    "Leave",
    "SubmitMasked",
    "Seal",
    "AdvertiseKey",
)
QUERIES = ("GetTask", "GetRound", "GetHistory")

_MAX_LAYOUT_CHARS = 1 << 20
_MAX_ENDPOINT_CHARS = 512
_MAX_INT = (1 << 53) - 1  # exact in JSON doubles, Go int64 and Python alike


class ContractError(Exception):
    """A transaction refused by the contract.

    ``code`` is machine-readable and identical in every implementation;
    ``message`` is for people and may differ between implementations.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def task_key(task: str) -> str:
    """The state key of a task record."""
    return f"task/{task}"


def round_key(task: str, round_no: int) -> str:
    """The state key of a round record; zero-padded so keys sort by round."""
    return f"round/{task}/{round_no:010d}"


def advert_key(task: str, round_no: int, node: str) -> str:
    """The state key of a round key a node advertised: a key of its own, so that advertising writes no
    record another transaction writes (on Fabric: no MVCC conflict with a Submit or a Close)."""
    return f"advert/{task}/{round_no:010d}/{node}"


def leader_order(previous_merged: str | None, round_no: int, nodes: list[str]) -> list[str]:
    """Orders a round's contributors: the first is the leader.

    The order is sha256(previous merged hash | round | node), so it rotates
    from round to round and nobody can choose to lead.
    """
    prev = previous_merged or ""

    def rank(node: str) -> str:
        return hashlib.sha256(f"{prev}|{round_no}|{node}".encode()).hexdigest()

    return sorted(nodes, key=lambda n: (rank(n), n))


class StateView:
    """Reads and buffered writes over a key -> JSON-object store.

    ``read`` fetches a key from the backing store (a SQLite transaction, a
    Fabric stub, a dict in tests); writes stay in ``writes`` until the
    caller commits them, so a refused transaction writes nothing.
    """

    def __init__(self, read: Callable[[str], dict | None]) -> None:
        self._read = read
        self.writes: dict[str, dict] = {}

    def get(self, key: str) -> dict | None:
        """The current value of ``key``, seeing this transaction's own writes."""
        if key in self.writes:
            return self.writes[key]
        return self._read(key)

    def put(self, key: str, value: dict) -> None:
        """Buffers a write of ``value`` to ``key``."""
        self.writes[key] = value


# --------------------------------------------------------------------------
# argument checks


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ContractError(
            "INVALID_ARGUMENT",
            f"{what} {value!r} is not a valid name: use 1-64 characters of "
            "letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return value


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= _MAX_INT:
        raise ContractError("INVALID_ARGUMENT", f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _sha(value: Any, what: str) -> str:
    if not isinstance(value, str) or not SHA256_RE.fullmatch(value):
        raise ContractError("INVALID_ARGUMENT", f"{what} must be 64 lowercase hex characters (sha256), got {value!r}")
    return value


def _caller(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise ContractError("INVALID_ARGUMENT", "the caller identity is empty or too long")
    return value


def validate_spec(spec: Any) -> dict:
    """Checks a task spec and returns it normalised (exactly SPEC_FIELDS)."""
    if not isinstance(spec, Mapping):
        raise ContractError("INVALID_ARGUMENT", f"spec must be an object, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(SPEC_FIELDS) - set(OPTIONAL_SPEC_FIELDS))
    missing = [f for f in SPEC_FIELDS if f not in spec]
    if unknown or missing:
        raise ContractError(
            "INVALID_ARGUMENT",
            f"spec fields: unknown {unknown}, missing {missing}; expected {list(SPEC_FIELDS)}",
        )
    layout = spec["layout"]
    if not isinstance(layout, str) or not layout or len(layout) > _MAX_LAYOUT_CHARS:
        raise ContractError("INVALID_ARGUMENT", "spec.layout must be a non-empty string")
    fingerprint = _sha(spec["fingerprint"], "spec.fingerprint")
    if hashlib.sha256(layout.encode()).hexdigest() != fingerprint:
        raise ContractError("INVALID_ARGUMENT", "spec.fingerprint is not the sha256 of spec.layout")
    method = spec["merge_method"]
    if method not in MERGE_METHODS:
        raise ContractError(
            "INVALID_ARGUMENT",
            f"spec.merge_method {method!r} is not one of {list(MERGE_METHODS)}",
        )
    secure = spec.get("secure_aggregation", False)
    if not isinstance(secure, bool):
        raise ContractError("INVALID_ARGUMENT", f"spec.secure_aggregation must be true or false, got {secure!r}")
    if secure and method != "mean":
        raise ContractError(
            "INVALID_ARGUMENT",
            f"spec.secure_aggregation works with merge_method 'mean' only, not {method!r}: a median or Krum "
            "must see every model, which secure aggregation hides",
        )
    normalised = {
        "fingerprint": fingerprint,
        "layout": layout,
        "min_peers": _int(spec["min_peers"], "spec.min_peers", 1),
        "merge_method": method,
        "quorum_wait_ms": _int(spec["quorum_wait_ms"], "spec.quorum_wait_ms", 0),
        "leader_timeout_ms": _int(spec["leader_timeout_ms"], "spec.leader_timeout_ms", 1),
        "max_rounds": _int(spec["max_rounds"], "spec.max_rounds", 0),
    }
    if secure:
        normalised["secure_aggregation"] = True
    return normalised


def is_secure(task_rec: dict) -> bool:
    """Whether a task merges by secure aggregation."""
    return bool(task_rec["spec"].get("secure_aggregation", False))


def secagg_threshold(contributors: int) -> int:
    """How many of a secure round's contributors must survive: a majority."""
    return contributors // 2 + 1


# --------------------------------------------------------------------------
# state helpers


def _new_round(task: str, round_no: int, ts: int) -> dict:
    return {
        "task": task,
        "round": round_no,
        "status": "open",
        "opened_ms": ts,
        "submissions": {},
        "first_submit_ms": None,
        "closed_ms": None,
        "closed_by": None,
        "previous_merged_sha256": None,
        "contributors": [],
        "leader_index": 0,
        "leader_deadline_ms": None,
        "failovers": 0,
        "merged_sha256": None,
        "published_ms": None,
        "published_by": None,
    }


def _load_task(view: StateView, task: str) -> dict:
    record = view.get(task_key(_name(task, "task")))
    if record is None:
        raise ContractError("TASK_NOT_FOUND", f"task {task!r} does not exist; InitTask it first")
    return record


def _load_round(view: StateView, task: str, round_no: int) -> dict:
    record = view.get(round_key(task, round_no))
    if record is None:
        raise ContractError("ROUND_NOT_FOUND", f"task {task!r} has no round {round_no}")
    return record


def _node_of_caller(task_rec: dict, caller: str) -> str:
    for node, info in task_rec["nodes"].items():
        if info["identity"] == caller:
            return node
    raise ContractError(
        "NODE_NOT_REGISTERED",
        f"identity {caller!r} is not registered in task {task_rec['task']!r}; Register first",
    )


def _check_node_caller(task_rec: dict, node: str, caller: str) -> dict:
    info = task_rec["nodes"].get(_name(node, "node"))
    if info is None:
        raise ContractError("NODE_NOT_REGISTERED", f"node {node!r} is not registered in task {task_rec['task']!r}")
    if info["identity"] != caller:
        raise ContractError(
            "IDENTITY_MISMATCH",
            f"node {node!r} is bound to another identity; {caller!r} may not act for it",
        )
    return info


def _round_of_active_node(view: StateView, task_rec: dict, round_no: int, node: str, info: dict) -> dict:
    """Round ``round_no`` for ``node`` (its ``info``) to submit to: refuses a node that left, a round not open yet."""
    task = task_rec["task"]
    if info["status"] == "left":
        raise ContractError("NODE_NOT_ACTIVE", f"node {node!r} has left task {task!r}; Register again")
    current = task_rec["current_round"]
    if round_no > current:
        raise ContractError("WRONG_ROUND", f"round {round_no} is not open yet; the open round is {current}")
    return _load_round(view, task, round_no)


def _require_open_task(task_rec: dict) -> None:
    if task_rec["status"] == "done":
        raise ContractError("TASK_DONE", f"task {task_rec['task']!r} is over")


def _touch(task_rec: dict, node: str, ts: int) -> None:
    info = task_rec["nodes"][node]
    info["last_seen_ms"] = max(info["last_seen_ms"], ts)


def expected_nodes(task_rec: dict) -> list[str]:
    """Nodes a round waits for: those training and those standing in with a final model."""
    return sorted(n for n, i in task_rec["nodes"].items() if i["status"] in ("active", "finished"))


def leads_last(round_rec: dict) -> bool:
    """Whether a closed round's leader is its last contributor in leader order: if it misses its deadline,
    ``Failover`` abandons the round."""
    return round_rec["leader_index"] + 1 == len(round_rec["contributors"])


def merged_rounds(task_rec: dict) -> int:
    """How many of the task's rounds were merged (the rounds before the open one, but the abandoned)."""
    return task_rec["current_round"] - task_rec.get("abandoned_rounds", 0)


def _maybe_done(task_rec: dict) -> None:
    if not any(i["status"] == "active" for i in task_rec["nodes"].values()):
        task_rec["status"] = "done"


def closable(task_rec: dict, round_rec: dict, ts: int) -> tuple[bool, str]:
    """Whether the round may close at ``ts``, and if not, why (for logs too)."""
    spec = task_rec["spec"]
    if round_rec["status"] != "open":
        return False, f"round {round_rec['round']} is {round_rec['status']}, not open"
    submitted = set(round_rec["submissions"])
    missing = [n for n in expected_nodes(task_rec) if n not in submitted]
    if len(submitted) < spec["min_peers"]:
        return False, (
            f"{len(submitted)} of min_peers {spec['min_peers']} submitted; "
            f"waiting for {', '.join(missing) or 'more nodes to join'}"
        )
    if not missing:
        return True, "every expected node submitted"
    first = round_rec["first_submit_ms"]
    if ts >= first + spec["quorum_wait_ms"]:
        return True, f"quorum wait passed without {', '.join(missing)}"
    end = first + spec["quorum_wait_ms"]
    return (
        False,
        f"waiting for {', '.join(missing)} until the quorum wait ends in {(end - ts) / 1000:.1f} s (at {end} ms)",
    )


# --------------------------------------------------------------------------
# transactions


def init_task(view: StateView, caller: str, ts: int, task: str, spec: Any) -> dict:
    """Creates a task with its spec; the same spec again is a no-op."""
    _name(task, "task")
    spec = validate_spec(spec)
    existing = view.get(task_key(task))
    if existing is not None:
        fields = SPEC_FIELDS + OPTIONAL_SPEC_FIELDS
        have = {f: existing["spec"].get(f, False) for f in fields}
        given = {f: spec.get(f, False) for f in fields}
        differ = [f for f in fields if have[f] != given[f]]
        if differ:
            detail = "; ".join(f"{f}: task has {have[f]!r}, given {given[f]!r}" for f in differ if f != "layout")
            raise ContractError(
                "SPEC_MISMATCH", f"task {task!r} exists with another spec ({', '.join(differ)}): {detail}"
            )
        return existing
    record = {
        "task": task,
        "spec": spec,
        "status": "open",
        "created_ms": ts,
        "created_by": caller,
        "current_round": 0,
        "latest_merged": None,
        "nodes": {},
    }
    view.put(task_key(task), record)
    view.put(round_key(task, 0), _new_round(task, 0, ts))
    return record


def register(view: StateView, caller: str, ts: int, task: str, node: str, endpoint: Any, fingerprint: Any) -> dict:
    """Adds a node bound to the caller's identity, or re-activates it."""
    rec = _load_task(view, task)
    _name(node, "node")
    if not isinstance(endpoint, str) or not endpoint or len(endpoint) > _MAX_ENDPOINT_CHARS:
        raise ContractError("INVALID_ARGUMENT", f"endpoint must be a non-empty string, got {endpoint!r}")
    fingerprint = _sha(fingerprint, "fingerprint")
    _require_open_task(rec)
    if fingerprint != rec["spec"]["fingerprint"]:
        raise ContractError(
            "FINGERPRINT_MISMATCH",
            f"node {node!r} has model fingerprint {fingerprint[:12]}..., the task's model is "
            f"{rec['spec']['fingerprint'][:12]}...: same layers, shapes and dtypes are required",
        )
    info = rec["nodes"].get(node)
    for other, other_info in rec["nodes"].items():
        if other != node and other_info["identity"] == caller:
            raise ContractError("IDENTITY_IN_USE", f"identity {caller!r} is already registered as node {other!r}")
    if info is None:
        rec["nodes"][node] = {
            "identity": caller,
            "endpoint": endpoint,
            "status": "active",
            "joined_ms": ts,
            "last_seen_ms": ts,
        }
    else:
        if info["identity"] != caller:
            raise ContractError("IDENTITY_MISMATCH", f"node {node!r} is bound to another identity than {caller!r}")
        info["endpoint"] = endpoint
        info["status"] = "active"
        _touch(rec, node, ts)
    view.put(task_key(task), rec)
    return rec


def submit(
    view: StateView, caller: str, ts: int, task: str, round_no: Any, node: str, sha256: Any, weight: Any
) -> dict:
    """Records a node's weights hash for the open round; one per node per round."""
    rec = _load_task(view, task)
    round_no = _int(round_no, "round")
    sha256 = _sha(sha256, "sha256")
    weight = _int(weight, "weight")
    _require_open_task(rec)
    info = _check_node_caller(rec, node, caller)
    rnd = _round_of_active_node(view, rec, round_no, node, info)
    previous = rnd["submissions"].get(node)
    if previous is not None:
        if previous["sha256"] == sha256 and previous["weight"] == weight:
            return rnd  # a replay: idempotent, nothing changes
        raise ContractError(
            "DUPLICATE_SUBMISSION",
            f"node {node!r} already submitted {previous['sha256'][:12]}... to round {round_no}",
        )
    if rnd["status"] == "abandoned":
        raise ContractError(
            "ROUND_CLOSED",
            f"round {round_no} was abandoned (no contributor could merge it); submit to round {rec['current_round']}",
        )
    if rnd["status"] != "open":
        raise ContractError("ROUND_CLOSED", f"round {round_no} is {rnd['status']}; take its merged model instead")
    rnd["submissions"][node] = {"sha256": sha256, "weight": weight, "ts_ms": ts}
    if rnd["first_submit_ms"] is None:
        rnd["first_submit_ms"] = ts
    _touch(rec, node, ts)
    view.put(round_key(task, round_no), rnd)
    view.put(task_key(task), rec)
    return rnd


def close(view: StateView, caller: str, ts: int, task: str, round_no: Any) -> dict:
    """Freezes a round's contributors and elects its leader."""
    rec = _load_task(view, task)
    round_no = _int(round_no, "round")
    _require_open_task(rec)  # a task over has its final model: no round closes any more
    node = _node_of_caller(rec, caller)
    rnd = _load_round(view, task, round_no)
    if rnd["status"] != "open":
        raise ContractError("ROUND_NOT_OPEN", f"round {round_no} is {rnd['status']}, not open")
    ok, why = closable(rec, rnd, ts)
    if not ok:
        raise ContractError("NOT_CLOSABLE", f"round {round_no} cannot close yet: {why}")
    previous = rec["latest_merged"]["sha256"] if rec["latest_merged"] else None
    rnd["status"] = "closed"
    rnd["closed_ms"] = ts
    rnd["closed_by"] = node
    rnd["previous_merged_sha256"] = previous
    rnd["contributors"] = leader_order(previous, round_no, list(rnd["submissions"]))
    rnd["leader_index"] = 0
    rnd["leader_deadline_ms"] = ts + rec["spec"]["leader_timeout_ms"]
    _touch(rec, node, ts)
    view.put(round_key(task, round_no), rnd)
    view.put(task_key(task), rec)
    return rnd


def publish(view: StateView, caller: str, ts: int, task: str, round_no: Any, node: str, merged_sha256: Any) -> dict:
    """The leader records the merged model's hash; the next round opens."""
    rec = _load_task(view, task)
    round_no = _int(round_no, "round")
    merged_sha256 = _sha(merged_sha256, "merged_sha256")
    _require_open_task(rec)  # the final model of a task over does not change
    _check_node_caller(rec, node, caller)
    rnd = _load_round(view, task, round_no)
    if rnd["status"] != "closed":
        raise ContractError("ROUND_NOT_CLOSED", f"round {round_no} is {rnd['status']}, not closed")
    leader = rnd["contributors"][rnd["leader_index"]]
    if node != leader:
        raise ContractError("NOT_LEADER", f"node {node!r} does not lead round {round_no}; {leader!r} does")
    if is_secure(rec) and rnd["previous_merged_sha256"] is not None and rnd.get("sealed", {}).get("by") != node:
        raise ContractError(
            "NOT_SEALED", f"round {round_no} is a secure aggregation: {node!r} must Seal the survivors it unmasks first"
        )
    rnd["status"] = "done"
    rnd["merged_sha256"] = merged_sha256
    rnd["published_ms"] = ts
    rnd["published_by"] = node
    rec["latest_merged"] = {"round": round_no, "sha256": merged_sha256, "node": node}
    rec["current_round"] = round_no + 1
    max_rounds = rec["spec"]["max_rounds"]
    if max_rounds and merged_rounds(rec) >= max_rounds:
        rec["status"] = "done"
    _touch(rec, node, ts)
    view.put(round_key(task, round_no), rnd)
    view.put(round_key(task, round_no + 1), _new_round(task, round_no + 1, ts))
    view.put(task_key(task), rec)
    return rnd


def failover(view: StateView, caller: str, ts: int, task: str, round_no: Any) -> dict:
    """After the leader's deadline, hands the round to the next contributor; after the last, abandons it.

    Each contributor leads at most once: when the last one in leader order missed its deadline too, none
    of them could merge (e.g. a contributor cut off after Close holds a contribution that the others need
    to reach ``min_peers``), and passing the round round again would hang the swarm. The round is then
    ``abandoned``: it merges nothing, the latest merged model stays, and the next round opens for every
    site to submit to again. An abandoned round does not count towards ``max_rounds``.
    """
    rec = _load_task(view, task)
    round_no = _int(round_no, "round")
    _require_open_task(rec)
    node = _node_of_caller(rec, caller)
    rnd = _load_round(view, task, round_no)
    if rnd["status"] != "closed":
        raise ContractError("ROUND_NOT_CLOSED", f"round {round_no} is {rnd['status']}, not closed")
    if ts < rnd["leader_deadline_ms"]:
        raise ContractError(
            "DEADLINE_NOT_PASSED",
            f"leader {rnd['contributors'][rnd['leader_index']]!r} has until "
            f"{rnd['leader_deadline_ms']} ms; now is {ts} ms",
        )
    rnd["failovers"] += 1
    _touch(rec, node, ts)
    if not leads_last(rnd):
        rnd["leader_index"] += 1
        rnd["leader_deadline_ms"] = ts + rec["spec"]["leader_timeout_ms"]
    else:
        rnd["status"] = "abandoned"
        rnd["abandoned_ms"] = ts
        rnd["abandoned_by"] = node
        rec["abandoned_rounds"] = rec.get("abandoned_rounds", 0) + 1
        rec["current_round"] = round_no + 1
        view.put(round_key(task, round_no + 1), _new_round(task, round_no + 1, ts))
    view.put(round_key(task, round_no), rnd)
    view.put(task_key(task), rec)
    return rnd


def _secure_closed_round(view: StateView, rec: dict, caller: str, round_no: int, node: str) -> dict:
    """The closed round of a secure task that ``node`` (the caller) acts in; checks in contract order."""
    _check_node_caller(rec, node, caller)
    if not is_secure(rec):
        raise ContractError("NOT_SECURE", f"task {rec['task']!r} does not use secure aggregation")
    rnd = _load_round(view, rec["task"], round_no)
    if rnd["status"] != "closed":
        raise ContractError("ROUND_NOT_CLOSED", f"round {round_no} is {rnd['status']}, not closed")
    return rnd


def submit_masked(
    view: StateView, caller: str, ts: int, task: str, round_no: Any, node: str, masked_sha256: Any, shares_sha256: Any
) -> dict:
    """A contributor of a closed secure round records the hashes of its masked model and its sealed shares."""
    rec = _load_task(view, task)
    round_no = _int(round_no, "round")
    masked_sha256 = _sha(masked_sha256, "masked_sha256")
    shares_sha256 = _sha(shares_sha256, "shares_sha256")
    _require_open_task(rec)
    rnd = _secure_closed_round(view, rec, caller, round_no, node)
    if node not in rnd["contributors"]:
        raise ContractError("NOT_CONTRIBUTOR", f"node {node!r} is not a contributor of round {round_no}")
    previous = rnd.get("masked", {}).get(node)
    if previous is not None:
        if previous["sha256"] == masked_sha256 and previous["shares_sha256"] == shares_sha256:
            return rnd  # a replay: idempotent, nothing changes
        raise ContractError(
            "DUPLICATE_SUBMISSION", f"node {node!r} already submitted its masked model to round {round_no}"
        )
    rnd.setdefault("masked", {})[node] = {"sha256": masked_sha256, "shares_sha256": shares_sha256, "ts_ms": ts}
    _touch(rec, node, ts)
    view.put(round_key(task, round_no), rnd)
    view.put(task_key(task), rec)
    return rnd


def seal(view: StateView, caller: str, ts: int, task: str, round_no: Any, node: str, survivors: Any) -> dict:
    """The leader of a closed secure round names the masked models it unmasks; the others are dropped.

    A leader after a failover may seal again (the one before may have died holding what it fetched).
    """
    rec = _load_task(view, task)
    round_no = _int(round_no, "round")
    if not isinstance(survivors, str):
        raise ContractError("INVALID_ARGUMENT", f"survivors must be node names joined by ',', got {survivors!r}")
    names = survivors.split(",")
    for name in names:
        _name(name, "survivor")
    if names != sorted(set(names)):
        raise ContractError("INVALID_ARGUMENT", f"survivors must be sorted and distinct, got {survivors!r}")
    _require_open_task(rec)
    rnd = _secure_closed_round(view, rec, caller, round_no, node)
    leader = rnd["contributors"][rnd["leader_index"]]
    if node != leader:
        raise ContractError("NOT_LEADER", f"node {node!r} does not lead round {round_no}; {leader!r} does")
    masked = rnd.get("masked", {})
    missing = [n for n in names if n not in masked]
    if missing:
        raise ContractError("NOT_MASKED", f"{', '.join(missing)} submitted no masked model to round {round_no}")
    need = secagg_threshold(len(rnd["contributors"]))
    if len(names) < need:
        raise ContractError(
            "TOO_FEW_SURVIVORS",
            f"{len(names)} survivors of {len(rnd['contributors'])} contributors; unmasking needs at least {need}",
        )
    dropped = [n for n in sorted(rnd["contributors"]) if n not in names]
    rnd["sealed"] = {"survivors": names, "dropped": dropped, "by": node, "ts_ms": ts}
    _touch(rec, node, ts)
    view.put(round_key(task, round_no), rnd)
    view.put(task_key(task), rec)
    return rnd


def _with_adverts(view: StateView, rec: dict, rnd: dict) -> dict:
    """An open round of a secure task with ``advertised`` (node -> its advertisement) when any node advertised.

    Only while the round is open: once it closed, its submissions are what counts (and the sites waiting for
    its merge read it often: one read a node less each time).
    """
    if is_secure(rec) and rnd["status"] == "open":
        adverts = {n: a for n in sorted(rec["nodes"]) if (a := view.get(advert_key(rec["task"], rnd["round"], n)))}
        if adverts:
            return dict(rnd, advertised=adverts)
    return rnd


def advertise_key(view: StateView, caller: str, ts: int, task: str, round_no: Any, node: str, key: Any) -> dict:
    """A site of a secure task announces its round key for the open round before its model is ready.

    Only a hint, so that the others can sum their pairwise masks with it while they train: the key the
    node ``Submit``s is the one the round uses (a site that restarted since submits a fresh one). One
    per node per round. It writes only its own state key (``advert_key``), which no other transaction
    writes; ``GetRound`` shows the advertisements. Returns the round as ``GetRound`` does.
    """
    rec = _load_task(view, task)
    round_no = _int(round_no, "round")
    key = _sha(key, "key")
    _require_open_task(rec)
    info = _check_node_caller(rec, node, caller)
    if not is_secure(rec):
        raise ContractError("NOT_SECURE", f"task {task!r} does not use secure aggregation")
    rnd = _round_of_active_node(view, rec, round_no, node, info)
    previous = view.get(advert_key(task, round_no, node))
    if previous is not None:
        if previous["key"] == key:
            return _with_adverts(view, rec, rnd)  # a replay: idempotent, nothing changes
        raise ContractError(
            "DUPLICATE_SUBMISSION",
            f"node {node!r} already advertised key {previous['key'][:12]}... in round {round_no}",
        )
    if rnd["status"] != "open":
        raise ContractError("ROUND_CLOSED", f"round {round_no} is {rnd['status']}; advertising a key is too late")
    if node in rnd["submissions"]:
        raise ContractError("DUPLICATE_SUBMISSION", f"node {node!r} already submitted its key to round {round_no}")
    view.put(advert_key(task, round_no, node), {"key": key, "ts_ms": ts})
    return _with_adverts(view, rec, rnd)


def _set_status(view: StateView, caller: str, ts: int, task: str, node: str, status: str) -> dict:
    rec = _load_task(view, task)
    info = _check_node_caller(rec, node, caller)
    if info["status"] == "left":
        return rec  # leaving twice, or finishing after leaving: nothing changes
    info["status"] = status
    _touch(rec, node, ts)
    _maybe_done(rec)
    view.put(task_key(task), rec)
    return rec


def finish(view: StateView, caller: str, ts: int, task: str, node: str) -> dict:
    """The node's training ended; its service keeps contributing its final model."""
    return _set_status(view, caller, ts, task, node, "finished")


def leave(view: StateView, caller: str, ts: int, task: str, node: str) -> dict:
    """The node leaves the task; rounds stop waiting for it."""
    return _set_status(view, caller, ts, task, node, "left")


# --------------------------------------------------------------------------
# queries


def get_task(view: StateView, task: str) -> dict:
    """The task record."""
    return _load_task(view, task)


def get_round(view: StateView, task: str, round_no: Any) -> dict:
    """One round record; an open round of a secure task with the round keys advertised in it (``advertised``)."""
    rec = _load_task(view, task)
    return _with_adverts(view, rec, _load_round(view, task, _int(round_no, "round")))


def get_history(view: StateView, task: str) -> dict:
    """Every finished round of the task (merged or abandoned), oldest first."""
    rec = _load_task(view, task)
    rounds = []
    for r in range(rec["current_round"]):
        rnd = view.get(round_key(task, r))
        if rnd is not None:
            rounds.append(rnd)
    return {"task": task, "rounds": rounds}


_TX_FUNCS: dict[str, Callable[..., dict]] = {
    "InitTask": init_task,
    "Register": register,
    "Submit": submit,
    "Close": close,
    "Publish": publish,
    "Failover": failover,
    "Finish": finish,
    "Leave": leave,
    "SubmitMasked": submit_masked,
    "Seal": seal,
    "AdvertiseKey": advertise_key,
}
_QUERY_FUNCS: dict[str, Callable[..., dict]] = {
    "GetTask": get_task,
    "GetRound": get_round,
    "GetHistory": get_history,
}


def execute(view: StateView, fn: str, args: list, caller: str, ts: int) -> dict:
    """Runs one transaction or query by name; writes stay in ``view.writes``.

    Raises ContractError; a refused transaction leaves ``view.writes`` to be
    discarded by the host.
    """
    _caller(caller)
    _int(ts, "timestamp")
    if fn in _TX_FUNCS:
        func = _TX_FUNCS[fn]
        with_context = True
    elif fn in _QUERY_FUNCS:
        func = _QUERY_FUNCS[fn]
        with_context = False
    else:
        raise ContractError("UNKNOWN_FUNCTION", f"{fn!r} is not one of {list(TRANSACTIONS + QUERIES)}")
    expected = len(inspect.signature(func).parameters) - (3 if with_context else 1)
    if len(args) != expected:
        raise ContractError("INVALID_ARGUMENT", f"{fn} takes {expected} arguments, got {len(args)}")
    if with_context:
        return func(view, caller, ts, *args)
    return func(view, *args)
