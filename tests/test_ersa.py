"""Shared segments (runs free of opposite homozygotes) and ERSA's likelihood per degree, on hand-built pairs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from snpbag.errors import InputError
from snpbag.inference.relateinput import Features, PairData
from snpbag.io.genmap import GeneticMap
from snpbag.kinship import ersa, pairfeatures as pf
from snpbag.kinship.segments import Genome, Segments, ibs0_free_segments, read_genome
from snpbag.simulate.pedigree import simulation_genetic_map
from tiny_data import tiny_vcf


def _genome(g: np.ndarray, chrom: np.ndarray, cm: np.ndarray) -> Genome:
    return Genome([f"s{k}" for k in range(g.shape[1])], g.astype(np.int8), chrom.astype(np.int32),
                  cm.astype(np.float64), [str(c + 1) for c in range(int(chrom.max()) + 1)])


def _reference_runs(g, chrom, cm, i, j, min_cm):
    """Slow reference: split each chromosome's sites called in both at IBS0 sites, keep runs >= min_cm."""
    out = []
    for c in np.unique(chrom):
        run = []
        for v in np.flatnonzero(chrom == c):
            a, b = g[v, i], g[v, j]
            if a < 0 or b < 0:
                continue
            if abs(int(a) - int(b)) == 2:
                if run and cm[run[-1]] - cm[run[0]] >= min_cm:
                    out.append((c, cm[run[0]], cm[run[-1]]))
                run = []
            else:
                run.append(v)
        if run and cm[run[-1]] - cm[run[0]] >= min_cm:
            out.append((c, cm[run[0]], cm[run[-1]]))
    return out


def test_identical_twins_share_one_segment_per_chromosome():
    rng = np.random.default_rng(0)
    chrom = np.repeat([0, 1, 2], 200)
    cm = np.concatenate([np.sort(rng.uniform(0, L, 200)) for L in (150.0, 120.0, 90.0)])
    a = rng.integers(0, 3, size=600)
    g = np.stack([a, a, 2 - a], axis=1)  # twins 0 and 1; sample 2 the opposite homozygote wherever 0 is homozygous
    s = ibs0_free_segments(_genome(g, chrom, cm), np.array([[0, 1], [0, 2]]), min_cm=5.0)
    assert s.count().tolist() == [3, 0]
    assert s.chrom.tolist() == [0, 1, 2]
    np.testing.assert_allclose(s.lengths(0), [cm[chrom == c][-1] - cm[chrom == c][0] for c in range(3)])


def test_unrelated_pair_with_no_long_ibs0_free_run_has_no_segment():
    chrom = np.zeros(400, dtype=np.int32)
    cm = np.arange(400) * 0.1  # 10 sites per cM
    a = np.zeros(400, dtype=np.int8)
    b = np.ones(400, dtype=np.int8)
    b[::20] = 2  # an IBS0 every 2 cM: runs of 1.9 cM
    s = ibs0_free_segments(_genome(np.stack([a, b], 1), chrom, cm), np.array([[0, 1]]), min_cm=3.0)
    assert s.count().tolist() == [0]
    s = ibs0_free_segments(_genome(np.stack([a, b], 1), chrom, cm), np.array([[0, 1]]), min_cm=1.5)
    assert s.count().tolist() == [20]  # one run of 19 sites (1.8 cM) after each IBS0 site
    np.testing.assert_allclose(s.lengths(0), 1.8)


