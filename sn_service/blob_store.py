"""Content-addressed blob storage on disk: a blob's name is its sha256."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from swarm_wire.names import SHA256_RE

_FULL = (errno.ENOSPC, errno.EDQUOT)


class StoreFull(OSError):
    """The blob store's disk (or quota) is full; the message says where, how much was needed and what to do."""


class BlobStore:
    """Stores immutable blobs under ``root/ab/abcdef...`` (the sha256 hex).

    Writes go to a temporary file and are renamed into place, so a reader
    never sees a partial blob and a crash never leaves one behind.

    A write that finds the disk full calls ``on_full`` (which may delete old
    blobs) and tries once more; if it still fails it raises ``StoreFull``,
    and ``full`` says so until a write succeeds again.
    """

    def __init__(self, root: str | Path, on_full: Callable[[], object] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.on_full = on_full
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

    def put(self, data: bytes, sha256: str | None = None) -> str:
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
            if self.on_full is not None:
                self.on_full()  # e.g. delete the blobs of old rounds, then try once more
            try:
                self._write(target, data)
            except OSError as again:
                if again.errno not in _FULL:
                    raise
                self.full = (
                    f"the blob store {self.root} is full ({os.strerror(again.errno)}): a blob of {len(data)} bytes "
                    f"does not fit, {self.free_bytes()} bytes are free; free space on that disk, move --data-dir "
                    "to a larger one, or keep fewer rounds (--keep-rounds)"
                )
                if self.full_since is None:
                    self.full_since = time.time()
                raise StoreFull(again.errno, self.full) from None
        self.full = self.full_since = None
        return sha256

    @staticmethod
    def _write(target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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
