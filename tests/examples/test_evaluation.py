"""The three-way comparison: summaries by hand, argument checks, and one real run through the launcher."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from swarm_examples.cohort_simulator import simulate_cohorts
from swarm_examples.evaluation import (
    TrainingSettings,
    evaluate_scenario,
    format_summary_markdown,
    summarise,
)


def test_summary_is_mean_and_sample_sd_over_permutations() -> None:
    scores = [
        {"arm": "node1", "auc": 0.9, "accuracy": 0.8, "sensitivity": 0.5, "specificity": 1.0, "f1": 0.6},
        {"arm": "node1", "auc": 0.7, "accuracy": 0.6, "sensitivity": float("nan"), "specificity": 0.8, "f1": 0.4},
        {"arm": "swarm", "auc": 1.0, "accuracy": 0.9, "sensitivity": 0.9, "specificity": 0.9, "f1": 0.9},
    ]
    rows = {(r["arm"], r["metric"]): r for r in summarise(scores, ["node1", "swarm"])}
    assert rows["node1", "auc"]["mean"] == pytest.approx(0.8)
    assert rows["node1", "auc"]["sd"] == pytest.approx(np.sqrt(0.02))  # ((.1)^2 + (.1)^2) / (2 - 1)
    assert rows["node1", "sensitivity"]["n"] == 1  # the NaN is left out, not counted as 0
    assert math.isnan(rows["swarm", "auc"]["sd"])
    table = format_summary_markdown(list(rows.values()), ["node1", "swarm"])
    assert "| node1 | 0.800 ± 0.141 | 0.700 ± 0.141 | 0.500 | 0.900 ± 0.141 | 0.500 ± 0.141 |" in table
    assert "| swarm | 1.000 | 0.900 | 0.900 | 0.900 | 0.900 |" in table


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs=0"),
        ({"batch_size": 1.5}, "batch_size=1.5"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"scaling": "global"}, "per-node, per-sample"),
        ({"merge_method": "avg"}, "merge_method='avg'"),
        ({"sync_frequency": 4}, "set exactly one"),
        ({"merges_per_epoch": None}, "set exactly one"),
        ({"merges_per_epoch": 0}, "merges_per_epoch=0"),
        ({"merge_weighting": "samples"}, "merge_weighting='samples': pass one of steps, node"),
    ],
)
def test_bad_settings_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainingSettings(**kwargs)


def test_merge_weighting_follows_the_schedule_unless_given() -> None:
    per_epoch, fixed = TrainingSettings(merges_per_epoch=6), TrainingSettings(sync_frequency=4, merges_per_epoch=None)
    assert per_epoch.weighting == "node" and fixed.weighting == "steps"
    assert TrainingSettings(merges_per_epoch=6, merge_weighting="steps").weighting == "steps"
    args = per_epoch.worker_args(Path("d"), 0)
    assert args[args.index("--merge-weighting") + 1] == "node"
    assert "one per site" in per_epoch.describe_sync()


def test_bad_scenario_and_permutations_fail_before_any_training(tmp_path: Path) -> None:
    data = simulate_cohorts(60, 3, n_genes=5)
    with pytest.raises(ValueError, match="unknown scenario '3C'"):
        evaluate_scenario(data, "3C", tmp_path)
    for bad in (0, 101, 2.5):
        with pytest.raises(ValueError, match="from 1 to 100"):
            evaluate_scenario(data, "even", tmp_path, permutations=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="connection profile"):
        evaluate_scenario(data, "even", tmp_path, ledger="fabric", fabric_profile=tmp_path / "missing.json")
    assert not list(tmp_path.iterdir()) or not (tmp_path / "scores.csv").exists()


@pytest.mark.slow
def test_tiny_evaluation_end_to_end_through_the_launcher(tmp_path: Path) -> None:
    """Nodes alone, central and a real three-process swarm on a tiny simulated cohort."""
    data = simulate_cohorts(400, 4, case_fraction=0.3, n_genes=40, effect_size=1.5, seed=2)
    settings = TrainingSettings(epochs=2, batch_size=32, width=0.05, merges_per_epoch=2)
    progress = io.StringIO()
    started = time.monotonic()
    result = evaluate_scenario(data, "even", tmp_path, permutations=1, settings=settings, stream=progress)
    elapsed = time.monotonic() - started

    assert result.arms == ["node1", "node2", "node3", "swarm", "central"]
    assert [row["arm"] for row in result.scores] == ["node1", "node2", "node3", "central", "swarm"]
    for row in result.scores:
        for metric in ("auc", "accuracy", "sensitivity", "specificity", "f1"):
            assert 0.0 <= row[metric] <= 1.0, (row["arm"], metric, row[metric])
    # The swarm really ran: every site merged, and its model was scored with each site's scaler.
    assert len(result.swarm_sites) == 3
    assert all(site["rounds"] >= 2 for site in result.swarm_sites)
    assert all(site["ends_with_swarm_model"] for site in result.swarm_sites), "every site ends with the swarm's model"
    swarm_row = next(row for row in result.scores if row["arm"] == "swarm")
    assert swarm_row["accuracy"] == pytest.approx(np.mean([s["accuracy"] for s in result.swarm_sites]))
    # Every file is written and agrees with the result.
    with open(result.files["scores"], encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 and {r["arm"] for r in rows} == set(result.arms)
    assert "| swarm |" in result.files["markdown"].read_text()
    assert result.files["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = json.loads(result.files["run"].read_text())
    assert run["simulated"] is True and run["settings"]["epochs"] == 2
    ledger = tmp_path / "work" / "perm-01" / "ledger.sqlite"
    assert ledger.is_file()
    assert not (tmp_path / "work" / "perm-01" / "data").exists()  # the data copies are removed
    assert not (tmp_path / "work" / "perm-01" / "site-a" / "blobs").exists()  # so are every round's models
    assert (tmp_path / "work" / "perm-01" / "site-a" / "final.safetensors").is_file()
    text = progress.getvalue()
    assert "permutation 1/1" in text and "swarm: AUC" in text and "site-b: epoch 2/2" in text
    assert elapsed < 240, f"the tiny evaluation took {elapsed:.0f} s"


def test_figure_is_a_small_png(tmp_path: Path) -> None:
    from swarm_examples.figures import plot_scores

    rng = np.random.default_rng(1)
    arms = ["node1", "node2", "node3", "swarm", "central"]
    rows = [
        {
            "arm": arm,
            "permutation": p,
            **{m: float(rng.uniform(0.6, 1.0)) for m in ("auc", "accuracy", "sensitivity", "specificity")},
        }
        for arm in arms
        for p in range(1, 6)
    ]
    rows[0]["sensitivity"] = float("nan")  # an undefined score is left out, not drawn
    path = plot_scores(rows, arms, tmp_path / "sub" / "figure.png", "test")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) < 150_000
