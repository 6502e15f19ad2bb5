"""A swarm whose sites run Keras on different backends ends with one model, bit for bit."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from sn_service.ledger import EmbeddedLedger

from .conftest import check_swarm_run, launch_synthetic

pytestmark = pytest.mark.slow
SITES = ("site-a", "site-b", "site-c")


def test_sites_on_tensorflow_jax_and_torch_end_with_identical_weights(tmp_path):
    missing = [m for m in ("tensorflow", "jax") if importlib.util.find_spec(m) is None]
    if missing:
        if set(missing) & set(os.environ.get("SWARM_REQUIRE_BACKENDS", "").split(",")):
            pytest.fail(f"SWARM_REQUIRE_BACKENDS names {missing} but they are not installed")
        pytest.skip(f"Keras backends not installed: {missing}")
    # torch when it is installed (not in CI: PyPI's Linux wheel pulls GBs of CUDA libraries), else jax twice.
    third = "torch" if importlib.util.find_spec("torch") is not None else "jax"
    backends = {"site-a": "tensorflow", "site-b": "jax", "site-c": third}
    env = [arg for site, b in backends.items() for arg in ("--env", f"{site}:KERAS_BACKEND={b}")]
    launch_synthetic(
        tmp_path,
        "mixed",
        "--epochs",
        "1,2,2",
        "--samples",
        "160",
        "--sync-frequency",
        "2",
        launcher_args=("--keep-rounds", "0", *env),
    )
    results = {s: json.loads((tmp_path / s / "result.json").read_text()) for s in SITES}
    assert {s: r["backend"] for s, r in results.items()} == backends
    ledger = EmbeddedLedger(tmp_path / "ledger.sqlite", identity="observer")
    # Identical final weights everywhere, the last merged model, each merge the weighted mean of all three.
    check_swarm_run(tmp_path, ledger.get_history("mixed")["rounds"], ledger.get_task("mixed"), SITES, min_merges=4)
