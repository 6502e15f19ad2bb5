"""One benchmark swarm: real services through the launcher and a light numpy worker per site, run to the end.

Shared by ``bench_sites.py`` and ``bench_secagg.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sn_service.cli.launcher import SwarmLauncher

HERE = Path(__file__).resolve().parent


def run_numpy_swarm(
    sites: list[str],
    data_dir: Path,
    task: str,
    worker_args: list[str],
    timeout_s: float,
    started: Callable[[SwarmLauncher], None] | None = None,
    finished: Callable[[SwarmLauncher], None] | None = None,
) -> float:
    """Runs the swarm in ``data_dir`` (embedded ledger, ``--keep-rounds 3``) until every worker ends.

    ``started(launcher)`` runs once the services are up, before the workers start; ``finished(launcher)``
    once the workers ended well, before the services stop. Returns how long the services took to start;
    a worker that fails ends the benchmark (its log's tail printed).
    """
    launcher = SwarmLauncher(sites, data_dir, echo=None, service_args=["--keep-rounds", "3"])
    t0 = time.perf_counter()
    try:
        launcher.start_services(timeout_s=300)
        up_s = time.perf_counter() - t0
        if started is not None:
            started(launcher)
        launcher.start_training(str(HERE / "numpy_sync_worker.py"), worker_args, task)
        code = launcher.wait(timeout_s=timeout_s)
        if code == 0 and finished is not None:
            finished(launcher)
    finally:
        launcher.stop()
    if code != 0:
        for s in sites[:3]:
            print((data_dir / s / "train.log").read_text()[-2000:])
        raise SystemExit("benchmark run failed")
    return up_s


def merged_rounds(ledger_path: Path, task: str) -> list[dict]:
    """The rounds of ``task`` that merged, oldest first; says so when any was abandoned (they hold no merge)."""
    from sn_service.ledger import EmbeddedLedger

    rounds = EmbeddedLedger(ledger_path, identity="bench", create=False).get_history(task)["rounds"]
    merged = [r for r in rounds if r["status"] == "done"]
    if len(merged) < len(rounds):
        print(f"note: {len(rounds) - len(merged)} of {len(rounds)} rounds were abandoned (not in the figures)")
    return merged
