"""The paper's node scenarios: achieved fractions, disjoint nodes, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm_examples.cohort_simulator import simulate_cohorts
from swarm_examples.scenarios import (
    SCENARIOS,
    ScenarioError,
    ScenarioSplit,
    describe_split,
    format_split_table,
    split_scenario,
)


@pytest.fixture(scope="module")
def a2_like() -> tuple[np.ndarray, np.ndarray]:
    """Labels and studies of a simulated A2-sized cohort (31 % cases, 64 studies)."""
    data = simulate_cohorts(8348, n_studies=64, case_fraction=2588 / 8348, n_genes=2, name="A2")
    assert data.groups is not None
    return data.y, data.groups


@pytest.fixture(scope="module")
def covid_like() -> np.ndarray:
    """Labels of a simulated COVID set E (2,400 samples, 296 cases)."""
    return simulate_cohorts(2400, n_studies=8, case_fraction=296 / 2400, n_genes=2).y


def assert_disjoint_and_stratified(split: ScenarioSplit, y: np.ndarray) -> None:
    """No sample twice; tests are ~20 % of each node; every train set has both classes."""
    everything = [split.unused] + [part for node in split.nodes for part in (node.train, node.test)]
    combined = np.concatenate(everything)
    assert len(combined) == len(np.unique(combined)) == len(y)
    np.testing.assert_array_equal(split.pooled_test, np.sort(np.concatenate([n.test for n in split.nodes])))
    for node in split.nodes:
        size = len(node.train) + len(node.test)
        assert abs(len(node.test) - 0.2 * size) <= 2
        assert 0 < y[node.train].sum() < len(node.train)
        # Stratified: the test set keeps the node's class ratio.
        node_fraction = y[np.concatenate([node.train, node.test])].mean()
        assert abs(y[node.test].mean() - node_fraction) <= 1.5 / len(node.test) + 1e-9


def node_fractions(split: ScenarioSplit, y: np.ndarray) -> list[float]:
    """Return each node's share of cases over its train and test samples."""
    return [float(y[np.concatenate([n.train, n.test])].mean()) for n in split.nodes]


def node_sizes(split: ScenarioSplit) -> list[int]:
    """Return each node's number of samples."""
    return [len(n.train) + len(n.test) for n in split.nodes]


def test_even_split(a2_like) -> None:
    y, _ = a2_like
    split = split_scenario(y, "even", seed=1)
    assert_disjoint_and_stratified(split, y)
    assert max(node_sizes(split)) - min(node_sizes(split)) <= 2
    assert all(abs(f - y.mean()) < 0.002 for f in node_fractions(split, y))
    assert len(split.unused) == 0 and split.notes == ()


def test_2b_small_balanced_node_then_one_and_seventy_percent(a2_like) -> None:
    y, _ = a2_like
    split = split_scenario(y, "2B", seed=1)
    assert_disjoint_and_stratified(split, y)
    fractions = node_fractions(split, y)
    assert abs(fractions[0] - 0.5) < 0.01
    assert abs(fractions[1] - 0.01) < 0.002
    assert abs(fractions[2] - 0.70) < 0.01
    sizes = node_sizes(split)
    assert abs(sizes[0] - 0.1 * len(y)) < 10  # node 1 is the small one
    assert sizes[1] > sizes[0] and sizes[2] > sizes[0]
    assert len(split.unused) < 10  # nodes 2 and 3 use the rest
    assert [n.target_case_fraction for n in split.nodes] == [0.5, 0.01, 0.7]


def test_2b_on_a_case_poor_cohort_still_meets_fractions(covid_like) -> None:
    split = split_scenario(covid_like, "2B", seed=0)
    assert_disjoint_and_stratified(split, covid_like)
    fractions = node_fractions(split, covid_like)
    assert abs(fractions[0] - 0.5) < 0.01 and abs(fractions[2] - 0.7) < 0.01
    assert abs(fractions[1] - 0.01) < 0.003


