"""A site's own CSV/TSV files: good layouts load, every bad one is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from swarm_examples.expression_data import (
    DataFileError,
    ExpressionData,
    GeneSetMismatchError,
    align_gene_sets,
    concatenate_datasets,
)
from swarm_examples.expression_files import load_expression_matrix

GOOD_CSV = """\
,GATA1,MPO,CD34,diagnosis
p1,5.5,7.25,1,AML
p2,6,8,2.5,ALL
p3,4.5,9,3,AML
"""

GOOD_TSV_TRANSPOSED = (
    "gene\tp1\tp2\tp3\nGATA1\t5.5\t6\t4.5\nMPO\t7.25\t8\t9\ndiagnosis\tAML\tALL\tAML\nCD34\t1\t2.5\t3\n"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    """Write `text` to a file in the test's folder and return its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_samples_by_genes_csv_loads_values_ids_and_labels(tmp_path: Path) -> None:
    path = write(tmp_path, "site_a.csv", GOOD_CSV)
    data = load_expression_matrix(path, "diagnosis", positive_label="AML")
    assert data.X.dtype == np.float32
    np.testing.assert_array_equal(data.X, np.array([[5.5, 7.25, 1], [6, 8, 2.5], [4.5, 9, 3]], np.float32))
    assert data.sample_ids.tolist() == ["p1", "p2", "p3"]
    assert data.gene_ids.tolist() == ["GATA1", "MPO", "CD34"]
    assert data.y.tolist() == [1, 0, 1]
    assert data.label_names == ("ALL", "AML")
    assert str(path) in data.source
    assert data.groups is None


def test_genes_by_samples_tsv_gives_the_same_data(tmp_path: Path) -> None:
    wide = load_expression_matrix(write(tmp_path, "a.csv", GOOD_CSV), "diagnosis", positive_label="AML")
    path = write(tmp_path, "b.tsv", GOOD_TSV_TRANSPOSED)
    tall = load_expression_matrix(path, "diagnosis", positive_label="AML")
    assert tall.gene_ids.tolist() == ["GATA1", "MPO", "CD34"]
    assert tall.sample_ids.tolist() == ["p1", "p2", "p3"]
    np.testing.assert_array_equal(tall.X, wide.X)
    np.testing.assert_array_equal(tall.y, wide.y)


def test_zero_one_labels_group_column_and_numbered_samples(tmp_path: Path) -> None:
    path = write(tmp_path, "s.csv", "g1,g2,label,study\n1,2,0,s1\n3,4,1,s2\n5,6,1,s1\n")
    data = load_expression_matrix(path, "label", group_column="study")
    assert data.y.tolist() == [0, 1, 1]
    assert data.label_names == ("0", "1")
    assert data.groups is not None and data.groups.tolist() == ["s1", "s2", "s1"]
    # No id column: samples are named by their line in the file.
    assert data.sample_ids.tolist() == ["line2", "line3", "line4"]
    assert data.gene_ids.tolist() == ["g1", "g2"]


def test_explicit_sample_id_column(tmp_path: Path) -> None:
    path = write(tmp_path, "s.csv", "g1,id,label\n1,x,0\n3,y,1\n")
    data = load_expression_matrix(path, "label", sample_id_column="id")
    assert data.sample_ids.tolist() == ["x", "y"]
    assert data.gene_ids.tolist() == ["g1"]


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.csv", "")
    with pytest.raises(DataFileError, match="empty") as caught:
        load_expression_matrix(path, "label")
    assert str(path) in str(caught.value)


def test_header_without_samples(tmp_path: Path) -> None:
    path = write(tmp_path, "header.csv", "g1,g2,label\n")
    with pytest.raises(DataFileError, match="no samples") as caught:
        load_expression_matrix(path, "label")
    assert str(path) in str(caught.value)


def test_label_column_missing_lists_the_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "nolabel.csv", GOOD_CSV)
    with pytest.raises(DataFileError) as caught:
        load_expression_matrix(path, "subtype")
    message = str(caught.value)
    assert str(path) in message
    assert "'subtype'" in message and "'GATA1'" in message and "label_column=" in message


def test_wrong_orientation_says_which_to_pass(tmp_path: Path) -> None:
    path = write(tmp_path, "tall.tsv", GOOD_TSV_TRANSPOSED)
    with pytest.raises(DataFileError, match="orientation='genes_x_samples'") as caught:
        load_expression_matrix(path, "diagnosis", orientation="samples_x_genes")
    assert str(path) in str(caught.value)


