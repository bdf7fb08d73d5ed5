"""Independent blocks of work in threads, their results consumed in order.

The numeric kernels (numpy's ufuncs, numba's ``nogil`` functions, torch) release the GIL, so
worker threads over independent blocks use the cores while the consumer — writing a table or
a VCF — stays sequential and sees the results in the order the blocks were given. A bounded
number of blocks is in flight, so memory stays that of a few blocks whatever their number.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor


def in_order(fn: Callable, items: Iterable, *, threads: int, depth: int | None = None,
             name: str = "snpbag") -> Iterator:
    """fn(item) for each item, in the items' order, computed by ``threads`` worker threads
    (at least one, named ``name``-N) with at most ``depth`` (default ``threads``) results
    computed ahead of the one the caller holds. The items are drawn in the caller's thread
    (what they allocate comes from its malloc arena). An exception in fn is raised where its
    result would have been yielded; the blocks not yet started are then dropped."""
    ahead = max(1, threads if depth is None else depth)
    pending: deque = deque()
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix=name) as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
