"""The panel's haplotypes grouped by their alleles between two typed sites, as Beagle reads
the untyped sites of an interval.

Between two consecutive typed (array) sites a panel of thousands of haplotypes holds a few
dozen distinct allele sequences over the untyped sites there (26 on average for the 10 Mb
benchmark's 5,204 haplotypes at a 20 % array, 114 at 5 %): each haplotype falls in one
class per interval. A copying state keeps one haplotype over the interval (a composite
slot switches only at visible sites), so a copy's ALT probability at an untyped site is the
posterior mass of its kept states summed per class, then over the classes carrying ALT
there — 1.4 classes per site on average at 20 %, 3.6 at 5 %, against 89 and 118 minor-allele
carriers (:class:`~snpbag.retrieval.haploid.Carriers`). Beagle 5 does the same with the
distinct reference segments between target markers.

The classes depend on the typed sites only, so a batch's are built once and shared by its
targets and their phasings (:func:`hap_classes`); a target missing a typed site reads that
site, and only that one, from the carriers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit


class HapClasses(NamedTuple):
    """Classes of a panel's columns per interval between the typed sites ``typed`` (m,)
    ascending: interval i holds the sites after typed[i − 1] and before typed[i] (i = 0:
    before the first, i = m: after the last); ``cls[i, j]`` is column j's class there, of
    ``n_cls[i]``. An untyped site s lists the classes that carry its short allele,
    ``indices[indptr[s]:indptr[s + 1]]`` (ALT where ``alt_short[s]``, else REF: whichever
    fewer classes carry; ties ALT); a typed site lists none. Empty (m = 0 and no interval):
    no classes, every untyped site is read from the carriers (:func:`no_classes`)."""

    typed: np.ndarray  # (m,) int64
    cls: np.ndarray  # (m + 1, H) int16 (int32 past 32,767 columns)
    n_cls: np.ndarray  # (m + 1,) int64
    indptr: np.ndarray  # (L + 1,) int64
    indices: np.ndarray  # (nnz,) cls.dtype
    alt_short: np.ndarray  # (L,) bool


@njit(cache=True, nogil=True)
def interval_sites(sites, i, L):  # pragma: no cover - compiled
    """The sites [a, b) of interval i between the ascending ``sites`` (typed or visible) of
    L: after sites[i − 1] and before sites[i] (i = 0: from the first site, i = m: to the
    last), as :class:`HapClasses` and the interpolation walks number them."""
    return (sites[i - 1] + 1 if i > 0 else 0), (sites[i] if i < sites.size else L)


@njit(cache=True, nogil=True)
def _representatives(cls_row, n, rep):  # pragma: no cover - compiled
    """rep[c] = the first column in class c of ``cls_row``, for c < n."""
    for c in range(n):
        rep[c] = -1
    for j in range(cls_row.size):
        if rep[cls_row[j]] < 0:
            rep[cls_row[j]] = j


@njit(cache=True, nogil=True)
def _classify(panel, typed, cls, n_cls):  # pragma: no cover - compiled
    """cls, n_cls of :class:`HapClasses`, refined site by site: a column's class at a site
    is (its class before it, its allele), numbered in order of first appearance. Returns
    the count of short-allele classes per site."""
    L, H = panel.shape
    m = typed.size
    ids = np.zeros(H, dtype=np.int64)
    table = np.empty(2 * H + 2, dtype=np.int64)
    rep = np.empty(H, dtype=np.int64)
    counts = np.zeros(L, dtype=np.int64)
    alt_short = np.zeros(L, dtype=np.bool_)
    for i in range(m + 1):
        a, b = interval_sites(typed, i, L)
        if a >= b:
            continue
        for j in range(H):
            ids[j] = 0
        n = 1
        for s in range(a, b):
            for v in range(2 * n):
                table[v] = -1
            nn = 0
            for j in range(H):
                key = 2 * ids[j] + panel[s, j]
                v = table[key]
                if v < 0:
                    v = nn
                    table[key] = nn
                    nn += 1
                ids[j] = v
            n = nn
        n_cls[i] = n
        for j in range(H):
            cls[i, j] = ids[j]
        _representatives(cls[i], n, rep)
        for s in range(a, b):
            alt = 0
            for c in range(n):
                alt += panel[s, rep[c]]
            alt_short[s] = 2 * alt <= n
            counts[s] = alt if alt_short[s] else n - alt
    return counts, alt_short


@njit(cache=True, nogil=True)
def _short_classes(panel, typed, cls, n_cls, alt_short, indptr, indices):  # pragma: no cover - compiled
    """indices of :class:`HapClasses` from the classes and each site's short allele."""
    L, H = panel.shape
    m = typed.size
    rep = np.empty(H, dtype=np.int64)
    for i in range(m + 1):
        a, b = interval_sites(typed, i, L)
        if a >= b:
            continue
        n = n_cls[i]
        _representatives(cls[i], n, rep)
        for s in range(a, b):
            want = 1 if alt_short[s] else 0
            k = indptr[s]
            for c in range(n):
                if panel[s, rep[c]] == want:
                    indices[k] = c
                    k += 1


