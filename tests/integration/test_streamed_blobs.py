"""Models of gigabytes take the streamed path; here every blob does (``--stream-above-bytes 0``) on a small model.

Two swarms of three real services sync the same weights, round for round: one streams every blob (upload or
inbox file to the store, fetches, the leader's column-chunk merge, the hand-over), the other keeps today's
in-memory path. Their merged models must be the same bytes. Bad input on the streamed path gets the errors
of the in-memory path and leaves nothing in the store.
"""

from __future__ import annotations

import logging
import socket
import struct
import time

import httpx
import numpy as np
import pytest

from sn_service.blob_store import BlobStore
from sn_service.ledger import EmbeddedLedger
from swarm_keras.service_client import ServiceClient
from swarm_wire import serialization

from .conftest import Services, wait_sync

pytestmark = pytest.mark.slow

SITES = ("site-a", "site-b", "site-c")
LAYOUT_ARRAYS = [
    np.zeros((64, 130), np.float32),
    np.zeros(130, np.float32),
    np.zeros((), np.int64),
    np.zeros((9, 7), np.float16),
]


def _spec(method: str = "mean") -> dict:
    layout = serialization.layout_of(LAYOUT_ARRAYS)
    return {
        "fingerprint": serialization.fingerprint(layout),
        "layout": layout,
        "min_peers": 3,
        "merge_method": method,
        "quorum_wait_ms": 60_000,
        "leader_timeout_ms": 30_000,
        "max_rounds": 0,
    }


def _weights(site: int, round_no: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1000 * round_no + site)
    return [
        (rng.standard_normal(a.shape) * (site + 1)).astype(a.dtype) if a.dtype.kind == "f" else a + round_no
        for a in LAYOUT_ARRAYS
    ]


def _swarm(root, stream: bool) -> tuple[Services, dict[str, str]]:
    root.mkdir(parents=True, exist_ok=True)
    services = Services(root)
    extra = ("--stream-above-bytes", "0") if stream else ()
    return services, {s: services.start(s, *extra) for s in SITES}


def _run_rounds(urls: dict[str, str], task: str, method: str, rounds: int) -> list[dict]:
    """Every site syncs its weights of each round through ServiceClient (site-a and site-c by inbox file,
    site-b by HTTP upload); returns each round's merged sha256 and every site's sync timings."""
    clients = {s: ServiceClient(url, logging.getLogger(s)) for s, url in urls.items()}
    for client in clients.values():
        client.join(task, _spec(method))
    clients["site-b"].inbox = None  # uploads its weights over HTTP, streamed
    out = []
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(3) as pool:
        for r in range(rounds):
            futures = {s: pool.submit(clients[s].sync, task, _weights(i, r), 1 + i, 120) for i, s in enumerate(SITES)}
            done = {s: f.result() for s, f in futures.items()}
            shas = {d["merged_sha256"] for d in done.values()}
            assert len(shas) == 1, f"round {r}: sites got different models {done}"
            merged = clients["site-b"].blob(shas.pop(), _spec()["layout"])  # memory-mapped, checked
            out.append({"round": {d["round"] for d in done.values()}, "sha": done["site-a"]["merged_sha256"],
                        "timings": {s: d["timings_ms"] for s, d in done.items()}, "merged": merged})  # fmt: skip
    for client in clients.values():
        client.checkin(task, "leave")
        client.close()
    return out


@pytest.mark.parametrize("method", ["mean", "trimmedmean"])
def test_the_streamed_path_merges_the_same_models_as_the_in_memory_path(tmp_path, method):
    streamed, s_urls = _swarm(tmp_path / "streamed", stream=True)
    in_memory, m_urls = _swarm(tmp_path / "in-memory", stream=False)
    try:
        got = _run_rounds(s_urls, "big", method, rounds=4)
        expected = _run_rounds(m_urls, "big", method, rounds=4)
        for r, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert a["sha"] == b["sha"], f"round {r}: streamed and in-memory merges differ"
            for x, y in zip(a["merged"], b["merged"], strict=True):
                assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
            # The streamed services took the streamed path, the others did not.
            assert all("receive, check and store" in t for t in a["timings"].values())
            assert not any("receive, check and store" in t for t in b["timings"].values())
            # Its leader merged from files into a file (no "serialise" of an in-memory model).
            leads = [t for t in a["timings"].values() if "lead" in t]
            assert len(leads) == 1 and "lead: merge" in leads[0] and "lead: serialise" not in leads[0]
            assert [t for t in b["timings"].values() if "lead: serialise" in t]
        # Round 1 on: the weighted mean of the round's contributions (weights 1, 2, 3), recomputed here.
        for r in range(1, 4):
            if method != "mean":
                break
            models = [_weights(i, r) for i in range(3)]
            for k in (0, 1, 3):
                mean = np.average(np.stack([m[k] for m in models]).astype(np.float64), axis=0, weights=[1, 2, 3])
                np.testing.assert_allclose(got[r]["merged"][k], mean, rtol=1e-3, atol=1e-3)
            assert got[r]["merged"][2] == models[0][2]  # an integer tensor: the first contributor's
        ledger = EmbeddedLedger(streamed.ledger_path, identity="t", create=False)
        history = ledger.get_history("big")["rounds"]
        assert [h["merged_sha256"] for h in history[:4]] == [g["sha"] for g in got]
        for site in SITES:  # every streamed store holds only complete blobs, each under its hash
            store = BlobStore(streamed.root / site / "blobs")
            for sha in {h["merged_sha256"] for h in history[:4]} & {p.name for p in store.root.rglob("*")}:
                store.verify(sha)
            assert not [p for p in store.root.rglob(".incoming-*")], "no temporary file left behind"
    finally:
        streamed.stop_all()
        in_memory.stop_all()


