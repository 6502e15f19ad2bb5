"""The paper's node scenarios: which samples each swarm node trains and tests on.

Warnat-Herresthal et al. (Nature 2021) spread one data set over three nodes
in several ways, trained each node alone and all nodes as a swarm, and
scored every model on the pooled test sets of all nodes. `split_scenario`
makes those splits from labels (and study or data-set groups):

===========  =========================================================
``"even"``   random equal split, same class ratio at every node
``"2B"``     node 1 small (10 % of samples) and balanced (50 % cases),
             node 2 about 1 % cases, node 3 about 70 % cases
``"2D"``     whole studies per node (each study at one node only)
``"2E"``     same class ratio everywhere, node sizes 10 / 30 / 60 %
``"2F"``     one data set per node (``groups`` names the data set)
``"4B"``     cases/controls 20/80, 10/90, 5/95 at nodes 1-3, equal sizes
===========  =========================================================

Each node's samples are then split 80/20 into train and test, stratified
by class (in 2D, optionally by whole groups: ``hold_out_whole_groups``).
Where the data cannot meet a scenario's fractions with every
sample, the majority class is left partly unused so the fractions hold;
rounding and the minimum of one sample per class per node can still move
them, and ``ScenarioSplit.notes`` says by how much. A node that would be
empty, or lack a class, raises `ScenarioError`.

This module is pure numpy: no I/O, no randomness beyond the given seed.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from swarm_examples.apportionment import largest_remainder

SCENARIOS = ("even", "2B", "2D", "2E", "2F", "4B")

# Scenario 2B: node 1's share of all samples and the nodes' case fractions.
SCENARIO_2B_NODE1_SHARE = 0.10
SCENARIO_2B_FRACTIONS = (0.50, 0.01, 0.70)
SCENARIO_2E_SHARES = (0.10, 0.30, 0.60)
SCENARIO_4B_FRACTIONS = (0.20, 0.10, 0.05)
# Scenario 2D tries this many random study assignments to give every node
# both classes before it gives up.
SCENARIO_2D_ATTEMPTS = 500


class ScenarioError(ValueError):
    """The data cannot be split as the scenario asks; the message says why."""


@dataclass(frozen=True, eq=False)
class NodeSplit:
    """One node's share of the samples, as indices into the labels.

    Args:
        name: ``"node1"``, ``"node2"``, ...
        train: sorted indices of the node's training samples.
        test: sorted indices of the node's test samples.
        target_case_fraction: the share of cases the scenario asks for at
            this node, or None where it asks for none (2D, 2F).
        description: what the node holds, in words.
    """

    name: str
    train: np.ndarray
    test: np.ndarray
    target_case_fraction: float | None
    description: str


@dataclass(frozen=True, eq=False)
class ScenarioSplit:
    """The result of `split_scenario`.

    Args:
        scenario: the scenario's name.
        seed: the seed it was drawn with.
        nodes: one `NodeSplit` per node.
        unused: indices of samples no node got (to meet the fractions).
        notes: where the achieved split differs from the scenario's targets.
    """

    scenario: str
    seed: int
    nodes: tuple[NodeSplit, ...]
    unused: np.ndarray
    notes: tuple[str, ...]

    @property
    def pooled_test(self) -> np.ndarray:
        """All nodes' test samples: every model is scored on these."""
        return np.sort(np.concatenate([node.test for node in self.nodes]))

    @property
    def pooled_train(self) -> np.ndarray:
        """All nodes' training samples (what central training would see)."""
        return np.sort(np.concatenate([node.train for node in self.nodes]))


