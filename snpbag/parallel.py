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


def in_order(fn: Callable, items: Iterable, *, threads: int) -> Iterator:
    """fn(item) for each item, in the items' order, computed by ``threads`` worker threads
    (at least one) with at most ``threads`` results computed ahead of the one the caller
    holds. An exception in fn is raised where its result would have been yielded; the
    blocks not yet started are then dropped."""
    pending: deque = deque()
    with ThreadPoolExecutor(max(1, threads)) as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) > max(1, threads):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
