""".kin0 lines written by compiled code (numba): the fast path of :func:`~snpbag.kinship.kin0.write_pairs`.

One loop per block of rows reads a pass's integer counts (:class:`~snpbag.kinship.counts.PairCounts`),
divides them as :func:`~snpbag.kinship.estimators.kinship` does, applies the
``--min-kinship`` filter and :func:`~snpbag.kinship.degrees.classify`, and prints each
line into one byte buffer: no per-column arrays, no NUL-dropping pass. Numbers are
spelled by a port of plink2's ``dtoa_g`` (:func:`~snpbag.kinship.dtoa.dtoa_g` is the
reference; the same double operations in the same order, so the same bytes); the
HETHET/IBS0 proportions of the pass's most common NSNP come from a table of
``(1.0 / NSNP) * count``. The tests compare every line with a per-pair Python writer
built on the scalar ``dtoa_g`` and the whole file with plink2's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from snpbag.kinship import degrees
from snpbag.kinship.dtoa import _BANKER8, _LARGE, _ONE, _SMALL, _SO6_BOUNDS

#: Longest dtoa_g spelling (``-1.23457e-300``) plus a separator, and slack for 16-byte copies.
_G_BYTES = 14
_SLACK = 64
#: Entries of the proportion table (counts 0 .. LUT_SIZE - 1 of the common NSNP).
LUT_SIZE = 1 << 18

_B0, _B1 = _BANKER8
_S1, _S2, _S3, _S4, _S5 = _SO6_BOUNDS


@njit(inline="always")
def _banker(x):  # pragma: no cover - compiled
    r = np.int64(x)
    return r + np.int64((x - np.float64(r)) + (_B1 if r & 1 else _B0))


@njit(inline="always")
def _uint(out, pos, v):  # pragma: no cover - compiled
    """Decimal digits of v >= 0."""
    n = 1
    t = v
    while t >= 10:
        t //= 10
        n += 1
    e = pos + n
    while n:
        n -= 1
        out[pos + n] = 48 + v % 10
        v //= 10
    return e


@njit(inline="always")
def _digits(out, pos, v, width):  # pragma: no cover - compiled
    """v zero-padded to ``width`` digits, trailing zeros dropped (v > 0)."""
    for k in range(width - 1, -1, -1):
        out[pos + k] = 48 + v % 10
        v //= 10
    e = pos + width
    while out[e - 1] == 48:
        e -= 1
    return e


@njit(inline="always")
def _fraction(out, pos, rem, width):  # pragma: no cover - compiled
    """``.`` and ``rem`` with ``width`` digits, trailing zeros dropped; nothing for 0."""
    if rem == 0:
        return pos
    out[pos] = 46
    return _digits(out, pos + 1, rem, width)


@njit
def _exp(out, pos, x, small):  # pragma: no cover - compiled
    """dtoa_g's exponential notation (``dtoa.py``'s ``_exp``, line for line)."""
    xp10 = 0
    if small:
        if x < 9.9999949999999e-16:
            if x < 9.9999949999999e-128:
                if x < 9.9999949999999e-256:
                    x *= 1.0e256
                    xp10 |= 256
                else:
                    x *= 1.0e128
                    xp10 |= 128
            if x < 9.9999949999999e-64:
                x *= 1.0e64
                xp10 |= 64
            if x < 9.9999949999999e-32:
                x *= 1.0e32
                xp10 |= 32
            if x < 9.9999949999999e-16:
                x *= 1.0e16
                xp10 |= 16
        if x < 9.9999949999999e-8:
            x *= 100000000.0
            xp10 |= 8
        if x < 9.9999949999999e-4:
            x *= 10000.0
            xp10 |= 4
        if x < 9.9999949999999e-2:
            x *= 100.0
            xp10 |= 2
        if x < 9.9999949999999e-1:
            x *= 10.0
            xp10 |= 1
    else:
        if x >= 9.9999949999999e15:
            if x >= 9.9999949999999e127:
                if x >= 9.9999949999999e255:
                    x *= 1.0e-256
                    xp10 |= 256
                else:
                    x *= 1.0e-128
                    xp10 |= 128
            if x >= 9.9999949999999e63:
                x *= 1.0e-64
                xp10 |= 64
            if x >= 9.9999949999999e31:
                x *= 1.0e-32
                xp10 |= 32
            if x >= 9.9999949999999e15:
                x *= 1.0e-16
                xp10 |= 16
        if x >= 9.9999949999999e7:
            x *= 1.0e-8
            xp10 += 8
        if x >= 9.9999949999999e3:
            x *= 1.0e-4
            xp10 += 4
        if x >= 9.9999949999999e1:
            x *= 1.0e-2
            xp10 += 2
        if x >= 9.9999949999999e0:
            x *= 1.0e-1
            xp10 += 1
    r = _banker(x * 100000.0)
    pos = _uint(out, pos, r // 100000)
    pos = _fraction(out, pos, r % 100000, 5)
    out[pos] = 101  # e
    out[pos + 1] = 45 if small else 43
    pos += 2
    if xp10 < 10:
        out[pos] = 48
        pos += 1
    return _uint(out, pos, xp10)


@njit
def _so6(out, pos, x):  # pragma: no cover - compiled
    """Six significant digits for 0.99999949999999 <= x < 999999.49999999."""
    if x < _S1:
        w, scale = 5, 100000
    elif x < _S2:
        w, scale = 4, 10000
    elif x < _S3:
        w, scale = 3, 1000
    elif x < _S4:
        w, scale = 2, 100
    elif x < _S5:
        w, scale = 1, 10
    else:
        r = _banker(x)
        for k in range(5, -1, -1):
            out[pos + k] = 48 + r % 10
            r //= 10
        return pos + 6
    r = _banker(x * np.float64(scale))
    pos = _uint(out, pos, r // scale)
    return _fraction(out, pos, r % scale, w)


@njit
def put_g(out, pos, x):  # pragma: no cover - compiled
    """plink2's ``dtoa_g`` of x into ``out[pos:]``; returns the end position."""
    if x != x:
        out[pos] = 110
        out[pos + 1] = 97
        out[pos + 2] = 110
        return pos + 3
    if x < 0:
        out[pos] = 45
        pos += 1
        x = -x
    if x < _SMALL:
        if x == 0.0:
            out[pos] = 48
            return pos + 1
        return _exp(out, pos, x, True)
    if x >= _LARGE:
        if x == np.inf:
            out[pos] = 105
            out[pos + 1] = 110
            out[pos + 2] = 102
            return pos + 3
        return _exp(out, pos, x, False)
    if x >= _ONE:
        return _so6(out, pos, x)
    out[pos] = 48
    out[pos + 1] = 46
    pos += 2
    if x < 9.9999949999999e-3:
        x *= 100
        out[pos] = 48
        out[pos + 1] = 48
        pos += 2
    if x < 9.9999949999999e-2:
        x *= 10
        out[pos] = 48
        pos += 1
    return _digits(out, pos, _banker(x * 1000000), 6)


