"""plink2's number formatting: ``dtoa_g`` and vectorised byte fields built from digit tables.

Users diff our .kin0 against ``plink2 --make-king-table``, so every printed number goes
through a port of plink2's ``dtoa_g`` (6 significant digits, banker's rounding with a
1e-8 tolerance, trailing zeros stripped, ``nan``/``-inf`` spelled as plink2 spells them)
and every count through plain decimal digits. Python's ``'%g'`` rounds ties differently,
so it is not used.

Each field of a block of lines is built as an (N, width) array of its bytes, padded with
NULs, from digit tables and shifts on 64-bit words (:func:`g_field`, :func:`int_field`,
:func:`str_field`); the fields are laid side by side and the NULs dropped
(:func:`join_fields`): ~5 million .kin0 lines per second on one core of a 2-core EPYC.
The scalar :func:`dtoa_g` is the reference the vectorised paths are tested against;
:func:`format_g` (a slower slot-and-mask layout) handles the rare values (``nan``,
infinities, |x| >= 1, tiny and huge exponents).

References
----------
plink2 ``dtoa_g`` / ``dtoa_so6`` / ``BankerRoundD`` in ``2.0/include/plink2_string.cc``
(github.com/chrchang/plink-ng).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

# plink2's kBankerRound8: ties (within 5e-9 of .5) go to the even neighbour.
_BANKER8 = (0.499999995, 0.500000005)
_BANKER8_ARR = np.array(_BANKER8)

# Upper bounds of the magnitudes printed with 1..6 integer digits (dtoa_so6).
_SO6_BOUNDS = (9.9999949999999, 99.999949999999, 999.99949999999, 9999.9949999999, 99999.949999999)
_SMALL = 9.9999949999999e-5   # below: exponential notation
_LARGE = 999999.49999999      # at or above: exponential notation
_ONE = 0.99999949999999       # at or above: dtoa_so6, below: "0.xxxxxx"


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
# unused slots simply not kept (to_strings reads them back).


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


def to_strings(column: tuple[np.ndarray, np.ndarray]) -> list[str]:
    """The strings of a character column (for tests and debugging)."""
    chars, keep = column
    return [bytes(c[k]).decode() for c, k in zip(chars, keep)]


# --- byte fields: the fast path ----------------------------------------------------------
# The .kin0 writer builds every field as an (N, width) uint8 array of its characters and
# separator, padded with NUL bytes, mostly from digit tables and shifts on 64-bit words;
# the fields are laid side by side and one ``bytes.translate`` drops the NULs. Sample ids
# cannot contain NUL (checked).

_U8 = np.dtype("<u8")


def _word(b: bytes) -> int:
    return int.from_bytes(b.ljust(8, b"\0"), "little")


_LOW = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=object).astype(np.uint64)  # low k bytes
_HIGH = ~_LOW[::-1].copy()  # high k bytes: _HIGH[k] keeps bytes 8-k .. 7
_POW10 = 10 ** np.arange(1, 16, dtype=np.int64)


@functools.lru_cache(maxsize=None)
def _digit_words(width: int) -> np.ndarray:
    """Word of the zero-padded ``width``-digit string of 0 .. 10^width - 1 (first digit in byte 0)."""
    return np.array([_word(f"{i:0{width}d}".encode()) for i in range(10 ** width)], dtype=_U8)


@functools.lru_cache(maxsize=None)
def _tz_table(width: int) -> np.ndarray:
    """Trailing zero digits of 0 .. 10^width - 1 written with ``width`` digits (``width`` for 0)."""
    return np.array([width] + [len(s) - len(s.rstrip("0")) for s in (f"{i:0{width}d}" for i in range(1, 10 ** width))],
                    dtype=np.int64)


def _bytes16(w0: np.ndarray, w1: np.ndarray, length: np.ndarray) -> np.ndarray:
    """(N, width) uint8 of two words per row, width = the longest row."""
    out = np.empty((w0.size, 2), dtype=_U8)
    out[:, 0], out[:, 1] = w0, w1
    return out.view(np.uint8)[:, : int(length.max()) if length.size else 0]


def str_field(table: Sequence[str], sep: str = "\t") -> np.ndarray:
    """(len(table), width) uint8: each string then ``sep``, NUL padded; index rows with np.take."""
    enc = [t.encode() + sep.encode() for t in table]
    if any(b"\0" in t for t in enc):
        raise ValueError("a sample id or label contains a NUL byte")
    out = np.zeros((len(enc), max((len(t) for t in enc), default=1)), dtype=np.uint8)
    for k, t in enumerate(enc):
        out[k, : len(t)] = np.frombuffer(t, dtype=np.uint8)
    return out


def int_field(values: np.ndarray, sep: str = "\t") -> np.ndarray:
    """Decimal digits of non-negative integers below 10^15 then ``sep``, right-aligned, NUL padded."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size and (v.min() < 0 or v.max() >= 10**15):
        raise ValueError("int_field takes integers in 0 .. 10^15 - 1")
    d3, d4 = _digit_words(3), _digit_words(4)
    hi, lo = np.divmod(v, 10**7)
    nd = np.searchsorted(_POW10, v, side="right") + 1  # digits
    w0 = (d4[hi // 10000] | (d4[hi % 10000] << np.uint64(32))) & _HIGH[np.maximum(nd - 7, 0)]
    w1 = (d3[lo // 10000] | (d4[lo % 10000] << np.uint64(24))) & _HIGH[np.minimum(nd, 7) + 1]
    w1 |= np.uint64(ord(sep) << 56)
    out = np.empty((v.size, 2), dtype=_U8)
    out[:, 0], out[:, 1] = w0, w1
    return out.view(np.uint8)[:, 15 - int(nd.max()) if v.size else 15:]


# "0.xxxxxx": the sign and "0." and up to three zeros by (neg, z), then the digits
_DEC_PREFIX = np.array([_word(b"-" * neg + b"0." + b"0" * z) for neg in (0, 1) for z in range(4)], dtype=_U8)


def g_field(values: np.ndarray, sep: str = "\t") -> np.ndarray:
    """:func:`dtoa_g` of every value then ``sep``, left-aligned, NUL padded (at most 14 bytes).

    Values printed as ``0.xxxxxx`` (the bulk of kinships and proportions), ``d.ddddde-XX``
    (|x| down to 1e-15) and zeros are built from digit tables; the rest (``nan``,
    ``-inf``, ``|x| >= 1``, tinier exponents) go through :func:`format_g`.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    n = x.size
    neg = x < 0
    a = np.abs(x)
    sepw = np.uint64(ord(sep))
    with np.errstate(invalid="ignore"):
        dec = (a >= _SMALL) & (a < _ONE)
    d = np.where(dec, a, 0.5)
    z = np.zeros(n, dtype=np.int64)
    m = d < 9.9999949999999e-3
    d[m] *= 100
    z[m] += 2
    m = d < 9.9999949999999e-2
    d[m] *= 10
    z[m] += 1
    u = _banker_round_arr(d * 1000000)  # 100000 .. 999999
    hi, lo = np.divmod(u, 10000)
    nd = 6 - _tz_table(4)[lo]  # digits kept
    nd -= (lo == 0) & (hi % 10 == 0)
    digits = (_digit_words(2)[hi] | (_digit_words(4)[lo] << np.uint64(16))) & _LOW[nd]
    digits |= sepw << (np.uint64(8) * nd.astype(np.uint64))
    lp = (neg + 2 + z).astype(np.uint64)  # prefix bytes
    w0 = _DEC_PREFIX[neg * 4 + z] | (digits << (np.uint64(8) * lp))
    w1 = digits >> (np.uint64(64) - np.uint64(8) * lp)
    length = lp.astype(np.int64) + nd + 1
    if not dec.all():
        zero = x == 0
        w0[zero], w1[zero], length[zero] = ord("0") | (ord(sep) << 8), 0, 2
        with np.errstate(invalid="ignore"):
            small = (a < _SMALL) & (a >= 9.9999949999999e-16)
        if small.any():
            i = np.flatnonzero(small)
            w0[i], w1[i], length[i] = _small_exp(x[i], sep)
        idx = np.flatnonzero(~dec & ~zero & ~small)
        if idx.size:
            w0[idx], w1[idx], length[idx] = _pack_left(*format_g(x[idx]), sep)
    return _bytes16(w0, w1, length)


def _small_exp(x: np.ndarray, sep: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dtoa_g of 1e-15 <= |x| < 1e-4: ``[-]d[.ddddd]e-XX`` then ``sep``, as two words and a length."""
    neg = x < 0
    d = np.abs(x)
    xp = np.zeros(x.size, dtype=np.int64)
    for bit, thr, mul in ((8, 9.9999949999999e-8, 100000000.0), (4, 9.9999949999999e-4, 10000.0),
                          (2, 9.9999949999999e-2, 100.0), (1, 9.9999949999999e-1, 10.0)):
        m = d < thr
        d[m] *= mul
        xp[m] |= bit
    r = _banker_round_arr(d * 100000)
    q, rem = np.divmod(r, 100000)
    tz = np.where(rem == 0, 5, 0)
    for k in range(1, 5):
        tz = np.where((rem != 0) & (rem % 10**k == 0), k, tz)
    nf = 5 - tz  # fraction digits
    frac = (_digit_words(1)[rem // 10000] | (_digit_words(4)[rem % 10000] << np.uint64(8))) & _LOW[nf]
    frac = np.where(nf > 0, np.uint64(ord(".")) | (frac << np.uint64(8)), np.uint64(0))
    head = np.where(neg, np.uint64(ord("-")) | (_digit_words(1)[q] << np.uint64(8)), _digit_words(1)[q])
    lh = neg + 1
    tail = np.uint64(_word(b"e-")) | (_digit_words(2)[xp] << np.uint64(16)) | np.uint64(ord(sep) << 32)
    w = [np.zeros(x.size, dtype=_U8), np.zeros(x.size, dtype=_U8)]
    length = np.zeros(x.size, dtype=np.int64)
    for piece, plen in ((head, lh), (frac, np.where(nf > 0, nf + 1, 0)), (tail, np.full(x.size, 5))):
        _append(w, length, piece, plen)
    return w[0], w[1], length


def _append(w: list[np.ndarray], length: np.ndarray, piece: np.ndarray, plen: np.ndarray) -> None:
    """Append ``plen`` bytes of ``piece`` to each row of the two-word strings ``w``."""
    sh = (np.uint64(8) * (length % 8).astype(np.uint64))
    first = length < 8
    lo = piece << sh
    carry = np.where(sh > 0, piece >> (np.uint64(64) - np.where(sh > 0, sh, np.uint64(8))), np.uint64(0))
    w[0] |= np.where(first, lo, np.uint64(0))
    w[1] |= np.where(first, carry, lo)
    length += plen


def _pack_left(chars: np.ndarray, keep: np.ndarray, sep: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (chars, keep) column of at most 13 characters as left-aligned words with ``sep``, and lengths."""
    order = np.argsort(~keep, axis=1, kind="stable")
    packed = np.where(np.take_along_axis(keep, order, axis=1), np.take_along_axis(chars, order, axis=1), 0)
    length = keep.sum(axis=1)
    buf = np.zeros((chars.shape[0], 16), dtype=np.uint8)
    buf[:, : min(packed.shape[1], 15)] = packed[:, :15]
    buf[np.arange(buf.shape[0]), length] = ord(sep)
    words = buf.view(_U8)
    return words[:, 0].copy(), words[:, 1].copy(), length + 1


def join_fields(fields: Sequence[np.ndarray]) -> bytes:
    """Rows of the fields side by side (each (N, width) uint8 or (1, width) for all rows), NULs dropped."""
    n = max(f.shape[0] for f in fields)
    buf = np.empty((n, sum(f.shape[1] for f in fields)), dtype=np.uint8)
    a = 0
    for f in fields:
        buf[:, a:a + f.shape[1]] = f
        a += f.shape[1]
    return buf.tobytes().translate(None, b"\0")
