"""Carrier-pair lists: the KING counts of rare variants without matrix products.

Coded by its minor allele (X = 0/1/2 copies, ALT and REF swapped where ALT is the major
allele; HETHET, IBS0 and S·S' do not change when both samples swap), a variant adds to
``H·H'`` and ``X·X'`` only for pairs of carriers. A complete variant with k carriers
therefore lists its k(k−1)/2 carrier pairs as flat indices into the pass's count cells,
and the lists are counted (plink2's rare-variant scan); at the end
``S·S' = X·X' − x_i − x_j + n`` over those variants (S = X − 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit


@dataclass
class CarrierPairs:
    """Pair lists of complete variants with few carriers of the minor allele (see :func:`carrier_pairs`)."""

    flat: np.ndarray  # (i - r0) * ncol + j of the pairs j < i of heterozygous carriers: +1 to HETHET and X·X'
    hom_flat: np.ndarray  # pairs with a homozygous carrier: + hom_w (2 or 4) to X·X'
    hom_w: np.ndarray
    het: np.ndarray  # (ncol,) heterozygous calls per sample
    x: np.ndarray  # (ncol,) minor-allele dosage per sample
    n: int  # variants


def carrier_pairs(g: np.ndarray, rows: np.ndarray, flip: np.ndarray, *, r0: int, ncol: int) -> CarrierPairs:
    """Carrier-pair lists of the complete variants ``g[rows, :ncol]``: every pair (i, j), j < i, i >= r0.

    ``flip[t]``: ALT is the major allele of variant ``rows[t]`` (its minor-allele dosage is
    2 − dosage). The chunk is read where it lies (no copy of its rows): one compiled scan
    lists each variant's carriers, then the pair lists are sized and filled from those.
    """
    rows = np.asarray(rows, dtype=np.int64)
    flip = np.asarray(flip, dtype=np.bool_)
    het = np.zeros(ncol, dtype=np.int64)
    x = np.zeros(ncol, dtype=np.int64)
    w, wstride, wrows = _words(g, rows, ncol)
    cols, vals, ptr = _scan(w, wstride, wrows, flip, ncol, het, x)
    n_flat, n_hom = _sizes(cols, vals, ptr, r0)
    flat = np.empty(n_flat, dtype=np.int64)
    hom_flat = np.empty(n_hom, dtype=np.int64)
    hom_w = np.empty(n_hom, dtype=np.int64)
    _fill(cols, vals, ptr, r0, ncol, flat, hom_flat, hom_w)
    return CarrierPairs(flat=flat, hom_flat=hom_flat, hom_w=hom_w, het=het, x=x, n=int(rows.size))


def _words(g: np.ndarray, rows: np.ndarray, ncol: int) -> tuple[np.ndarray, int, np.ndarray]:
    """The rows of ``g`` (v, n) int8 as 8-sample words: (uint64 flat view, words per row, rows to read).

    A decoded store chunk (rows a multiple of 8 bytes apart, aligned) is read where it
    lies; any other array's selected rows are first copied into a padded buffer.
    """
    g = np.asarray(g)
    w8 = -(-ncol // 8) * 8
    if (g.ndim == 2 and g.dtype == np.int8 and g.shape[0] and g.strides[1] == 1 and g.strides[0] % 8 == 0
            and g.ctypes.data % 8 == 0 and w8 <= g.shape[1]):  # no word reaches past the last row
        stride = g.strides[0]
        size = (g.shape[0] - 1) * stride + w8
        flat = np.lib.stride_tricks.as_strided(g, shape=(size,), strides=(1,))
        return flat.view(np.uint64), stride // 8, rows
    copy = np.zeros((rows.size, w8), dtype=np.int8)
    copy[:, :ncol] = g[rows, :ncol]
    return copy.reshape(-1).view(np.uint64), w8 // 8, np.arange(rows.size, dtype=np.int64)


@njit(cache=True, nogil=True)
def _scan(w, wstride, rows, flip, ncol, het, x):  # pragma: no cover - compiled
    """Each variant's minor-allele carriers, in sample order: (cols, vals, ptr) as CSR; het/x per sample.

    ``w``: the chunk's rows as words of 8 samples, row ``r`` from word ``r * wstride``
    (:func:`_words`). A sample carries the minor allele where its dosage differs from
    ``key`` (0, or 2 where flipped): a word equal to 8 keys is skipped in one comparison.
    """
    cap = 8 * rows.size + ncol
    cols = np.empty(cap, dtype=np.int64)
    vals = np.empty(cap, dtype=np.int64)
    ptr = np.empty(rows.size + 1, dtype=np.int64)
    nw = (ncol + 7) // 8
    k = 0
    for t in range(rows.size):
        ptr[t] = k
        o = rows[t] * wstride
        key = 2 if flip[t] else 0
        pattern = np.uint64(0x0202020202020202) if flip[t] else np.uint64(0)
        if k + ncol > cap:  # room for a variant carried by everyone
            cap = 2 * cap + ncol
            c2 = np.empty(cap, dtype=np.int64)
            v2 = np.empty(cap, dtype=np.int64)
            c2[:k] = cols[:k]
            v2[:k] = vals[:k]
            cols, vals = c2, v2
        for i in range(nw):
            word = w[o + i] ^ pattern
            if word == 0:
                continue
            for b in range(min(8, ncol - 8 * i)):
                if (word >> np.uint64(8 * b)) & np.uint64(0xFF):
                    j = 8 * i + b
                    d = np.int64((w[o + i] >> np.uint64(8 * b)) & np.uint64(0xFF))
                    v = 2 - d if key else d
                    cols[k] = j
                    vals[k] = v
                    x[j] += v
                    if v == 1:
                        het[j] += 1
                    k += 1
    ptr[rows.size] = k
    return cols, vals, ptr


@njit(cache=True, nogil=True)
def _sizes(cols, vals, ptr, r0):  # pragma: no cover - compiled
    """(pairs of two heterozygous carriers, other carrier pairs) over rows i >= r0."""
    n_flat = 0
    n_hom = 0
    for t in range(ptr.size - 1):
        hets_below = 0  # heterozygous carriers before p
        for p in range(ptr[t + 1] - ptr[t]):
            e = ptr[t] + p
            if cols[e] >= r0:
                both = hets_below if vals[e] == 1 else 0
                n_flat += both
                n_hom += p - both
            if vals[e] == 1:
                hets_below += 1
    return n_flat, n_hom


@njit(cache=True, nogil=True)
def _fill(cols, vals, ptr, r0, ncol, flat, hom_flat, hom_w):  # pragma: no cover - compiled
    """The lists :func:`_sizes` counted: flat cell ``(i - r0) * ncol + j`` of each pair, weight X_i·X_j > 1 apart."""
    a = 0
    b = 0
    for t in range(ptr.size - 1):
        for e in range(ptr[t], ptr[t + 1]):
            if cols[e] < r0:
                continue
            base = (cols[e] - r0) * ncol
            vp = vals[e]
            for f in range(ptr[t], e):
                w = vp * vals[f]
                if w == 1:
                    flat[a] = base + cols[f]
                    a += 1
                else:
                    hom_flat[b] = base + cols[f]
                    hom_w[b] = w
                    b += 1
