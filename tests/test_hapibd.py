"""Haplotype IBD segments (hap-IBD-style seed and extend) on hand-built phased pairs, against a slow reference."""

from __future__ import annotations

import numpy as np
import pytest

from snpbag.errors import InputError
from snpbag.io.genmap import GeneticMap
from snpbag.kinship.hapibd import hap_ibd_segments
from snpbag.kinship.segments import Genome, read_genome
from tiny_data import tiny_vcf


def _genome(h: np.ndarray, chrom: np.ndarray, cm: np.ndarray) -> Genome:
    """A genome from phased alleles h (v, n, 2)."""
    d = np.where((h < 0).any(axis=2), -1, h.sum(axis=2)).astype(np.int8)
    return Genome([f"s{k}" for k in range(h.shape[1])], d, chrom.astype(np.int32), cm.astype(np.float64),
                  [str(c + 1) for c in range(int(chrom.max()) + 1)], h.astype(np.int8))


def _ibs0(h, i, j, s):
    """Whether samples i and j are opposite homozygotes at site s."""
    a, b = h[s, i], h[s, j]
    return bool((a >= 0).all() and (b >= 0).all() and a[0] == a[1] and b[0] == b[1] and a[0] != b[0])


def _reference(h, chrom, cm, i, j, min_cm, min_seed, min_extend, min_markers, max_gap=0.0, max_discord=1):
    """Slow reference: list each haplotype pair's runs between discordant sites, join linked extendable runs,
    keep seeded chains, then union the 4 haplotype pairs' chains per chromosome (site intervals), joining
    across gaps of at most max_gap cM with at most max_discord IBS0 sites."""
    out = []
    for c in np.unique(chrom):
        sites = np.flatnonzero(chrom == c)
        chains = []
        for x in (0, 1):
            for y in (0, 1):
                a, b = h[sites, i, x], h[sites, j, y]
                cuts = [k for k in range(len(sites)) if a[k] >= 0 and b[k] >= 0 and a[k] != b[k]]
                bounds = [-1] + cuts + [len(sites)]
                runs = [(s + 1, e - 1) for s, e in zip(bounds[:-1], bounds[1:])]  # possibly empty (s > e)
                chain = None
                for r0, r1 in runs + [(1, 0)]:  # a final empty run closes the last chain
                    ok = r0 <= r1 and cm[sites[r1]] - cm[sites[r0]] >= min_extend
                    if ok and chain is not None and chain[1] == r0 - 2:
                        chain[1] = r1
                    else:
                        if chain is not None and chain[2]:
                            chains.append((chain[0], chain[1]))
                        chain = [r0, r1, False] if ok else None
                    if ok and cm[sites[r1]] - cm[sites[r0]] >= min_seed and r1 - r0 + 1 >= min_markers:
                        chain[2] = True
        merged = []
        for s, e in sorted(chains):
            gap = range(merged[-1][1] + 1, s) if merged else range(0)
            clean = max_gap > 0 and merged and cm[sites[s]] - cm[sites[merged[-1][1]]] <= max_gap and \
                sum(_ibs0(h, i, j, sites[k]) for k in gap) <= max_discord
            if merged and (s <= merged[-1][1] + 1 or clean):
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        out += [(c, cm[sites[s]], cm[sites[e]]) for s, e in merged if cm[sites[e]] - cm[sites[s]] >= min_cm]
    return out


def _map(n_per_chrom=(400, 300), cm_per_site=0.05, seed=0):
    rng = np.random.default_rng(seed)
    chrom = np.repeat(np.arange(len(n_per_chrom)), n_per_chrom)
    cm = np.concatenate([np.cumsum(rng.uniform(0.5, 1.5, n) * cm_per_site) for n in n_per_chrom])
    return chrom, cm


def test_shared_haplotype_segment_has_exact_ends_and_unrelated_pair_none():
    rng = np.random.default_rng(1)
    chrom, cm = _map((600,), cm_per_site=0.05)
    h = rng.integers(0, 2, size=(600, 3, 2))  # p = 0.5: unrelated haplotypes differ at half the sites
    h[100:400, 1, 1] = h[100:400, 0, 0]  # sample 1's second haplotype copies sample 0's first over sites 100..399
    h[99, 1, 1], h[400, 1, 1] = 1 - h[99, 0, 0], 1 - h[400, 0, 0]  # and differs right outside
    s = hap_ibd_segments(_genome(h, chrom, cm), np.array([[0, 1], [0, 2], [1, 0]]), min_cm=3.0)
    assert s.count().tolist() == [1, 0, 1]
    assert s.start_cm[0] == cm[100] and s.end_cm[0] == cm[399]
    assert (s.start_cm[1], s.end_cm[1]) == (s.start_cm[0], s.end_cm[0])  # pair order does not matter


