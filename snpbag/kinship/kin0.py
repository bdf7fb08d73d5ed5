"""The .kin0 table and the kinship matrix: plink2's number formatting, a vectorised writer.

Users diff our .kin0 against ``plink2 --make-king-table``, so every printed number goes
through a port of plink2's ``dtoa_g`` (6 significant digits, banker's rounding with a
1e-8 tolerance, trailing zeros stripped, ``nan``/``-inf`` spelled as plink2 spells them)
and every count through plain decimal digits. Python's ``'%g'`` rounds ties differently,
so it is not used.

Each column is built as a (rows, slots) byte matrix with a mask of the slots that
print, and all columns are gathered into the file's bytes with one boolean index
(~0.8 million .kin0 lines per second on one core, profiled on docs/benchmarks.md's
cohort). The scalar :func:`dtoa_g` is the reference the vectorised path is tested
against and the fallback for rare values (exponential notation, nan, infinities).

References
----------
plink2 ``dtoa_g`` / ``dtoa_so6`` / ``BankerRoundD`` in ``2.0/include/plink2_string.cc``
(github.com/chrchang/plink-ng).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from snpbag.kinship import degrees

# plink2's kBankerRound8: ties (within 5e-9 of .5) go to the even neighbour.
_BANKER8 = (0.499999995, 0.500000005)
_BANKER8_ARR = np.array(_BANKER8)

# Upper bounds of the magnitudes printed with 1..6 integer digits (dtoa_so6).
_SO6_BOUNDS = (9.9999949999999, 99.999949999999, 999.99949999999, 9999.9949999999, 99999.949999999)
_SMALL = 9.9999949999999e-5   # below: exponential notation
_LARGE = 999999.49999999      # at or above: exponential notation
_ONE = 0.99999949999999       # at or above: dtoa_so6, below: "0.xxxxxx"

_TAB, _NL = ord("\t"), ord("\n")


# --- scalar reference ----------------------------------------------------------------------


def _banker_round(x: float) -> int:
    """plink2 BankerRoundD(x, kBankerRound8) for 0 <= x < 2^31."""
    r = int(x)
    return r + int((x - float(r)) + _BANKER8[r & 1])


def _banker_round_digits(x: float, digits: int) -> tuple[int, int]:
    """plink2 BankerRoundD<digits>: (integer part, ``digits`` decimals) of x rounded."""
    scale = 10 ** digits
    r = _banker_round(x * float(scale))
    return r // scale, r % scale


def _frac(remainder: int, width: int) -> str:
    return "" if remainder == 0 else "." + f"{remainder:0{width}d}".rstrip("0")


def _so6(x: float) -> str:
    """Six significant digits for 0.99999949999999 <= x < 999999.49999999."""
    for k, bound in enumerate(_SO6_BOUNDS, start=1):
        if x < bound:
            q, r = _banker_round_digits(x, 6 - k)
            return f"{q}{_frac(r, 6 - k)}"
    return f"{_banker_round(x):06d}"


def _exp(x: float, small: bool) -> str:
    """Six significant digits in exponential notation, exactly as plink2 scales."""
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
            for bit, thr, mul in ((64, 9.9999949999999e-64, 1.0e64), (32, 9.9999949999999e-32, 1.0e32),
                                  (16, 9.9999949999999e-16, 1.0e16)):
                if x < thr:
                    x *= mul
                    xp10 |= bit
        for bit, thr, mul in ((8, 9.9999949999999e-8, 100000000.0), (4, 9.9999949999999e-4, 10000.0),
                              (2, 9.9999949999999e-2, 100.0), (1, 9.9999949999999e-1, 10.0)):
            if x < thr:
                x *= mul
                xp10 |= bit
        sign = "e-"
    else:
        if x >= 9.9999949999999e15:
            if x >= 9.9999949999999e127:
                if x >= 9.9999949999999e255:
                    x *= 1.0e-256
                    xp10 |= 256
                else:
                    x *= 1.0e-128
                    xp10 |= 128
            for bit, thr, mul in ((64, 9.9999949999999e63, 1.0e-64), (32, 9.9999949999999e31, 1.0e-32),
                                  (16, 9.9999949999999e15, 1.0e-16)):
                if x >= thr:
                    x *= mul
                    xp10 |= bit
        for bit, thr, mul in ((8, 9.9999949999999e7, 1.0e-8), (4, 9.9999949999999e3, 1.0e-4),
                              (2, 9.9999949999999e1, 1.0e-2), (1, 9.9999949999999e0, 1.0e-1)):
            if x >= thr:
                x *= mul
                xp10 += bit
        sign = "e+"
    q, r = _banker_round_digits(x, 5)
    return f"{q}{_frac(r, 5)}{sign}{xp10:02d}"


def dtoa_g(x: float) -> str:
    """plink2's ``dtoa_g``: how plink2 prints KINSHIP and the HETHET/IBS0 proportions.

    Parameters
    ----------
    x : any double, including nan and ±inf.

    Returns
    -------
    str : e.g. ``0.0114379``, ``-0.241848``, ``0.5``, ``1``, ``-2.14103``, ``1.5e-05``,
        ``nan``, ``-inf``.
    """
    x = float(x)
    if x != x:
        return "nan"
    sign = ""
    if x < 0:
        sign, x = "-", -x
    if x < _SMALL:
        if x == 0.0:
            return sign + "0"
        return sign + _exp(x, True)
    if x >= _LARGE:
        if math.isinf(x):
            return sign + "inf"
        return sign + _exp(x, False)
    if x >= _ONE:
        return sign + _so6(x)
    lead = "0."
    if x < 9.9999949999999e-3:
        x *= 100
        lead += "00"
    if x < 9.9999949999999e-2:
        x *= 10
        lead += "0"
    return sign + lead + f"{_banker_round(x * 1000000):06d}".rstrip("0")


# --- vectorised columns ------------------------------------------------------------------
# A column is (chars (N, W) uint8, keep (N, W) bool): row i prints chars[i][keep[i]], so a
# number can be laid out in fixed slots (sign, integer digits, point, fraction) and the
# unused slots simply not kept; join_rows gathers all kept bytes in one pass.


def _banker_round_arr(x: np.ndarray) -> np.ndarray:
    r = np.trunc(x).astype(np.int64)
    return r + np.trunc((x - r.astype(np.float64)) + _BANKER8_ARR[r & 1]).astype(np.int64)


def _digit_matrix(values: np.ndarray, width: int) -> np.ndarray:
    """(N, width) ASCII digits of non-negative integers, zero-padded on the left."""
    pow10 = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // pow10) % 10 + ord("0")).astype(np.uint8)


def _trailing_zeros(values: np.ndarray, width: int) -> np.ndarray:
    """Trailing zero digits of each value written with ``width`` digits (``width`` for 0)."""
    tz = np.zeros(values.shape, dtype=np.int64)
    v = values.copy()
    active = v != 0
    for _ in range(width):
        active = active & (v % 10 == 0)
        if not active.any():
            break
        tz += active
        v = np.where(active, v // 10, v)
    return np.where(values == 0, width, tz)


def format_g(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`dtoa_g` of every value, as a character column (chars, keep)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    n = x.size
    neg = x < 0
    a = np.abs(x)
    with np.errstate(invalid="ignore"):
        dec = (a >= _SMALL) & (a < _ONE)
        so6 = (a >= _ONE) & (a < _LARGE)
    other = ~(dec | so6)
    W = 14
    chars = np.zeros((n, W), dtype=np.uint8)
    keep = np.zeros((n, W), dtype=bool)
    chars[:, 0] = ord("-")
    keep[:, 0] = neg
    if dec.any():
        # layout: sign | '0' '.' | up to 3 zeros | 6 digits  (columns 0 | 1-2 | 3-5 | 6-11)
        i = np.flatnonzero(dec)
        d = a[i].copy()
        z = np.zeros(i.size, dtype=np.int64)
        m = d < 9.9999949999999e-3
        d[m] *= 100
        z[m] += 2
        m = d < 9.9999949999999e-2
        d[m] *= 10
        z[m] += 1
        u = _banker_round_arr(d * 1000000)
        chars[i, 1] = ord("0")
        chars[i, 2] = ord(".")
        keep[i, 1:3] = True
        chars[i, 3:6] = ord("0")
        keep[i, 3:6] = np.arange(3)[None, :] < z[:, None]
        chars[i, 6:12] = _digit_matrix(u, 6)
        keep[i, 6:12] = np.arange(6)[None, :] < (6 - _trailing_zeros(u, 6))[:, None]
    if so6.any():
        # layout: sign | 6 integer-digit slots | '.' | 5 fraction slots  (0 | 1-6 | 7 | 8-12)
        i = np.flatnonzero(so6)
        d = a[i]
        k = np.searchsorted(np.array(_SO6_BOUNDS), d, side="right") + 1  # integer digits 1..6
        frac_digits = 6 - k
        scale = 10 ** frac_digits
        r = _banker_round_arr(d * scale.astype(np.float64))
        q, rem = r // scale, r % scale
        chars[i, 1:7] = _digit_matrix(q, 6)
        keep[i, 1:7] = np.arange(6)[None, :] >= (6 - k)[:, None]
        chars[i, 7] = ord(".")
        keep[i, 7] = rem != 0
        # fraction digits of rem written with frac_digits digits, left-aligned in 5 slots
        shift = 10 ** (5 - frac_digits)
        chars[i, 8:13] = _digit_matrix(rem * shift, 5)
        tz = _trailing_zeros(rem * shift, 5)
        keep[i, 8:13] = (np.arange(5)[None, :] < (5 - tz)[:, None]) & (rem != 0)[:, None]
    if other.any():
        idx = np.flatnonzero(other)
        strs = [dtoa_g(v).encode() for v in x[idx]]
        width = max(W, max(len(t) for t in strs))
        if width > W:
            chars = np.pad(chars, ((0, 0), (0, width - W)))
            keep = np.pad(keep, ((0, 0), (0, width - W)))
        for j, t in zip(idx, strs):
            chars[j, : len(t)] = np.frombuffer(t, dtype=np.uint8)
            keep[j, :] = False
            keep[j, : len(t)] = True
    return chars, keep


def format_int(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decimal digits of non-negative integers as a character column."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size and v.min() < 0:
        raise ValueError("format_int takes non-negative integers")
    width = max(len(str(int(v.max()))) if v.size else 1, 1)
    chars = _digit_matrix(v, width)
    ndig = np.maximum(width - _leading_zero_count(v, width), 1)
    keep = np.arange(width)[None, :] >= (width - ndig)[:, None]
    return chars, keep


def _leading_zero_count(v: np.ndarray, width: int) -> np.ndarray:
    ndig = np.ones(v.shape, dtype=np.int64)
    t = v // 10
    while (t > 0).any():
        ndig += t > 0
        t //= 10
    return width - ndig


def format_str(table: Sequence[str], index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strings ``table[index]`` as a character column (sample ids, relationship labels)."""
    enc = [s.encode() for s in table]
    width = max((len(s) for s in enc), default=1) or 1
    mat = np.zeros((len(enc), width), dtype=np.uint8)
    lens = np.zeros(len(enc), dtype=np.int64)
    for k, s in enumerate(enc):
        mat[k, : len(s)] = np.frombuffer(s, dtype=np.uint8)
        lens[k] = len(s)
    index = np.asarray(index, dtype=np.int64)
    return mat[index], np.arange(width)[None, :] < lens[index][:, None]


