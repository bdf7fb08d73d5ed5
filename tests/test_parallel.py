"""snpbag.parallel.in_order: results in the items' order, a bounded number ahead, errors where they belong."""

from __future__ import annotations

import threading
import time

import pytest

from snpbag.parallel import in_order


def test_results_come_in_order_whatever_finishes_first():
    def slow_first(i: int) -> int:
        time.sleep(0.02 * (5 - i % 5))  # earlier items take longer
        return i * i

    for threads in (1, 2, 4):
        assert list(in_order(slow_first, range(12), threads=threads)) == [i * i for i in range(12)]
    assert list(in_order(slow_first, [], threads=2)) == []


def test_at_most_threads_items_are_computed_ahead_of_the_one_held():
    started: list[int] = []
    lock = threading.Lock()

    def record(i: int) -> int:
        with lock:
            started.append(i)
        return i

    for threads in (1, 3):
        started.clear()
        it = in_order(record, range(20), threads=threads)
        assert next(it) == 0
        deadline = time.monotonic() + 10  # wait for the workers to run what was submitted (slow on a loaded CI)
        while len(started) < threads + 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # and a little longer, for anything submitted beyond the bound to show
        with lock:
            assert max(started) == threads  # item 0 held, items 1..threads ahead, nothing further
        assert list(it) == list(range(1, 20))


def test_an_error_is_raised_where_its_result_would_be():
    def fail_at_3(i: int) -> int:
        if i == 3:
            raise ValueError("item 3")
        return i

    got = []
    with pytest.raises(ValueError, match="item 3"):
        for x in in_order(fail_at_3, range(10), threads=2):
            got.append(x)
    assert got == [0, 1, 2]