def split_scenario(
    y: np.ndarray | Sequence[int],
    scenario: str,
    groups: np.ndarray | Sequence[str] | None = None,
    seed: int = 0,
    n_nodes: int | None = None,
    test_fraction: float = 0.2,
    hold_out_whole_groups: bool = False,
) -> ScenarioSplit:
    """Split samples over swarm nodes as in one of the paper's scenarios.

    Args:
        y: 0/1 label of each sample (1 = case).
        scenario: one of ``"even"``, ``"2B"``, ``"2D"``, ``"2E"``, ``"2F"``,
            ``"4B"`` (see the module docstring).
        groups: each sample's study (2D) or data set (2F); other scenarios
            ignore it.
        seed: the same seed gives the same split; vary it to repeat an
            experiment over permutations, as the paper did.
        n_nodes: number of nodes for ``"even"`` and ``"2D"`` (default 3);
            the other scenarios fix it (2F: one per data set).
        test_fraction: share of each node's samples held out for testing.
        hold_out_whole_groups: scenario 2D only: hold out whole groups
            (``test_fraction`` of each class's groups at each node) instead
            of samples, so no group is both trained and tested on. Use it
            when groups are subjects with several samples each, as in the
            influenza data, whose samples of one subject are not independent.

    Returns:
        A `ScenarioSplit`; `describe_split` turns it into a table.

    Raises:
        ScenarioError: unknown scenario, labels not 0/1, groups missing, or
            a node that would be empty or lack a class.

    Example:
        >>> y = np.array([0, 1] * 300)
        >>> split = split_scenario(y, "2E", seed=1)
        >>> [len(node.train) + len(node.test) for node in split.nodes]
        [60, 180, 360]
    """
    labels = _binary_labels(y)
    if scenario not in SCENARIOS:
        raise ScenarioError(f"unknown scenario {scenario!r}; pass one of {', '.join(SCENARIOS)}")
    if not 0 < test_fraction < 1:
        raise ScenarioError(f"test_fraction={test_fraction}; pass a value between 0 and 1")
    if hold_out_whole_groups and scenario != "2D":
        raise ScenarioError(
            f"hold_out_whole_groups=True needs whole groups at each node, which only scenario 2D "
            f"gives; use scenario '2D' (e.g. with subjects as groups) or drop it for {scenario}"
        )
    rng = np.random.default_rng([seed, zlib.crc32(scenario.encode())])
    group_labels: np.ndarray | None = None
    targets: list[float | None]
    notes: list[str] = []
    if scenario in ("2D", "2F"):
        group_labels = _groups(groups, len(labels), scenario)
        if scenario == "2F":
            n_nodes = _fixed_node_count(scenario, n_nodes, len(np.unique(group_labels)))
            members, descriptions = _one_group_per_node(group_labels)
        else:
            n_nodes = 3 if n_nodes is None else n_nodes
            members, descriptions = _assign_studies(labels, group_labels, n_nodes, rng)
        targets = [None] * n_nodes
    else:
        if scenario != "even":
            n_nodes = _fixed_node_count(scenario, n_nodes, 3)
        n_nodes = 3 if n_nodes is None else n_nodes
        if n_nodes < 1:
            raise ScenarioError(f"n_nodes={n_nodes}; pass at least 1")
        members, targets, descriptions, notes = _allocate_by_class(labels, scenario, n_nodes, rng)

    nodes = []
    for i, (indices, target, description) in enumerate(zip(members, targets, descriptions, strict=True)):
        name = f"node{i + 1}"
        _require_both_classes(labels, indices, scenario, name, description)
        if hold_out_whole_groups and group_labels is not None:
            train, test = _group_train_test_split(labels, group_labels, indices, test_fraction, rng)
            _require_both_classes(labels, train, scenario, f"{name}'s training set", description)
        else:
            train, test = _train_test_split(labels, indices, test_fraction, rng)
        nodes.append(NodeSplit(name, train, test, target, description))
        achieved = float(labels[indices].mean())
        if target is not None and abs(achieved - target) > max(0.005, 0.1 * target):
            notes.append(
                f"{name}: asked for {100 * target:.1f} % cases, achieved {100 * achieved:.1f} % "
                f"({int(labels[indices].sum())} of {len(indices)}): too few samples to do better"
            )
    used = np.concatenate(members)
    unused = np.setdiff1d(np.arange(len(labels)), used)
    if len(unused):
        notes.append(
            f"{len(unused)} samples ({int(labels[unused].sum())} cases, "
            f"{int((1 - labels[unused]).sum())} controls) left out to meet the node fractions"
        )
    return ScenarioSplit(scenario, seed, tuple(nodes), unused, tuple(notes))