def join_rows(columns: Sequence[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """Tab-separated, newline-terminated rows from character columns of equal length."""
    n = columns[0][0].shape[0]
    if n == 0:
        return b""
    sep = np.full((n, 1), _TAB, dtype=np.uint8)
    chars, keep = [], []
    for c, k in columns:
        chars += [c, sep]
        keep += [k, np.ones((n, 1), dtype=bool)]
    chars[-1] = np.full((n, 1), _NL, dtype=np.uint8)
    # boolean indexing walks the (rows, slots) matrix in row-major order: the file's bytes
    return np.hstack(chars)[np.hstack(keep)].tobytes()


def to_strings(column: tuple[np.ndarray, np.ndarray]) -> list[str]:
    """The strings of a character column (for tests and debugging)."""
    chars, keep = column
    return [bytes(c[k]).decode() for c, k in zip(chars, keep)]


# --- the table and the matrix ----------------------------------------------------------------


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


def format_rows(ids: Sequence[str], ii: np.ndarray, jj: np.ndarray, *, nsnp, hethet, ibs0, het1_hom2, het2_hom1,
                kinship, counts: bool, po_ibs0: float) -> bytes:
    """.kin0 lines for pairs (ids[ii], ids[jj]); HETHET/IBS0 as plink2's ``(1.0 / NSNP) * count``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        recip = 1.0 / np.asarray(nsnp, dtype=np.float64)
        ibs0_p = recip * np.asarray(ibs0, dtype=np.float64)
    cols = [format_str(ids, ii), format_str(ids, jj), format_int(nsnp)]
    if counts:
        cols += [format_int(hethet), format_int(ibs0), format_int(het1_hom2), format_int(het2_hom1)]
    else:
        cols += [format_g(recip * np.asarray(hethet, dtype=np.float64)), format_g(ibs0_p)]
    cols += [format_g(kinship), format_str(degrees.LABELS, degrees.classify(kinship, ibs0_p, po_ibs0=po_ibs0))]
    return join_rows(cols)


def create_matrix(path: str | Path, sample_ids: Sequence[str], *, attrs: dict):
    """A Zarr v3 group with ``sample_id`` and an empty float32 ``kinship`` (samples x samples_2)."""
    import zarr

    n = len(sample_ids)
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    ids = g.create_array("sample_id", shape=(n,), dtype=str, dimension_names=["samples"])
    ids[:] = np.array(sample_ids, dtype=str)
    side = min(n, 4096)
    k = g.create_array("kinship", shape=(n, n), dtype="float32", chunks=(side, side), fill_value=np.nan,
                       dimension_names=["samples", "samples_2"])
    g.attrs.update({"description": "KING-robust kinship; rows and columns follow sample_id", **attrs})
    return k