def test_isolated_mismatch_is_bridged_two_adjacent_ones_are_not():
    rng = np.random.default_rng(2)
    chrom, cm = _map((600,), cm_per_site=0.05)
    h = rng.integers(0, 2, size=(600, 2, 2))
    h[99, 1, 0], h[500, 1, 0] = 1 - h[99, 0, 1], 1 - h[500, 0, 1]
    h[100:500, 1, 0] = h[100:500, 0, 1]
    h[300, 1, 0] = 1 - h[300, 0, 1]  # a genotype error inside the segment: both halves are >= 1 cM
    g = _genome(h, chrom, cm)
    s = hap_ibd_segments(g, np.array([[0, 1]]), min_cm=3.0)
    assert (s.count()[0], s.start_cm[0], s.end_cm[0]) == (1, cm[100], cm[499])
    h[301, 1, 0] = 1 - h[301, 0, 1]  # two mismatches in a row: a true break
    s = hap_ibd_segments(_genome(h, chrom, cm), np.array([[0, 1]]), min_cm=3.0)
    assert s.count()[0] == 2 and s.end_cm[0] == cm[299] and s.start_cm[1] == cm[302]
    assert hap_ibd_segments(_genome(h, chrom, cm), np.array([[0, 1]]), min_cm=3.0, min_seed=12.0).count()[0] == 0


def test_ibd2_and_a_phase_switch_give_one_segment():
    rng = np.random.default_rng(3)
    chrom, cm = _map((500,), cm_per_site=0.05)
    h = rng.integers(0, 2, size=(500, 2, 2))
    h[:, 1] = h[:, 0]  # identical twins: all 4 haplotype pairs' stretches overlap
    h[250:, 1] = h[250:, 1, ::-1].copy()  # and sample 1's phase switches half way
    s = hap_ibd_segments(_genome(h, chrom, cm), np.array([[0, 1]]), min_cm=3.0)
    assert (s.count()[0], s.start_cm[0], s.end_cm[0]) == (1, cm[0], cm[-1])


