"""The contract's conformance vectors, run against the Python state machine.

The same files are run by the Go chaincode's tests.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from sn_service import contract

VECTORS = sorted((Path(__file__).parents[2] / "contract" / "vectors").glob("*.json"))


def assert_subset(expected, actual, path="result"):
    """Every key in ``expected`` is in ``actual`` with an equal value (recursively)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing"
            assert_subset(value, actual[key], f"{path}.{key}")
    else:
        assert expected == actual, f"{path}: expected {expected!r}, got {actual!r}"


def run_vector(vector: dict) -> dict:
    state: dict[str, str] = {}
    for i, step in enumerate(vector["steps"]):
        view = contract.StateView(lambda k: json.loads(state[k]) if k in state else None)
        where = f"{vector['name']} step {i} ({step['fn']})"
        try:
            result = contract.execute(view, step["fn"], copy.deepcopy(step["args"]), step["caller"], step["ts"])
        except contract.ContractError as exc:
            assert "error" in step["expect"], f"{where}: unexpected error {exc}"
            assert exc.code == step["expect"]["error"], f"{where}: got {exc.code}, expected {step['expect']}"
            assert str(exc).startswith(exc.code + ": ")
            continue
        assert "result" in step["expect"], f"{where}: expected {step['expect']['error']}, got success"
        assert_subset(step["expect"]["result"], result, where)
        state.update({k: json.dumps(v) for k, v in view.writes.items()})
    return {k: json.loads(v) for k, v in state.items()}


def test_vectors_exist():
    assert len(VECTORS) >= 9


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_vector(path):
    vector = json.loads(path.read_text())
    assert run_vector(vector) == vector["state"]


def test_a_refused_transaction_writes_nothing():
    state: dict = {}
    view = contract.StateView(lambda k: state.get(k))
    steps = json.loads(VECTORS[0].read_text())["steps"]
    spec = next(s["args"][1] for s in steps if s["fn"] == "InitTask")
    contract.init_task(view, "a", 1, "t", spec)
    state.update(view.writes)
    view = contract.StateView(lambda k: copy.deepcopy(state.get(k)))
    with pytest.raises(contract.ContractError) as err:
        # Registers, then fails on the fingerprint: the buffered writes must not be kept.
        contract.execute(view, "Register", ["t", "n", "http://x", "0" * 64], "a", 2)
    assert err.value.code == "FINGERPRINT_MISMATCH"
    assert view.writes == {}


def test_leader_order_is_deterministic_and_rotates():
    nodes = ["site-a", "site-b", "site-c"]
    orders = {tuple(contract.leader_order("ab" * 32, r, nodes)) for r in range(30)}
    assert all(sorted(o) == nodes for o in orders)
    assert len({o[0] for o in orders}) == 3, "every node should lead some round"
    assert contract.leader_order(None, 0, nodes) == contract.leader_order(None, 0, list(reversed(nodes)))
