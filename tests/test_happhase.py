"""snpbag.retrieval.happhase: the haploid phasing model, against a dense reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from test_phase import _panel, _unphase, mosaics, switch_errors
from snpbag.errors import InputError
from snpbag.retrieval.happhase import (_dot, _lane_sum, _lay_out, common_sites, split_stages, switch_probs, update,
                                      whole_confidence)
from snpbag.retrieval.phasing import PhaseOptions, phase_cohort, phase_visible, phase_with_panel, typed_panel
from snpbag.retrieval.states import composite_segments, fill_composite

HAPLOID = PhaseOptions(model="haploid", haploid_states=48, step=4, width=1, matches=2)


def _emission(x: np.ndarray, a: int, eps: float) -> np.ndarray:
    """(K,) emission of allele a (−1: none) by states with alleles x (2: either)."""
    if a < 0:
        return np.ones(x.size)
    return np.where(x == 2, 0.5, np.where(x == a, 1 - eps, eps))


def _likelihood(comp, alleles, rho, eps, at=None):
    """P(alleles) of a haploid sequence under the dense HMM (states move by M = (1 − ρ)I + ρ/K
    from a uniform start); with ``at``, the posterior P(ALT) there instead."""
    L, K = comp.shape
    E = [_emission(comp[s], alleles[s], eps) for s in range(L)]
    M = [(1 - r) * np.eye(K) + r / K for r in rho]
    f = np.empty((L, K))
    b = np.ones((L, K))
    f[0] = E[0] / K
    for s in range(1, L):
        f[s] = E[s] * (f[s - 1] @ M[s])
    if at is None:
        return f[-1].sum()
    for s in range(L - 2, -1, -1):
        b[s] = M[s + 1] @ (E[s + 1] * b[s + 1])
    w = f[at] * b[at]
    return (w * np.where(comp[at] == 2, 0.5, comp[at])).sum() / w.sum()


def naive_update(comp, d, hap, unph, soft, rho, eps):
    """The update by its definition (module doc), each decision from whole-sequence
    likelihoods: haplotype c reads its alleles on the two segments either side of the
    het (the one before already swapped by the earlier decisions) and only the homozygous
    genotypes elsewhere; soft hets read as missing, then oriented by the haplotypes' P(ALT).
    Returns (haplotypes, conf, P(ALT) at missing calls and soft hets)."""
    hap = hap.copy()
    L = d.size
    typed = (d >= 0) & ~soft
    hom = np.where((d == 0) | (d == 2), d // 2, -1)
    cuts = [0, *np.flatnonzero(unph), L]
    conf = np.full(L, np.nan)
    for j in range(1, len(cuts) - 1):
        lo, u, hi = cuts[j - 1], cuts[j], cuts[j + 1]

        def seq(c_left, c_right):
            a = hom.copy()
            a[lo:u] = np.where(typed[lo:u], hap[lo:u, c_left], -1)
            a[u:hi] = np.where(typed[u:hi], hap[u:hi, c_right], -1)
            return a

        keep = _likelihood(comp, seq(0, 0), rho, eps) * _likelihood(comp, seq(1, 1), rho, eps)
        cross = _likelihood(comp, seq(0, 1), rho, eps) * _likelihood(comp, seq(1, 0), rho, eps)
        conf[u] = max(keep, cross) / (keep + cross)
        if cross > keep:
            hap[u:hi] = hap[u:hi, ::-1]
    alt = np.full((L, 2), np.nan)
    for m in np.flatnonzero(~typed):
        j = np.searchsorted(cuts, m, side="right")
        lo, hi = cuts[j - 1], cuts[j]
        for c in range(2):
            a = hom.copy()
            a[lo:hi] = np.where(typed[lo:hi], hap[lo:hi, c], -1)
            alt[m, c] = _likelihood(comp, a, rho, eps, at=m)
        if soft[m]:
            p1, p2 = alt[m]
            hap[m] = (1, 0) if p1 * (1 - p2) >= p2 * (1 - p1) else (0, 1)
            conf[m] = max(p1 * (1 - p2), p2 * (1 - p1)) / (p1 * (1 - p2) + p2 * (1 - p1))
    return hap, conf, alt


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_update_equals_the_dense_definition(seed):
    rng = np.random.default_rng(seed)
    L, K = 40, 6
    comp = (rng.random((L, K)) < 0.4).astype(np.int8)
    if seed == 3:
        comp[rng.random((L, K)) < 0.1] = 2  # a cohort's unphased hets: either allele
    truth = np.stack([comp[:, 0], np.where(np.arange(L) < 20, comp[:, 1], comp[:, 4])], -1)
    d = truth.sum(1).astype(np.int8)
    d[rng.random(L) < 0.1] = -1
    hap = np.zeros((L, 2), np.int8)
    het = d == 1
    hap[het, 0] = rng.integers(0, 2, het.sum())  # a random starting phase
    hap[het, 1] = 1 - hap[het, 0]
    hap[d == 2] = 1
    unph = het.copy()
    unph[np.flatnonzero(het)[0]] = False
    if seed == 1:
        unph[np.flatnonzero(het)[2:5]] = False  # hets fixed by an earlier update: inside longer segments
    soft = np.zeros(L, bool)
    if seed == 2:
        soft[np.flatnonzero(unph)[1::3]] = True  # rare hets of the second stage
        unph &= ~soft
    rho = switch_probs(np.cumsum(rng.uniform(0, 3e-4, L)), ne=1e4, n_ref=K)
    eps = 0.01
    want_hap, want_conf, want_alt = naive_update(comp, d, hap, unph, soft, rho, eps)
    got_hap = hap.copy()
    conf = np.full(L, np.nan)
    alt = np.full((L, 2), np.nan)
    update(comp, d, got_hap, unph, soft, rho, eps, conf, alt)
    assert unph.sum() > 5 and np.abs(want_conf[unph] - 0.5).max() > 0.3
    np.testing.assert_allclose(conf[unph | soft], want_conf[unph | soft], atol=1e-4)
    miss = d < 0
    np.testing.assert_allclose(alt[miss | soft], want_alt[miss | soft], atol=1e-4)
    np.testing.assert_array_equal(got_hap[~miss], want_hap[~miss])
    np.testing.assert_array_equal(got_hap[miss], (want_alt[miss] >= 0.5).astype(np.int8))


@pytest.mark.parametrize("seed", [0, 1])
def test_whole_confidence_equals_the_dense_definition(seed):
    """Each het's PP with both haplotypes read whole: keep = P(hap₁)·P(hap₂) against cross,
    the two swapped from the het on, from the dense HMM; missing calls read as nothing."""
    rng = np.random.default_rng(seed)
    L, K = 40, 6
    comp = (rng.random((L, K)) < 0.4).astype(np.int8)
    hap = np.stack([comp[:, 0], np.where(np.arange(L) < 20, comp[:, 1], comp[:, 4])], -1)
    hap[rng.random(L) < 0.05] ^= 1  # a few sites where no state carries the alleles
    d = hap.sum(1).astype(np.int8)
    d[rng.random(L) < 0.1] = -1
    at = d == 1
    at[np.flatnonzero(at)[0]] = False
    wrong = np.flatnonzero(at)[at.sum() // 2]
    hap[wrong:] = hap[wrong:, ::-1].copy()  # a switch error: its PP is low
    rho = switch_probs(np.cumsum(rng.uniform(0, 3e-4, L)), ne=1e4, n_ref=K)
    eps = 0.01
    conf = np.full(L, np.nan)
    whole_confidence(comp, d, hap, at, rho, eps, conf)
    typed = np.where((d >= 0)[:, None], hap, -1)
    for u in np.flatnonzero(at):
        def seq(c_left, c_right):
            return np.concatenate([typed[:u, c_left], typed[u:, c_right]])
        keep = _likelihood(comp, seq(0, 0), rho, eps) * _likelihood(comp, seq(1, 1), rho, eps)
        cross = _likelihood(comp, seq(0, 1), rho, eps) * _likelihood(comp, seq(1, 0), rho, eps)
        assert conf[u] == pytest.approx(keep / (keep + cross), abs=1e-5)
    assert at.sum() > 5 and np.isnan(conf[~at]).all()
    assert conf[wrong] < 0.5 < np.median(conf[at])


def test_rescore_changes_pp_alone():
    """PhaseOptions.rescore: the same haplotypes, PP at the hets after the first from
    whole_confidence (sharper where the decisions read short segments), NaN elsewhere; the
    same on 1 and 2 threads."""
    h = mosaics(120, 300, seed=4, n_founders=30)
    truth = np.stack([h[0:8:2], h[1:8:2]], -1)
    g = _unphase(truth)
    cm = np.arange(300) * 1e-3
    plain, sharp, sharp2 = (phase_with_panel(_panel(h[8:]), cm, g, bounds=[(0, 300)], threads=t,
                                             options=dataclasses.replace(HAPLOID, rescore=r))
                            for r, t in ((False, 1), (True, 1), (True, 2)))
    np.testing.assert_array_equal(sharp.pp, sharp2.pp)
    np.testing.assert_array_equal(plain.haplotypes, sharp.haplotypes)
    np.testing.assert_array_equal(np.isnan(plain.pp), np.isnan(sharp.pp))
    ok = ~np.isnan(plain.pp)
    assert not np.array_equal(plain.pp[ok], sharp.pp[ok])
    assert np.mean(1 - sharp.pp[ok]) < np.mean(1 - plain.pp[ok])


@pytest.mark.parametrize("rare", [0.0, 0.3])
def test_exact_pair_of_panel_haplotypes_is_phased_without_switches(rare):
    """With ``rare`` 0.3 about half the hets are phased in the second stage."""
    h = mosaics(60, 400, seed=1, n_founders=60, switch_rate=0.0)
    truth = np.stack([h[10], h[37]], -1)[None]
    o = dataclasses.replace(HAPLOID, rare=rare)
    res = phase_with_panel(_panel(h), np.arange(400) * 1e-4, _unphase(truth), bounds=[(0, 400)], options=o)
    sw, pairs = switch_errors(truth, res.haplotypes)
    assert pairs > 50 and sw == 0
    f = h.mean(0)
    late = (np.minimum(f, 1 - f) < rare) & (truth[0, :, 0] != truth[0, :, 1])
    assert late.sum() > (40 if rare else -1)
    het = truth[0, :, 0] != truth[0, :, 1]
    assert np.isnan(res.pp[0, het][0]) and (res.pp[0, het][1:] > 0.98).all()
    assert np.isnan(res.pp[0, ~het]).all()


def test_mosaics_phase_as_well_as_with_the_pair_model_and_deterministically():
    h = mosaics(300, 600, seed=5, n_founders=30)
    truth = np.stack([h[0:40:2], h[1:40:2]], -1)
    g = _unphase(truth)
    g[:, ::37] = -1
    cm = np.arange(600) * 1e-3
    runs = [phase_with_panel(_panel(h[40:]), cm, g, bounds=[(0, 250), (250, 600)], options=HAPLOID, threads=t)
            for t in (1, 2)]
    np.testing.assert_array_equal(runs[0].haplotypes, runs[1].haplotypes)
    np.testing.assert_array_equal(runs[0].pp, runs[1].pp)
    called = (g >= 0).all(-1)
    assert (np.sort(runs[0].haplotypes, -1)[called] == g[called]).all()  # typed calls: only reordered
    assert np.isin(runs[0].haplotypes, [0, 1]).all() and (runs[0].filled == ~called).all()
    pair = phase_with_panel(_panel(h[40:]), cm, g, bounds=[(0, 250), (250, 600)],
                            options=PhaseOptions(states=24, block=32, margin=16))
    sw, pairs = switch_errors(truth, runs[0].haplotypes)
    assert sw / pairs < 0.03 and sw <= 1.5 * switch_errors(truth, pair.haplotypes)[0]


def test_cohort_only_with_the_haploid_model():
    h = mosaics(2 * 60, 300, seed=3, switch_rate=0.005)
    truth = np.stack([h[0::2], h[1::2]], -1)
    o = PhaseOptions(model="haploid", haploid_states=40, step=4, width=1, iterations=4)
    res = phase_cohort(_unphase(truth), np.arange(300) * 1e-4, bounds=[(0, 300)], options=o, seed=1, threads=2)
    assert (np.sort(res.haplotypes, -1) == _unphase(truth)).all()
    sw, pairs = switch_errors(truth, res.haplotypes)
    assert sw / pairs < 0.05


def test_bad_model_options_are_refused():
    with pytest.raises(InputError, match="model 'triple'"):
        PhaseOptions(model="triple")
    with pytest.raises(InputError, match="fixing >= 1"):
        PhaseOptions(model="haploid", fixing=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_stages_lay_out_the_states_as_the_whole_panel_does(seed):
    """The second stage's states from the rare sites' exceptions (split_stages, _lay_out) are
    the rows fill_composite gathers from the whole panel, also on one chromosome's rows."""
    rng = np.random.default_rng(seed)
    L, H, K = 300, 64, 12
    panel = _two_stage_panel(rng, L, H)
    common = common_sites(panel, rare=0.05)
    assert 0 < common.sum() < L
    for a, b in ((0, L), (40, 220)):
        stages = split_stages(panel, common).rows(a, b)
        sites = np.flatnonzero(stages.common)
        query = rng.integers(0, 2, (sites.size, 2)).astype(np.int8)
        seg_start, seg_hap, n_seg = composite_segments(stages.panel, query, allowed=np.ones(H, bool), states=K,
                                                       genotype=False, step=4, width=1, matches=2)
        at = np.concatenate([[0], sites[1:]])
        comp = np.empty((sites.size, K), np.int8)
        fill_composite(stages.panel, seg_start, seg_hap, n_seg, comp)
        want = np.empty((b - a, K), np.int8)
        fill_composite(np.ascontiguousarray(panel[a:b]), at[seg_start], seg_hap, n_seg, want)
        got = np.empty_like(want)
        _lay_out(comp, stages.common, stages.major, stages.ptr, stages.hap, stages.allele, at[seg_start], seg_hap,
                 n_seg, H, got)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(comp, want[sites])


