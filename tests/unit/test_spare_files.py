"""Spare files: blobs written over the pages of files no longer needed, with the same bytes a new file gets."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sn_service.blob_store import BlobStore
from swarm_wire.spare_files import SpareFiles


def spares_in(tmp_path: Path, **kw) -> SpareFiles:
    return SpareFiles(tmp_path / ".spare", min_file_bytes=1, **kw)


def test_without_a_spare_a_new_file_is_written(tmp_path):
    spares = spares_in(tmp_path)
    tmp = spares.write_chunks_temp(tmp_path, ".incoming-", [b"weights"], 7)
    assert tmp.read_bytes() == b"weights" and tmp.parent == tmp_path and tmp.name.startswith(".incoming-")
    assert spares.reused == 0


def test_a_kept_file_is_written_over_and_cut_to_the_new_size(tmp_path):
    spares = spares_in(tmp_path)
    old = tmp_path / "old"
    old.write_bytes(b"x" * 1000)
    assert spares.keep(old) and not old.exists() and spares.count() == 1
    tmp = spares.write_chunks_temp(tmp_path, ".w-", [b"abc", memoryview(b"defg")], 7)
    assert tmp.read_bytes() == b"abcdefg"  # nothing of the old 1000 bytes is left
    assert spares.reused == 1 and spares.count() == 0


def test_the_smallest_spare_big_enough_is_taken(tmp_path):
    spares = spares_in(tmp_path)
    for size in (10, 500, 100):
        f = tmp_path / f"f{size}"
        f.write_bytes(b"z" * size)
        assert spares.keep(f)
    spares.write_chunks_temp(tmp_path, ".w-", [b"y" * 50], 50)
    assert sorted(os.path.getsize(spares.dir / n) for n in os.listdir(spares.dir)) == [10, 500]
    spares.write_chunks_temp(tmp_path, ".w-", [b"y" * 600], 600)  # none is big enough: a new file
    assert spares.reused == 1 and spares.count() == 2


def test_keep_refuses_past_its_limits_and_files_with_other_names(tmp_path):
    spares = spares_in(tmp_path, max_files=2, max_file_bytes=100)
    files = []
    for i in range(4):
        f = tmp_path / f"f{i}"
        f.write_bytes(b"a" * 10)
        files.append(f)
    assert spares.keep(files[0]) and spares.keep(files[1])
    assert not spares.keep(files[2]) and files[2].exists()  # full
    big = tmp_path / "big"
    big.write_bytes(b"b" * 101)
    spares.clear()
    assert not spares.keep(big)  # too big
    os.link(files[3], tmp_path / "other-name")
    assert not spares.keep(files[3]), "a file another name refers to would change under that name"
    assert not spares.keep(tmp_path / "missing")


def test_a_wrong_total_leaves_nothing_behind(tmp_path):
    spares = spares_in(tmp_path)
    with pytest.raises(ValueError, match="3 bytes were written, 5 announced"):
        spares.write_chunks_temp(tmp_path, ".w-", [b"abc"], 5)
    assert [p.name for p in tmp_path.iterdir()] == [".spare"]


def test_fill_makes_spares_in_the_background_up_to_max_files(tmp_path):
    spares = spares_in(tmp_path, max_files=3)
    spares.fill(4096)
    deadline = time.monotonic() + 10
    while spares.count() < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert spares.count() == 3
    assert all(os.path.getsize(spares.dir / n) == 4096 for n in os.listdir(spares.dir))
    spares.fill(10**12)  # larger than max_file_bytes: nothing
    assert spares.count() == 3 and spares.clear() == 3 and spares.count() == 0


def test_a_store_writes_new_blobs_over_deleted_ones_and_reads_them_back_exactly(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    store.spares.min_file_bytes = 1
    # No background filling here: only what is deleted is reused. (Setting max_files to 0 around the put
    # raced: the filling thread the put starts reads max_files when it runs, maybe after it was set back.)
    store.spares.fill = lambda size: None
    first = store.put(b"1" * 5000)
    assert store.delete(first) == 5000 and not store.has(first) and store.spares.count() == 1
    second = store.put(b"2" * 3000)
    assert store.spares.reused == 1
    assert store.get(second) == b"2" * 3000 and store.verify(second) == store.path(second)
    assert store.delete("0" * 64) == 0


def test_a_store_with_no_spare_files_deletes(tmp_path):
    store = BlobStore(tmp_path / "blobs", spare_files=0)
    sha = store.put(b"w" * (2 << 20))
    assert store.delete(sha) == 2 << 20
    assert not (tmp_path / "blobs" / ".spare").exists() and not store.path(sha).exists()
