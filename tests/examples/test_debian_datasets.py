"""Real data from Debian's Bioconductor packages: shapes, classes, cache, errors.

These tests call ``apt-get download`` when the cache (``$SWARM_DATA_DIR`` or
``~/.cache/swarm_keras/datasets``) is cold, about 22 MB once; with a warm
cache they read local files only. Where apt-get is missing and the cache is
cold they are skipped, saying so.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from swarm_examples.datasets import (
    ALL_FILE,
    FLU_FILE,
    GOLUB_FILE,
    ChecksumMismatchError,
    DatasetUnavailableError,
    load_all_bcr_abl,
    load_golub,
    load_influenza,
)
from swarm_examples.debian_packages import (
    DebianDataFile,
    cached_path,
    fetch_debian_data_file,
)


def require_data(data_file: DebianDataFile) -> None:
    """Skip unless the file is cached or apt-get can fetch it."""
    if not cached_path(data_file).exists() and shutil.which("apt-get") is None:
        pytest.skip(
            f"apt-get is not on PATH and {cached_path(data_file)} is not cached: "
            f"cannot fetch Debian package {data_file.package} here"
        )


def test_golub_aml_vs_all() -> None:
    require_data(GOLUB_FILE)
    data = load_golub()
    assert data.X.shape == (38, 3051) and data.X.dtype == np.float32
    assert data.class_counts() == {"ALL": 27, "AML": 11}
    assert data.gene_ids[0] == "AFFX-HUMISGF3A/M97935_MA_at"
    assert len(set(data.gene_ids.tolist())) == 3051
    # Rows are samples: the AML marker CST3 (M27891_at) is higher in AML.
    cst3 = data.X[:, data.gene_ids.tolist().index("M27891_at")]
    assert cst3[data.y == 1].mean() > cst3[data.y == 0].mean() + 1.0


def test_all_bcr_abl_vs_neg() -> None:
    require_data(ALL_FILE)
    data = load_all_bcr_abl()
    assert data.X.shape == (111, 12625) and data.X.dtype == np.float32
    assert data.class_counts() == {"NEG": 74, "BCR/ABL": 37}
    assert data.sample_ids[:2].tolist() == ["01005", "01010"]
    assert data.gene_ids[0] == "1000_at"
    assert 1 < float(data.X.min()) < float(data.X.max()) < 15  # log2 RMA values
    # BCR/ABL cases overexpress ABL1 (probe 1636_g_at).
    abl1 = data.X[:, data.gene_ids.tolist().index("1636_g_at")]
    assert abl1[data.y == 1].mean() > abl1[data.y == 0].mean() + 0.5


def test_influenza_late_samples_grouped_by_subject() -> None:
    require_data(FLU_FILE)
    data = load_influenza()
    assert data.X.shape == (119, 4147)
    assert data.class_counts() == {"asymptomatic": 56, "symptomatic": 63}
    assert data.groups is not None
    per_subject = Counter(data.groups.tolist())
    assert len(per_subject) == 17 and set(per_subject.values()) == {7}
    # One outcome per subject.
    for subject in per_subject:
        assert len(set(data.y[data.groups == subject].tolist())) == 1
    # Interferon response: RSAD2 is higher in symptomatic subjects.
    rsad2 = data.X[:, data.gene_ids.tolist().index("RSAD2")]
    assert rsad2[data.y == 1].mean() > rsad2[data.y == 0].mean() + 1.0


def test_influenza_time_window() -> None:
    require_data(FLU_FILE)
    every = load_influenza(min_hours=0, verbose=False)
    assert every.X.shape == (252, 4147)
    assert every.class_counts() == {"asymptomatic": 119, "symptomatic": 133}
    baseline = load_influenza(min_hours=0, max_hours=0, verbose=False)
    assert baseline.n_samples == 17
    with pytest.raises(ValueError, match=r"samples were taken at \[0.0, 5.0"):
        load_influenza(min_hours=200, verbose=False)


def test_warm_cache_makes_no_apt_call(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    require_data(GOLUB_FILE)
    load_golub(verbose=False)  # warm the cache
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, no dpkg
    assert load_golub(verbose=False).n_samples == 38


def test_missing_apt_names_package_and_other_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWARM_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DatasetUnavailableError) as caught:
        load_influenza()
    message = str(caught.value)
    assert "r-bioc-qusage" in message and "apt-get update" in message
    assert "'qusage'" in message and "GSE30550" in message
    assert str(tmp_path / "cache" / "r-bioc-qusage" / "qusage/data/fluExample.RData") in message


def test_corrupt_cached_file_fails_with_both_digests(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWARM_DATA_DIR", str(tmp_path))
    target = cached_path(GOLUB_FILE)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the Golub data")
    with pytest.raises(ChecksumMismatchError) as caught:
        load_golub()
    message = str(caught.value)
    assert str(target) in message and GOLUB_FILE.sha256 in message
    assert f"Delete {target}" in message


def test_unpinned_download_is_refused_and_not_cached(tmp_path: Path) -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get is not on PATH: cannot download a Debian package here")
    wrong = DebianDataFile(
        package=GOLUB_FILE.package,
        path=GOLUB_FILE.path,
        sha256="0" * 64,
        bioconductor=GOLUB_FILE.bioconductor,
    )
    with pytest.raises(ChecksumMismatchError) as caught:
        fetch_debian_data_file(wrong, root=tmp_path, verbose=False)
    assert "r-bioc-multtest_" in str(caught.value) and GOLUB_FILE.sha256 in str(caught.value)
    assert not cached_path(wrong, tmp_path).exists()


def test_unknown_package_names_it_and_says_apt_get_update(tmp_path: Path) -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get is not on PATH")
    missing = DebianDataFile(
        package="r-bioc-no-such-package-swarm",
        path="none/data/none.rda",
        sha256="0" * 64,
        bioconductor="none",
    )
    with pytest.raises(DatasetUnavailableError) as caught:
        fetch_debian_data_file(missing, root=tmp_path, verbose=False, update_apt_lists=False)
    message = str(caught.value)
    assert "r-bioc-no-such-package-swarm" in message and "apt-get update" in message
