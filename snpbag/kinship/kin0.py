"""The .kin0 table: plink2's ``--make-king-table`` columns plus INFTYPE, in plink2's pair order.

Lines are built in blocks of about WRITE_PAIRS pairs, by compiled code
(:mod:`snpbag.kinship.lines`, numba) or, as its reference, from the numpy byte fields of
:mod:`snpbag.kinship.dtoa` (:func:`format_rows`); numbers are spelled exactly as
plink2's ``dtoa_g``. Threads format blocks in parallel (both release the GIL) and they
are written in order (:func:`write_pairs`).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from snpbag.errors import InputError
from snpbag.kinship import degrees
from snpbag.kinship.dtoa import g_field, int_field, join_fields, str_field
from snpbag.kinship.dtoa import dtoa_g, format_g, to_strings  # noqa: F401  (public here too)
from snpbag.kinship.estimators import ESTIMATORS, kinship  # noqa: F401  (public here too)

#: Pairs formatted per block (and per thread) by write_pairs.
WRITE_PAIRS = 1 << 17


def header(counts: bool) -> str:
    """The header line: plink2's (``counts cols=+ibs1`` with ``counts``) plus INFTYPE."""
    cols = ["#IID1", "IID2", "NSNP", "HETHET", "IBS0"]
    if counts:
        cols += ["HET1_HOM2", "HET2_HOM1"]
    return "\t".join(cols + ["KINSHIP", "INFTYPE"]) + "\n"


def lower_pairs(i0: int, i1: int) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) with ``i0 <= i < i1`` and ``j < i``, in plink2's row order."""
    rows = np.arange(i0, i1, dtype=np.int64)
    ii = np.repeat(rows, rows)
    jj = np.arange(ii.size, dtype=np.int64) - np.repeat(np.cumsum(rows) - rows, rows)
    return ii, jj


_LABELS = str_field(degrees.LABELS, "\n")


def format_rows(ids: Sequence[str] | np.ndarray, ii: np.ndarray, jj: np.ndarray, *, nsnp, hethet, ibs0, het1_hom2,
                het2_hom1, kinship, counts: bool, po_ibs0: float) -> bytes:
    """.kin0 lines for pairs (ids[ii], ids[jj]); HETHET/IBS0 as plink2's ``(1.0 / NSNP) * count``.

    ``ids`` may be given as ``str_field(ids)`` (built once, reused across calls).
    """
    table = ids if isinstance(ids, np.ndarray) and ids.dtype == np.uint8 and ids.ndim == 2 else str_field(ids)
    ns = np.asarray(nsnp)
    with np.errstate(divide="ignore", invalid="ignore"):
        recip = 1.0 / ns.astype(np.float64)
        ibs0_p = recip * np.asarray(ibs0, dtype=np.float64)
    one_nsnp = ns.size and ns.min() == ns.max()
    if one_nsnp:  # "IID2\tNSNP\t" from one table (without missing calls every pair has the same NSNP)
        ns_text = int_field(ns[:1])
        cols = [np.take(table, ii, axis=0), np.take(_with_suffix(table, ns_text), jj, axis=0)]
    else:
        cols = [np.take(table, ii, axis=0), np.take(table, jj, axis=0), int_field(ns)]
    if counts:
        cols += [int_field(hethet), int_field(ibs0), int_field(het1_hom2), int_field(het2_hom1)]
    elif one_nsnp:  # every proportion is recip * (a count <= NSNP): format each count once
        hh, ib = np.asarray(hethet, dtype=np.int64), np.asarray(ibs0, dtype=np.int64)
        lut = _proportions(int(ns[0]), 1 << max(int(hh.max()), int(ib.max())).bit_length())
        cols += [np.take(lut, hh, axis=0), np.take(lut, ib, axis=0)]
    else:
        cols += [g_field(recip * np.asarray(hethet, dtype=np.float64)), g_field(ibs0_p)]
    cols += [g_field(kinship), np.take(_LABELS, degrees.classify(kinship, ibs0_p, po_ibs0=po_ibs0), axis=0)]
    return join_fields(cols)


@functools.lru_cache(maxsize=8)
def _proportions(nsnp: int, size: int) -> np.ndarray:
    """g_field of ``(1.0 / nsnp) * c`` for c = 0 .. size - 1: plink2's HETHET/IBS0 proportions."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return g_field((1.0 / np.float64(nsnp)) * np.arange(size, dtype=np.float64))


def _with_suffix(table: np.ndarray, suffix: np.ndarray) -> np.ndarray:
    """Rows of ``table`` followed by the one-row field ``suffix`` (NULs may sit in between)."""
    return np.concatenate([table, np.broadcast_to(suffix, (table.shape[0], suffix.shape[1]))], axis=1)


def write_pairs(fh, pc, ids: list[str], *, estimator: str, counts: bool,
                min_kinship: float | None, po_ibs0: float, threads: int = 1,
                compiled: bool = True) -> tuple[int, int]:
    """Append the pairs of ``pc`` (king.PairCounts) to a .kin0 in plink2's order; (pairs seen, pairs written).

    Blocks of about WRITE_PAIRS pairs are formatted by ``threads`` threads and written in
    order: by :class:`~snpbag.kinship.lines.LineWriter` (``compiled``) or by
    :func:`format_rows` (numpy; the reference, same bytes).
    """
    if estimator not in ESTIMATORS:
        raise InputError(f"--estimator {estimator!r}: choose one of {', '.join(ESTIMATORS)}")
    r0, r1 = pc.rows
    table = None if compiled else str_field(ids)
    blocks, i0 = [], r0
    while i0 < r1:
        i1 = i0 + 1
        while i1 < r1 and (i1 * (i1 + 1) - i0 * (i0 - 1)) // 2 <= WRITE_PAIRS:
            i1 += 1
        blocks.append((i0, i1))
        i0 = i1

    if compiled:
        from snpbag.kinship.lines import LineWriter

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

    else:  # the numpy reference
        def rows(i0: int, i1: int) -> tuple[int, bytes]:
            def lower(a):  # row i keeps columns j < i: plink2's order
                return np.concatenate([a[i - r0, :i] for i in range(i0, i1)])

            ii, jj = lower_pairs(i0, i1)
            hh, ib, ns = lower(pc.hethet), lower(pc.ibs0), lower(pc.nsnp)
            # plink2's HET1_HOM2 is IID2 het / IID1 hom (its kernel numbers the smaller index 1)
            h1, h2 = lower(pc.het_col), lower(pc.het_row)
            kin = kinship(hh, ib, h2, h1, estimator=estimator)
            if min_kinship is not None:
                keep = ~(kin < min_kinship)  # plink2 keeps nan
                ii, jj, hh, ib, h1, h2, ns, kin = (x[keep] for x in (ii, jj, hh, ib, h1, h2, ns, kin))
            if not ii.size:
                return 0, b""
            return ii.size, format_rows(table, ii, jj, nsnp=ns, hethet=hh, ibs0=ib, het1_hom2=h1, het2_hom1=h2,
                                                 kinship=kin, counts=counts, po_ibs0=po_ibs0)

    npairs = sum((i1 * (i1 - 1) - i0 * (i0 - 1)) // 2 for i0, i1 in blocks)
    nwritten = 0

    def emit(k: int, text) -> None:
        nonlocal nwritten
        fh.write(text)
        nwritten += k
        if compiled:
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