@njit(inline="always")
def _copy16(out, pos, table, k, n):  # pragma: no cover - compiled
    """Row k of a 16-byte table, n bytes kept."""
    for t in range(16):
        out[pos + t] = table[k, t]
    return pos + n


@njit(inline="always")
def _copy(out, pos, table, k, n):  # pragma: no cover - compiled
    for t in range(n):
        out[pos + t] = table[k, t]
    return pos + n


@njit(cache=True, nogil=True, error_model="numpy")
def _rows(hh, ib, het_row, het_col, ns, r0, i0, i1, ids, id_len, lut, lut_len, lut_nsnp, labels, label_len,
          within, counts, has_min, min_kinship, po_ibs0, cuts, out):  # pragma: no cover - compiled
    """Lines of pairs (i, j), i0 <= i < i1, j < i, into ``out``; (bytes, lines)."""
    pos = 0
    nw = 0
    short_ids = ids.shape[1] == 16
    for i in range(i0, i1):
        ri = i - r0
        for j in range(i):
            h = np.int64(hh[ri, j])
            z = np.int64(ib[ri, j])
            a = np.int64(het_row[ri, j])  # i het, j hom
            b = np.int64(het_col[ri, j])
            n = np.int64(ns[ri, j])
            if within:
                kin = np.float64(h - 2 * z) / np.float64(2 * h + a + b)
            else:
                kin = 0.5 - np.float64(4 * z + a + b) / np.float64(4 * (h + min(a, b)))
            if has_min and kin < min_kinship:
                continue
            nw += 1
            if short_ids:
                pos = _copy16(out, pos, ids, i, id_len[i])
                pos = _copy16(out, pos, ids, j, id_len[j])
            else:
                pos = _copy(out, pos, ids, i, id_len[i])
                pos = _copy(out, pos, ids, j, id_len[j])
            pos = _uint(out, pos, n)
            out[pos] = 9
            pos += 1
            recip = 1.0 / np.float64(n)
            ibs0_p = recip * np.float64(z)
            if counts:
                for c in (h, z, b, a):  # HET1_HOM2 is IID2 het / IID1 hom
                    pos = _uint(out, pos, c)
                    out[pos] = 9
                    pos += 1
            elif n == lut_nsnp and h < lut.shape[0] and z < lut.shape[0]:
                pos = _copy16(out, pos, lut, h, lut_len[h])
                pos = _copy16(out, pos, lut, z, lut_len[z])
            else:
                pos = put_g(out, pos, recip * np.float64(h))
                out[pos] = 9
                pos = put_g(out, pos + 1, ibs0_p)
                out[pos] = 9
                pos += 1
            pos = put_g(out, pos, kin)
            out[pos] = 9
            pos += 1
            if kin != kin:
                code = 6  # MISSING
            elif kin > cuts[0]:
                code = 0  # DUP
            elif kin > cuts[1]:
                code = 1 if ibs0_p < po_ibs0 else 2  # PO / FS
            elif kin > cuts[2]:
                code = 3
            elif kin > cuts[3]:
                code = 4
            else:
                code = 5
            pos = _copy16(out, pos, labels, code, label_len[code])
    return pos, nw