def test_missing_labels_name_the_samples_and_line(tmp_path: Path) -> None:
    text = ",g1,label\np1,1,AML\np2,2,\np3,3,NA\np4,4,ALL\n"
    path = write(tmp_path, "missing.csv", text)
    with pytest.raises(DataFileError) as caught:
        load_expression_matrix(path, "label", positive_label="AML")
    message = str(caught.value)
    assert str(path) in message
    assert "2 samples have no label" in message
    assert "'p2', 'p3'" in message and "line 3" in message
    assert "fill in the label or remove these samples" in message


def test_non_numeric_value_names_line_column_gene_and_value(tmp_path: Path) -> None:
    text = ",GATA1,MPO,label\np1,1.5,2,1\np2,high,3,0\n"
    path = write(tmp_path, "text.csv", text)
    with pytest.raises(DataFileError) as caught:
        load_expression_matrix(path, "label")
    message = str(caught.value)
    assert str(path) in message
    assert "line 3 (sample 'p2')" in message
    assert "column 2 (gene 'GATA1')" in message
    assert "'high'" in message


def test_empty_and_na_values_are_reported(tmp_path: Path) -> None:
    text = ",g1,g2,label\np1,,2,1\np2,NA,3,0\n"
    path = write(tmp_path, "holes.csv", text)
    with pytest.raises(DataFileError) as caught:
        load_expression_matrix(path, "label")
    message = str(caught.value)
    assert "2 expression values are not finite numbers" in message
    assert "line 2 (sample 'p1'), column 2 (gene 'g1') is empty" in message
    assert "'NA'" in message and "impute" in message


def test_decimal_comma_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "comma.tsv", "\tg1\tlabel\np1\t1,5\t1\np2\t2\t0\n")
    with pytest.raises(DataFileError, match="decimal point") as caught:
        load_expression_matrix(path, "label")
    assert "'1,5'" in str(caught.value)


def test_bad_value_in_genes_by_samples_file_names_column_and_line(tmp_path: Path) -> None:
    text = "gene\tp1\tp2\nGATA1\t1\t2\nMPO\t3\tx\nlabel\t0\t1\n"
    path = write(tmp_path, "tall.tsv", text)
    with pytest.raises(DataFileError) as caught:
        load_expression_matrix(path, "label")
    message = str(caught.value)
    assert str(path) in message
    assert "column 3 (sample 'p2')" in message and "line 3 (gene 'MPO')" in message


def test_duplicate_sample_ids_are_named(tmp_path: Path) -> None:
    text = ",g1,label\np1,1,1\np2,2,0\np1,3,0\n"
    path = write(tmp_path, "dups.csv", text)
    with pytest.raises(DataFileError) as caught:
        load_expression_matrix(path, "label")
    message = str(caught.value)
    assert str(path) in message
    assert "sample ids occur more than once: 'p1'" in message
    assert "line 2, line 4" in message


def test_duplicate_gene_ids_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "genes.csv", ",g1,g2,g1,label\np1,1,2,3,1\np2,1,2,3,0\n")
    with pytest.raises(DataFileError) as caught:
        load_expression_matrix(path, "label")
    message = str(caught.value)
    assert "gene ids occur more than once: 'g1'" in message
    assert "column 2, column 4" in message


def test_labels_need_positive_label_unless_zero_one(tmp_path: Path) -> None:
    path = write(tmp_path, "names.csv", GOOD_CSV)
    with pytest.raises(DataFileError, match="positive_label=") as caught:
        load_expression_matrix(path, "diagnosis")
    assert "'ALL', 'AML'" in str(caught.value)


def test_three_labels_are_refused(tmp_path: Path) -> None:
    text = ",g1,label\np1,1,AML\np2,2,ALL\np3,3,CML\n"
    path = write(tmp_path, "three.csv", text)
    with pytest.raises(DataFileError, match="3 different labels") as caught:
        load_expression_matrix(path, "label", positive_label="AML")
    assert str(path) in str(caught.value)


def test_ragged_line_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "ragged.csv", "g1,g2,label\n1,2,0\n1,2,3,1\n")
    with pytest.raises(DataFileError, match="numbers of fields") as caught:
        load_expression_matrix(path, "label")
    assert str(path) in str(caught.value)


