"""Read a site's own expression matrix from a CSV or TSV file.

A site in a swarm usually has its data as a spreadsheet export: one line per
sample and one column per gene (plus a label column), or the transpose, one
line per gene and one column per sample (plus a label line). Both are read
here into `ExpressionData`. Every problem a person can fix in the file is
reported as a `DataFileError` that names the file, the line or column, the
value, and what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from swarm_examples.expression_data import DataFileError, ExpressionData, duplicated_values, preview

Orientation = Literal["auto", "samples_x_genes", "genes_x_samples"]

# Cell texts that spreadsheets and R write for "no value".
MISSING_MARKERS = frozenset({"", "na", "nan", "null", "none", "n/a", "#n/a", "?"})


@dataclass(frozen=True)
class _Table:
    """The file turned so that rows are samples, with where each came from."""

    header: list[str]  # first cell is the corner (or the sample id column name)
    cells: np.ndarray  # str, shape (n_samples, len(header))
    sample_where: list[str]  # e.g. "line 4" or "column 4"
    column_where: list[str]  # e.g. "column 3" or "line 3"


def load_expression_matrix(
    path: str | os.PathLike[str],
    label_column: str,
    orientation: Orientation = "auto",
    sample_id_column: str | None = None,
    positive_label: str | None = None,
    group_column: str | None = None,
) -> ExpressionData:
    """Read an expression matrix with one label per sample from CSV or TSV.

    The separator follows the file name (``.tsv``, ``.tab``, ``.txt``: tab;
    ``.csv``: comma; otherwise a tab in the first line means tab). Layouts:

    - ``"samples_x_genes"``: a header line, then one line per sample; one
      column holds the label, the others genes. Sample ids come from
      `sample_id_column`, else from the first column when its header cell is
      blank (as R's ``write.csv`` and pandas' ``to_csv`` write it) or its
      values are not numbers, else they are ``"line<N>"``.
    - ``"genes_x_samples"``: a header line of sample ids after a corner cell,
      then one line per gene starting with the gene id; the line whose first
      cell is `label_column` holds the labels.
    - ``"auto"``: the first layout if `label_column` is in the header line,
      the second if it starts a line.

    Labels must take at most two values. Values ``0``/``1`` are used as they
    are; any other pair needs `positive_label` (that value becomes class 1).

    Args:
        path: the CSV or TSV file.
        label_column: name of the label column (or label line).
        orientation: ``"auto"``, ``"samples_x_genes"`` or ``"genes_x_samples"``.
        sample_id_column: column of sample ids (samples_x_genes only).
        positive_label: the label value of cases, e.g. ``"AML"``.
        group_column: optional column (or line) naming each sample's study
            or subject; it becomes ``groups``.

    Returns:
        ExpressionData with float32 X (samples x genes) and y in {0, 1}.

    Raises:
        DataFileError: the file is empty, or lacks the label column, has
            duplicated sample or gene ids, missing labels, or a value that is
            not a number; the message names the file, line/column and fix.
        FileNotFoundError: there is no file at `path`.

    Example::

        data = load_expression_matrix("site_a.csv", label_column="AML")
    """
    path = Path(path)
    if orientation not in ("auto", "samples_x_genes", "genes_x_samples"):
        raise ValueError(f"orientation={orientation!r}; pass 'auto', 'samples_x_genes' or 'genes_x_samples'")
    raw = _read_cells(path)
    orientation = _resolve_orientation(path, raw, label_column, orientation)
    if orientation == "genes_x_samples" and sample_id_column is not None:
        raise DataFileError(
            f"{path}: sample_id_column={sample_id_column!r} only applies to samples_x_genes "
            "files; in a genes_x_samples file the sample ids are the header line. "
            "Drop sample_id_column."
        )
    table = _as_samples_by_columns(raw, orientation)
    where_label = _column_index(path, table, label_column, orientation, "label_column")
    annotation = {where_label}
    where_group = None
    if group_column is not None:
        where_group = _column_index(path, table, group_column, orientation, "group_column")
        annotation.add(where_group)
    where_id = _sample_id_column_index(path, table, sample_id_column, orientation, annotation)
    if where_id is not None:
        annotation.add(where_id)

    gene_columns = [i for i in range(len(table.header)) if i not in annotation]
    if orientation == "genes_x_samples":
        gene_columns = [i for i in gene_columns if i != 0]  # the corner cell
    if not gene_columns:
        raise DataFileError(f"{path}: no gene columns besides {label_column!r}; a data file needs at least one gene")
    gene_ids = np.array([table.header[i] for i in gene_columns])
    _check_names(path, table, gene_columns, gene_ids, orientation)

    if where_id is None:
        sample_ids = np.array([where.replace(" ", "") for where in table.sample_where])
    else:
        sample_ids = np.char.strip(table.cells[:, where_id].astype(str))
        _check_sample_ids(path, table, sample_ids)

    labels = np.char.strip(table.cells[:, where_label].astype(str))
    y, label_names = _encode_labels(path, table, labels, sample_ids, label_column, positive_label)
    groups = None
    if where_group is not None:
        groups = np.char.strip(table.cells[:, where_group].astype(str))
        _check_present(path, table, groups, sample_ids, group_column or "", "group")

    values = _parse_numbers(path, table, gene_columns, sample_ids, gene_ids)
    return ExpressionData(
        X=values,
        y=y,
        sample_ids=sample_ids,
        gene_ids=gene_ids,
        label_names=label_names,
        source=f"file {path}",
        groups=groups,
    )


def _read_cells(path: Path) -> np.ndarray:
    """Read every cell as text; blank lines become rows of empty cells."""
    import pandas as pd

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    separator = _separator(path)
    try:
        frame = pd.read_csv(
            path,
            sep=separator,
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
        )
    except pd.errors.EmptyDataError:
        raise DataFileError(
            f"{path}: the file is empty; expected a header line and one line per sample (or per gene)"
        ) from None
    except pd.errors.ParserError as error:
        raise DataFileError(
            f"{path}: lines have different numbers of fields ({error}); every line "
            f"needs the same number of {'tab' if separator == chr(9) else 'comma'}-separated fields"
        ) from None
    except UnicodeDecodeError as error:
        raise DataFileError(f"{path}: not a text file in UTF-8 ({error}); save it as UTF-8 CSV or TSV") from None
    cells = frame.fillna("").to_numpy(dtype=str)
    return cells


def _separator(path: Path) -> str:
    """Pick the separator from the file name, or from the first line."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".xz")]
    if suffixes and suffixes[-1] in (".tsv", ".tab", ".txt"):
        return "\t"
    if suffixes and suffixes[-1] == ".csv":
        return ","
    with path.open("rb") as handle:
        first_line = handle.readline()
    return "\t" if b"\t" in first_line else ","


