"""Carrier-pair lists: the KING counts of rare variants without matrix products.

Coded by its minor allele (X = 0/1/2 copies, ALT and REF swapped where ALT is the major
allele; HETHET, IBS0 and S·S' do not change when both samples swap), a variant adds to
``H·H'`` and ``X·X'`` only for pairs of carriers. A complete variant with k carriers
therefore lists its k(k−1)/2 carrier pairs as flat indices into the pass's count cells,
and the lists are counted with ``np.bincount`` (plink2's rare-variant scan); at the end
``S·S' = X·X' − x_i − x_j + n`` over those variants (S = X − 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CarrierPairs:
    """Pair lists of complete variants with few carriers of the minor allele (see :func:`carrier_pairs`)."""

    flat: np.ndarray  # (i - r0) * ncol + j of the pairs j < i of heterozygous carriers: +1 to HETHET and X·X'
    hom_flat: np.ndarray  # pairs with a homozygous carrier: + hom_w (2 or 4) to X·X'
    hom_w: np.ndarray
    het: np.ndarray  # (ncol,) heterozygous calls per sample
    x: np.ndarray  # (ncol,) minor-allele dosage per sample
    n: int  # variants


_TRIL: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _tril(k: int) -> tuple[np.ndarray, np.ndarray]:
    if k not in _TRIL:
        _TRIL[k] = np.tril_indices(k, -1)
    return _TRIL[k]



def carrier_pairs(x: np.ndarray, flip: np.ndarray, *, r0: int, ncol: int) -> CarrierPairs:
    """Carrier-pair lists of complete variants ``x`` (v, ncol): every pair (i, j), j < i, i >= r0."""
    x = np.ascontiguousarray(x, dtype=np.int8)  # a fresh copy (fancy-indexed): modified in place
    if flip.any():
        x[flip] = 2 - x[flip]  # minor-allele dosage
    w8 = -(-ncol // 8) * 8
    if w8 != ncol:
        x = np.pad(x, ((0, 0), (0, w8 - ncol)))
    words = x.view(np.uint64).reshape(-1)  # find carriers 8 samples at a time
    nzw = np.flatnonzero(words)
    octets = words[nzw].view(np.uint8).reshape(-1, 8)
    wi, bj = np.nonzero(octets)
    val = octets[wi, bj]
    row, col = np.divmod(nzw[wi] * 8 + bj, w8)  # sorted by variant, then sample
    het = np.bincount(col[val == 1], minlength=ncol)
    xsum = np.bincount(col, minlength=ncol) + np.bincount(col[val == 2], minlength=ncol)
    cnt = np.bincount(row, minlength=x.shape[0])
    ptr = np.zeros(cnt.size + 1, dtype=np.int64)
    np.cumsum(cnt, out=ptr[1:])
    flat, hom_flat, hom_w = [], [], []
    for k in np.unique(cnt):
        if k < 2:
            continue
        e = ptr[np.flatnonzero(cnt == k)][:, None] + np.arange(k)
        c, v = col[e], val[e]  # (variants, k) carriers in increasing sample order
        p, q = _tril(int(k))  # q < p: pairs (c[p], c[q]), c[q] < c[p]
        f = ((c - r0) * ncol)[:, p] + c[:, q]
        ok = (c >= r0)[:, p] if r0 else np.ones(f.shape, dtype=bool)
        hr = (v == 2).any(axis=1)
        if hr.any():  # variants with a homozygous carrier: X_i·X_j = 2 or 4 for its pairs
            vh = v[hr].astype(np.int64)
            w = vh[:, p] * vh[:, q]
            fh, okh = f[hr], ok[hr]
            flat.append(fh[(w == 1) & okh])
            hom_flat.append(fh[(w > 1) & okh])
            hom_w.append(w[(w > 1) & okh])
            f, ok = f[~hr], ok[~hr]
        flat.append(f[ok])
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64)  # noqa: E731
    return CarrierPairs(flat=cat(flat), hom_flat=cat(hom_flat), hom_w=cat(hom_w), het=het, x=xsum, n=x.shape[0])

