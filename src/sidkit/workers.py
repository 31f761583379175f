"""Blocks of rows on worker threads, handed out as threads become free.

torch splits each op in equal shares, one per thread, and every op ends at a barrier: on a machine
where another process holds a core, the thread that shares that core finishes its share last at every
op, so two threads run no faster than one and pay the waits on top. Here each thread instead takes
the next block of rows when it is done with the last one (one torch thread each), so a slowed
thread simply does fewer blocks: two threads are never slower than one, and the work is not
repeated or spun away, so CPU time stays that of one thread.

Results come back in block order and blocks depend only on the row count and the block size,
never on the thread count or on which thread ran which block: the same input gives the same
result with 1 or 8 threads.

Use it for work that is independent per block of rows (encoding, k-means assignment with per-block
partial sums). The block function must not change shared state.
"""

from __future__ import annotations

import contextvars
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")

# Fewest rows per block: below this, oneDNN's GEMMs lose efficiency and Python overhead per block shows.
MIN_BLOCK_ROWS = 2048
# Blocks per pass to aim for, so that a slowed thread's last block holds the others up little.
TARGET_BLOCKS = 16

_inside = threading.local()
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def block_rows(n: int, most: int) -> int:
    """Rows per block for ``n`` rows: about n / 16, at least MIN_BLOCK_ROWS and at most ``most``.

    Independent of the thread count, so results never depend on it.
    """
    return max(1, min(most, max(MIN_BLOCK_ROWS, math.ceil(n / TARGET_BLOCKS))))


def blocks(n: int, rows: int) -> list[tuple[int, int]]:
    """(start, stop) of each block of ``rows`` rows covering ``range(n)``."""
    return [(start, min(start + rows, n)) for start in range(0, n, rows)]


def in_worker() -> bool:
    """Whether the calling thread is running a block (nested calls then run serially)."""
    return bool(getattr(_inside, "active", False))


def map_blocks(fn: Callable[[int, int], T], spans: Sequence[tuple[int, int]], *,
               threads: int | None = None, device: torch.device | str = "cpu") -> list[T]:
    """``[fn(start, stop) for (start, stop) in spans]``, on up to ``threads`` threads.

    ``threads`` defaults to torch's intra-op thread count. Serial (in the calling thread, with its
    own thread settings) for one thread, one block, a non-CPU device, or when called from a block.
    Each block runs with one torch thread, in a copy of the caller's context (grad mode and
    context variables included). The first exception raised by a block is re-raised here.
    """
    before = torch.get_num_threads()
    count = before if threads is None else threads
    if count <= 1 or len(spans) <= 1 or torch.device(device).type != "cpu" or in_worker():
        return [fn(start, stop) for start, stop in spans]
    count = min(count, len(spans))
    results: list[T | None] = [None] * len(spans)
    errors: list[BaseException] = []
    lock = threading.Lock()
    next_index = iter(range(len(spans)))
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def drain() -> None:
        _inside.active = True
        try:
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                while True:
                    with lock:
                        index = None if errors else next(next_index, None)
                    if index is None:
                        return
                    try:
                        results[index] = fn(*spans[index])
                    except BaseException as error:  # handed to the caller below
                        with lock:
                            errors.append(error)
                        return
        finally:
            _inside.active = False

    # One torch thread per block while the workers run (torch's setting is process-wide), then back.
    torch.set_num_threads(1)
    try:
        pool = _executor(count - 1)
        futures: list[Future[None]] = [pool.submit(contextvars.copy_context().run, drain) for _ in range(count - 1)]
        drain()  # the calling thread takes blocks too
        for future in futures:
            future.result()
    finally:
        torch.set_num_threads(before)
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


def _executor(size: int) -> ThreadPoolExecutor:
    """A process-wide pool of at least ``size`` threads (kept: threads cost ~0.1 ms each to start)."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < size:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="sidkit-rows")
            _pool_size = size
        return _pool
