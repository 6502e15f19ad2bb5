"""The blob store on a full disk: prune first, then a plain StoreFull; ``full`` until a write succeeds."""

from __future__ import annotations

import errno
import hashlib

import pytest

from sn_service.blob_store import BlobRefused, BlobStore, StoreFull


def _disk_full_for(store: BlobStore, writes: int, monkeypatch) -> list[int]:
    """Makes the next ``writes`` writes fail with ENOSPC (a fake disk: this is a unit test)."""
    calls = [0]
    real = BlobStore._write

    def write(self, target, data):
        calls[0] += 1
        if calls[0] <= writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, target, data)

    monkeypatch.setattr(BlobStore, "_write", write)
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

    def write(self, target, data):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(BlobStore, "_write", write)
    with pytest.raises(PermissionError):
        store.put(b"x")
    assert store.full is None


# ---------------------------------------------------------------------------- streamed writes


def test_a_stream_of_chunks_is_stored_under_its_hash_and_verified_chunk_by_chunk(tmp_path):
    store = BlobStore(tmp_path)
    chunks = [b"a" * 1000, memoryview(b"b" * 77), b"", b"c"]
    whole = b"".join(bytes(c) for c in chunks)
    sha = store.put_stream(chunks, max_bytes=len(whole))
    assert sha == hashlib.sha256(whole).hexdigest()
    assert store.get(sha) == whole and store.size(sha) == len(whole)
    assert store.verify(sha) == store.path(sha)
    assert store.put_stream([whole], sha256=sha) == sha, "storing it again is a no-op"
    assert not list(tmp_path.rglob(".incoming-*"))


def test_a_stream_over_its_limit_or_of_another_hash_or_failing_its_check_leaves_nothing(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(BlobRefused) as big:
        store.put_stream([b"x" * 10, b"y" * 10], max_bytes=15)
    assert big.value.code == "TOO_LARGE" and "15 bytes" in str(big.value)
    with pytest.raises(BlobRefused) as other:
        store.put_stream([b"weights"], sha256="0" * 64)
    assert other.value.code == "HASH_MISMATCH" and "0" * 64 in str(other.value)

    def refuse(path):
        assert path.read_bytes() == b"bad", "the check sees the complete file"
        raise ValueError("not a model")

    with pytest.raises(ValueError, match="not a model"):
        store.put_stream([b"b", b"ad"], check=refuse)
    with store.incoming() as blob:
        blob.write(b"half of it")
        with pytest.raises(BlobRefused) as short:
            blob.commit(expected_size=20)
    assert short.value.code == "TRUNCATED" and "10 bytes; 20 were announced" in str(short.value)
    assert not store.has(hashlib.sha256(b"bad").hexdigest())
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [], "no partial or refused blob on disk"


def test_put_file_copies_a_file_and_verify_finds_corruption(tmp_path):
    store = BlobStore(tmp_path / "store")
    source = tmp_path / "model.bin"
    source.write_bytes(bytes(range(256)) * 5000)
    sha = store.put_file(source, max_bytes=source.stat().st_size)
    assert store.get(sha) == source.read_bytes()
    with open(store.path(sha), "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\xff")
    with pytest.raises(ValueError, match="corrupt"):
        store.verify(sha)
    with pytest.raises(KeyError):
        store.verify("1" * 64)


def test_a_full_disk_mid_stream_frees_space_raises_store_full_and_leaves_nothing(tmp_path, monkeypatch):
    freed = []
    store = BlobStore(tmp_path, on_full=lambda: freed.append(True))
    blob = store.incoming()
    blob.write(b"first")

    class FullFile:
        def write(self, chunk):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    monkeypatch.setattr(blob, "_fh", FullFile())
    with pytest.raises(StoreFull) as caught:
        blob.write(b"second")
    assert freed == [True] and "is full" in caught.value.strerror and store.full is not None
    assert not blob.tmp_path.exists()


def test_discard_incoming_deletes_what_a_crash_left_half_written(tmp_path):
    store = BlobStore(tmp_path)
    blob = store.incoming()
    blob.write(b"half")
    blob._fh.close()  # the process died here
    blob._fh = None
    sha = store.put(b"kept")
    (store.spares.dir / ".filling-x").write_bytes(b"\0" * 10)  # a spare file being made when it died
    (store.spares.dir / "spare-y").write_bytes(b"\0" * 10)  # a spare made whole: stays
    assert store.discard_incoming() == 2
    assert not blob.tmp_path.exists() and store.get(sha) == b"kept"
    assert [p.name for p in store.spares.dir.iterdir()] == ["spare-y"]
