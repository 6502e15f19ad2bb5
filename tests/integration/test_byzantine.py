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


def _accuracy(workdir: Path, method: str, attack: bool, sites: int = 3) -> float:
    args = ["--epochs", "3", "--site-shift", "0", "--merge-method", method, "--min-peers", str(sites)]
    if attack:
        args += ["--attacker", "2", "--attack-scale", "100"]
    launch_synthetic(workdir, "byz", *args, launcher_args=("--quiet",), sites=sites, timeout_s=900)
    accuracy = json.loads((workdir / "site-a" / "result.json").read_text())["test_accuracy"]
    print(f"{sites} sites, {method}, {'x100 attacker' if attack else 'honest'}: test accuracy {accuracy:.4f}")
    return accuracy


def test_robust_merges_stay_within_two_points_of_the_honest_swarm_and_the_mean_breaks(tmp_path):
    honest = _accuracy(tmp_path / "honest", "mean", attack=False)
    assert honest > 0.85, honest
    for method in ("coordmedian", "geomedian"):
        attacked = _accuracy(tmp_path / method, method, attack=True)
        assert attacked >= honest - 0.02, f"{method} under attack: {attacked:.3f}, honest swarm {honest:.3f}"
    broken = _accuracy(tmp_path / "mean", "mean", attack=True)
    assert broken < honest - 0.10, f"the plain mean should break under attack: {broken:.3f} vs {honest:.3f}"


def test_krum_and_trimmed_mean_with_five_sites_hold_against_one_attacker(tmp_path):
    """Krum needs n >= 2f + 3 sites to tolerate f attackers; trimmed mean drops one value at each end of five."""
    honest = _accuracy(tmp_path / "honest5", "mean", attack=False, sites=5)
    assert honest > 0.85, honest
    for method in ("krum", "trimmedmean"):
        attacked = _accuracy(tmp_path / f"{method}5", method, attack=True, sites=5)
        assert attacked >= honest - 0.02, f"{method} under attack: {attacked:.3f}, honest swarm {honest:.3f}"
