"""The blob store on a full disk: prune first, then a plain StoreFull; ``full`` until a write succeeds."""

from __future__ import annotations

import errno
import hashlib

import pytest

from sn_service.blob_store import BlobStore, StoreFull


def _disk_full_for(store: BlobStore, writes: int, monkeypatch) -> list[int]:
    """Makes the next ``writes`` writes fail with ENOSPC (a fake disk: this is a unit test)."""
    calls = [0]
    real = BlobStore._write

    def write(target, data):
        calls[0] += 1
        if calls[0] <= writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(target, data)

    monkeypatch.setattr(BlobStore, "_write", staticmethod(write))
    return calls


def test_a_full_disk_calls_on_full_then_writes(tmp_path, monkeypatch):
    freed = []
    store = BlobStore(tmp_path, on_full=lambda: freed.append(True))
    calls = _disk_full_for(store, 1, monkeypatch)
    sha = store.put(b"weights")
    assert freed == [True] and calls[0] == 2
    assert sha == hashlib.sha256(b"weights").hexdigest() and store.get(sha) == b"weights"
    assert store.full is None


def test_still_full_raises_store_full_saying_what_to_do_until_a_write_succeeds(tmp_path, monkeypatch):
    store = BlobStore(tmp_path, on_full=lambda: None)
    _disk_full_for(store, 2, monkeypatch)
    with pytest.raises(StoreFull) as caught:
        store.put(b"x" * 1000)
    assert caught.value.errno == errno.ENOSPC
    message = caught.value.strerror
    assert f"the blob store {tmp_path} is full" in message and "a blob of 1000 bytes does not fit" in message
    assert "--keep-rounds" in message and "bytes are free" in message
    assert store.full == message and store.full_since is not None
    assert not list(tmp_path.rglob(".incoming-*")), "no partial file is left"
    store.put(b"y")
    assert store.full is None and store.full_since is None


def test_other_write_errors_are_not_taken_for_a_full_disk(tmp_path, monkeypatch):
    store = BlobStore(tmp_path, on_full=lambda: pytest.fail("on_full called for EACCES"))

    def write(target, data):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(BlobStore, "_write", staticmethod(write))
    with pytest.raises(PermissionError):
        store.put(b"x")
    assert store.full is None