def test_2d_puts_each_study_at_one_node(a2_like) -> None:
    y, groups = a2_like
    split = split_scenario(y, "2D", groups=groups, seed=2)
    assert_disjoint_and_stratified(split, y)
    assert len(split.unused) == 0
    node_of_study: dict[str, set[int]] = {}
    for i, node in enumerate(split.nodes):
        for study in np.unique(groups[np.concatenate([node.train, node.test])]):
            node_of_study.setdefault(str(study), set()).add(i)
    assert len(node_of_study) == 64
    assert all(len(nodes) == 1 for nodes in node_of_study.values())
    # Sizes are balanced by assigning each study to the least-loaded node.
    sizes = node_sizes(split)
    assert max(sizes) < 1.5 * min(sizes)


def test_2d_seeds_give_different_assignments(a2_like) -> None:
    y, groups = a2_like
    first = split_scenario(y, "2D", groups=groups, seed=1)
    second = split_scenario(y, "2D", groups=groups, seed=2)
    assert not np.array_equal(first.nodes[0].train, second.nodes[0].train)


def test_2e_sizes_ten_thirty_sixty_with_overall_ratio(a2_like) -> None:
    y, _ = a2_like
    split = split_scenario(y, "2E", seed=4)
    assert_disjoint_and_stratified(split, y)
    shares = np.array(node_sizes(split)) / len(y)
    np.testing.assert_allclose(shares, [0.1, 0.3, 0.6], atol=0.001)
    assert all(abs(f - y.mean()) < 0.002 for f in node_fractions(split, y))


def test_2f_one_data_set_per_node() -> None:
    y = np.array([0, 1] * 50 + [0, 0, 1] * 40 + [1, 0, 0, 0] * 30)
    groups = np.array(["A1"] * 100 + ["A2"] * 120 + ["A3"] * 120)
    split = split_scenario(y, "2F", groups=groups, seed=0)
    assert_disjoint_and_stratified(split, y)
    assert [n.description for n in split.nodes] == ["data set A1", "data set A2", "data set A3"]
    for node, name in zip(split.nodes, ["A1", "A2", "A3"], strict=True):
        members = np.concatenate([node.train, node.test])
        assert set(groups[members].tolist()) == {name}
        assert len(members) == (groups == name).sum()


def test_4b_twenty_ten_five_percent(covid_like) -> None:
    split = split_scenario(covid_like, "4B", seed=5)
    assert_disjoint_and_stratified(split, covid_like)
    fractions = node_fractions(split, covid_like)
    np.testing.assert_allclose(fractions, [0.20, 0.10, 0.05], atol=0.003)
    sizes = node_sizes(split)
    assert max(sizes) - min(sizes) <= 2
    # Controls run out first here: nearly all are used, spare cases are not.
    assert (1 - covid_like[split.unused]).sum() <= 3
    assert any("left out" in note for note in split.notes)


def test_same_seed_same_split_for_every_scenario(a2_like) -> None:
    y, groups = a2_like
    for scenario in ("even", "2B", "2D", "2E", "4B"):
        first = split_scenario(y, scenario, groups=groups, seed=9)
        again = split_scenario(y, scenario, groups=groups, seed=9)
        for a, b in zip(first.nodes, again.nodes, strict=True):
            np.testing.assert_array_equal(a.train, b.train)
            np.testing.assert_array_equal(a.test, b.test)


def test_describe_split_table(covid_like) -> None:
    split = split_scenario(covid_like, "4B", seed=5)
    rows = describe_split(split, covid_like)
    assert [row["node"] for row in rows] == ["node1", "node2", "node3", "pooled test"]
    for row, node in zip(rows[:-1], split.nodes, strict=True):
        assert row["n_train"] == len(node.train) and row["n_test"] == len(node.test)
        assert row["cases_train"] == covid_like[node.train].sum()
    assert rows[0]["target_case_fraction"] == 0.2
    assert abs(rows[0]["case_fraction"] - 0.2) < 0.003
    assert rows[-1]["n_test"] == len(split.pooled_test)
    table = format_split_table(rows)
    assert "node1" in table and "pooled test" in table and "20.0 %" in table


def test_too_few_cases_is_a_clear_error() -> None:
    y = np.array([1] * 2 + [0] * 200)
    with pytest.raises(ScenarioError, match="needs at least 3 cases") as caught:
        split_scenario(y, "4B")
    assert "the data has 2 cases" in str(caught.value)