def _resolve_orientation(path: Path, raw: np.ndarray, label_column: str, orientation: Orientation) -> Orientation:
    """Decide the layout, or say where the label column was (not) found."""
    if raw.shape[0] == 0 or not any(cell.strip() for cell in raw[0]):
        raise DataFileError(f"{path}: the file is empty; expected a header line")
    in_header = label_column in [cell.strip() for cell in raw[0]]
    in_first_column = label_column in [cell.strip() for cell in raw[1:, 0]]
    if orientation == "auto":
        if in_header:
            return "samples_x_genes"
        if in_first_column:
            return "genes_x_samples"
    elif (orientation == "samples_x_genes" and in_header) or (orientation == "genes_x_samples" and in_first_column):
        return orientation
    hint = ""
    if orientation == "samples_x_genes" and in_first_column:
        hint = " It starts a line instead: pass orientation='genes_x_samples'."
    elif orientation == "genes_x_samples" and in_header:
        hint = " It is in the header line instead: pass orientation='samples_x_genes'."
    raise DataFileError(
        f"{path}: label column {label_column!r} not found in the header line "
        f"(columns: {preview([c.strip() for c in raw[0]], 8)}) nor as the first cell "
        f"of a line.{hint} Add the label column or pass label_column= with its name."
    )


def _as_samples_by_columns(raw: np.ndarray, orientation: Orientation) -> _Table:
    """Turn the cells so rows are samples; keep where each row/column was."""
    if orientation == "samples_x_genes":
        body_lines = [i for i in range(1, raw.shape[0]) if any(c.strip() for c in raw[i])]
        return _Table(
            header=[cell.strip() for cell in raw[0]],
            cells=raw[body_lines],
            sample_where=[f"line {i + 1}" for i in body_lines],
            column_where=[f"column {j + 1}" for j in range(raw.shape[1])],
        )
    lines = [i for i in range(raw.shape[0]) if any(c.strip() for c in raw[i])]
    turned = raw[lines].T
    sample_columns = [j for j in range(1, turned.shape[0]) if any(c.strip() for c in turned[j])]
    return _Table(
        header=[cell.strip() for cell in turned[0]],
        cells=turned[sample_columns],
        sample_where=[f"column {j + 1}" for j in sample_columns],
        column_where=[f"line {i + 1}" for i in lines],
    )


