"""Files kept to be written over, instead of writing a new file each time.

A file's pages in the page cache are memory. Writing a new file takes pages the
system has not used lately, and on virtual machines (the usual place of a
site's service) the first touch of such a page is a fault the host has to
serve: writing a new 6.5 MB file took 15-20 ms on the 2-core VM of
docs/benchmarks.md, writing the same bytes over an existing file whose pages
are cached 0.7 ms. A blob store, or the inbox between a callback and its
service, writes a model-sized file every round and deletes one every round:
instead of deleting it, it keeps a few such files here and writes the next
blob over one of them (then truncates it to the blob's size and renames it
into place, as it renames a new file).

The spares are plain files in one directory; a spare is taken by renaming it
away (atomic), so several threads or processes may share the directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("swarm_wire.spare_files")

_ZEROS = bytes(1 << 20)
PREFIX = "spare-"
INBOX_SPARES = ".spare"  # the spares of a service's inbox: files it read, for its callback to write over
INBOX_SPARE_FILES = 2


class SpareFiles:
    """A directory of at most ``max_files`` spare files, each of ``min_file_bytes`` to ``max_file_bytes``,
    ``max_bytes`` in all.

    ``write_file`` writes bytes into a spare (or a new file when none fits), then renames it into place;
    ``keep`` takes a file no longer needed instead of deleting it; ``fill`` makes spares in the
    background until there are ``max_files`` (so the first rounds gain too, before any file is freed).
    """

    def __init__(
        self,
        directory: str | Path,
        max_files: int = 4,
        max_file_bytes: int = 256 << 20,
        max_bytes: int = 1 << 30,
        min_file_bytes: int = 1 << 20,
    ) -> None:
        self.dir = Path(directory)
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self.min_file_bytes = min_file_bytes  # smaller files are not worth keeping (nor their slots)
        self.max_bytes = max_bytes
        self.reused = 0  # writes that went over a spare's pages
        self._filling = threading.Lock()
        self._enabled = max_files > 0
        if self._enabled:
            self.dir.mkdir(mode=0o700, exist_ok=True)

    def _spares(self) -> list[tuple[int, str]]:
        """(size, name) of each spare now, smallest first."""
        found = []
        try:
            with os.scandir(self.dir) as entries:
                for entry in entries:
                    if entry.name.startswith(PREFIX):
                        with contextlib.suppress(FileNotFoundError):
                            found.append((entry.stat(follow_symlinks=False).st_size, entry.name))
        except FileNotFoundError:
            return []
        return sorted(found)

    def _room_for(self, size: int) -> bool:
        """Whether one more spare of ``size`` bytes stays within ``max_files`` and ``max_bytes``."""
        spares = self._spares()
        return len(spares) < self.max_files and sum(s for s, _ in spares) + size <= self.max_bytes

    def count(self) -> int:
        """How many spares there are."""
        return len(self._spares())

    def _claim(self, size: int, into: Path) -> bool:
        """Renames the smallest spare of at least ``size`` bytes to ``into``; False if there is none."""
        for spare_size, name in self._spares():
            if spare_size < size:
                continue
            try:
                os.rename(self.dir / name, into)
                return True
            except FileNotFoundError:
                continue  # taken by another writer meanwhile
        return False

    def write_file(self, path: Path, prefix: str, chunks: Iterable[bytes | memoryview], size: int) -> None:
        """Writes the chunks (``size`` bytes in all) to ``path``: under a temporary name beside it (a spare's
        pages if one is big enough), then renamed into place; on any error nothing is left behind."""
        tmp = self.write_chunks_temp(path.parent, prefix, chunks, size)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def write_chunks_temp(self, directory: Path, prefix: str, chunks: Iterable[bytes | memoryview], size: int) -> Path:
        """Writes the chunks (``size`` bytes in all; a different total is an error) to a new temporary name in
        ``directory``, over a spare's pages if one is big enough; returns it. On any error nothing is left behind."""
        tmp = directory / f"{prefix}{uuid.uuid4().hex}"
        reused = self._enabled and size <= self.max_file_bytes and self._claim(size, tmp)
        if reused:
            fd = os.open(tmp, os.O_WRONLY | os.O_NOFOLLOW)
        else:
            fd, name = tempfile.mkstemp(dir=directory, prefix=prefix)
            tmp = Path(name)
        try:
            written = 0
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                done = 0
                while done < len(view):
                    done += os.write(fd, view[done:])
                written += done
            if written != size:
                raise ValueError(f"{written} bytes were written, {size} announced")
            if reused:
                os.ftruncate(fd, size)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        if reused:
            self.reused += 1
        return tmp

    def keep(self, path: Path) -> bool:
        """Moves ``path`` (a file no longer needed) into the spares if there is room; False if not (delete it)."""
        if not self._enabled:
            return False
        try:
            info = path.stat()
        except FileNotFoundError:
            return False
        if info.st_nlink != 1 or not self.min_file_bytes <= info.st_size <= self.max_file_bytes:
            return False  # another name still refers to it, or it is not worth keeping
        if not self._room_for(info.st_size):
            return False
        try:
            os.rename(path, self.dir / f"{PREFIX}{uuid.uuid4().hex}")
        except OSError:
            return False
        return True

    def fill(self, size: int) -> None:
        """Makes spares of ``size`` bytes in a background thread until there are ``max_files`` (or the
        byte limit is reached); at most one such thread runs, and none while the disk is short of space."""
        if not self._enabled or not self.min_file_bytes <= size <= self.max_file_bytes:
            return
        if not self._filling.acquire(blocking=False):
            return
        try:
            threading.Thread(target=self._fill, args=(size,), name="spare-files", daemon=True).start()
        except RuntimeError:  # interpreter shutting down
            self._filling.release()

    def _fill(self, size: int) -> None:
        try:
            while True:
                if not self._room_for(size):
                    return
                if shutil.disk_usage(self.dir).free < size * (self.max_files + 4):
                    return  # leave the space to blobs
                self._make_spare(size)
        except OSError as exc:
            log.debug("stopped making spare files in %s: %s", self.dir, exc)
        finally:
            self._filling.release()

    def _make_spare(self, size: int) -> None:
        fd, name = tempfile.mkstemp(dir=self.dir, prefix=".filling-")
        try:
            left = size
            while left > 0:
                left -= os.write(fd, _ZEROS[: min(left, len(_ZEROS))])
            os.close(fd)
            fd = -1
            os.rename(name, self.dir / f"{PREFIX}{uuid.uuid4().hex}")
        except BaseException:
            if fd >= 0:
                os.close(fd)
            Path(name).unlink(missing_ok=True)
            raise

    def discard_unfinished(self) -> int:
        """Deletes spares a process stopped while making (``fill``); for the directory's one owner, at its start."""
        gone = 0
        for tmp in self.dir.glob(".filling-*") if self._enabled else ():
            with contextlib.suppress(OSError):
                tmp.unlink()
                gone += 1
        return gone

    def clear(self) -> int:
        """Deletes every spare (the disk is full); returns how many went."""
        gone = 0
        for _, name in self._spares():
            with contextlib.suppress(OSError):
                (self.dir / name).unlink()
                gone += 1
        return gone