def test_small_data_reports_fractions_it_could_not_meet() -> None:
    y = np.array([1] * 12 + [0] * 48)
    split = split_scenario(y, "2B", seed=0)
    assert_disjoint_and_stratified(split, y)
    assert any("node2: raised to one case" in note for note in split.notes)
    assert any(note.startswith("node2: asked for 1.0 % cases, achieved") for note in split.notes)


def test_group_scenarios_need_groups() -> None:
    with pytest.raises(ScenarioError, match="needs groups="):
        split_scenario(np.array([0, 1] * 10), "2D")


def test_2d_with_single_class_studies_fails_clearly() -> None:
    y = np.array([0] * 30 + [1] * 30)
    groups = np.array(["controls-only"] * 30 + ["cases-only"] * 30)
    with pytest.raises(ScenarioError, match="2 studies for 3 nodes"):
        split_scenario(y, "2D", groups=groups)
    with pytest.raises(ScenarioError, match="both cases and controls"):
        split_scenario(y, "2D", groups=groups, n_nodes=2)


def test_2f_data_set_with_one_class_is_named() -> None:
    y = np.array([0, 1] * 20 + [0] * 20)
    groups = np.array(["A1"] * 40 + ["A3"] * 20)
    with pytest.raises(ScenarioError, match=r"node2 \(data set A3\) would have 20 samples, 0 of"):
        split_scenario(y, "2F", groups=groups)


@pytest.mark.parametrize(
    ("y", "scenario", "extra", "message"),
    [
        (np.array([0, 1, 2]), "even", {}, "pass 0 \\(control\\) / 1 \\(case\\)"),
        (np.array([0, 1]), "3C", {}, "unknown scenario '3C'"),
        (np.array([0, 1] * 20), "2B", {"n_nodes": 4}, "scenario 2B has 3 nodes"),
        (np.array([0, 1] * 20), "even", {"test_fraction": 1.0}, "test_fraction=1.0"),
        (np.array([0] * 20), "even", {}, "the data has 0 cases and 20 controls"),
    ],
)
def test_bad_requests_say_what_to_pass(y, scenario, extra, message) -> None:
    with pytest.raises(ScenarioError, match=message):
        split_scenario(y, scenario, **extra)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=30, max_value=400),
    case_share=st.floats(min_value=0.05, max_value=0.95),
    scenario=st.sampled_from([s for s in SCENARIOS if s not in ("2D", "2F")]),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_any_split_is_disjoint_or_a_clear_error(n, case_share, scenario, seed) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < case_share).astype(int)
    try:
        split = split_scenario(y, scenario, seed=seed)
    except ScenarioError as error:
        assert scenario in str(error) or "node" in str(error)
        return
    combined = np.concatenate([split.unused] + [np.concatenate([s.train, s.test]) for s in split.nodes])
    assert sorted(combined.tolist()) == list(range(n))
    for node in split.nodes:
        assert 0 < y[node.train].sum() < len(node.train)


def test_2d_can_hold_out_whole_subjects() -> None:
    # Shaped like the influenza data: 17 subjects x 7 samples, one outcome each.
    subjects = np.repeat([f"flu{i:03d}" for i in range(1, 18)], 7)
    y = np.repeat([1, 0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0, 0], 7)
    split = split_scenario(y, "2D", groups=subjects, seed=3, hold_out_whole_groups=True)
    for node in split.nodes:
        train_subjects = set(subjects[node.train].tolist())
        test_subjects = set(subjects[node.test].tolist())
        assert train_subjects.isdisjoint(test_subjects)
        assert test_subjects  # every node tests on some subjects
        assert 0 < y[node.train].sum() < len(node.train)
    all_subjects = [set(subjects[np.concatenate([n.train, n.test])].tolist()) for n in split.nodes]
    assert sum(len(s) for s in all_subjects) == 17
    # Sample-level splitting would put one subject's samples on both sides.
    mixed = split_scenario(y, "2D", groups=subjects, seed=3)
    assert any(set(subjects[n.train].tolist()) & set(subjects[n.test].tolist()) for n in mixed.nodes)


def test_hold_out_whole_groups_only_for_2d() -> None:
    with pytest.raises(ScenarioError, match="only scenario 2D"):
        split_scenario(np.array([0, 1] * 20), "even", hold_out_whole_groups=True)
