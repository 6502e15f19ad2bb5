"""Real swarm-network services on loopback for integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest

from sn_service.blob_store import BlobStore
from sn_service.cli.launcher import service_file
from swarm_wire import serialization

REPO = Path(__file__).resolve().parents[2]


class Services:
    """Starts ``swarm-sn`` processes sharing one ledger (embedded by default); stops them by PID."""

    def __init__(self, root: Path, ledger_args: Sequence[str] | None = None) -> None:
        self.root = root
        self.ledger_path = root / "ledger.sqlite"
        self.ledger_args = (
            list(ledger_args)
            if ledger_args is not None
            else ["--ledger", "embedded", "--ledger-path", str(self.ledger_path)]
        )
        self.procs: dict[str, subprocess.Popen] = {}
        self.urls: dict[str, str] = {}
        self.peer_ports: dict[str, int] = {}  # the mutual-TLS ports of services started with --peer-port 0

    def start(self, site: str, *extra: str, port: int | None = None, key: str | None = None) -> str:
        """Starts ``site``'s service; ``key`` (default the site) names its process, log and data folder."""
        key = key or site
        # Without a port the service binds a free one itself and writes it to service.json: no race
        # with other processes for a port picked here. (The last --data-dir given wins.)
        given = [extra[i + 1] for i, a in enumerate(extra[:-1]) if a == "--data-dir"]
        data_dir = Path(given[-1]) if given else self.root / key
        (data_dir / "service.json").unlink(missing_ok=True)
        log = open(self.root / f"{key}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sn_service.cli.swarm_sn",
                "--site",
                site,
                "--port",
                str(port or 0),
                "--data-dir",
                str(self.root / key),
                *self.ledger_args,
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
        )
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"{key} service died: {(self.root / f'{key}.log').read_text()[-2000:]}"
            bound = service_file(data_dir, proc.pid)
            url = (bound.get("url") or f"http://127.0.0.1:{bound['port']}") if bound else ""
            with contextlib.suppress(httpx.HTTPError):
                if bound and httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"{site} service did not come up"
            time.sleep(0.1)
        self.procs[key], self.urls[key] = proc, url
        if bound["peer_port"]:
            self.peer_ports[key] = bound["peer_port"]
        return url

    def log(self, site: str) -> str:
        return (self.root / f"{site}.log").read_text(errors="replace")

    def stop(self, site: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(site)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        for site in list(self.procs):
            self.stop(site)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report gets what its fixtures can tell of the processes they ran.

    A fixture value with a ``failure_report()`` method (the multi-host test's hosts) adds a section:
    the logs it would otherwise delete with its folders, so a failure on a clean CI machine can be
    diagnosed from CI's output alone.
    """
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for name, value in getattr(item, "funcargs", {}).items():
        if callable(getattr(value, "failure_report", None)):
            try:
                text = value.failure_report()
            except Exception as exc:  # a diagnosis must not hide the failure it explains
                text = f"(could not collect: {exc!r})"
            report.sections.append((f"what {name} logged", text))


@pytest.fixture
def services(tmp_path):
    s = Services(tmp_path)
    yield s
    s.stop_all()


SMALL_LAYOUT_ARRAYS = [np.zeros((4, 2), np.float32), np.zeros(2, np.float32)]


def small_spec(min_peers: int = 3, **kw) -> dict:
    layout = serialization.layout_of(SMALL_LAYOUT_ARRAYS)
    spec = {
        "fingerprint": serialization.fingerprint(layout),
        "layout": layout,
        "min_peers": min_peers,
        "merge_method": "mean",
        "quorum_wait_ms": 30_000,
        "leader_timeout_ms": 10_000,
        "max_rounds": 0,
    }
    spec.update(kw)
    return spec


def wait_sync(url: str, sync_id: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/v1/local/syncs/{sync_id}", params={"wait_s": 2}, timeout=10).json()
        if status["state"] != "running":
            return status
    raise AssertionError(f"sync {sync_id} still running after {timeout_s} s: {status}")


def check_swarm_run(workdir: Path, history: list[dict], task: dict, sites: tuple[str, ...], min_merges: int) -> None:
    """What every finished swarm run must show, whatever its ledger.

    Every site ends with bit-identical weights, the last round's merged
    model; round 0 is the leader's own weights; every later merged model is
    the weighted mean of the stored contributions, recomputed here with numpy.
    """

    def blob(sha: str) -> bytes:
        for site in sites:
            store = BlobStore(workdir / site / "blobs")
            if store.has(sha):
                return store.get(sha)
        raise AssertionError(f"no site stored blob {sha}")

    abandoned = [r["round"] for r in history if r["status"] == "abandoned"]
    assert not abandoned, f"rounds {abandoned} abandoned (every contributor failed to lead) in a run without faults"
    finals = [(workdir / s / "final.safetensors").read_bytes() for s in sites]
    assert all(f == finals[0] for f in finals), "sites ended with different weights"
    assert serialization.sha256_hex(finals[0]) == history[-1]["merged_sha256"], "final weights = last merged model"
    assert task["status"] == "done", "the task ends when every site has left"
    layout = task["spec"]["layout"]

    first = history[0]
    leader = first["contributors"][first["leader_index"]]
    assert first["merged_sha256"] == first["submissions"][leader]["sha256"], "round 0 aligns on the leader's weights"

    merges = [r for r in history if r["previous_merged_sha256"] is not None]
    assert len(merges) >= min_merges
    for rnd in merges:
        assert sorted(rnd["contributors"]) == sorted(sites)
        assert rnd["published_by"] == rnd["contributors"][rnd["leader_index"]]
        assert_weighted_mean(rnd, rnd["contributors"], blob, layout)


def assert_weighted_mean(rnd: dict, of: Sequence[str], blob: Callable[[str], bytes], layout: str) -> None:
    """The round's merged model is the weighted mean of the contributions of the sites ``of``."""
    models = [serialization.from_bytes(blob(rnd["submissions"][s]["sha256"]), layout) for s in of]
    weights = [rnd["submissions"][s]["weight"] for s in of]
    merged = serialization.from_bytes(blob(rnd["merged_sha256"]), layout)
    for i in range(len(merged)):
        expected = np.average(np.stack([m[i] for m in models]).astype(np.float64), axis=0, weights=weights)
        np.testing.assert_allclose(merged[i], expected, rtol=1e-5, atol=1e-6)


def sync_round(urls: dict[str, str], task: str, rng: np.random.Generator, timeout_s: float = 60) -> dict:
    """Every site syncs random weights of the small layout; returns each site's finished sync."""
    jobs = {}
    for site, url in urls.items():
        blob = serialization.to_bytes([rng.standard_normal(a.shape).astype(np.float32) for a in SMALL_LAYOUT_ARRAYS])
        r = httpx.post(f"{url}/v1/local/syncs", params={"task": task, "weight": 1}, content=blob, timeout=30)
        assert r.status_code == 202, r.text
        jobs[site] = r.json()["sync_id"]
    return {site: wait_sync(urls[site], job, timeout_s) for site, job in jobs.items()}


def run_swarm_sn(
    site: str, data_dir: Path, *args: str, port: int = 0, timeout_s: float = 60
) -> subprocess.CompletedProcess:
    """Runs one ``swarm-sn`` until it exits, its output captured: for what it refuses at start."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sn_service.cli.swarm_sn",
            "--site",
            site,
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
    )


def launch_synthetic(
    workdir: Path,
    task: str,
    *script_args: str,
    launcher_args: Sequence[str] = (),
    timeout_s: int = 600,
    sites: int = 3,
) -> subprocess.CompletedProcess:
    """Runs ``sites`` sites of examples/synthetic/train.py through ``swarm-launch``; asserts it succeeded."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sn_service.cli.launcher",
            "--sites",
            str(sites),
            "--task",
            task,
            "--workdir",
            str(workdir),
            "--timeout",
            str(timeout_s),
            *launcher_args,
            str(REPO / "examples" / "synthetic" / "train.py"),
            *script_args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s + 100,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    return proc