def _column_index(path: Path, table: _Table, name: str, orientation: Orientation, argument: str) -> int:
    """Return where the annotation column (or line) `name` is."""
    matches = [i for i, cell in enumerate(table.header) if cell == name]
    kind = "column" if orientation == "samples_x_genes" else "line"
    if not matches:
        raise DataFileError(
            f"{path}: {argument}={name!r} is not a {kind} of this "
            f"{orientation} file (found: {preview(table.header, 8)}); pass the right name"
        )
    if len(matches) > 1:
        places = ", ".join(table.column_where[i] for i in matches)
        raise DataFileError(f"{path}: {name!r} names more than one {kind} ({places}); rename one")
    if table.cells.shape[0] == 0:
        raise DataFileError(
            f"{path}: the file has a header but no samples; add one "
            f"{'line' if orientation == 'samples_x_genes' else 'column'} per sample"
        )
    return matches[0]


def _sample_id_column_index(
    path: Path,
    table: _Table,
    sample_id_column: str | None,
    orientation: Orientation,
    annotation: set[int],
) -> int | None:
    """Find the column of sample ids, or None when samples have no ids."""
    if orientation == "genes_x_samples":
        return 0
    if sample_id_column is not None:
        return _column_index(path, table, sample_id_column, orientation, "sample_id_column")
    if 0 in annotation:
        return None
    first = np.char.strip(table.cells[:, 0].astype(str))
    if table.header[0] == "" or not all(_is_number(value) for value in first.tolist()):
        return 0
    return None


def _is_number(text: str) -> bool:
    """Tell whether `text` reads as a finite number."""
    try:
        return bool(np.isfinite(float(text)))
    except ValueError:
        return False


def _check_names(path: Path, table: _Table, gene_columns: list[int], gene_ids: np.ndarray, orientation: str) -> None:
    """Every gene needs a name, and no name twice."""
    kind = "column" if orientation == "samples_x_genes" else "line"
    for i, gene in zip(gene_columns, gene_ids.tolist(), strict=True):
        if not gene:
            raise DataFileError(
                f"{path}: {table.column_where[i]} has no gene name in its first cell; "
                f"name the gene or delete the {kind}"
            )
    repeated = duplicated_values(gene_ids)
    if repeated:
        where = [
            table.column_where[i]
            for i, gene in zip(gene_columns, gene_ids.tolist(), strict=True)
            if gene == repeated[0]
        ]
        raise DataFileError(
            f"{path}: {len(repeated)} gene ids occur more than once: {preview(repeated)} "
            f"({repeated[0]!r} at {', '.join(where)}); merge the duplicated {kind}s "
            "(e.g. average probes of one gene) or make the names unique"
        )


