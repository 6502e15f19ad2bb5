"""A site that sends its weights scaled x100: robust merges hold, the plain mean breaks.

Three sites with the same data distribution (the synthetic example with
--site-shift 0); site-c multiplies its weights by 100 before every sync.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import launch_synthetic

pytestmark = pytest.mark.slow


def _accuracy(workdir: Path, method: str, attack: bool) -> float:
    args = ["--epochs", "3", "--site-shift", "0", "--merge-method", method]
    if attack:
        args += ["--attacker", "2", "--attack-scale", "100"]
    launch_synthetic(workdir, "byz", *args, launcher_args=("--quiet",))
    return json.loads((workdir / "site-a" / "result.json").read_text())["test_accuracy"]


def test_robust_merges_stay_within_two_points_of_the_honest_swarm_and_the_mean_breaks(tmp_path):
    honest = _accuracy(tmp_path / "honest", "mean", attack=False)
    assert honest > 0.85, honest
    for method in ("coordmedian", "geomedian"):
        attacked = _accuracy(tmp_path / method, method, attack=True)
        assert attacked >= honest - 0.02, f"{method} under attack: {attacked:.3f}, honest swarm {honest:.3f}"
    broken = _accuracy(tmp_path / "mean", "mean", attack=True)
    assert broken < honest - 0.10, f"the plain mean should break under attack: {broken:.3f} vs {honest:.3f}"
