"""The one container every example data source returns: `ExpressionData`.

Real Debian data sets, a user's CSV/TSV file and the cohort simulator all
hand back the same shape, so the scenario splitter and the training examples
never care where the numbers came from. This module also checks that several
sites measured the same genes (`align_gene_sets`) before they train together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


class DataFileError(ValueError):
    """A data file (or a site's data set) cannot be used as it is.

    The message names the file, the row or column at fault and how to fix it.
    """


class GeneSetMismatchError(ValueError):
    """Sites do not share the same genes; the message names site and genes."""


def preview(items: Sequence[str] | np.ndarray, limit: int = 5) -> str:
    """Return the first `limit` items, quoted, plus a count of the rest.

    Used in error messages so that a list of 10,000 missing genes stays one
    readable line.
    """
    items = [str(item) for item in items]
    shown = ", ".join(repr(item) for item in items[:limit])
    if len(items) > limit:
        shown += f" and {len(items) - limit} more"
    return shown


@dataclass(frozen=True, eq=False)
class ExpressionData:
    """Expression values of samples (rows) over genes (columns), with labels.

    Args:
        X: float32 array of shape (n_samples, n_genes).
        y: integer class of each sample, in ``range(len(label_names))``.
        sample_ids: one unique id per sample (numpy str array).
        gene_ids: one unique id per gene (numpy str array).
        label_names: ``label_names[k]`` names class ``k``; for binary tasks
            ``(control name, case name)``, e.g. ``("ALL", "AML")``.
        source: where the data came from, in words. Simulated data always
            starts with ``"SIMULATED"``.
        groups: optional group of each sample (study, subject or data set),
            used by splitters that must keep a group together.

    Example:
        >>> import numpy as np
        >>> data = ExpressionData(
        ...     X=np.zeros((2, 3), np.float32), y=np.array([0, 1]),
        ...     sample_ids=np.array(["s1", "s2"]),
        ...     gene_ids=np.array(["g1", "g2", "g3"]),
        ...     label_names=("control", "case"), source="example")
        >>> data.class_counts()
        {'control': 1, 'case': 1}
    """

    X: np.ndarray
    y: np.ndarray
    sample_ids: np.ndarray
    gene_ids: np.ndarray
    label_names: tuple[str, ...]
    source: str
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        matrix = np.asarray(self.X)
        if matrix.ndim != 2:
            raise ValueError(f"X must be 2-D (samples x genes), got shape {matrix.shape}")
        if matrix.dtype != np.float32:
            matrix = matrix.astype(np.float32)
        n_samples, n_genes = matrix.shape
        y = np.asarray(self.y)
        if y.shape != (n_samples,):
            raise ValueError(f"y has shape {y.shape}; expected ({n_samples},) to match X")
        if n_samples and not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y must hold integer classes, got dtype {y.dtype}")
        y = y.astype(np.int64)
        label_names = tuple(str(name) for name in self.label_names)
        if n_samples and (y.min() < 0 or y.max() >= len(label_names)):
            raise ValueError(
                f"y holds classes {sorted(set(y.tolist()))} but label_names "
                f"{label_names} only name classes 0..{len(label_names) - 1}"
            )
        sample_ids = np.asarray(self.sample_ids).astype(str)
        gene_ids = np.asarray(self.gene_ids).astype(str)
        if sample_ids.shape != (n_samples,):
            raise ValueError(f"sample_ids has shape {sample_ids.shape}; expected ({n_samples},)")
        if gene_ids.shape != (n_genes,):
            raise ValueError(f"gene_ids has shape {gene_ids.shape}; expected ({n_genes},)")
        groups = self.groups
        if groups is not None:
            groups = np.asarray(groups).astype(str)
            if groups.shape != (n_samples,):
                raise ValueError(f"groups has shape {groups.shape}; expected ({n_samples},)")
        # Frozen dataclass: normalised values are written once, here.
        object.__setattr__(self, "X", matrix)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "sample_ids", sample_ids)
        object.__setattr__(self, "gene_ids", gene_ids)
        object.__setattr__(self, "label_names", label_names)
        object.__setattr__(self, "groups", groups)

    @property
    def n_samples(self) -> int:
        """Number of samples (rows of X)."""
        return int(self.X.shape[0])

    @property
    def n_genes(self) -> int:
        """Number of genes (columns of X)."""
        return int(self.X.shape[1])

    def class_counts(self) -> dict[str, int]:
        """Return the number of samples of each class, by class name."""
        counts = np.bincount(self.y, minlength=len(self.label_names))
        return {name: int(count) for name, count in zip(self.label_names, counts, strict=True)}

    def subset(self, indices: np.ndarray | Sequence[int]) -> ExpressionData:
        """Return the samples at `indices` (in that order) as a new data set."""
        idx = np.asarray(indices, dtype=np.int64)
        return ExpressionData(
            X=self.X[idx],
            y=self.y[idx],
            sample_ids=self.sample_ids[idx],
            gene_ids=self.gene_ids,
            label_names=self.label_names,
            source=self.source,
            groups=None if self.groups is None else self.groups[idx],
        )

    def select_genes(self, gene_ids: Sequence[str] | np.ndarray) -> ExpressionData:
        """Return the data restricted to `gene_ids`, in that order.

        Raises:
            GeneSetMismatchError: if some of `gene_ids` are not measured here.
        """
        wanted = np.asarray(gene_ids).astype(str)
        position = {gene: i for i, gene in enumerate(self.gene_ids.tolist())}
        missing = [gene for gene in wanted.tolist() if gene not in position]
        if missing:
            raise GeneSetMismatchError(
                f"{self.source}: {len(missing)} requested genes are not measured: {preview(missing)}"
            )
        columns = np.fromiter((position[g] for g in wanted.tolist()), np.int64, len(wanted))
        return ExpressionData(
            X=self.X[:, columns],
            y=self.y,
            sample_ids=self.sample_ids,
            gene_ids=wanted,
            label_names=self.label_names,
            source=self.source,
            groups=self.groups,
        )


def align_gene_sets(
    datasets: Mapping[str, ExpressionData] | Sequence[ExpressionData],
    intersect: bool = False,
) -> list[ExpressionData]:
    """Put every site's genes in one common order, or say which genes differ.

    Sites that train one model together must feed it the same genes in the
    same column order. With ``intersect=False`` (the default) the gene sets
    must be equal; only their order may differ, and it is made the first
    site's order. With ``intersect=True`` the genes measured at every site
    are kept (in the first site's order) and the rest are dropped, with one
    printed line per site that loses genes.

    Args:
        datasets: the sites' data, as a mapping from site (or file) name to
            data, or a sequence (then each site is named by its ``source``).
        intersect: keep the common genes instead of failing on a mismatch.

    Returns:
        The data sets, in the given order, with identical ``gene_ids``.

    Raises:
        GeneSetMismatchError: the gene sets differ (and ``intersect`` is
            False), naming each site and the first few genes it lacks; or no
            gene is common to all sites.

    Example::

        site_a, site_b = align_gene_sets({"a.csv": data_a, "b.csv": data_b})
    """
    if isinstance(datasets, Mapping):
        names = [str(name) for name in datasets]
        items = list(datasets.values())
    else:
        items = list(datasets)
        names = [data.source for data in items]
    if not items:
        raise ValueError("align_gene_sets needs at least one data set, got none")
    for name, data in zip(names, items, strict=True):
        duplicated = duplicated_values(data.gene_ids)
        if duplicated:
            raise GeneSetMismatchError(
                f"{name}: gene ids are not unique ({preview(duplicated)}); merge or rename the duplicated genes first"
            )
    reference = items[0].gene_ids
    gene_sets = [set(data.gene_ids.tolist()) for data in items]
    common = set.intersection(*gene_sets)
    union = set.union(*gene_sets)
    if common == union:
        return [data.select_genes(reference) for data in items]
    if not intersect:
        problems = []
        for name, genes in zip(names, gene_sets, strict=True):
            lacking = sorted(union - genes)
            if lacking:
                holders = [other for other, g in zip(names, gene_sets, strict=True) if g - genes]
                problems.append(
                    f"{name} lacks {len(lacking)} genes measured at {preview(holders, 3)}: {preview(lacking)}"
                )
        raise GeneSetMismatchError(
            "sites do not measure the same genes: "
            + "; ".join(problems)
            + f". Pass intersect=True to keep only the {len(common)} genes common to "
            "all sites, or give every site the same gene list."
        )
    if not common:
        raise GeneSetMismatchError(
            f"no gene is measured at all sites {preview(names)}; check that the "
            "files use the same kind of gene ids (symbols vs probe ids)"
        )
    order = [gene for gene in reference.tolist() if gene in common]
    for name, data in zip(names, items, strict=True):
        dropped = data.n_genes - len(order)
        if dropped:
            print(f"{name}: dropping {dropped} of {data.n_genes} genes not measured at every site")
    return [data.select_genes(order) for data in items]


def concatenate_datasets(
    datasets: Mapping[str, ExpressionData], label_names: tuple[str, ...] | None = None
) -> ExpressionData:
    """Stack data sets that share genes into one, grouped by data set name.

    The result's ``groups`` holds each sample's data set name (the mapping's
    key), which is what scenario ``"2F"`` (one data set per node) splits on.
    Sample ids are prefixed with the data set name so that they stay unique.

    Raises:
        GeneSetMismatchError: the data sets measure different genes.
        ValueError: the data sets name their classes differently and no
            ``label_names`` were given.
    """
    names = list(datasets)
    aligned = align_gene_sets(datasets)
    names_seen = {data.label_names for data in aligned}
    if label_names is None:
        if len(names_seen) != 1:
            raise ValueError(
                f"data sets name their classes differently ({sorted(names_seen)}); "
                "pass label_names=(...) to say what the classes mean in the result"
            )
        label_names = aligned[0].label_names
    return ExpressionData(
        X=np.concatenate([data.X for data in aligned]),
        y=np.concatenate([data.y for data in aligned]),
        sample_ids=np.concatenate(
            [np.char.add(f"{name}:", data.sample_ids) for name, data in zip(names, aligned, strict=True)]
        ),
        gene_ids=aligned[0].gene_ids,
        label_names=label_names,
        source=" + ".join(f"{name}: {data.source}" for name, data in zip(names, aligned, strict=True)),
        groups=np.concatenate([np.full(data.n_samples, name) for name, data in zip(names, aligned, strict=True)]),
    )


def duplicated_values(values: np.ndarray | Sequence[str]) -> list[str]:
    """Return the values that occur more than once, in first-seen order."""
    values = np.asarray(values).astype(str)
    unique, counts = np.unique(values, return_counts=True)
    repeated = set(unique[counts > 1].tolist())
    seen: list[str] = []
    for value in values.tolist():
        if value in repeated and value not in seen:
            seen.append(value)
    return seen
