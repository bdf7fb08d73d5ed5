"""plink2's number formatting: ``dtoa_g``, the reference the compiled .kin0 writer is tested against.

Users diff our .kin0 against ``plink2 --make-king-table``, so every printed number goes
through a port of plink2's ``dtoa_g`` (6 significant digits, banker's rounding with a
1e-8 tolerance, trailing zeros stripped, ``nan``/``-inf`` spelled as plink2 spells them)
and every count through plain decimal digits. Python's ``'%g'`` rounds ties differently,
so it is not used.

This scalar port is the readable reference: :mod:`snpbag.kinship.lines` prints .kin0
lines with a compiled port of the same code (the same double operations in the same
order), and the tests compare the two on every class of value and with plink2's output.

References
----------
plink2 ``dtoa_g`` / ``dtoa_so6`` / ``BankerRoundD`` in ``2.0/include/plink2_string.cc``
(github.com/chrchang/plink-ng).
"""

from __future__ import annotations

import math


# plink2's kBankerRound8: ties (within 5e-9 of .5) go to the even neighbour.
_BANKER8 = (0.499999995, 0.500000005)

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
