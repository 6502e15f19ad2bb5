"""Careless and hostile input against real services: nothing takes a site over, nothing exhausts a service.

Each test drives real ``swarm-sn`` processes on loopback (raw sockets where
a well-behaved HTTP client would not send what an attacker sends) and
asserts on the answers, on the service's memory and log, and on the ledger.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from sn_service.ledger import EmbeddedLedger

from .conftest import REPO, run_swarm_sn, small_spec, sync_round, wait_sync

pytestmark = pytest.mark.slow


def _join(url: str, task: str = "t", **spec) -> httpx.Response:
    return httpx.post(f"{url}/v1/local/join", json={"task": task, "spec": small_spec(**spec)}, timeout=30)


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        lines = fh.readlines()
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _raw(url: str, head: str, body_chunks=(), stop_on_answer: bool = True, read_timeout_s: float = 30) -> tuple:
    """Sends a request as raw bytes (head, then body chunks); returns (status, body bytes, seconds to the answer).

    Stops sending as soon as the server answers (it may refuse a body before its end).
    """
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=read_timeout_s)
    t0 = time.monotonic()
    try:
        sock.sendall(head.encode())
        for chunk in body_chunks:
            if stop_on_answer and select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        data = b""
        while b"\r\n\r\n" not in data or len(data) < _expected_len(data):
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    finally:
        sock.close()
    elapsed = time.monotonic() - t0
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    status = int(head_bytes.split()[1]) if head_bytes else 0
    return status, body, elapsed


def _expected_len(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return len(data) + 1


def _error_code(body: bytes) -> str:
    return json.loads(body)["detail"]["error"]


# --------------------------------------------------------------------------- one site, one service


def test_a_second_service_for_a_running_site_is_refused_and_a_dead_ones_place_is_taken(services):
    a, b = services.start("site-a"), services.start("site-b")
    for url in (a, b):
        assert _join(url, min_peers=2).status_code == 200
    ledger = EmbeddedLedger(services.ledger_path, identity="observer")
    registered = ledger.get_task("t")["nodes"]["site-a"]["endpoint"]
    assert registered == a

    # Same --site, its own data folder and port, same ledger: it must not take site-a's place.
    twin = services.start("site-a", key="site-a-twin")
    r = _join(twin, min_peers=2)
    assert r.status_code == 409, r.text
    assert r.json()["detail"]["error"] == "SITE_IN_USE"
    assert a in r.json()["detail"]["message"] and "pid" in r.json()["detail"]["message"]
    assert ledger.get_task("t")["nodes"]["site-a"]["endpoint"] == a, "the ledger still names the first service"
    done = sync_round({"site-a": a, "site-b": b}, "t", np.random.default_rng(0))
    assert {s["state"] for s in done.values()} == {"done"}, done

    # The same data folder twice: refused at start, naming the holder.
    proc = run_swarm_sn("site-a", services.root / "site-a", "--ledger", "embedded",
                        "--ledger-path", str(services.ledger_path))  # fmt: skip
    assert proc.returncode == 2
    assert f"pid {services.procs['site-a'].pid}" in proc.stderr and "in use by another swarm-sn" in proc.stderr

    # Once the first service is dead (a crash, then a restart elsewhere), its site may be taken over.
    services.stop("site-a", sig=9)
    assert _join(twin, min_peers=2).status_code == 200
    assert ledger.get_task("t")["nodes"]["site-a"]["endpoint"] == twin
    done = sync_round({"site-a": twin, "site-b": b}, "t", np.random.default_rng(1))
    assert {s["state"] for s in done.values()} == {"done"}, done
    assert "taking it over" in services.log("site-a-twin")


def test_a_service_that_lost_its_site_to_another_says_so_instead_of_acting_as_it(services):
    a, b = services.start("site-a"), services.start("site-b")
    for url in (a, b):
        assert _join(url, min_peers=2).status_code == 200
    # site-a's service hangs (SIGSTOP): a new one, started for site-a, finds it silent and takes over.
    os.killpg(services.procs["site-a"].pid, signal.SIGSTOP)
    try:
        twin = services.start("site-a", key="site-a-twin")
        assert _join(twin, min_peers=2).status_code == 200
    finally:
        os.killpg(services.procs["site-a"].pid, signal.SIGCONT)
    # The old one, resumed, must not contribute as site-a any more.
    r = httpx.post(
        f"{a}/v1/local/syncs", params={"task": "t", "weight": 1}, content=_blob(np.random.default_rng(0)), timeout=30
    )
    failed = wait_sync(a, r.json()["sync_id"])
    assert failed["state"] == "failed" and "took the site over" in failed["error"] and twin in failed["error"]
    done = sync_round({"site-a": twin, "site-b": b}, "t", np.random.default_rng(1))
    assert {s["state"] for s in done.values()} == {"done"}, done


# --------------------------------------------------------------------------- bodies: size, time, echo


def test_bodies_are_capped_before_they_are_read_and_nothing_is_echoed(services):
    url = services.start("site-a")
    pid = services.procs["site-a"].pid
    assert _join(url, min_peers=1).status_code == 200
    before = _peak_rss_mb(pid)
    host = urlsplit(url).netloc

    # A 1 GB JSON body, declared: refused from its length alone.
    status, body, took = _raw(
        url,
        f"POST /v1/local/join HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {1 << 30}\r\n\r\n",
    )
    assert status == 413 and _error_code(body) == "TOO_LARGE" and took < 10

    # 134 MB streamed without a length (chunked): refused once past the cap, the rest never read.
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    status, body, took = _raw(
        url,
        f"POST /v1/local/join HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        (chunk for _ in range(134 * 16)),
    )
    assert status == 413 and _error_code(body) == "TOO_LARGE"

    # A weights upload declared larger than the task's model allows: refused before reading it.
    status, body, took = _raw(
        url,
        f"POST /v1/local/syncs?task=t&weight=1 HTTP/1.1\r\nHost: {host}\r\nContent-Length: {2 << 30}\r\n\r\n12345678",
    )
    assert status == 413 and _error_code(body) == "TOO_LARGE" and took < 10

    # A validation error names the problem without echoing a megabyte of input.
    r = httpx.post(f"{url}/v1/local/join", json={"task": "x" * 1_000_000, "spec": small_spec()}, timeout=30)
    assert r.status_code == 422 and r.json()["detail"]["error"] == "INVALID_REQUEST"
    assert len(r.content) < 4000, len(r.content)
    assert "task" in r.json()["detail"]["message"]

    grew = _peak_rss_mb(pid) - before
    assert grew < 60, f"the service's peak memory grew by {grew:.0f} MB"
    assert httpx.get(f"{url}/v1/health", timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("[" * 4000 + "]" * 4000, "nested too deeply"),
        ('{"loss": ' + "9" * 5000 + "}", "not a usable JSON value"),
        ('{"loss": NaN}', "not a finite number"),
        ('{"a": {"b": 1}}', "not a number"),
    ],
)
def test_bad_metrics_headers_are_422_naming_the_header(services, header, why):
    url = services.start("site-a")
    assert _join(url, min_peers=1).status_code == 200
    r = httpx.post(
        f"{url}/v1/local/syncs",
        params={"task": "t", "weight": 1},
        content=b"x",
        headers={"X-Swarm-Metrics": header},
        timeout=30,
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["error"] == "INVALID_METRICS" and why in r.json()["detail"]["message"]
    assert len(r.content) < 1000
    assert "Traceback" not in services.log("site-a")


def test_stalled_and_abandoned_bodies_time_out_and_log_one_line_each(services):
    url = services.start("site-a", "--body-timeout", "2")
    assert _join(url, min_peers=1).status_code == 200
    host = urlsplit(url).netloc

    # 8 of 1,000 declared bytes, then nothing: 408 once the body stalls for 2 s, connection closed.
    status, body, took = _raw(
        url,
        f"POST /v1/local/join HTTP/1.1\r\nHost: {host}\r\n"
        'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"task":',
    )
    assert status == 408 and _error_code(body) == "BODY_TIMEOUT"
    assert 1.5 < took < 15, took
    # The same on a weights upload within the model's size.
    status, body, took = _raw(
        url, f"POST /v1/local/syncs?task=t&weight=1 HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\n12345678"
    )
    assert status == 408 and _error_code(body) == "BODY_TIMEOUT" and took < 15

    # 200 uploads abandoned half-way: at most one log line each (those past the 4 upload slots are
    # answered 503 at once and log nothing), no traceback, and the service still serves.
    lines_before = services.log("site-a").count("\n")
    for _ in range(200):
        sock = socket.create_connection((urlsplit(url).hostname, urlsplit(url).port))
        sock.sendall(
            f"POST /v1/local/syncs?task=t&weight=1 HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\n1234".encode()
        )
        sock.close()
    deadline = time.monotonic() + 10
    while services.log("site-a").count("went away") < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    log = services.log("site-a")
    assert 4 <= log.count("went away") <= 200
    assert "Traceback" not in log and "Exception in ASGI" not in log
    assert log.count("\n") - lines_before == log.count("went away")
    assert httpx.get(f"{url}/v1/health", timeout=5).status_code == 200


def test_concurrent_uploads_past_the_limit_get_503_busy(services):
    url = services.start("site-a", "--body-timeout", "5")
    assert _join(url, min_peers=1).status_code == 200
    parts = urlsplit(url)
    held = []
    for _ in range(4):  # four slow uploads hold every upload slot
        sock = socket.create_connection((parts.hostname, parts.port))
        sock.sendall(
            f"POST /v1/local/syncs?task=t&weight=1 HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Length: 100\r\n\r\n12".encode()
        )
        held.append(sock)
    time.sleep(0.5)
    r = httpx.post(f"{url}/v1/local/syncs", params={"task": "t", "weight": 1}, content=b"x" * 100, timeout=30)
    assert r.status_code == 503 and r.json()["detail"]["error"] == "BUSY" and r.headers["retry-after"] == "1"
    for sock in held:
        sock.close()
    # Slots come back: a real upload then goes through (400: these bytes are not safetensors).
    deadline = time.monotonic() + 20
    while True:
        r = httpx.post(f"{url}/v1/local/syncs", params={"task": "t", "weight": 1}, content=b"x" * 100, timeout=30)
        if r.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 400 and r.json()["detail"]["error"] == "NOT_SAFETENSORS", r.text


# --------------------------------------------------------------------------- the ledger file


def test_a_deleted_ledger_is_named_never_recreated_and_the_swarm_resumes_when_it_is_back(services):
    a, b = services.start("site-a"), services.start("site-b")
    for url in (a, b):
        assert _join(url, min_peers=2).status_code == 200
    rng = np.random.default_rng(0)
    assert {s["state"] for s in sync_round({"site-a": a, "site-b": b}, "t", rng).values()} == {"done"}
    path = services.ledger_path
    aside = path.with_name("moved-away.sqlite")
    os.replace(path, aside)

    # A sync now waits on the ledger, saying the file is gone; nobody makes a new empty one.
    r = httpx.post(f"{a}/v1/local/syncs", params={"task": "t", "weight": 1}, content=_blob(rng), timeout=30)
    sync_a = r.json()["sync_id"]
    deadline = time.monotonic() + 30
    while "is gone" not in services.log("site-a") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"the embedded ledger file {path} is gone" in services.log("site-a")
    assert not path.exists(), "a new ledger file was created where the swarm's was"
    # The tools that read the ledger say so too, and create nothing.
    status = subprocess.run(
        [sys.executable, "-m", "sn_service.cli.swarm_status", "--ledger-path", str(path), "--task", "t"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert status.returncode == 1 and "no embedded ledger at" in status.stderr
    from sn_service.cli.launcher import SwarmLauncher

    launcher = SwarmLauncher(["site-a"], services.root, echo=None)
    launcher.ledger_path = path
    summary = launcher.summary("t")
    assert "no history for task t" in summary and not path.exists()
    # A restart of a site that has joined tasks on it refuses to start without it.
    _copy_tasks(services.root / "site-a", services.root / "site-c-copy")
    restart = run_swarm_sn("site-c", services.root / "site-c-copy", "--ledger", "embedded", "--ledger-path", str(path))
    assert restart.returncode == 2 and "is gone" not in restart.stderr
    assert "no embedded ledger at" in restart.stderr and "has joined t" in restart.stderr
    assert not path.exists()

    # Put back: the sync that waited goes on, with site-b's.
    os.replace(aside, path)
    r = httpx.post(f"{b}/v1/local/syncs", params={"task": "t", "weight": 1}, content=_blob(rng), timeout=30)
    done_b = wait_sync(b, r.json()["sync_id"])
    done_a = wait_sync(a, sync_a)
    assert done_a["state"] == done_b["state"] == "done", (done_a, done_b)
    assert done_a["merged_sha256"] == done_b["merged_sha256"]
    assert EmbeddedLedger(path, identity="observer", create=False).get_task("t")["current_round"] == 2


def _copy_tasks(src, dst) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "tasks.json", dst / "tasks.json")


def _blob(rng: np.random.Generator) -> bytes:
    from swarm_wire import serialization

    from .conftest import SMALL_LAYOUT_ARRAYS

    return serialization.to_bytes([rng.standard_normal(a.shape).astype(np.float32) for a in SMALL_LAYOUT_ARRAYS])


# --------------------------------------------------------------------------- a finished task's status


def test_swarm_status_of_a_finished_task_says_it_is_done(services):
    a, b = services.start("site-a"), services.start("site-b")
    for url in (a, b):
        assert _join(url, min_peers=2, max_rounds=1).status_code == 200
    done = sync_round({"site-a": a, "site-b": b}, "t", np.random.default_rng(0))
    assert {s["task_status"] for s in done.values()} == {"done"}
    for where in (["--ledger-path", str(services.ledger_path), "--task", "t"], ["--url", a]):
        out = subprocess.run(
            [sys.executable, "-m", "sn_service.cli.swarm_status", *where],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert out.returncode == 0, out.stderr
        assert "task t (done)" in out.stdout and "task done: no further rounds" in out.stdout
        assert "waiting for" not in out.stdout and "MISSING" not in out.stdout, out.stdout


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs mounted for one site's data folder (needs root, as CI has)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        reason = "mounting a small tmpfs needs root and mount(8)"
        if os.environ.get("SWARM_REQUIRE_ROOT") == "1":
            pytest.fail(f"SWARM_REQUIRE_ROOT=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    where = tmp_path / "small-disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], check=True)
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk) -> None:
    """Fills the disk to the last byte with filler files."""
    for name, size in (("filler", 4096), ("filler2", 1)):
        fd = os.open(disk / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(fd, b"\0" * size)
        except OSError:
            pass
        finally:
            os.close(fd)


def test_a_full_disk_is_said_in_the_sync_health_and_status_and_old_rounds_are_pruned_first(services, small_disk):
    # site-a's store is on the small disk (the last --data-dir wins); it keeps every round's blobs until the
    # disk is full, and deletes nothing younger than 0 s.
    b = services.start("site-b")
    a = services.start(
        "site-a", "--keep-rounds", "1000", "--prune-grace", "0", "--data-dir", str(small_disk / "site-a")
    )
    for url in (a, b):
        assert _join(url, min_peers=2).status_code == 200
    rng = np.random.default_rng(0)

    # Full, with no old round to delete: the sync fails saying so; health and status say so.
    _fill(small_disk)
    r = httpx.post(f"{a}/v1/local/syncs", params={"task": "t", "weight": 1}, content=_blob(rng), timeout=30)
    failed = wait_sync(a, r.json()["sync_id"])
    assert failed["state"] == "failed" and "is full" in failed["error"] and "--keep-rounds" in failed["error"]
    health = httpx.get(f"{a}/v1/health", timeout=5)
    assert health.status_code == 503 and not health.json()["ok"]
    assert "disk full" in health.json()["problems"][0]
    out = subprocess.run(
        [sys.executable, "-m", "sn_service.cli.swarm_status", "--url", a],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert "site-a: PROBLEM: disk full" in out.stdout, out.stdout
    log = services.log("site-a")
    assert "Traceback" not in log and "crashed" not in log

    # Space again: syncs go through and health is ok.
    (small_disk / "filler").unlink()
    (small_disk / "filler2").unlink()
    for _ in range(6):
        assert {s["state"] for s in sync_round({"site-a": a, "site-b": b}, "t", rng).values()} == {"done"}
    assert httpx.get(f"{a}/v1/health", timeout=5).json() == {**health.json(), "ok": True, "problems": []}
    blobs = small_disk / "site-a" / "blobs"
    held = len([p for p in blobs.rglob("*") if p.is_file()])
    assert held >= 11, held  # its 6 contributions and the merged models of rounds 1-5 at least

    # Full again, with old rounds on disk: the next sync deletes them instead of failing.
    _fill(small_disk)
    done = sync_round({"site-a": a, "site-b": b}, "t", rng)
    assert {s["state"] for s in done.values()} == {"done"}, done
    assert "is full" in services.log("site-a") and "deleted" in services.log("site-a")
    assert len([p for p in blobs.rglob("*") if p.is_file()]) < held
    assert httpx.get(f"{a}/v1/health", timeout=5).status_code == 200


# --------------------------------------------------------------------------- fuzzing bodies and headers

_LOCAL = [
    ("POST", "/v1/local/join", {}),
    ("POST", "/v1/local/syncs", {"task": "t", "weight": "1"}),
    ("POST", "/v1/local/checkin", {"task": "t", "mode": "finish"}),
    ("POST", "/v1/local/checkin", {"task": "t", "mode": "leave"}),
    ("GET", "/v1/local/latest", {"task": "t"}),
    ("GET", "/v1/local/syncs/0123", {"wait_s": "0"}),
    ("GET", "/v1/tasks/t", {}),
    ("GET", "/v1/status", {}),
]


def test_fuzzed_bodies_and_headers_get_4xx_json_and_the_service_stays_healthy(services):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    url = services.start("site-b")  # a throwaway site; site-a must never be left by the fuzzer
    assert _join(url, min_peers=2).status_code == 200
    header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300)
    json_like = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
        max_leaves=20,
    )
    bodies = st.one_of(
        st.binary(max_size=4096),
        json_like.map(lambda v: json.dumps(v).encode()),
        st.just(b"\x00" * 70000),
        st.just(b"{" * 100000),
    )
    seen: dict[int, int] = {}

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(
        route=st.sampled_from(_LOCAL),
        body=bodies,
        content_type=st.sampled_from(["application/json", "application/octet-stream", "text/plain", "", "x/y;;"]),
        metrics=st.one_of(st.none(), header_text, json_like.map(lambda v: json.dumps(v))),
        extra=st.dictionaries(
            st.sampled_from(["Content-Encoding", "Accept", "X-Swarm-Round", "Expect"]), header_text, max_size=2
        ),
    )
    def check(route, body, content_type, metrics, extra):
        method, path, params = route
        headers = {**extra, **({"Content-Type": content_type} if content_type else {})}
        if metrics is not None:
            headers["X-Swarm-Metrics"] = metrics
        if headers.get("Expect"):
            headers.pop("Expect")  # h11 waits for 100-continue handling the client does not do
        try:
            r = httpx.request(
                method,
                url + path,
                params=params,
                content=body if method == "POST" else None,
                headers=headers,
                timeout=30,
            )
        except httpx.LocalProtocolError:
            return  # the client itself refuses to send it (e.g. an illegal header value)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500 or (r.status_code == 503 and "BUSY" in r.text), f"{method} {path}: {r.text[:300]}"
        if r.status_code >= 400:
            detail = r.json()["detail"]
            assert isinstance(detail["error"], str) and isinstance(detail["message"], str)
            assert len(r.content) < 8000, f"{method} {path}: an error of {len(r.content)} bytes"

    check()
    print("fuzzed answers by status:", dict(sorted(seen.items())))
    assert sum(v for k, v in seen.items() if k >= 400) > 100, seen
    assert httpx.get(f"{url}/v1/health", timeout=5).status_code == 200
    log = services.log("site-b")
    assert "Traceback" not in log and "Exception in ASGI" not in log
