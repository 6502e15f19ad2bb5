"""The leader's merge from files, a column chunk at a time: the bytes of the merge in memory, bit for bit."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sn_service import streamed_merge
from sn_service.blob_store import BlobStore
from sn_service.merge.stacked_models import merge_models
from sn_service.streamed_merge import MergeTooLarge, in_memory_merge_problem, merge_files
from swarm_wire import safetensors_files as stf
from swarm_wire import serialization


def _models(rng: np.random.Generator, n: int) -> list[list[np.ndarray]]:
    base = [
        rng.standard_normal((97, 131)).astype(np.float32),
        np.arange(5, dtype=np.int64),
        rng.standard_normal(10_007).astype(np.float16),
        rng.standard_normal(()).astype(np.float32),
        rng.standard_normal((3, 4, 5)).astype(np.float64),
        np.zeros((0, 4), np.float32),
    ]
    out = []
    for k in range(n):
        m = [
            a + (rng.standard_normal(a.shape) * (k + 1)).astype(a.dtype) if a.dtype.kind == "f" else a + k for a in base
        ]
        out.append([np.asarray(a, dtype=b.dtype) for a, b in zip(m, base, strict=True)])
    return out


def _stored(tmp_path, models):
    layout = serialization.layout_of(models[0])
    sources = []
    for k, m in enumerate(models):
        path = tmp_path / f"c{k}"
        stf.write_file(m, path)
        sources.append((path, stf.check_file(path, layout)))
    return layout, sources


@pytest.mark.parametrize("method", ["mean", "coordmedian", "trimmedmean", "krum", "multikrum", "geomedian"])
@pytest.mark.parametrize("weights", [[3.0, 1.0, 7.0, 2.0], [1.0, 0.0, 2.0, 5.0], [1.0, 1.0, 1.0, 1.0]])
@pytest.mark.parametrize("min_columns", [4096, 7])
def test_a_merge_from_files_gives_the_bytes_of_the_merge_in_memory(tmp_path, monkeypatch, method, weights, min_columns):
    monkeypatch.setattr(streamed_merge, "_MIN_COLUMNS", min_columns)
    models = _models(np.random.default_rng(len(method)), 4)
    layout, sources = _stored(tmp_path, models)
    w = np.array(weights)
    expected = serialization.to_bytes(merge_models(method, models, w))
    store = BlobStore(tmp_path / "store")
    with store.incoming() as out:
        merge_files(method, layout, sources, w, out, chunk_bytes=1000)  # chunks of a few columns
        sha = out.commit()
    assert store.get(sha) == expected


def test_two_and_thirty_contributors_and_a_model_without_floats(tmp_path):
    for n in (2, 30):
        models = _models(np.random.default_rng(n), n)
        layout, sources = _stored(tmp_path, models)
        w = np.arange(1.0, n + 1)
        for method in ("mean", "coordmedian", "trimmedmean"):
            store = BlobStore(tmp_path / f"store-{n}-{method}")
            with store.incoming() as out:
                merge_files(method, layout, sources, w, out, chunk_bytes=50_000)
                sha = out.commit()
            assert store.get(sha) == serialization.to_bytes(merge_models(method, models, w)), (n, method)
    ints = [[np.arange(6, dtype=np.int32) + k] for k in range(3)]
    (tmp_path / "ints").mkdir()
    layout, sources = _stored(tmp_path / "ints", ints)
    store = BlobStore(tmp_path / "store-ints")
    with store.incoming() as out:
        merge_files("mean", layout, sources, np.ones(3), out)
        sha = out.commit()
    assert store.get(sha) == serialization.to_bytes(ints[0])


def test_whole_model_methods_are_refused_when_the_stack_would_not_fit(tmp_path, monkeypatch):
    message = in_memory_merge_problem("krum", 2_160_000_000, 3, available=8 << 30)
    assert message is not None and "'krum'" in message and "3 x 2.16 GB" in message and "use mean" in message
    assert in_memory_merge_problem("mean", 2_160_000_000, 3, available=1) is None
    assert in_memory_merge_problem("geomedian", 1_000_000, 3, available=8 << 30) is None
    models = _models(np.random.default_rng(0), 3)
    layout, sources = _stored(tmp_path, models)
    monkeypatch.setattr(streamed_merge, "memory_available", lambda: 1000)
    store = BlobStore(tmp_path / "store")
    with pytest.raises(MergeTooLarge, match="'geomedian'"), store.incoming() as out:
        merge_files("geomedian", layout, sources, np.ones(3), out)
    assert not [p for p in (tmp_path / "store").rglob("*") if p.is_file()]


def test_a_site_refuses_to_join_a_task_whose_whole_model_merge_would_not_fit(tmp_path, monkeypatch, caplog):
    from sn_service.ledger import EmbeddedLedger
    from sn_service.ledger.base import ContractError
    from sn_service.peer_client import PeerClient
    from sn_service.service import SwarmNetworkService

    layout = serialization.layout_of([np.zeros((1000, 1000), np.float32)])
    spec = {
        "fingerprint": serialization.fingerprint(layout),
        "layout": layout,
        "min_peers": 3,
        "merge_method": "krum",
        "quorum_wait_ms": 0,
        "leader_timeout_ms": 10_000,
        "max_rounds": 0,
    }
    ledger = EmbeddedLedger(tmp_path / "ledger.sqlite", identity="embedded::site-a")
    service = SwarmNetworkService(
        "site-a", ledger, BlobStore(tmp_path / "blobs"), PeerClient(), "http://127.0.0.1:9", stream_above_bytes=0
    )
    try:
        monkeypatch.setattr(streamed_merge, "memory_available", lambda: 8_000_000)  # 8 MB free: 4 x 4 MB won't fit
        with pytest.raises(ValueError, match="merge method 'krum' compares whole models") as caught:
            service.join("big", spec)
        assert "3 x 0.00 GB" in str(caught.value) and "use mean, coordmedian or trimmedmean" in str(caught.value)
        with pytest.raises(ContractError):
            ledger.get_task("big")  # refused before it reached the ledger
        assert service.tasks == {}
        with caplog.at_level(logging.WARNING, logger="sn_service.service"):
            service.join("big", spec | {"merge_method": "mean"})  # a column-wise method joins
        assert "big" in service.tasks
        assert "leader timeout 10 s is short for a model of 0.00 GB" in caplog.text
        assert "give leaderTimeoutSeconds >= 41" in caplog.text  # 2 x (20 s + 4 MB at 10 MB/s)
    finally:
        service.shutdown()