def hap_classes(panel: np.ndarray, typed: np.ndarray) -> HapClasses:
    """:class:`HapClasses` of ``panel`` (L, H) int8 0/1 site-major alleles between the
    ascending typed sites ``typed``: one pass over the panel (Beagle's reference segments)."""
    L, H = panel.shape
    typed = np.ascontiguousarray(typed, dtype=np.int64)
    dtype = np.int16 if H <= np.iinfo(np.int16).max else np.int32
    cls = np.zeros((typed.size + 1, H), dtype=dtype)
    n_cls = np.zeros(typed.size + 1, dtype=np.int64)
    counts, alt_short = _classify(panel, typed, cls, n_cls)
    indptr = np.zeros(L + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.empty(indptr[-1], dtype=dtype)
    _short_classes(panel, typed, cls, n_cls, alt_short, indptr, indices)
    return HapClasses(typed, cls, n_cls, indptr, indices, alt_short)


def no_classes(L: int, H: int) -> HapClasses:
    """:class:`HapClasses` with no typed sites and no interval: every untyped site is read
    from the carriers."""
    return HapClasses(np.zeros(0, np.int64), np.zeros((0, H), np.int16), np.zeros(0, np.int64),
                      np.zeros(L + 1, np.int64), np.zeros(0, np.int16), np.zeros(L, np.bool_))


def covers(classes: HapClasses, vis: np.ndarray, L: int) -> bool:
    """Whether a target visible at ``vis`` can read its untyped sites through ``classes``:
    its visible sites are typed sites of theirs (its intervals are then unions of theirs)."""
    if classes.typed.size == 0:
        return False
    typed = np.zeros(L, dtype=np.bool_)
    typed[classes.typed] = True
    return bool(typed[vis].all())


@njit(cache=True, nogil=True)
def class_masses(cls_row, n, cols, at_l, at_r, nk, mass_l, mass_r):  # pragma: no cover - compiled
    """mass_l[c, g], mass_r[c, g] = copy g's kept states' posteriors at the left and right
    flank (cols, at_l, at_r, nk of :func:`~snpbag.retrieval.haploid.keep_states`) summed over
    the states whose column is in class c (``cls_row``: the interval's classes, ``n`` of
    them), in kept order per copy."""
    G = nk.size
    for c in range(n):
        for g in range(G):
            mass_l[c, g] = 0.0
            mass_r[c, g] = 0.0
    for g in range(G):
        for j in range(nk[g]):
            c = cls_row[cols[g, j]]
            mass_l[c, g] += at_l[g, j]
            mass_r[c, g] += at_r[g, j]


@njit(cache=True, nogil=True)
def class_buffers(n_cls, G):  # pragma: no cover - compiled
    """The (mass_l, mass_r) scratch of :func:`class_masses` for intervals of up to max(n_cls)
    classes and G copies."""
    n = 1
    for i in range(n_cls.size):
        n = max(n, n_cls[i])
    return np.zeros((n, G)), np.zeros((n, G))


@njit(cache=True, nogil=True)
def carried(typed, vis):  # pragma: no cover - compiled
    """Whether a target visible at ``vis`` reads any hidden site from the carriers: where
    there are no classes, or it misses a typed site (its visible sites are typed ones,
    :func:`covers`, so it misses one where it has fewer)."""
    return typed.size == 0 or vis.size < typed.size
