"""The .kin0 table: plink2's ``--make-king-table`` columns plus INFTYPE, in plink2's pair order.

Lines are printed in blocks of about WRITE_PAIRS pairs by compiled code
(:mod:`snpbag.kinship.lines`, numba), numbers spelled exactly as plink2's ``dtoa_g``
(:func:`~snpbag.kinship.dtoa.dtoa_g` is the scalar reference the tests compare with).
Threads format blocks in parallel (the loop releases the GIL) and they are written in
order (:func:`write_pairs`).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from snpbag.errors import InputError
from snpbag.kinship.dtoa import dtoa_g  # noqa: F401  (public here too)
from snpbag.kinship.estimators import ESTIMATORS, kinship  # noqa: F401  (public here too)

#: Pairs formatted per block (and per thread) by write_pairs.
WRITE_PAIRS = 1 << 17
#: Bytes per write() call. Megabyte-sized writes into the page cache cost 0.05-0.65 s of
#: system time per 264 MB on the 2-core VM, 128 KiB writes a steady 0.06 s (measured,
#: docs/benchmarks.md); plink2 writes 128 KiB too.
WRITE_BYTES = 1 << 17


def header(counts: bool) -> str:
    """The header line: plink2's (``counts cols=+ibs1`` with ``counts``) plus INFTYPE."""
    cols = ["#IID1", "IID2", "NSNP", "HETHET", "IBS0"]
    if counts:
        cols += ["HET1_HOM2", "HET2_HOM1"]
    return "\t".join(cols + ["KINSHIP", "INFTYPE"]) + "\n"


def write_pairs(fh, pc, ids: list[str], *, estimator: str, counts: bool,
                min_kinship: float | None, po_ibs0: float, threads: int = 1) -> tuple[int, int]:
    """Append the pairs of ``pc`` (king.PairCounts) to a .kin0 in plink2's order; (pairs seen, pairs written).

    Blocks of about WRITE_PAIRS pairs are printed by :class:`~snpbag.kinship.lines.LineWriter`
    in ``threads`` threads and written in order.
    """
    if estimator not in ESTIMATORS:
        raise InputError(f"--estimator {estimator!r}: choose one of {', '.join(ESTIMATORS)}")
    from snpbag.kinship.lines import LineWriter

    r0, r1 = pc.rows
    blocks, i0 = [], r0
    while i0 < r1:
        i1 = i0 + 1
        while i1 < r1 and (i1 * (i1 + 1) - i0 * (i0 - 1)) // 2 <= WRITE_PAIRS:
            i1 += 1
        blocks.append((i0, i1))
        i0 = i1
    writer = LineWriter(pc, ids, estimator=estimator, counts=counts, min_kinship=min_kinship, po_ibs0=po_ibs0)
    free: list[np.ndarray] = []  # buffers already written out: reused (fresh pages cost page faults)

    def rows(i0: int, i1: int) -> tuple[int, memoryview]:
        need = writer.buffer_size(i0, i1)
        try:
            buf = free.pop()
        except IndexError:
            buf = None
        if buf is None or buf.size < need:
            buf = np.empty(need, dtype=np.uint8)
        size, k = writer.rows(i0, i1, buf)
        return k, memoryview(buf)[:size]

    npairs = sum((i1 * (i1 - 1) - i0 * (i0 - 1)) // 2 for i0, i1 in blocks)
    nwritten = 0

    def emit(k: int, text) -> None:
        nonlocal nwritten
        for o in range(0, len(text), WRITE_BYTES):
            fh.write(text[o:o + WRITE_BYTES])
        nwritten += k
        free.append(text.obj)

    if threads <= 1 or len(blocks) == 1:
        for blk in blocks:
            emit(*rows(*blk))
        return npairs, nwritten
    with ThreadPoolExecutor(threads, thread_name_prefix="king-write") as ex:
        pending = deque()
        for blk in blocks:
            pending.append(ex.submit(rows, *blk))
            while len(pending) > 2 * threads or (pending and pending[0].done()):
                emit(*pending.popleft().result())
        for fut in pending:
            emit(*fut.result())
    return npairs, nwritten