def describe_split(split: ScenarioSplit, y: np.ndarray | Sequence[int]) -> list[dict[str, Any]]:
    """Return one row per node (and one for the pooled test set) for printing.

    Each row has ``node``, ``n_train``, ``n_test``, ``cases_train``,
    ``cases_test``, ``case_fraction`` (over the node's samples),
    ``target_case_fraction`` (None where the scenario sets none) and
    ``description``.
    """
    labels = _binary_labels(y)
    rows = []
    for node in split.nodes:
        every = np.concatenate([node.train, node.test])
        rows.append(
            {
                "node": node.name,
                "n_train": len(node.train),
                "n_test": len(node.test),
                "cases_train": int(labels[node.train].sum()),
                "cases_test": int(labels[node.test].sum()),
                "case_fraction": round(float(labels[every].mean()), 4),
                "target_case_fraction": node.target_case_fraction,
                "description": node.description,
            }
        )
    pooled = split.pooled_test
    rows.append(
        {
            "node": "pooled test",
            "n_train": 0,
            "n_test": len(pooled),
            "cases_train": 0,
            "cases_test": int(labels[pooled].sum()),
            "case_fraction": round(float(labels[pooled].mean()), 4),
            "target_case_fraction": None,
            "description": "every node's test samples; all models are scored here",
        }
    )
    return rows


def format_split_table(rows: list[dict[str, Any]]) -> str:
    """Render `describe_split` rows as a plain text table."""
    columns = ["node", "n_train", "n_test", "cases_train", "cases_test", "case_fraction", "target"]
    cells = [
        [
            str(row["node"]),
            str(row["n_train"]),
            str(row["n_test"]),
            str(row["cases_train"]),
            str(row["cases_test"]),
            f"{100 * row['case_fraction']:.1f} %",
            "-" if row["target_case_fraction"] is None else f"{100 * row['target_case_fraction']:.1f} %",
        ]
        for row in rows
    ]
    widths = [max(len(text) for text in column) for column in zip(columns, *cells, strict=True)]
    lines = ["  ".join(text.rjust(width) for text, width in zip(columns, widths, strict=True))]
    lines += ["  ".join(text.rjust(w) for text, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines)


def _binary_labels(y: np.ndarray | Sequence[int]) -> np.ndarray:
    """Return `y` as int64 0/1, or fail naming the other values."""
    labels = np.asarray(y)
    if labels.ndim != 1 or labels.size == 0:
        raise ScenarioError(f"y must be a non-empty 1-D array of 0/1 labels, got shape {labels.shape}")
    distinct = np.unique(labels)
    if not np.isin(distinct, [0, 1]).all():
        raise ScenarioError(
            f"y holds {distinct[:5].tolist()}; scenarios split binary labels: pass 0 (control) / 1 (case)"
        )
    return labels.astype(np.int64)


def _groups(groups: np.ndarray | Sequence[str] | None, n: int, scenario: str) -> np.ndarray:
    """Check and return the per-sample groups a scenario needs."""
    if groups is None:
        what = "study" if scenario == "2D" else "data set"
        raise ScenarioError(
            f"scenario {scenario} puts each {what} at one node and needs groups= "
            f"(each sample's {what}); ExpressionData.groups holds it"
        )
    group_labels = np.asarray(groups).astype(str)
    if group_labels.shape != (n,):
        raise ScenarioError(f"groups has shape {group_labels.shape}; expected ({n},) like y")
    return group_labels


def _fixed_node_count(scenario: str, n_nodes: int | None, fixed: int) -> int:
    """Return the scenario's own node count; fail if another was asked for."""
    if n_nodes not in (None, fixed):
        raise ScenarioError(f"scenario {scenario} has {fixed} nodes; drop n_nodes={n_nodes}")
    return fixed


def _in_order_of_appearance(values: np.ndarray) -> list[str]:
    """Return the distinct values in the order they first occur."""
    _, first = np.unique(values, return_index=True)
    return [str(values[i]) for i in np.sort(first)]


def _allocate_by_class(
    labels: np.ndarray, scenario: str, n_nodes: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], list[float | None], list[str], list[str]]:
    """Give each node a number of cases and controls, then draw them."""
    cases = rng.permutation(np.flatnonzero(labels == 1))
    controls = rng.permutation(np.flatnonzero(labels == 0))
    n_cases, n_controls = len(cases), len(controls)
    overall = n_cases / len(labels)
    notes: list[str] = []
    if scenario in ("even", "2E"):
        shares = np.full(n_nodes, 1.0 / n_nodes) if scenario == "even" else np.array(SCENARIO_2E_SHARES)
        case_counts = largest_remainder(shares, n_cases)
        control_counts = largest_remainder(shares, n_controls)
        targets: list[float | None] = [overall] * n_nodes
        descriptions = [f"{100 * share:.0f} % of samples, overall class ratio" for share in shares.tolist()]
    elif scenario == "4B":
        fractions = np.array(SCENARIO_4B_FRACTIONS)
        size = min(n_cases / fractions.sum(), n_controls / (1 - fractions).sum())
        case_counts, control_counts = _counts(np.full(3, size), fractions)
        targets = list(fractions.tolist())
        descriptions = [f"{100 * f:.0f}/{100 - 100 * f:.0f} cases/controls" for f in fractions]
    else:  # 2B
        case_counts, control_counts = _counts_2b(n_cases, n_controls)
        targets = list(SCENARIO_2B_FRACTIONS)
        descriptions = ["small, balanced", "about 1 % cases", "about 70 % cases"]
    # Every node needs a sample of each class to train on.
    for counts, kind in ((case_counts, "case"), (control_counts, "control")):
        short = counts < 1
        if short.any():
            counts[short] = 1
            notes.append(
                f"{', '.join(f'node{i + 1}' for i in np.flatnonzero(short))}: raised to one "
                f"{kind} (the scenario's fraction gives none at this data size)"
            )
    if case_counts.sum() > n_cases or control_counts.sum() > n_controls:
        raise ScenarioError(
            f"scenario {scenario} needs at least {int(case_counts.sum())} cases and "
            f"{int(control_counts.sum())} controls for {n_nodes} nodes; the data has {n_cases} "
            f"cases and {n_controls} controls. Use more samples or another scenario."
        )
    members = []
    case_start = control_start = 0
    for n_case, n_control in zip(case_counts.tolist(), control_counts.tolist(), strict=True):
        members.append(
            np.concatenate(
                [
                    cases[case_start : case_start + n_case],
                    controls[control_start : control_start + n_control],
                ]
            )
        )
        case_start += n_case
        control_start += n_control
    return members, targets, descriptions, notes


