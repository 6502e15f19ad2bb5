"""Blob-sized buffers handed out again after their last view is gone, instead of fresh memory each time.

Every sync moves the same few blob sizes through a process again and again: a service reads its
site's weights, a leader fetches contributions and serialises the merged model, the callback reads
the merged model. A fresh buffer of a blob's size costs more than filling it: the kernel zeroes each
new page, and on virtual machines whose host takes freed memory back (balloon, free page reporting,
DAMON reclaim) the first touch of a page faults to the host: 0.7-2.3 ms per MB measured on a 2-vCPU
VM, 27 ms for a 38 MB buffer against 0.5 ms to touch the same pages again (``docs/benchmarks.md``).

How a buffer comes back, safely: ``take`` returns a memoryview of a *lease*, a numpy array over a
pooled block. The lease stays alive while anything still views it: memoryviews of it, and numpy
arrays made from them (numpy keeps the buffer it was made from as its base, and views of those
arrays keep their base). Only when the last of them is gone is the block handed back
(``weakref.finalize`` on the lease), so a block is never written while a parsed weight, a hash or a
socket still reads it.

What is kept: free blocks up to ``max_bytes`` in all, each for at most ``idle_s`` seconds after it
came back (a small timer thread drops the rest, so an idle process gives its memory back). Buffers
are not zeroed, like ``numpy.empty``: a caller reads or writes exactly the bytes it asked for.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import weakref

import numpy as np

MIN_BYTES = 1 << 20  # smaller buffers are cheap to make and are not pooled
DEFAULT_MAX_BYTES = 2 << 30
DEFAULT_IDLE_S = 30.0
ENV_MAX_MB = "SWARM_BUFFER_POOL_MB"  # the free blocks a process keeps, in MiB; 0 keeps none


class BufferPool:
    """Free blob buffers of one process, handed out by ``take`` and given back when their lease dies."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, idle_s: float = DEFAULT_IDLE_S) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be 0 or more, not {max_bytes}")
        if idle_s <= 0:
            raise ValueError(f"idle_s must be more than 0, not {idle_s}")
        self.max_bytes = max_bytes
        self.idle_s = idle_s
        self._free: list[tuple[float, np.ndarray]] = []  # (monotonic time given back, block), oldest first
        self._returned: collections.deque[tuple[float, np.ndarray]] = collections.deque()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self.hits = 0  # takes served from a free block
        self.misses = 0  # takes that made a new block

    @property
    def free_bytes(self) -> int:
        with self._lock:
            self._file_returned()
            return sum(block.nbytes for _, block in self._free)

    def take(self, nbytes: int) -> memoryview:
        """A writable buffer of ``nbytes`` (not zeroed): a free block that fits, else a new one."""
        if nbytes < 0:
            raise ValueError(f"a buffer needs 0 bytes or more, not {nbytes}")
        if nbytes < MIN_BYTES or not self.max_bytes:
            return memoryview(np.empty(nbytes, dtype=np.uint8))  # not pooled
        block = self._pop_fitting(nbytes)
        if block is None:
            block = np.empty(nbytes, dtype=np.uint8)
            self.misses += 1
        else:
            self.hits += 1
        # The lease is made from a memoryview, not sliced from the block: numpy views of the lease then
        # keep the lease (their base) alive, never the block alone.
        lease = np.frombuffer(memoryview(block)[:nbytes], dtype=np.uint8)
        finalizer = weakref.finalize(lease, self._give_back, block)
        finalizer.atexit = False
        return memoryview(lease)

    def clear(self) -> None:
        """Drops every free block."""
        with self._lock:
            self._file_returned()
            self._free.clear()

    def _pop_fitting(self, nbytes: int) -> np.ndarray | None:
        """The smallest free block of ``nbytes`` to an eighth more, taken out of the pool."""
        most = nbytes + max(nbytes // 8, 64 << 10)
        with self._lock:
            self._file_returned()
            best = None
            for i, (_, block) in enumerate(self._free):
                if nbytes <= block.nbytes <= most and (best is None or block.nbytes < self._free[best][1].nbytes):
                    best = i
            return self._free.pop(best)[1] if best is not None else None

    def _give_back(self, block: np.ndarray) -> None:
        # Runs wherever the lease's last reference goes, possibly inside the garbage collector while this
        # thread holds the lock: it only queues the block (a deque's append is atomic), and files the
        # queue itself only if the lock is free.
        self._returned.append((time.monotonic(), block))
        if self._lock.acquire(blocking=False):
            try:
                self._file_returned()
            finally:
                self._lock.release()

    def _file_returned(self) -> None:
        """Moves given-back blocks into the free list, oldest dropped past ``max_bytes``; lock held."""
        while self._returned:
            self._free.append(self._returned.popleft())
        total = sum(block.nbytes for _, block in self._free)
        while self._free and total > self.max_bytes:  # the free list is in the order blocks came back
            total -= self._free.pop(0)[1].nbytes
        if self._free and self._timer is None:  # _drop_idle, once idle_s have passed
            self._timer = threading.Timer(self.idle_s, self._drop_idle)
            self._timer.daemon = True
            self._timer.start()

    def _drop_idle(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._timer = None
            self._file_returned()  # sets the next timer while blocks are free (a no-op tick if none stays)
            self._free = [(at, block) for at, block in self._free if now - at < self.idle_s]


def _max_bytes_from_env() -> int:
    raw = os.environ.get(ENV_MAX_MB)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_BYTES
    try:
        mb = int(raw)
    except ValueError:
        mb = -1
    if mb < 0:
        raise ValueError(f"{ENV_MAX_MB}={raw!r}: give the MiB of free buffers a process may keep, 0 or more")
    return mb << 20


POOL = BufferPool(_max_bytes_from_env())
