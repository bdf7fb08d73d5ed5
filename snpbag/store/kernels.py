"""Compiled (numba) loops over genotype chunks, imported only when a whole-cohort scan runs.

:func:`add_alleles` turns one decoded variant chunk of ``call_genotype`` (stored as inner
chunks of 16 samples) into a variant-major dosage matrix in one pass: the sum of the two
alleles, as :func:`~snpbag.io.dosage.alt_dosage` gives for complete diploid calls.
numpy needs a strided ``np.add`` into a transposed view (~25 ms per 8,192 × 3,000
chunk) plus a ``min`` pass for the same. :func:`row_sums` gives a dosage chunk's
per-variant ALT counts and its smallest value (``snpbag king``'s allele frequencies and
missing-call check) in one pass instead of numpy's two. :func:`panel_counts` gives a reference
panel's block of calls its per-variant allele and unphased-heterozygote counts in one pass
(``snpbag impute --ref`` reading a panel VCF into memory) instead of numpy's five.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Variants per cache block of :func:`add_alleles` (rows of the output kept in L2).
_ROWS = 64


@njit(cache=True, nogil=True)
def add_alleles(buf, out):  # pragma: no cover - compiled
    """out[v, t * s + k] = buf[t, v, k, 0] + buf[t, v, k, 1]; False (out unfinished) at a negative allele.

    ``buf``: (inner chunks, variants, samples per inner chunk, 2) int8; ``out``:
    (variants, inner chunks × samples per inner chunk) int8. A negative allele (missing,
    haploid fill) stops the loop: the caller takes :func:`~snpbag.io.dosage.alt_dosage`.
    """
    nt, nv, ns, _ = buf.shape
    pairs = buf.reshape(nt, nv, ns * 2).view(np.uint16)  # both alleles of a call in one word
    for v0 in range(0, nv, _ROWS):
        v1 = min(v0 + _ROWS, nv)
        sign = np.uint16(0)
        for t in range(nt):
            c0 = t * ns
            for v in range(v0, v1):
                for k in range(ns):
                    x = pairs[t, v, k]
                    sign |= x
                    out[v, c0 + k] = np.int8((x & np.uint16(0xFF)) + (x >> np.uint16(8)))
        if sign & np.uint16(0x8080):
            return False
    return True


@njit(cache=True, nogil=True)
def row_sums(g):  # pragma: no cover - compiled
    """(per-row sums as int64, smallest value) of a non-empty 2-D int8 array, in one pass."""
    nv, n = g.shape
    sums = np.zeros(nv, dtype=np.int64)
    low = np.int8(127)
    for v in range(nv):
        s = 0
        for k in range(n):
            x = g[v, k]
            s += x
            low = min(low, x)
        sums[v] = s
    return sums, low


@njit(cache=True, nogil=True)
def panel_counts(g, phased, alt, called, unphased):  # pragma: no cover - compiled
    """One pass over a (v, n, 2) block of a panel's calls: a negative allele made −1 (a haploid
    call's fill reads as missing) in place, and per variant the ALT alleles, the called ones
    (:func:`~snpbag.store.convert.allele_counts`) and the heterozygous calls not marked
    phased (``phased``: (v, n) bool), where numpy takes five passes."""
    nv, ns, _ = g.shape
    for v in range(nv):
        a = 0
        c = 0
        u = 0
        row = g[v]
        ph = phased[v]
        for i in range(ns):
            x = max(row[i, 0], np.int8(-1))
            y = max(row[i, 1], np.int8(-1))
            row[i, 0] = x
            row[i, 1] = y
            a += (x == 1) + (y == 1)
            c += (x >= 0) + (y >= 0)
            u += (x != y) & (not ph[i])
        alt[v] = a
        called[v] = c
        unphased[v] = u