def _counts(sizes: np.ndarray, fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round node sizes x case fractions down to case and control counts."""
    # The small epsilon keeps exact products (e.g. 0.2 * 500) from flooring low.
    case_counts = np.floor(sizes * fractions + 1e-9).astype(np.int64)
    control_counts = np.floor(sizes * (1 - fractions) + 1e-9).astype(np.int64)
    return case_counts, control_counts


def _counts_2b(n_cases: int, n_controls: int) -> tuple[np.ndarray, np.ndarray]:
    """Node sizes for 2B: node 1 small and balanced; nodes 2, 3 use the rest.

    Nodes 2 and 3 solve ``f2 * n2 + f3 * n3 = cases left`` and
    ``(1 - f2) * n2 + (1 - f3) * n3 = controls left``, so every sample is
    used. When that has no non-negative solution (under 1 % or over 70 %
    cases left), nodes 2 and 3 get equal sizes as large as the data allow.
    """
    f1, f2, f3 = SCENARIO_2B_FRACTIONS
    node1_half = round(SCENARIO_2B_NODE1_SHARE * (n_cases + n_controls) * f1)
    node1_half = max(1, min(node1_half, n_cases // 3, n_controls // 3))
    cases_left = n_cases - node1_half
    controls_left = n_controls - node1_half
    determinant = f3 - f2
    n2 = (controls_left * f3 - cases_left * (1 - f3)) / determinant
    n3 = (cases_left * (1 - f2) - controls_left * f2) / determinant
    if n2 < 0 or n3 < 0:
        size = min(cases_left / (f2 + f3), controls_left / (2 - f2 - f3))
        n2 = n3 = size
    case_counts, control_counts = _counts(np.array([n2, n3]), np.array([f2, f3]))
    return (
        np.concatenate([[node1_half], case_counts]),
        np.concatenate([[node1_half], control_counts]),
    )


def _assign_studies(
    labels: np.ndarray, groups: np.ndarray, n_nodes: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], list[str]]:
    """Put whole studies at nodes, sizes balanced, each node with both classes.

    Studies are taken in random order, each to the node with the fewest
    samples so far; assignments that leave a node without cases or without
    controls are drawn again.
    """
    studies = _in_order_of_appearance(groups)
    if n_nodes < 1:
        raise ScenarioError(f"n_nodes={n_nodes}; pass at least 1")
    if len(studies) < n_nodes:
        raise ScenarioError(
            f"scenario 2D puts whole studies at nodes but there are {len(studies)} studies "
            f"for {n_nodes} nodes; pass n_nodes<={len(studies)}"
        )
    sample_lists = {study: np.flatnonzero(groups == study) for study in studies}
    for _ in range(SCENARIO_2D_ATTEMPTS):
        loads = np.zeros(n_nodes, np.int64)
        assigned: list[list[str]] = [[] for _ in range(n_nodes)]
        for position in rng.permutation(len(studies)):
            study = studies[position]
            node = int(np.argmin(loads))
            assigned[node].append(study)
            loads[node] += len(sample_lists[study])
        members = [np.concatenate([sample_lists[study] for study in node_studies]) for node_studies in assigned]
        if all(0 < labels[m].sum() < len(m) for m in members):
            descriptions = [
                f"{len(node_studies)} groups: {', '.join(sorted(node_studies)[:4])}"
                + (" ..." if len(node_studies) > 4 else "")
                for node_studies in assigned
            ]
            return members, descriptions
    raise ScenarioError(
        f"scenario 2D: no assignment of {len(studies)} studies to {n_nodes} nodes in "
        f"{SCENARIO_2D_ATTEMPTS} tries gave every node both cases and controls; most "
        "studies hold one class only. Use fewer nodes or data with more mixed studies."
    )


def _one_group_per_node(groups: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    """Scenario 2F: every data set (group) is one node."""
    names = _in_order_of_appearance(groups)
    return [np.flatnonzero(groups == name) for name in names], [f"data set {n}" for n in names]


def _require_both_classes(labels: np.ndarray, indices: np.ndarray, scenario: str, node: str, description: str) -> None:
    """Fail when a node is empty or holds one class only."""
    n_cases = int(labels[indices].sum())
    if len(indices) == 0 or n_cases in (0, len(indices)):
        raise ScenarioError(
            f"scenario {scenario}: {node} ({description}) would have {len(indices)} samples, "
            f"{n_cases} of them cases; a node needs cases and controls to train on. "
            "Use more data or another scenario."
        )


def _train_test_split(
    labels: np.ndarray, indices: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split one node's samples into train and test, stratified by class.

    Each class gives ``round(test_fraction * n)`` samples to the test set,
    but at least one and never all of them when it has two or more; a class
    with one sample keeps it for training.
    """
    train_parts, test_parts = [], []
    for label in (0, 1):
        members = rng.permutation(indices[labels[indices] == label])
        n_test = round(test_fraction * len(members))
        n_test = min(max(n_test, 1), len(members) - 1) if len(members) >= 2 else 0
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(test_parts))


def _group_train_test_split(
    labels: np.ndarray, groups: np.ndarray, indices: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split one node's groups into train and test, stratified by class.

    A group counts as the class most of its samples have; each class gives
    ``round(test_fraction * n_groups)`` of its groups to the test set, at
    least one and never all when it has two or more.
    """
    node_groups = np.array(_in_order_of_appearance(groups[indices]))
    group_class = np.array([round(float(labels[indices][groups[indices] == g].mean())) for g in node_groups])
    test_groups = []
    for label in (0, 1):
        candidates = rng.permutation(node_groups[group_class == label])
        n_test = round(test_fraction * len(candidates))
        n_test = min(max(n_test, 1), len(candidates) - 1) if len(candidates) >= 2 else 0
        test_groups.extend(candidates[:n_test].tolist())
    in_test = np.isin(groups[indices], test_groups)
    return np.sort(indices[~in_test]), np.sort(indices[in_test])