def _two_stage_panel(rng, L=300, H=64):
    """Common and rare sites, "either" alleles among the exceptions, rare sites whose major allele is ALT."""
    freq = np.where(rng.random(L) < 0.6, rng.uniform(0.1, 0.9, L), rng.uniform(0.0, 0.04, L))
    panel = (rng.random((L, H)) < freq[:, None]).astype(np.int8)
    panel[rng.random((L, H)) < 0.01] = 2
    panel[::7] = np.where(panel[::7] == 2, 2, 1 - panel[::7])
    return panel


def test_a_subset_of_the_stages_is_the_stages_of_the_subset_rows():
    """Stages.subset (a sample's visible sites among its batch's typed ones) equals
    split_stages of those rows, field by field."""
    rng = np.random.default_rng(5)
    panel = _two_stage_panel(rng)
    common = common_sites(panel, rare=0.05)
    whole = split_stages(panel, common)
    for idx in (np.arange(300), np.flatnonzero(rng.random(300) < 0.7), np.array([3]), np.flatnonzero(~common)):
        got, want = whole.subset(idx), split_stages(np.ascontiguousarray(panel[idx]), common[idx])
        for f in dataclasses.fields(want):
            np.testing.assert_array_equal(getattr(got, f.name), getattr(want, f.name), err_msg=f.name)
            assert getattr(got, f.name).dtype == getattr(want, f.name).dtype, f.name