def test_unknown_sample_id_column(tmp_path: Path) -> None:
    path = write(tmp_path, "s.csv", GOOD_CSV)
    with pytest.raises(DataFileError, match="sample_id_column='patient'") as caught:
        load_expression_matrix(path, "diagnosis", sample_id_column="patient", positive_label="AML")
    assert str(path) in str(caught.value)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.csv"):
        load_expression_matrix(tmp_path / "nowhere.csv", "label")


def make_site(genes: list[str], name: str, seed: int = 0) -> ExpressionData:
    """Build a small data set over `genes` whose values encode the gene."""
    rng = np.random.default_rng(seed)
    columns = np.array([float(g[1:]) for g in genes], np.float32)
    return ExpressionData(
        X=np.tile(columns, (4, 1)) + rng.normal(0, 0.01, (4, len(genes))).astype(np.float32),
        y=np.array([0, 1, 0, 1]),
        sample_ids=np.array([f"{name}-{i}" for i in range(4)]),
        gene_ids=np.array(genes),
        label_names=("control", "case"),
        source=name,
    )


def test_align_reorders_equal_gene_sets() -> None:
    a = make_site(["g1", "g2", "g3"], "a.csv")
    b = make_site(["g3", "g1", "g2"], "b.csv")
    aligned_a, aligned_b = align_gene_sets({"a.csv": a, "b.csv": b})
    assert aligned_b.gene_ids.tolist() == ["g1", "g2", "g3"]
    # Column values follow their genes (each gene's values are near its number).
    np.testing.assert_allclose(aligned_b.X.mean(axis=0), [1, 2, 3], atol=0.05)
    assert aligned_a.gene_ids.tolist() == aligned_b.gene_ids.tolist()


def test_align_names_site_and_missing_genes() -> None:
    genes = [f"g{i}" for i in range(1, 21)]
    a = make_site(genes, "a.csv")
    b = make_site(genes[:12], "b.csv")
    with pytest.raises(GeneSetMismatchError) as caught:
        align_gene_sets([a, b])
    message = str(caught.value)
    assert "b.csv lacks 8 genes measured at 'a.csv'" in message
    assert "'g13', 'g14', 'g15', 'g16', 'g17' and 3 more" in message
    assert "intersect=True" in message and "12 genes common" in message


def test_align_intersect_keeps_common_genes_in_first_order(capsys: pytest.CaptureFixture[str]) -> None:
    a = make_site(["g5", "g1", "g2", "g9"], "a.csv")
    b = make_site(["g2", "g5", "g7"], "b.csv")
    aligned = align_gene_sets({"site A": a, "site B": b}, intersect=True)
    assert [d.gene_ids.tolist() for d in aligned] == [["g5", "g2"], ["g5", "g2"]]
    np.testing.assert_allclose(aligned[1].X.mean(axis=0), [5, 2], atol=0.05)
    printed = capsys.readouterr().out
    assert "site A: dropping 2 of 4 genes" in printed and "site B: dropping 1 of 3" in printed


def test_align_with_nothing_in_common() -> None:
    with pytest.raises(GeneSetMismatchError, match="no gene is measured at all sites"):
        align_gene_sets([make_site(["g1"], "a"), make_site(["g2"], "b")], intersect=True)


def test_concatenate_groups_by_data_set_name() -> None:
    pooled = concatenate_datasets({"A": make_site(["g1", "g2"], "a"), "B": make_site(["g2", "g1"], "b")})
    assert pooled.n_samples == 8 and pooled.gene_ids.tolist() == ["g1", "g2"]
    assert pooled.groups is not None and pooled.groups.tolist() == ["A"] * 4 + ["B"] * 4
    assert pooled.sample_ids[0] == "A:a-0"


def test_expression_data_checks_shapes() -> None:
    with pytest.raises(ValueError, match=r"y has shape \(3,\); expected \(2,\)"):
        ExpressionData(
            X=np.zeros((2, 2)),
            y=np.array([0, 1, 1]),
            sample_ids=np.array(["a", "b"]),
            gene_ids=np.array(["g1", "g2"]),
            label_names=("control", "case"),
            source="test",
        )
    with pytest.raises(ValueError, match="label_names"):
        ExpressionData(
            X=np.zeros((2, 1)),
            y=np.array([0, 2]),
            sample_ids=np.array(["a", "b"]),
            gene_ids=np.array(["g1"]),
            label_names=("control", "case"),
            source="test",
        )