@njit(cache=True, nogil=True, error_model="numpy")
def _proportion_table(nsnp, size, out, lengths):  # pragma: no cover - compiled
    """dtoa_g of ``(1.0 / nsnp) * c`` then a tab, c = 0 .. size - 1."""
    recip = 1.0 / np.float64(nsnp)
    for c in range(size):
        e = put_g(out[c], 0, recip * np.float64(c))
        out[c, e] = 9
        lengths[c] = e + 1


def _table(strings: Sequence[str], sep: str) -> tuple[np.ndarray, np.ndarray]:
    enc = [s.encode() + sep.encode() for s in strings]
    out = np.zeros((len(enc), max(16, max(len(t) for t in enc))), dtype=np.uint8)
    for k, t in enumerate(enc):
        out[k, :len(t)] = np.frombuffer(t, dtype=np.uint8)
    return out, np.array([len(t) for t in enc], dtype=np.int64)


class LineWriter:
    """Formats blocks of rows of one pass's counts into reusable byte buffers.

    Parameters
    ----------
    pc : the pass's :class:`~snpbag.kinship.counts.PairCounts`.
    ids : all sample ids (row/column index = sample index).
    estimator, counts, min_kinship, po_ibs0 : as :func:`~snpbag.kinship.kin0.write_pairs`.
    """

    def __init__(self, pc, ids: Sequence[str], *, estimator: str, counts: bool, min_kinship: float | None,
                 po_ibs0: float):
        self.pc = pc
        self.ids, self.id_len = _table(ids, "\t")
        self.labels, self.label_len = _table(degrees.LABELS, "\n")
        r0, r1 = pc.rows
        nsnp = int(pc.nsnp[r1 - 1 - r0, 0]) if r1 > 1 else 0  # a real pair (j < i); usually every pair's
        size = 0 if counts else min(max(nsnp + 1, 1), LUT_SIZE)
        self.lut = np.zeros((size, 16), dtype=np.uint8)
        self.lut_len = np.zeros(size, dtype=np.int64)
        if size:
            _proportion_table(nsnp, size, self.lut, self.lut_len)
        self.lut_nsnp = nsnp
        self.opts = (estimator == "within", counts, min_kinship is not None,
                     float("nan") if min_kinship is None else float(min_kinship), float(po_ibs0),
                     np.array(degrees.KING_CUTOFFS, dtype=np.float64))
        self.line_bytes = (2 * int(self.id_len.max()) + 11 + (4 * 11 if counts else 2 * _G_BYTES) + _G_BYTES
                           + int(self.label_len.max()))

    def buffer_size(self, i0: int, i1: int) -> int:
        """Bytes of a buffer large enough for the lines of rows [i0, i1)."""
        return (i1 * (i1 - 1) - i0 * (i0 - 1)) // 2 * self.line_bytes + _SLACK

    def rows(self, i0: int, i1: int, out: np.ndarray) -> tuple[int, int]:
        """Lines of rows [i0, i1) into ``out`` (uint8, at least :meth:`buffer_size`): (bytes used, lines written)."""
        pc = self.pc
        assert out.size >= self.buffer_size(i0, i1) and self.pc.rows[0] <= i0 <= i1 <= self.pc.rows[1]
        return _rows(pc.hethet, pc.ibs0, pc.het_row, pc.het_col, pc.nsnp, pc.rows[0], i0, i1, self.ids, self.id_len,
                     self.lut, self.lut_len, self.lut_nsnp, self.labels, self.label_len, *self.opts, out)