def test_bad_streamed_uploads_hand_overs_and_inbox_files_are_refused_and_leave_nothing(tmp_path):
    services, urls = _swarm(tmp_path, stream=True)
    try:
        spec = _spec()
        for url in urls.values():
            r = httpx.post(f"{url}/v1/local/join", json={"task": "t", "spec": spec}, timeout=30)
            assert r.status_code == 200, r.text
        a = urls["site-a"]
        good = serialization.to_bytes(_weights(0, 0))
        nan = _weights(0, 0)
        nan[1][5] = np.nan
        cases = [
            (b"definitely not safetensors", 400, "NOT_SAFETENSORS"),
            (struct.pack("<Q", 5) + b"{bad}", 400, "NOT_SAFETENSORS"),
            (good[:-100], 400, "NOT_SAFETENSORS"),  # truncated
            (serialization.to_bytes([np.zeros((64, 131), np.float32), *LAYOUT_ARRAYS[1:]]), 400, "WRONG_SHAPE"),
            (serialization.to_bytes([*LAYOUT_ARRAYS[:3], np.zeros((9, 7), np.float32)]), 400, "WRONG_DTYPE"),
            (serialization.to_bytes(LAYOUT_ARRAYS[:2]), 400, "WRONG_TENSORS"),
            (serialization.to_bytes(nan), 400, "NOT_FINITE"),
            (b"\0" * (serialization.max_blob_bytes(spec["layout"]) + 1), 413, "TOO_LARGE"),
        ]
        for body, status, code in cases:
            r = httpx.post(
                f"{a}/v1/local/syncs", params={"task": "t", "weight": 1}, content=body, timeout=30,
                headers={"content-type": "application/octet-stream"},
            )  # fmt: skip
            assert r.status_code == status and r.json()["detail"]["error"] == code, (code, r.text)
            assert r.json()["detail"]["message"]
        # Streamed without a length (chunked) and too big: refused once past the model's size.
        big = (b"\0" * 65536 for _ in range(10))
        r = httpx.post(f"{a}/v1/local/syncs", params={"task": "t", "weight": 1}, content=big, timeout=30)
        assert r.status_code == 413 and r.json()["detail"]["error"] == "TOO_LARGE"
        # An upload cut off mid-body (the client goes away): logged, nothing kept.
        host, port = a.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                f"POST /v1/local/syncs?task=t&weight=1 HTTP/1.1\r\nHost: x\r\nContent-Length: {len(good)}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n".encode()
                + good[: len(good) // 2]
            )
            time.sleep(0.5)
        deadline = time.monotonic() + 10
        while "went away before its body was complete" not in services.log("site-a"):
            assert time.monotonic() < deadline, "the service did not notice the cut-off upload"
            time.sleep(0.2)
        # A bad inbox file: the same checks, the file deleted.
        inbox = tmp_path / "site-a" / "inbox"
        (inbox / ("1" * 32 + ".safetensors")).write_bytes(serialization.to_bytes(nan))
        r = httpx.post(
            f"{a}/v1/local/syncs", params={"task": "t", "weight": 1, "blob_file": "1" * 32 + ".safetensors"}, timeout=30
        )
        assert r.status_code == 400 and r.json()["detail"]["error"] == "NOT_FINITE"
        assert not [p for p in inbox.rglob("*") if p.is_file()], "the refused file is deleted, not kept"
        # A hand-over of bytes that are not those of its hash: refused before the ledger backs it anyway.
        r = httpx.post(
            f"{urls['site-b']}/v1/merged/{'ab' * 32}", params={"task": "t", "round": 0}, content=good, timeout=30
        )
        assert r.status_code == 409 and r.json()["detail"]["error"] == "ROUND_NOT_CLOSED"
        for site in SITES:
            files = [p for p in (tmp_path / site / "blobs").rglob("*") if p.is_file()]
            assert files == [], f"{site} stored something of a refused blob: {files}"
        # The swarm still works: one round with honest weights.
        ids = {}
        for i, (site, url) in enumerate(urls.items()):
            r = httpx.post(
                f"{url}/v1/local/syncs", params={"task": "t", "weight": 1}, timeout=30,
                content=serialization.to_bytes(_weights(i, 0)), headers={"content-type": "application/octet-stream"},
            )  # fmt: skip
            assert r.status_code == 202, r.text
            ids[site] = r.json()["sync_id"]
        done = [wait_sync(urls[s], ids[s]) for s in SITES]
        assert {d["state"] for d in done} == {"done"} and len({d["merged_sha256"] for d in done}) == 1
    finally:
        services.stop_all()