def test_phasing_visible_sites_from_the_batch_rows_equals_phasing_from_the_panel():
    """phase_visible with the panel taken once at a batch's typed sites (typed_panel) gives
    the same haplotypes and PP as from the whole panel: a sample typed at all of them, at
    some (missing calls), and one whose calls are not among them (read from the panel)."""
    rng = np.random.default_rng(6)
    h = mosaics(81, 240, seed=6, n_founders=20, switch_rate=0.02)
    panel, cm = _panel(h[:80]).copy(), np.arange(240) * 0.01
    panel[::9] = 0
    panel[::9, ::37] = 1  # rare sites for the second stage
    o = dataclasses.replace(HAPLOID, rare=0.05, rescore=True)
    typed = np.flatnonzero(rng.random(240) < 0.5)
    at_typed = typed_panel(panel, typed, o)
    assert at_typed.stages is not None and not at_typed.stages.common.all()
    allowed = np.ones(panel.shape[1], dtype=bool)
    allowed[4:6] = False
    truth = (h[80] + h[11]).astype(np.int8)
    for vis in (typed, typed[rng.random(typed.size) < 0.8], np.union1d(typed[:50], [1, 2])):
        dosage = np.full(240, -1, np.int8)
        dosage[vis] = truth[vis]
        want = phase_visible(panel, cm, dosage, allowed=allowed, options=o)
        got = phase_visible(panel, cm, dosage, allowed=allowed, options=o, typed=at_typed)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert np.isfinite(want[1]).any()


@pytest.mark.parametrize("K", [1, 7, 8, 600, 603])
def test_lane_sums_are_the_sums(K):
    rng = np.random.default_rng(K)
    u, v = rng.random(K).astype(np.float32), rng.random(K).astype(np.float32)
    assert _lane_sum(u, K) == pytest.approx(float(u.astype(np.float64).sum()), rel=1e-5)
    assert _dot(u, v, K) == pytest.approx(float(u.astype(np.float64) @ v.astype(np.float64)), rel=1e-12)