def test_short_clean_gap_between_two_pieces_is_joined_an_ibs0_site_in_it_is_not():
    rng = np.random.default_rng(5)
    chrom, cm = _map((600,), cm_per_site=0.05)
    h = rng.integers(0, 2, size=(600, 2, 2))
    h[100:500, 1, 0] = h[100:500, 0, 0]  # a shared stretch whose middle sites 290..299 match no haplotype pair
    h[99, 1, 0], h[500, 1, 0] = 1 - h[99, 0, 0], 1 - h[500, 0, 0]
    h[290:300, 0] = [0, 1]  # sample 0 heterozygous there, sample 1's haplotypes each discordant with both
    h[290:300, 1] = [1, 0]  # (a seed-less piece between two phase switches, as the union sees it)
    h[294, 1, 0] = 1 - h[294, 1, 0]  # ... but with sample 1 homozygous at one site: no IBS0 (sample 0 is het)
    g = _genome(h, chrom, cm)
    pair = np.array([[0, 1]])
    assert hap_ibd_segments(g, pair, min_cm=3.0).count()[0] == 2  # by default: two segments
    s = hap_ibd_segments(g, pair, min_cm=3.0, max_gap=1.0)
    assert (s.count()[0], s.start_cm[0], s.end_cm[0]) == (1, cm[100], cm[499])
    assert hap_ibd_segments(g, pair, min_cm=3.0, max_gap=0.2).count()[0] == 2  # the gap is ~0.5 cM
    h[294, 0], h[294, 1] = [0, 0], [1, 1]  # one opposite homozygote in the gap
    g = _genome(h, chrom, cm)
    assert hap_ibd_segments(g, pair, min_cm=3.0, max_gap=1.0).count()[0] == 1
    assert hap_ibd_segments(g, pair, min_cm=3.0, max_gap=1.0, max_discord=0).count()[0] == 2
    with pytest.raises(InputError, match="max_gap=-1.*need both >= 0"):
        hap_ibd_segments(g, pair, min_cm=3.0, max_gap=-1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_kernel_matches_slow_reference_on_random_pairs(seed):
    rng = np.random.default_rng(seed)
    chrom, cm = _map((300, 200, 250), cm_per_site=0.04, seed=seed)
    n = 6
    h = (rng.random((750, n, 2)) < rng.uniform(0.05, 0.6, (750, 1, 1))).astype(np.int8)
    for _ in range(8):  # shared stretches with scattered mismatches and missing alleles
        a, b = rng.choice(n, 2, replace=False)
        s0 = int(rng.integers(0, 650))
        e0 = s0 + int(rng.integers(20, 300))
        h[s0:e0, b, rng.integers(2)] = h[s0:e0, a, rng.integers(2)]
    flip = rng.random(h.shape) < 0.005
    h[flip] = 1 - h[flip]
    h[rng.random(h.shape) < 0.01] = -1
    pairs = np.array([(i, j) for i in range(n) for j in range(n) if i != j])
    for kw in (dict(min_cm=1.5, min_seed=1.0, min_extend=0.3, min_markers=5),
               dict(min_cm=1.5, min_seed=1.0, min_extend=0.3, min_markers=5, max_gap=2.0, max_discord=1)):
        s = hap_ibd_segments(_genome(h, chrom, cm), pairs, **kw)
        assert s.count().sum() > 0
        for k, (i, j) in enumerate(pairs):
            got = list(zip(s.chrom[s.offsets[k]:s.offsets[k + 1]].tolist(),
                           s.start_cm[s.offsets[k]:s.offsets[k + 1]], s.end_cm[s.offsets[k]:s.offsets[k + 1]]))
            assert got == _reference(h, chrom, cm, i, j, **kw)


def test_min_maf_drops_rare_sites_and_bad_parameters_are_refused():
    rng = np.random.default_rng(4)
    chrom, cm = _map((400,), cm_per_site=0.05)
    h = rng.integers(0, 2, size=(400, 3, 2))
    h[:, 1, 0] = h[:, 0, 0]
    h[::10, :, :] = 0  # monomorphic every 10th site
    h[::10, 2, 0] = 1  # ... but for one allele: sample 2's allele there breaks nothing of the pair 0, 1
    h[200, 1, 0] = 1 - h[200, 0, 0]
    h[201, 1, 0] = 1 - h[201, 0, 0]  # a true break at 200..201, which survives the filter
    g = _genome(h, chrom, cm)
    full = hap_ibd_segments(g, np.array([[0, 1]]), min_cm=3.0)
    filt = hap_ibd_segments(g, np.array([[0, 1]]), min_cm=3.0, min_maf=0.2)
    assert full.count()[0] == 2 and filt.count()[0] == 2
    assert filt.start_cm[0] == cm[1] and full.start_cm[0] == cm[0]  # site 0 is rare: not used
    with pytest.raises(InputError, match="min_extend"):
        hap_ibd_segments(g, np.array([[0, 1]]), min_cm=3.0, min_seed=0.5, min_extend=1.0)
    with pytest.raises(InputError, match="out of range"):
        hap_ibd_segments(g, np.array([[0, 3]]), min_cm=3.0)
    unphased = Genome(g.ids, g.dosages, g.chrom, g.cm, g.chromosomes)
    with pytest.raises(InputError, match="phased haplotypes.*IBS0"):
        hap_ibd_segments(unphased, np.array([[0, 1]]), min_cm=3.0)


def test_read_genome_refuses_unphased_input_for_the_haplotype_detector(tmp_path):
    gm = GeneticMap({"22": (np.array([0.0, 5e7]), np.array([0.0, 100.0]))})
    phased = read_genome(tiny_vcf(tmp_path / "p.vcf", n_samples=4, n_sites=30), gm, haplotypes=True)
    assert phased.haplotypes.shape == (30, 4, 2)
    called = (phased.haplotypes >= 0).all(axis=2)
    np.testing.assert_array_equal(phased.haplotypes.sum(axis=2)[called], phased.dosages[called])
    text = (tmp_path / "p.vcf").read_text().splitlines()
    (tmp_path / "u.vcf").write_text("\n".join(x if x.startswith("#") else x.replace("|", "/") for x in text) + "\n")
    assert read_genome(tmp_path / "u.vcf", gm).haplotypes is None  # the IBS0 detector's input reads fine
    with pytest.raises(InputError, match=r"u\.vcf: unphased genotype at 22:\d+; .*run `snpbag phase`"):
        read_genome(tmp_path / "u.vcf", gm, haplotypes=True)


def test_genome_only_keeps_the_named_chromosomes_and_their_segments():
    rng = np.random.default_rng(6)
    chrom, cm = _map((300, 200, 250), cm_per_site=0.05)
    h = rng.integers(0, 2, size=(750, 2, 2))
    h[:, 1] = h[:, 0]  # one segment per chromosome
    g = _genome(h, chrom, cm)
    sub = g.only({"3", "1", "9"})  # "9" is not in the genome: ignored
    assert sub.chromosomes == ["1", "3"] and sub.chrom.tolist() == [0] * 300 + [1] * 250
    np.testing.assert_array_equal(sub.haplotypes, h[chrom != 1])
    np.testing.assert_array_equal(sub.chromosome_cm, g.chromosome_cm[[0, 2]])
    s = hap_ibd_segments(sub, np.array([[0, 1]]), min_cm=3.0)
    assert s.count()[0] == 2 and s.chrom.tolist() == [0, 1]
    assert g.only([]).cm.size == 0
