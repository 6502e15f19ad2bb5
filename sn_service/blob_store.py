"""Content-addressed blob storage on disk: a blob's name is its sha256."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

_SHA_RE = re.compile(r"[0-9a-f]{64}")


class BlobStore:
    """Stores immutable blobs under ``root/ab/abcdef...`` (the sha256 hex).

    Writes go to a temporary file and are renamed into place, so a reader
    never sees a partial blob and a crash never leaves one behind.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def valid_sha(sha256: str) -> bool:
        """Whether ``sha256`` is 64 lowercase hex characters."""
        return bool(_SHA_RE.fullmatch(sha256))

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
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha256

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