def test_runs_match_the_slow_reference_and_ignore_pair_order_and_missing_calls():
    rng = np.random.default_rng(3)
    nv, ns = 900, 6
    chrom = np.repeat([0, 1, 2], nv // 3)
    cm = np.concatenate([np.sort(rng.uniform(0, 60, nv // 3)) for _ in range(3)])
    p = rng.uniform(0.05, 0.3, nv)
    g = (rng.random((nv, ns)) < p[:, None]).astype(np.int8) + (rng.random((nv, ns)) < p[:, None])
    g[rng.random((nv, ns)) < 0.02] = -1
    genome = _genome(g, chrom, cm)
    pairs = np.array([(i, j) for i in range(ns) for j in range(i)])
    s = ibs0_free_segments(genome, pairs, min_cm=2.0)
    swapped = ibs0_free_segments(genome, pairs[:, ::-1], min_cm=2.0)
    np.testing.assert_array_equal(s.offsets, swapped.offsets)
    np.testing.assert_array_equal(s.start_cm, swapped.start_cm)
    assert s.count().sum() > 10
    for k, (i, j) in enumerate(pairs):
        want = _reference_runs(g, chrom, cm, i, j, 2.0)
        got = list(zip(s.chrom[s.offsets[k]:s.offsets[k + 1]].tolist(), s.start_cm[s.offsets[k]:s.offsets[k + 1]],
                       s.end_cm[s.offsets[k]:s.offsets[k + 1]]))
        assert got == want


def test_read_genome_places_sites_on_the_map(tmp_path):
    vcf = tiny_vcf(tmp_path / "x.vcf.gz", n_samples=4, n_sites=50)
    gm = GeneticMap({"22": (np.array([0.0, 5e7]), np.array([0.0, 100.0]))})  # 2 cM per Mb
    g = read_genome(vcf, gm)
    assert g.dosages.shape == (50, 4) and g.chromosomes == ["22"]
    assert np.all(np.diff(g.cm) > 0) and 0 < g.cm[0] < g.cm[-1] < 100.0
    assert g.chromosome_cm[0] == pytest.approx(g.cm[-1] - g.cm[0])
    with pytest.raises(InputError, match="no genetic map for chromosome 22"):
        read_genome(vcf, GeneticMap({"1": (np.array([0.0, 1e6]), np.array([0.0, 1.0]))}))
    with pytest.raises(InputError, match="--min-cm"):
        ibs0_free_segments(g, np.array([[0, 1]]), min_cm=-1)


def _segments(*pairs: list[float]) -> Segments:
    n = [len(p) for p in pairs]
    lengths = np.array([x for p in pairs for x in p], dtype=np.float64)
    return Segments(np.r_[0, np.cumsum(n)].astype(np.int64), np.zeros(len(lengths), np.int32),
                    np.zeros(len(lengths)), lengths)


def _pois(n, lam):
    return n * math.log(lam) - lam - math.lgamma(n + 1)


def _hand_ersa(s, d, t, r, c, lam_p, theta):
    """ERSA's Lr for full collateral relatives d meioses apart (a = 2), written out for every background share."""
    s = sorted(s)
    lam_a = 2 * (r * d + c) / 2 ** (d - 1) * math.exp(-d * t / 100)
    best = -math.inf
    for n_p in range(len(s) + 1):
        ll = _pois(n_p, lam_p) + _pois(len(s) - n_p, lam_a)
        ll += sum(-(x - t) / theta - math.log(theta) for x in s[:n_p])
        ll += sum(-d * (x - t) / 100 - math.log(100 / d) for x in s[n_p:])
        best = max(best, ll)
    return best


def test_likelihood_matches_hand_computed_values():
    t, genome_cm, c, lam_p, theta = 2.5, 3500.0, 22, 2.0, 3.0
    model = ersa.Model(threshold=t, genome_cm=genome_cm, chromosomes=c,
                       background=ersa.Background(lam_p, theta), max_degree=4, types="ersa")
    pairs = [[3.0, 50.0, 4.0], [60.0, 80.0, 120.0, 35.0, 3.1], [], [1.0, 2.0, 3.5]]  # segments under t are ignored
    ll = ersa.log_likelihoods(_segments(*pairs), model)
    assert ll.shape == (4, 5)
    for k, s in enumerate(pairs):
        s = [x for x in s if x >= t]
        assert ll[k, -1] == pytest.approx(_pois(len(s), lam_p) + sum(-(x - t) / theta - math.log(theta) for x in s))
        for degree in range(1, 5):  # ERSA's d = degree + 1
            assert ll[k, degree - 1] == pytest.approx(_hand_ersa(s, degree + 1, t, genome_cm / 100, c, lam_p, theta))
    calls = ersa.call_degrees(ll)
    assert calls[2] == -1  # nothing shared: unrelated
    assert calls[1] < calls[0] or calls[0] == -1  # long segments: a closer degree than a few short ones
    feats = ersa.pair_features(_segments(*pairs), model)
    assert feats.shape == (4, 4 + len(ersa.FEATURES))
    assert feats[:, -2].tolist() == [3, 5, 0, 1] and feats[0, -1] == pytest.approx(57.0)


def test_mixture_of_relationship_types_and_background_per_group():
    assert ersa.relationship_types(3, "ersa") == [(4, 2.0, 3)]
    assert ersa.relationship_types(3) == [(4, 2.0, 3), (3, 1.0, 2), (2, 1.0, 2)]  # cousins, half cousins, great-GP
    assert ersa.relationship_types(1) == [(2, 2.0, 1), (1, 1.0, 0)]
    s = _segments([30.0, 40.0], [])
    one = ersa.Model(threshold=5, genome_cm=3500, chromosomes=22, background=ersa.Background(1.0, 2.0), max_degree=3)
    bgs = {"A": ersa.Background(1.0, 2.0), "B": ersa.Background(5.0, 2.0)}
    both = ersa.Model(threshold=5, genome_cm=3500, chromosomes=22, background=ersa.per_pair(bgs, np.array(["A", "A"])),
                      max_degree=3)
    np.testing.assert_allclose(ersa.log_likelihoods(s, one), ersa.log_likelihoods(s, both))
    mixed = ersa.Model(threshold=5, genome_cm=3500, chromosomes=22,
                       background=ersa.per_pair(bgs, np.array(["A", "B"])), max_degree=3)
    assert ersa.log_likelihoods(s, mixed)[1, -1] == pytest.approx(-5.0)  # nothing shared, background rate 5
    with pytest.raises(InputError, match="no unrelated pairs of group"):
        ersa.per_pair(bgs, np.array(["A", "C"]))
    with pytest.raises(InputError, match="no unrelated pairs"):
        ersa.fit_background(_segments(), threshold=5)
    bg = ersa.fit_background(_segments([6.0, 9.0, 1.0], [7.0]), threshold=5)
    assert bg.rate == pytest.approx(1.5) and bg.mean_excess == pytest.approx(7 / 3)  # excesses 1, 4, 2


def _hand_type(s, m, a, e, t, r, c, lam_p, theta):
    """One relationship type's likelihood (m cutting meioses, a ancestors, 2^e), maximised over the background share."""
    s = sorted(s)
    lam = a * (r * m + c) / 2 ** e * math.exp(-m * t / 100)
    return max(_pois(n_p, lam_p) + _pois(len(s) - n_p, lam)
               + sum(-(x - t) / theta - math.log(theta) for x in s[:n_p])
               + sum(-m * (x - t) / 100 + math.log(m / 100) for x in s[n_p:]) for n_p in range(len(s) + 1))


def test_the_degree_likelihood_is_the_mixture_or_the_most_likely_type():
    t, genome_cm, c, lam_p, theta = 3.0, 3500.0, 22, 0.2, 1.0
    pairs = [[40.0, 35.0, 30.0, 28.0, 25.0, 22.0, 20.0], [12.0, 5.0], [80.0] * 12]  # a lineal-like, a distant pair
    got = {types: ersa.log_likelihoods(_segments(*pairs), ersa.Model(
        threshold=t, genome_cm=genome_cm, chromosomes=c, background=ersa.Background(lam_p, theta), max_degree=6,
        types=types)) for types in ersa.TYPES}
    for k, s in enumerate(pairs):
        for degree in range(1, 7):
            each = [_hand_type(s, m, a, e, t, genome_cm / 100, c, lam_p, theta)
                    for m, a, e in ersa.relationship_types(degree)]
            assert got["best"][k, degree - 1] == pytest.approx(max(each))
            assert got["all"][k, degree - 1] == pytest.approx(np.logaddexp.reduce(each) - math.log(len(each)))
            assert got["ersa"][k, degree - 1] == pytest.approx(each[0])
    # seven long segments: a great-great-grandparent's sharing; ERSA's full cousins put it two degrees further
    assert got["ersa"][0, :-1].argmax() + 1 == 6 and got["best"][0, :-1].argmax() + 1 == 5
    with pytest.raises(InputError, match="choose all, best, ersa"):
        ersa.Model(threshold=t, genome_cm=genome_cm, chromosomes=c, background=ersa.Background(lam_p, theta),
                   types="mean")


def test_extra_pair_numbers_reach_the_classifier_summary():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 50, size=(3, 4, len(pf.COUNTS))).astype(np.int32)
    extra = np.arange(6, dtype=np.float32).reshape(3, 2)
    data = PairData(["a", "b", "c"], np.array([[1, 0], [2, 0], [2, 1]]), counts, 100, extra=extra)
    x, m, s = Features(data, "counts", 8).batch(torch.tensor([2, 0]))
    assert s.shape == (2, len(pf.SUMMARY) + 2)
    np.testing.assert_array_equal(s[:, -2:].numpy(), extra[[2, 0]])
    assert data.subset(np.array([False, True, True])).extra.tolist() == extra[1:].tolist()


def test_pedigree_simulation_map_is_uniform_per_chromosome(tmp_path):

    (tmp_path / "simulation.json").write_text(json.dumps(
        {"chromosomes": {"1": {"length": 1000, "genetic_length_cm": 250.0}, "2": {"length": 500, "genetic_length_cm": 5}}}))
    gm = simulation_genetic_map(tmp_path)
    np.testing.assert_allclose(gm.cm("1", np.array([0, 400, 1000])), [0, 100, 250])
    np.testing.assert_allclose(gm.cm("chr2", np.array([250])), [2.5])
    with pytest.raises(InputError, match="no pedigree simulation.json"):
        simulation_genetic_map(tmp_path / "missing")


def test_two_exponential_background_recovers_a_heavy_tail_and_raises_the_bar_for_long_segments():
    rng = np.random.default_rng(5)
    n = 4000
    excess = np.where(rng.random(n) < 0.2, rng.exponential(6.0, n), rng.exponential(0.5, n))
    s = _segments(*[[2.0 + x] for x in excess])
    one = ersa.fit_background(s, threshold=2.0)
    two = ersa.fit_background(s, threshold=2.0, components=2)
    assert one.tail_weight == 0.0 and one.mean_excess == pytest.approx(excess.mean())
    assert two.tail_weight == pytest.approx(0.2, abs=0.03) and two.tail_excess == pytest.approx(6.0, rel=0.1)
    assert two.mean_excess == pytest.approx(0.5, rel=0.1)
    x = np.array([[0.2, 25.0]])
    np.testing.assert_allclose(one.log_density(x), -x / one.mean_excess - np.log(one.mean_excess))
    assert two.log_density(x)[0, 1] > one.log_density(x)[0, 1] + 5  # a 27 cM background segment: far likelier
    with pytest.raises(InputError, match="components=3"):
        ersa.fit_background(s, threshold=2.0, components=3)
