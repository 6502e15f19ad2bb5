"""The pool of blob buffers: a block comes back only when nothing views it any more, and is handed out again."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from swarm_wire import serialization
from swarm_wire.buffer_pool import ENV_MAX_MB, MIN_BYTES, BufferPool

MB = 1 << 20


def _address(view: memoryview) -> int:
    return np.frombuffer(view, np.uint8).ctypes.data


def test_a_buffer_whose_last_view_is_gone_is_handed_out_again():
    pool = BufferPool()
    first = pool.take(3 * MB)
    assert len(first) == 3 * MB and not first.readonly
    at = _address(first)
    del first
    assert pool.free_bytes == 3 * MB
    again = pool.take(3 * MB)
    assert _address(again) == at and (pool.hits, pool.misses) == (1, 1)
    assert pool.free_bytes == 0


@pytest.mark.parametrize(
    "keep",
    [
        lambda b: np.frombuffer(b, np.float32)[10:20],  # a parsed tensor
        lambda b: np.frombuffer(b, np.uint8).reshape(-1, 1024)[3],  # a view of a view
        lambda b: b.toreadonly(),  # what a reader gets back
        lambda b: b[100:200],  # a slice of the memoryview
        lambda b: np.asarray(b),
    ],
)
def test_a_block_is_not_handed_out_while_anything_views_it(keep):
    pool = BufferPool()
    buffer = pool.take(2 * MB)
    buffer[:] = b"\x07" * (2 * MB)
    kept = keep(buffer)
    snapshot = bytes(memoryview(kept).cast("B"))
    del buffer
    gc.collect()
    assert pool.free_bytes == 0
    other = pool.take(2 * MB)
    other[:] = b"\x01" * (2 * MB)  # a new block: the view still reads what was written
    assert bytes(memoryview(kept).cast("B")) == snapshot
    del kept
    assert pool.free_bytes == 2 * MB


def test_a_block_fits_sizes_up_to_an_eighth_larger_and_hands_out_exactly_the_size_asked():
    pool = BufferPool()
    pool.take(8 * MB)
    half = pool.take(4 * MB)  # half the block: a new one, the 8 MB stays free
    assert len(half) == 4 * MB
    assert pool.misses == 2 and pool.free_bytes == 8 * MB
    smaller = pool.take(8 * MB - 100)
    assert len(smaller) == 8 * MB - 100 and pool.hits == 1


def test_small_buffers_and_a_pool_of_no_bytes_keep_nothing():
    pool = BufferPool()
    pool.take(MIN_BYTES - 1)
    assert pool.free_bytes == 0
    none = BufferPool(max_bytes=0)
    none.take(4 * MB)
    assert none.free_bytes == 0 and none.misses == 0


def test_the_free_blocks_stay_within_max_bytes_the_oldest_dropped_first():
    pool = BufferPool(max_bytes=5 * MB)
    views = [pool.take(2 * MB) for _ in range(3)]
    first = _address(views[0])
    del views[0]  # given back first: the oldest
    del views[0]
    del views[0]
    assert pool.free_bytes == 4 * MB
    kept = [pool.take(2 * MB), pool.take(2 * MB)]
    assert pool.hits == 2 and first not in {_address(v) for v in kept}


def test_free_blocks_unused_for_idle_s_are_dropped():
    pool = BufferPool(idle_s=0.2)
    pool.take(2 * MB)
    assert pool.free_bytes == 2 * MB
    give_up = time.monotonic() + 30
    while pool.free_bytes and time.monotonic() < give_up:
        time.sleep(0.05)
    assert pool.free_bytes == 0


def test_giving_back_while_the_pool_is_locked_does_not_deadlock():
    """A lease may die inside the garbage collector while this thread holds the pool's lock."""
    pool = BufferPool()
    buffer = pool.take(2 * MB)
    with pool._lock:
        del buffer  # the finalizer runs here, in this thread, under the lock
    assert pool.free_bytes == 2 * MB


def test_threads_taking_and_dropping_buffers_never_share_one():
    pool = BufferPool(max_bytes=64 * MB)
    errors: list[str] = []

    def work(mark: int) -> None:
        for _ in range(200):
            buffer = pool.take(MB + mark * 4096)
            array = np.frombuffer(buffer, np.uint8)
            array[:] = mark
            time.sleep(0)
            if not (array == mark).all():
                errors.append(f"thread {mark} saw another's bytes")
            del array, buffer

    threads = [threading.Thread(target=work, args=(m,)) for m in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert pool.hits > 0


def test_new_buffer_takes_from_the_process_pool():
    from swarm_wire.buffer_pool import POOL

    buffer = serialization.new_buffer(3 * MB + 5)
    at = _address(buffer)
    del buffer
    again = serialization.new_buffer(3 * MB + 5)
    assert _address(again) == at
    del again
    POOL.clear()


@pytest.mark.parametrize("value", ["-1", "lots"])
def test_a_wrong_pool_size_in_the_environment_is_named(value):
    run = subprocess.run(
        [sys.executable, "-c", "import swarm_wire.buffer_pool"],
        env={ENV_MAX_MB: value, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert ENV_MAX_MB in run.stderr and "0 or more" in run.stderr
