"""Content-addressed blob storage on disk: a blob's name is its sha256.

Small blobs go in and out as ``bytes`` (``put``, ``get``). Blobs of gigabytes
never need a whole copy in memory: ``incoming`` (or ``put_stream``,
``put_file``) writes a stream of chunks to a temporary file while hashing it,
checks it, and only then renames it into place; ``verify`` re-hashes a
stored blob chunk by chunk; readers take its ``path``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from swarm_wire.names import SHA256_RE
from swarm_wire.spare_files import SpareFiles

_FULL = (errno.ENOSPC, errno.EDQUOT)
CHUNK_BYTES = 8 << 20  # what a streamed read or hash takes at a time
SPARE_FILES = 4  # files of deleted blobs a store keeps to write over (swarm_wire.spare_files)


class StoreFull(OSError):
    """The blob store's disk (or quota) is full; the message says where, how much was needed and what to do."""


class BlobRefused(ValueError):
    """A streamed blob was not stored: larger than allowed (``TOO_LARGE``), not the bytes of the hash it was
    expected to have (``HASH_MISMATCH``) or incomplete (``TRUNCATED``). Nothing of it is left in the store."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def file_chunks(fh: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterable[bytes]:
    """The rest of an open file, ``chunk_bytes`` at a time."""
    while chunk := fh.read(chunk_bytes):
        yield chunk


class IncomingBlob:
    """A blob being written to the store from a stream: a temporary file and a running sha256.

    ``write`` each chunk, then ``commit`` (hash, size and the caller's check, then the rename into
    place) or ``abort``; until committed nothing is visible in the store, and any failure deletes the
    temporary file. Use it as a context manager to abort on any exception.

    Args:
        store: the store it goes to.
        max_bytes: more than this many bytes is refused (``BlobRefused("TOO_LARGE")``) as soon as written.
        sha256: the hash the bytes must have (``BlobRefused("HASH_MISMATCH")`` at commit otherwise).
        size_hint: the expected size: when the disk has less free, the store's ``on_full`` runs first.
    """

    def __init__(
        self, store: BlobStore, max_bytes: int | None = None, sha256: str | None = None, size_hint: int | None = None
    ) -> None:
        if sha256 is not None and not store.valid_sha(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        self.store = store
        self.max_bytes = max_bytes
        self.expected_sha256 = sha256
        self.size = 0
        self.committed = False
        self._hash = hashlib.sha256()
        if size_hint and store.free_bytes() < size_hint:
            store.spares.clear()
            if store.on_full is not None:
                store.on_full()
        staging = store.root / "incoming"
        staging.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=staging, prefix=".incoming-")
        self.tmp_path = Path(tmp)
        self._fh: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, chunk: bytes | memoryview) -> None:
        """Appends a chunk; refuses at once past ``max_bytes``; a full disk raises ``StoreFull``."""
        assert self._fh is not None, "the blob was already committed or aborted"
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes:
            self.abort()
            raise BlobRefused("TOO_LARGE", f"the blob passed {self.max_bytes} bytes, the most allowed")
        self._hash.update(chunk)
        try:
            self._fh.write(chunk)
        except OSError as exc:
            self.abort()
            if exc.errno in _FULL:
                self.store.spares.clear()
                if self.store.on_full is not None:
                    self.store.on_full()  # frees space for the next try; this stream cannot be replayed
                raise self.store.full_error(exc.errno, self.size) from None
            raise

    @property
    def sha256(self) -> str:
        """The hash of the bytes written so far."""
        return self._hash.hexdigest()

    def commit(self, check: Callable[[Path], object] | None = None, expected_size: int | None = None) -> str:
        """Checks and stores the blob; returns its sha256. Raises BlobRefused, or what ``check`` raises.

        ``check(path)`` sees the complete file before it is visible (e.g. its layout and values);
        ``expected_size``: fewer bytes than announced is ``TRUNCATED``.
        """
        assert self._fh is not None, "the blob was already committed or aborted"
        try:
            try:
                self._fh.close()
            except OSError as exc:
                if exc.errno in _FULL:
                    raise self.store.full_error(exc.errno, self.size) from None
                raise
            self._fh = None
            if expected_size is not None and self.size != expected_size:
                raise BlobRefused("TRUNCATED", f"the blob has {self.size} bytes; {expected_size} were announced")
            sha256 = self.sha256
            if self.expected_sha256 is not None and sha256 != self.expected_sha256:
                raise BlobRefused("HASH_MISMATCH", f"the bytes' sha256 is {sha256}, not {self.expected_sha256}")
            if check is not None:
                check(self.tmp_path)
            target = self.store.path(sha256)
            if target.is_file():
                os.utime(target)
                self.tmp_path.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.tmp_path, target)
        except BaseException:
            self.abort()
            raise
        self.committed = True
        self.store.full = self.store.full_since = None
        return sha256

    def abort(self) -> None:
        """Drops what was written: nothing of it stays on disk (a no-op once committed)."""
        if self.committed:
            return
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> IncomingBlob:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.abort()


class BlobStore:
    """Stores immutable blobs under ``root/ab/abcdef...`` (the sha256 hex).

    Writes go to a temporary file and are renamed into place, so a reader
    never sees a partial blob and a crash never leaves one behind.

    A write that finds the disk full calls ``on_full`` (which may delete old
    blobs) and tries once more; if it still fails it raises ``StoreFull``,
    and ``full`` says so until a write succeeds again.
    """

    def __init__(
        self, root: str | Path, on_full: Callable[[], object] | None = None, spare_files: int = SPARE_FILES
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.on_full = on_full
        # Files of deleted blobs kept to write new blobs over (see swarm_wire.spare_files); 0: none.
        self.spares = SpareFiles(self.root / ".spare", max_files=spare_files)
        self.full: str | None = None  # why the last write failed for lack of space, until one succeeds
        self.full_since: float | None = None

    @staticmethod
    def valid_sha(sha256: str) -> bool:
        """Whether ``sha256`` is 64 lowercase hex characters."""
        return bool(SHA256_RE.fullmatch(sha256))

    def path(self, sha256: str) -> Path:
        """Where the blob ``sha256`` lives (whether or not it exists)."""
        if not self.valid_sha(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        """Whether the blob is stored."""
        return self.path(sha256).is_file()

    def put(self, data: bytes | memoryview, sha256: str | None = None) -> str:
        """Stores ``data`` and returns its sha256; storing it twice only refreshes its time.

        ``sha256``: the hash, when the caller has just computed and checked it.
        """
        sha256 = sha256 or hashlib.sha256(data).hexdigest()
        target = self.path(sha256)
        if target.is_file():
            os.utime(target)  # stored again: recent, so pruning of old rounds leaves it alone
            return sha256
        try:
            self._write(target, data)
        except OSError as exc:
            if exc.errno not in _FULL:
                raise
            self.spares.clear()
            if self.on_full is not None:
                self.on_full()  # e.g. delete the blobs of old rounds, then try once more
            try:
                self._write(target, data)
            except OSError as again:
                if again.errno not in _FULL:
                    raise
                raise self.full_error(again.errno, len(data)) from None
        self.full = self.full_since = None
        return sha256

    def full_error(self, err: int, nbytes: int) -> StoreFull:
        """Records that the disk is full (``full``, ``full_since``) and returns the StoreFull saying what to do."""
        self.full = (
            f"the blob store {self.root} is full ({os.strerror(err)}): a blob of {nbytes} bytes "
            f"does not fit, {self.free_bytes()} bytes are free; free space on that disk, move --data-dir "
            "to a larger one, or keep fewer rounds (--keep-rounds)"
        )
        if self.full_since is None:
            self.full_since = time.time()
        return StoreFull(err, self.full)

    def incoming(
        self, max_bytes: int | None = None, sha256: str | None = None, size_hint: int | None = None
    ) -> IncomingBlob:
        """A blob to write chunk by chunk (see ``IncomingBlob``)."""
        return IncomingBlob(self, max_bytes, sha256, size_hint)

    def put_stream(
        self,
        chunks: Iterable[bytes | memoryview],
        sha256: str | None = None,
        max_bytes: int | None = None,
        check: Callable[[Path], object] | None = None,
        size_hint: int | None = None,
    ) -> str:
        """Stores a stream of chunks without holding it whole; returns its sha256.

        Refuses (``BlobRefused``, nothing stored) past ``max_bytes`` or when the bytes are not those
        of ``sha256``; ``check(path)`` vets the complete temporary file before it is stored.
        """
        with self.incoming(max_bytes, sha256, size_hint) as blob:
            for chunk in chunks:
                blob.write(chunk)
            return blob.commit(check)

    def put_file(
        self,
        source: str | Path,
        sha256: str | None = None,
        max_bytes: int | None = None,
        check: Callable[[Path], object] | None = None,
    ) -> str:
        """Stores a copy of the file ``source`` (read chunk by chunk, hashed as it is copied); see ``put_stream``.

        A full disk runs ``on_full`` and tries once more, as ``put`` does.
        """
        for attempt in (1, 2):
            with open(source, "rb") as fh:
                try:
                    return self.put_stream(file_chunks(fh), sha256, max_bytes, check, os.fstat(fh.fileno()).st_size)
                except StoreFull:
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def discard_incoming(self) -> int:
        """Deletes temporary files of writes that never finished (a crash mid-upload); returns how many.

        Only for the store's one owner, at its start: another writer's temporary files would go too.
        """
        gone = self.spares.discard_unfinished()
        for tmp in (self.root / "incoming").glob(".incoming-*"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                gone += 1
        return gone

    def verify(self, sha256: str) -> Path:
        """The path of a stored blob whose bytes, hashed chunk by chunk, match its name.

        KeyError if missing; ValueError if its bytes do not match its name.
        """
        target = self.path(sha256)
        digest = hashlib.sha256()
        try:
            with open(target, "rb") as fh:
                for chunk in file_chunks(fh):
                    digest.update(chunk)
        except FileNotFoundError:
            raise KeyError(sha256) from None
        if digest.hexdigest() != sha256:
            raise ValueError(f"blob {sha256} on disk is corrupt (its bytes do not match its name)")
        return target

    def size(self, sha256: str) -> int:
        """The stored blob's size in bytes; KeyError if missing."""
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            raise KeyError(sha256) from None

    def _write(self, target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self.spares.write_file(target, ".incoming-", (data,), len(data))
        self.spares.fill(len(data))  # the next blob of this size finds a spare too

    def delete(self, sha256: str, reuse: bool = True) -> int:
        """Deletes a stored blob; returns the bytes freed, 0 if it was not stored.

        ``reuse``: its file may be kept as a spare and written over later; False for a blob a reader may
        still hold a memory map of (a merged model the callback loaded): its file is only unlinked.
        """
        path = self.path(sha256)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return 0
        if not reuse or not self.spares.keep(path):
            path.unlink(missing_ok=True)
        return size

    def free_bytes(self) -> int:
        """Bytes free for this store on its disk."""
        return shutil.disk_usage(self.root).free

    def get(self, sha256: str) -> bytes:
        """The blob's bytes, checked against its name; KeyError if missing."""
        target = self.path(sha256)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise KeyError(sha256) from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"blob {sha256} on disk is corrupt (its bytes do not match its name)")
        return data
