"""The PBWT seed prefilter (kinship/seeds.py) against every pair's longest IBS match, found by brute force."""

from __future__ import annotations

import numpy as np
import pytest

from snpbag.errors import InputError
from snpbag.kinship.hapibd import MIN_SEED, hap_ibd_segments
from snpbag.kinship.seeds import seed_pairs
from snpbag.kinship.segments import Genome


def _genome(h: np.ndarray, chrom: np.ndarray, cm: np.ndarray) -> Genome:
    d = np.where((h < 0).any(axis=2), -1, h.sum(axis=2)).astype(np.int8)
    return Genome([f"s{k}" for k in range(h.shape[1])], d, chrom.astype(np.int32), cm.astype(np.float64),
                  [str(c + 1) for c in range(int(chrom.max()) + 1)], h.astype(np.int8))


def _brute(h, chrom, cm, min_cm, min_markers):
    """Pairs (i > j) with a maximal run of equal alleles on one of their 4 haplotype pairs of at least
    ``min_cm`` cM and ``min_markers`` sites; sites where any allele is missing are left out."""
    keep = (h >= 0).all(axis=(1, 2))
    h, chrom, cm = h[keep], chrom[keep], cm[keep]
    out = set()
    n = h.shape[1]
    for i in range(n):
        for j in range(i):
            for c in np.unique(chrom):
                s = np.flatnonzero(chrom == c)
                for x in (0, 1):
                    for y in (0, 1):
                        start = 0
                        for k in range(len(s) + 1):
                            if k == len(s) or h[s[k], i, x] != h[s[k], j, y]:
                                if k > start and cm[s[k - 1]] - cm[s[start]] >= min_cm and k - start >= min_markers:
                                    out.add((i, j))
                                start = k + 1
    return sorted(out)


def _data(seed, n=9, sites=(300, 200, 250), missing=0.0):
    rng = np.random.default_rng(seed)
    chrom = np.repeat(np.arange(len(sites)), sites)
    cm = np.concatenate([np.cumsum(rng.uniform(0.5, 1.5, v) * 0.04) for v in sites])
    v = len(chrom)
    h = (rng.random((v, n, 2)) < rng.uniform(0.05, 0.6, (v, 1, 1))).astype(np.int8)
    for _ in range(10):  # planted shared stretches, some broken by a mismatch
        a, b = rng.choice(n, 2, replace=False)
        s0 = int(rng.integers(0, v - 30))
        e0 = min(v, s0 + int(rng.integers(10, 250)))
        h[s0:e0, b, rng.integers(2)] = h[s0:e0, a, rng.integers(2)]
    flip = rng.random(h.shape) < 0.004
    h[flip] = 1 - h[flip]
    h[rng.random(h.shape) < missing] = -1
    return h, chrom, cm


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("min_cm,min_markers", [(0.8, 1), (2.0, 1), (1.0, 30), (4.0, 5)])
def test_pbwt_pairs_equal_brute_force_longest_matches(seed, min_cm, min_markers):
    h, chrom, cm = _data(seed, missing=0.002 if seed == 3 else 0.0)
    got = [tuple(p) for p in seed_pairs(_genome(h, chrom, cm), min_cm=min_cm, min_markers=min_markers).tolist()]
    want = _brute(h, chrom, cm, min_cm, min_markers)
    assert got == want
    assert 0 < len(want) < 36 or min_cm < 1  # the cases tell pairs apart


def test_identical_haplotypes_everywhere_and_the_chromosome_end():
    h, chrom, cm = _data(5, n=5)
    h[:, 4] = h[:, 0]  # twins: their match runs to each chromosome's last site
    h[:, 3, 1] = h[:, 3, 0]  # a homozygous sample: a match with itself is no pair
    got = seed_pairs(_genome(h, chrom, cm), min_cm=float(cm.max()) / 2)
    assert got.tolist() == [[4, 0]]


def test_every_pair_with_a_hap_segment_is_a_candidate_at_the_detectors_seed():
    for seed in range(3):
        h, chrom, cm = _data(10 + seed, n=10)
        g = _genome(h, chrom, cm)
        pairs = np.array([(i, j) for i in range(10) for j in range(i)])
        has = hap_ibd_segments(g, pairs, min_cm=1.5, min_seed=MIN_SEED / 2, min_extend=0.3).count() > 0
        cand = {tuple(p) for p in seed_pairs(g, min_cm=MIN_SEED / 2).tolist()}
        assert has.any() and {tuple(p) for p in pairs[has].tolist()} <= cand


def test_refuses_unphased_genomes_and_bad_lengths():
    h, chrom, cm = _data(0, n=3)
    g = _genome(h, chrom, cm)
    with pytest.raises(InputError, match="phased haplotypes.*--prefilter king or none"):
        seed_pairs(Genome(g.ids, g.dosages, g.chrom, g.cm, g.chromosomes), min_cm=2.0)
    with pytest.raises(InputError, match="--seed-cm 0"):
        seed_pairs(g, min_cm=0)


def test_seed_length_and_marker_bounds_are_inclusive():
    rng = np.random.default_rng(7)
    chrom, cm = np.zeros(400, np.int64), np.arange(400) * 0.1
    h = rng.integers(0, 2, size=(400, 4, 2)).astype(np.int8)
    h[100:130, 1, 0] = h[100:130, 0, 1]  # 30 sites, 2.9 cM
    h[99, 1, 0], h[130, 1, 0] = 1 - h[99, 0, 1], 1 - h[130, 0, 1]
    g = _genome(h, chrom, cm)
    assert _brute(h, chrom, cm, 2.9, 30) == [(1, 0)]
    assert seed_pairs(g, min_cm=2.9, min_markers=30).tolist() == [[1, 0]]
    assert seed_pairs(g, min_cm=2.9, min_markers=31).tolist() == []
    assert seed_pairs(g, min_cm=2.95).tolist() == []
