"""Pairs of samples that share a long identical-by-state haplotype stretch: the cohort-scale prefilter.

Calling every pair's shared segments costs sites × pairs, and a cohort of n samples has n(n−1)/2
pairs. hap-IBD (Zhou, Browning & Browning 2020) never looks at pairs one by one: it finds its
*seeds* — maximal stretches on which two haplotypes carry the same allele at every site, at least
``min_seed`` cM and ``min_markers`` sites long — with the positional Burrows–Wheeler transform
(Durbin 2014), whose one pass per chromosome over all 2n haplotypes keeps them sorted by their
reversed prefixes, so that haplotypes matching back to a site sit next to each other. A match
ends at the site where two neighbours of one block (consecutive haplotypes whose matches all
started at least ``min_seed`` cM and ``min_markers`` sites back) carry different alleles; the
pairs reported are exactly the pairs of samples with a seed (Durbin's Algorithm 3 with lengths in
cM). The work is sites × haplotypes plus the number of seeds, never pairs × sites.

Every segment :func:`snpbag.kinship.hapibd.hap_ibd_segments` reports holds a seed of its own
``min_seed`` (a run free of discordant alleles), so with ``min_cm`` ≤ that detector's seed and the
same ``min_markers`` a pair this prefilter drops has no hap segment at all. Two things can
still lose a pair: a longer ``min_cm`` (a segment whose longest discordance-free run is shorter),
and missing alleles: a site where any haplotype's allele is missing is left out of the scan
(the detector lets a missing allele match), so a seed that ends at such a site can come out
shorter here.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from snpbag.errors import InputError
from snpbag.kinship.segments import Genome, chromosome_bounds


@njit(cache=True, nogil=True)
def _report(a, h, k, i0, i1, n, ends, found):
    """Add the sample pairs of block a[i0:i1] whose match ends before site k (all pairs when ``ends``)."""
    for p in range(i0, i1 - 1):
        x = a[p]
        for q in range(p + 1, i1):
            y = a[q]
            if x // 2 == y // 2 or (not ends and h[k, x] == h[k, y]):
                continue
            i, j = x // 2, y // 2
            found.add(max(i, j) * n + min(i, j))


@njit(cache=True, nogil=True)
def _seed_keys(h, bounds, cm, min_cm, min_markers):  # pragma: no cover - compiled
    """Keys max(i, j)·n + min(i, j) of the sample pairs with a seed; h (sites, 2n) int8 alleles."""
    n_hap = h.shape[1]
    n = n_hap // 2
    found = {np.int64(0)}
    found.clear()
    a = np.arange(n_hap)
    d = np.zeros(n_hap, np.int64)
    a0, a1 = np.empty(n_hap, np.int64), np.empty(n_hap, np.int64)
    d0, d1 = np.empty(n_hap, np.int64), np.empty(n_hap, np.int64)
    for c in range(bounds.shape[0] - 1):
        lo, hi = bounds[c], bounds[c + 1]
        for i in range(n_hap):
            a[i] = i
            d[i] = lo
        for k in range(lo, hi + 1):
            if k > lo:  # matches over d[i]..k-1: blocks of long ones, reported where they end
                last = k - 1
                i0 = -1
                for i in range(1, n_hap + 1):
                    long = i < n_hap and d[i] <= last and cm[last] - cm[d[i]] >= min_cm \
                        and last - d[i] + 1 >= min_markers
                    if long:
                        if i0 < 0:
                            i0 = i - 1
                    elif i0 >= 0:
                        _report(a, h, k, i0, i, n, k == hi, found)
                        i0 = -1
            if k == hi:
                break
            u = v = 0  # Durbin's Algorithm 2: sort by the reversed prefix through site k
            p = q = k + 1
            for i in range(n_hap):
                if d[i] > p:
                    p = d[i]
                if d[i] > q:
                    q = d[i]
                if h[k, a[i]] == 0:
                    a0[u], d0[u] = a[i], p
                    u += 1
                    p = lo
                else:
                    a1[v], d1[v] = a[i], q
                    v += 1
                    q = lo
            a[:u], d[:u] = a0[:u], d0[:u]
            a[u:], d[u:] = a1[:v], d1[:v]
    out = np.empty(len(found), np.int64)
    w = 0
    for key in found:
        out[w] = key
        w += 1
    return out


def seed_pairs(genome: Genome, *, min_cm: float, min_markers: int = 1) -> np.ndarray:
    """Sample-index pairs (i, j), i > j, sorted, that share an IBS seed of at least ``min_cm`` cM (module text).

    Parameters
    ----------
    genome : sites with phased alleles (:func:`snpbag.kinship.segments.read_genome` with ``haplotypes=True``).
    min_cm : shortest seed (cM): the genetic distance from its first to its last site.
    min_markers : fewest sites in a seed.

    Returns
    -------
    int64 (n_pairs, 2), in plink2's .kin0 order (by the later sample, then the earlier).

    Raises
    ------
    InputError : no haplotypes (unphased input) or bad parameters.
    """
    if genome.haplotypes is None:
        raise InputError("the seed prefilter needs phased haplotypes: give a phased VCF/BCF (`snpbag phase`), "
                         "or choose --prefilter king or none")
    if not min_cm > 0 or min_markers < 1:
        raise InputError(f"--seed-cm {min_cm}, min_markers {min_markers}: need a seed length > 0 cM and >= 1 site")
    v, n = genome.haplotypes.shape[:2]
    h = genome.haplotypes.reshape(v, 2 * n)
    keep = (h >= 0).all(axis=1)
    chrom = genome.chrom[keep]
    h = np.ascontiguousarray(h[keep] if not keep.all() else h, dtype=np.int8)
    cm = np.ascontiguousarray(genome.cm[keep], dtype=np.float64)
    bounds = chromosome_bounds(chrom)
    keys = np.sort(_seed_keys(h, bounds, cm, float(min_cm), int(min_markers)))
    return np.stack([keys // n, keys % n], axis=1).astype(np.int64).reshape(-1, 2)
