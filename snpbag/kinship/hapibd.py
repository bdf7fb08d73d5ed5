"""Shared segments of pairs from phased haplotypes, in the spirit of hap-IBD (Zhou, Browning & Browning 2020).

Two people who share a haplotype identical by descent carry the same allele on one haplotype
each all along the segment. An unrelated pair's haplotypes differ at a common site with
probability 2pq, so identical-by-state (IBS) stretches between haplotypes end far sooner than
the runs free of opposite homozygotes of :mod:`snpbag.kinship.segments` (probability 2p²q²):
fewer false segments at short lengths and ends within a site or two of the true ones. A
genotype or phase error inside a shared stretch breaks it; hap-IBD's seed-and-extend bridges
such isolated mismatches without bridging the frequent ones of unrelated haplotypes.

For each of a pair's 4 haplotype pairs and each chromosome (sites below ``min_maf`` dropped):

- a *run* is a maximal stretch of sites with no discordant allele (a missing allele matches);
- a run is *extendable* when it spans at least ``min_extend`` cM, a *seed* when it spans at least
  ``min_seed`` cM and ``min_markers`` sites;
- consecutive extendable runs separated by exactly one discordant site are *linked*; a maximal
  chain of linked runs that holds a seed is a stretch, from its first run's first site to its
  last run's last site.

The pair's segments are the union of its 4 haplotype pairs' stretches (overlapping or adjacent
ones merged, so IBD2 counts once as the IBS0 detector counts it, and a phase switch inside a
segment joins its two halves), kept when at least ``min_cm`` long (ERSA's t).

Statistical phasing without a panel switches phase every few cM; between two switches a piece of
a shared segment shorter than a seed is lost, and the segment falls apart into pieces shorter than
t. With ``max_gap`` > 0, two consecutive segments of the union separated by at most ``max_gap`` cM
with at most ``max_discord`` opposite homozygotes (IBS0 sites, which no phase error creates and a
shared haplotype never shows but for a genotype error) between them are joined, as Browning's
merge-ibd-segments joins hap-IBD's output (there: 0.6 cM, one discordant homozygote).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from snpbag.errors import InputError
from snpbag.kinship.segments import Genome, Segments, check_pairs, chromosome_bounds, gather

#: hap-IBD's defaults (cM): seed, extension and output lengths.
MIN_SEED = 2.0
MIN_EXTEND = 1.0


@njit(cache=True, nogil=True)
def _stretches(h, x, y, lo, hi, cm, min_seed, min_extend, min_markers, first_out, last_out, n):
    """Append haplotypes x and y's seeded chains of linked extendable runs on sites lo..hi-1 to the
    outputs from row n; return the new row count."""
    rf = -1  # current run's first site (−1: empty)
    c_first, c_last, c_seed = -1, -1, False  # open chain
    for v in range(lo, hi + 1):
        if v < hi:
            a, b = h[x, v], h[y, v]
            if a < 0 or b < 0 or a == b:
                if rf < 0:
                    rf = v
                continue
        # a discordant site (or the chromosome's end) closes the run rf..v-1
        extendable = rf >= 0 and cm[v - 1] - cm[rf] >= min_extend
        if extendable and c_first >= 0 and c_last == rf - 2:  # linked to the open chain across one site
            c_last = v - 1
        else:
            if c_first >= 0 and c_seed:
                first_out[n], last_out[n] = c_first, c_last
                n += 1
            c_first, c_last, c_seed = (rf, v - 1, False) if extendable else (-1, -1, False)
        if extendable and cm[v - 1] - cm[rf] >= min_seed and v - rf >= min_markers:
            c_seed = True
        rf = -1
    if c_first >= 0 and c_seed:
        first_out[n], last_out[n] = c_first, c_last
        n += 1
    return n


@njit(cache=True, nogil=True)
def _ibs0_at_most(h, i, j, lo, hi, limit):
    """Whether samples i and j are opposite homozygotes at no more than ``limit`` of sites lo..hi-1."""
    n = 0
    for v in range(lo, hi):
        a0, a1, b0, b1 = h[2 * i, v], h[2 * i + 1, v], h[2 * j, v], h[2 * j + 1, v]
        if a0 >= 0 and b0 >= 0 and a0 == a1 and b0 == b1 and a0 != b0:
            n += 1
            if n > limit:
                return False
    return True


@njit(cache=True, nogil=True)
def _hap_segments(h, bounds, cm, pairs, min_cm, min_seed, min_extend, min_markers, max_gap, max_discord, k0,
                  offsets, out_first, out_last):
    """The haplotype segments of pairs k0.. (:func:`snpbag.kinship.segments.gather`'s contract)."""
    cap = out_first.shape[0]
    width = 4 * (h.shape[1] // 2 + 2)  # stretches of one chromosome: each holds >= 2 sites and a gap
    sf = np.empty(width, np.int64)
    sl = np.empty(width, np.int64)
    for k in range(k0, pairs.shape[0]):
        i, j = pairs[k, 0], pairs[k, 1]
        w = offsets[k]
        for c in range(bounds.shape[0] - 1):
            lo, hi = bounds[c], bounds[c + 1]
            n = 0
            for x in (2 * i, 2 * i + 1):
                for y in (2 * j, 2 * j + 1):
                    n = _stretches(h, x, y, lo, hi, cm, min_seed, min_extend, min_markers, sf, sl, n)
            if n == 0:
                continue
            order = np.argsort(sf[:n])
            cf, cl = sf[order[0]], sl[order[0]]
            for q in range(1, n + 1):
                if q < n:
                    nf = sf[order[q]]
                    if nf <= cl + 1 or (max_gap > 0 and cm[nf] - cm[cl] <= max_gap  # or across a short clean gap
                                        and _ibs0_at_most(h, i, j, cl + 1, nf, max_discord)):
                        cl = max(cl, sl[order[q]])
                        continue
                if cm[cl] - cm[cf] >= min_cm:
                    if w == cap:
                        return k
                    out_first[w], out_last[w] = cf, cl
                    w += 1
                if q < n:
                    cf, cl = sf[order[q]], sl[order[q]]
        offsets[k + 1] = w
    return pairs.shape[0]


def allele_frequency(haplotypes: np.ndarray) -> np.ndarray:
    """ALT allele frequency of each site over its called alleles (0 where none is called), float64 (v,)."""
    called = (haplotypes >= 0).sum(axis=(1, 2))
    alt = (haplotypes == 1).sum(axis=(1, 2))
    return alt / np.maximum(called, 1)


def hap_ibd_segments(genome: Genome, pairs: np.ndarray, *, min_cm: float, min_seed: float = MIN_SEED,
                     min_extend: float = MIN_EXTEND, min_markers: int = 1, min_maf: float = 0.0,
                     max_gap: float = 0.0, max_discord: int = 1) -> Segments:
    """Each pair's segments shared on its phased haplotypes that are at least ``min_cm`` long (module text).

    Parameters
    ----------
    genome : sites with phased alleles (:func:`snpbag.kinship.segments.read_genome` with ``haplotypes=True``).
    pairs : int (n_pairs, 2) sample indices; the result does not depend on the order within a pair.
    min_cm : shortest segment reported (cM); ERSA's t.
    min_seed, min_extend : shortest seed and shortest run joined to a chain across one mismatch (cM).
    min_markers : fewest sites in a seed.
    min_maf : sites whose minor allele frequency (over the genome's samples) is below it are not used.
    max_gap, max_discord : consecutive segments at most ``max_gap`` cM apart with at most ``max_discord``
        opposite homozygotes between them are joined (module text; 0: only overlapping or adjacent ones).

    Returns
    -------
    Segments, each pair's in genome order.

    Raises
    ------
    InputError : no haplotypes (unphased input), bad parameters, or a pair index out of range.
    """
    if genome.haplotypes is None:
        raise InputError("the haplotype IBD detector needs phased haplotypes: read the input with "
                         "read_genome(..., haplotypes=True) after `snpbag phase`, or use the IBS0 detector")
    if not (0 <= min_extend <= min_seed) or min_markers < 1 or not (0 <= min_maf < 0.5):
        raise InputError(f"hap-IBD min_seed={min_seed}, min_extend={min_extend}, min_markers={min_markers}, "
                         f"min_maf={min_maf}: need 0 <= min_extend <= min_seed, min_markers >= 1, 0 <= min_maf < 0.5")
    if max_gap < 0 or max_discord < 0:
        raise InputError(f"hap-IBD max_gap={max_gap}, max_discord={max_discord}: need both >= 0 "
                         "(max_gap 0 joins no gap)")
    pairs = check_pairs(genome, pairs, min_cm)
    keep = np.ones(len(genome.cm), bool)
    if min_maf > 0:
        p = allele_frequency(genome.haplotypes)
        keep = np.minimum(p, 1 - p) >= min_maf
    chrom = np.ascontiguousarray(genome.chrom[keep], dtype=np.int32)
    cm = np.ascontiguousarray(genome.cm[keep], dtype=np.float64)
    nv, n = int(keep.sum()), genome.haplotypes.shape[1]
    h = np.ascontiguousarray(genome.haplotypes[keep].reshape(nv, 2 * n).T, dtype=np.int8)  # (2n, v): 2i, 2i+1
    bounds = chromosome_bounds(chrom)
    args = (h, bounds, cm, pairs, float(min_cm), float(min_seed), float(min_extend), int(min_markers),
            float(max_gap), int(max_discord))
    return gather(_hap_segments, args, len(pairs), cm, chrom)