def _check_sample_ids(path: Path, table: _Table, sample_ids: np.ndarray) -> None:
    """Every sample needs an id, and no id twice."""
    for where, sample in zip(table.sample_where, sample_ids.tolist(), strict=True):
        if sample.lower() in MISSING_MARKERS:
            raise DataFileError(f"{path}: {where} has no sample id; fill it in")
    repeated = duplicated_values(sample_ids)
    if repeated:
        where = [w for w, s in zip(table.sample_where, sample_ids.tolist(), strict=True) if s == repeated[0]]
        raise DataFileError(
            f"{path}: {len(repeated)} sample ids occur more than once: {preview(repeated)} "
            f"({repeated[0]!r} at {', '.join(where)}); remove the repeated samples or "
            "give them unique ids"
        )


def _check_present(
    path: Path, table: _Table, values: np.ndarray, sample_ids: np.ndarray, column: str, what: str
) -> None:
    """Fail naming the samples whose `what` (label, group) is missing."""
    missing = [i for i, value in enumerate(values.tolist()) if value.lower() in MISSING_MARKERS]
    if missing:
        first = missing[0]
        raise DataFileError(
            f"{path}: {len(missing)} samples have no {what} in {column!r}: "
            f"{preview([sample_ids[i] for i in missing])} (first at {table.sample_where[first]}); "
            f"fill in the {what} or remove these samples"
        )


def _encode_labels(
    path: Path,
    table: _Table,
    labels: np.ndarray,
    sample_ids: np.ndarray,
    label_column: str,
    positive_label: str | None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map the label texts to 0 (control) and 1 (case)."""
    _check_present(path, table, labels, sample_ids, label_column, "label")
    distinct = sorted(set(labels.tolist()))
    if positive_label is not None:
        negatives = [value for value in distinct if value != positive_label]
        if len(negatives) > 1:
            raise DataFileError(
                f"{path}: {label_column!r} holds {len(distinct)} different labels "
                f"({preview(distinct)}); with positive_label={positive_label!r} all others "
                "must be one control label. Merge the control labels or drop those samples."
            )
        negative = negatives[0] if negatives else f"not {positive_label}"
        return (labels == positive_label).astype(np.int64), (negative, positive_label)
    numeric = {value: float(value) for value in distinct if _is_number(value)}
    if len(numeric) == len(distinct) and set(numeric.values()) <= {0.0, 1.0}:
        values = np.array([numeric[value] for value in labels.tolist()])
        return values.astype(np.int64), ("0", "1")
    raise DataFileError(
        f"{path}: {label_column!r} holds labels {preview(distinct)}; use 0/1 or pass "
        f"positive_label= naming the case label (e.g. positive_label={distinct[-1]!r})"
    )


def _parse_numbers(
    path: Path, table: _Table, gene_columns: list[int], sample_ids: np.ndarray, gene_ids: np.ndarray
) -> np.ndarray:
    """Turn the gene cells into float32, naming the first cells that are not numbers."""
    block = np.char.strip(table.cells[:, gene_columns].astype(str))
    try:
        values = block.astype(np.float64)
        bad = ~np.isfinite(values)
    except ValueError:
        values = None
        bad = ~np.vectorize(_is_number, otypes=[bool])(block)
    if bad.any():
        rows, cols = np.nonzero(bad)
        shown = []
        for row, col in list(zip(rows.tolist(), cols.tolist(), strict=True))[:3]:
            text = str(block[row, col])
            problem = "is empty" if text == "" else f"holds {text!r}"
            shown.append(
                f"{table.sample_where[row]} (sample {str(sample_ids[row])!r}), "
                f"{table.column_where[gene_columns[col]]} (gene {str(gene_ids[col])!r}) {problem}"
            )
        first = str(block[rows[0], cols[0]])
        hint = " Use a decimal point, not a comma." if "," in first else ""
        raise DataFileError(
            f"{path}: {int(bad.sum())} expression values are not finite numbers: "
            + "; ".join(shown)
            + f".{hint} Fill in or impute missing values, or drop that gene or sample."
        )
    assert values is not None
    return values.astype(np.float32)
