"""snpbag.retrieval.composite: composite states at the visible sites, against their dense layout."""

from __future__ import annotations

import numpy as np
import pytest

from snpbag.retrieval.composite import composite_at, interpolate_segments, union_segments
from snpbag.retrieval.draws import (COMPOSITE_STEP, PHASE_OPTIONS, composite_phase_probs, draw_window,
                                    sampled_phase_probs)
from snpbag.retrieval.hapclasses import hap_classes, no_classes
from snpbag.retrieval.haploid import allele_carriers, haploid_probs, interpolate_hidden
from snpbag.retrieval.phasing import phase_visible
from snpbag.retrieval.states import composite_panel, composite_segments, fill_composite


def _segments(rng, vis, K, H, L):
    """K slots whose segments start at 0 and then at visible sites, on random haplotypes
    (two slots copy one haplotype at times)."""
    n_max = 6
    seg_start = np.zeros((K, n_max), np.int64)
    seg_hap = rng.integers(0, H // 2, (K, n_max))  # few haplotypes: slots share some
    n_seg = rng.integers(1, n_max + 1, K)
    for k in range(K):
        seg_start[k, 1:n_seg[k]] = np.sort(rng.choice(vis[1:], n_seg[k] - 1, replace=False))
    return seg_start, seg_hap, n_seg


@pytest.mark.parametrize("typed", ["none", "visible", "more"])
@pytest.mark.parametrize("floor", [0.0, 0.05, 2.0])
def test_hidden_sites_through_the_segments_equal_the_dense_composite_layout(floor, typed):
    """Every hidden site, before the first visible site, between two and after the last,
    sums the same kept states' alleles as interpolate_hidden over the (L, K) layout, for
    each of G posteriors at once, read from the carriers or through the panel's classes
    between typed sites (the visible ones, or more that this target misses); visible sites
    are left alone."""
    rng = np.random.default_rng(3)
    L, H, K, G = 150, 30, 20, 3  # more states than most sites have short-allele classes
    panel = (rng.random((L, H)) < rng.random((L, 1)) * 0.6).astype(np.int8)
    panel[::3] = 1 - panel[::3]  # the minor allele ALT at some sites, REF at others
    vis = np.sort(rng.choice(np.arange(5, L - 5), 25, replace=False))
    cm = np.cumsum(rng.random(L) * 0.01)
    cm[vis[3]] = cm[vis[4]] = cm[vis[3] + 1]  # two flanks at one position
    segments = _segments(rng, vis, K, H, L)
    dense = np.empty((L, K), np.int8)
    fill_composite(panel, *segments, dense)
    np.testing.assert_array_equal(composite_at(panel, vis, segments), dense[vis])
    post = rng.dirichlet(np.full(K, 0.3), (G, vis.size)).astype(np.float32)  # some below the floor
    out = np.full((G, L), -7.0)
    more = np.union1d(vis, rng.choice(L, 20, replace=False))
    k = {"none": no_classes(L, H), "visible": hap_classes(panel, vis), "more": hap_classes(panel, more)}[typed]
    interpolate_segments(*segments, panel, vis, cm, post, floor, *allele_carriers(panel), *k, out)
    for g in range(G):
        want = np.full(L, -7.0)
        interpolate_hidden(dense, np.arange(K), vis, cm, post[g], floor, want)
        np.testing.assert_allclose(out[g], want, atol=2e-6, err_msg=f"copy {g}")
    assert (out[:, vis] == -7.0).all()


@pytest.mark.parametrize("drawn", [False, True])
def test_composite_states_over_phasings_equal_their_dense_layout(drawn):
    """composite_phase_probs (both decoded haplotypes' composite states, laid out at the
    visible sites) gives what the panel-state path gives on the dense (L, 2K) layout of
    the same states: every copy's posteriors, hidden sites, leave-one-out and the average
    over phasings; on the decoded phase alone, what haploid_probs gives on each haplotype."""
    rng = np.random.default_rng(11)
    L, H, K = 400, 60, 9
    founders = (rng.random((L, 12)) < rng.random((L, 1)) * 0.5).astype(np.int8)
    panel = founders[:, rng.integers(0, 12, H)]
    panel = np.where(rng.random((L, H)) < 0.01, 1 - panel, panel).astype(np.int8)  # mutations on the copies
    cm = np.cumsum(rng.random(L) * 0.005)
    dosage = panel[:, 3] + panel[:, 50]
    dosage = np.where(rng.random(L) < 0.2, dosage, -1).astype(np.int8)  # a sparse array
    allowed = np.ones(H, bool)
    allowed[[3, 50]] = False  # the target's own haplotypes are not copied
    n_ref, ne, eps, floor = int(allowed.sum()), 1e4, 1e-3, 1e-4
    query, _ = phase_visible(panel, cm, dosage, allowed=allowed, options=PHASE_OPTIONS)
    vis = np.flatnonzero(dosage >= 0)
    match = dict(allowed=allowed, states=K, genotype=False, step=COMPOSITE_STEP, width=PHASE_OPTIONS.width,
                 matches=PHASE_OPTIONS.matches)
    segments = union_segments([composite_segments(panel, query[:, c:c + 1], **match) for c in range(2)])
    dense = np.concatenate([composite_panel(panel, query[:, c:c + 1], **match) for c in range(2)], 1)
    if drawn:
        flips = rng.random((3, vis.size)) < 0.2
        flips[0] = False
        which = np.array([0, 2, 1, 2])
    else:
        flips, which = np.zeros((1, vis.size), bool), np.zeros(1, np.int64)
    got = [np.empty((2, L)), np.full((2, L), np.nan), np.empty(L), np.full(L, np.nan)]
    composite_phase_probs(panel, cm, query, vis, flips, which, segments, n_ref=n_ref, ne=ne, eps=eps, floor=floor,
                          carriers=allele_carriers(panel), classes=hap_classes(panel, vis), out=got[0], loo=got[1], both=got[2], held_both=got[3])
    want = [np.empty((2, L)), np.full((2, L), np.nan), np.empty(L), np.full(L, np.nan)]
    sampled_phase_probs(dense, np.arange(2 * K), query, vis, cm, n_ref, ne, eps, floor, flips, which,
                        *allele_carriers(dense), *no_classes(L, 2 * K), *want, 1)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-5)
    if not drawn:
        p, q = np.empty((2, L)), np.full((2, L), np.nan)
        for c in range(2):
            haploid_probs(dense, np.arange(2 * K), np.ascontiguousarray(query[:, c]), cm, n_ref, ne, eps, floor, p[c],
                          q[c])
        np.testing.assert_allclose(got[0], p, atol=1e-5)
        np.testing.assert_allclose(got[1], q, atol=1e-5)
    assert 0.05 < got[0][:, dosage < 0].mean() < 0.95  # not a trivial panel


def _drawn_case(rng, cm_step):
    """A panel, a target phased against it, its composite segments and classes, and one
    drawn phasing that swaps a stretch of its heterozygotes in the middle."""
    L, H, K = 400, 60, 9
    founders = (rng.random((L, 12)) < rng.random((L, 1)) * 0.5).astype(np.int8)
    panel = founders[:, rng.integers(0, 12, H)]
    panel = np.where(rng.random((L, H)) < 0.01, 1 - panel, panel).astype(np.int8)
    cm = np.cumsum(rng.random(L) * cm_step)
    dosage = panel[:, 3] + panel[:, 50]
    dosage = np.where(rng.random(L) < 0.2, dosage, -1).astype(np.int8)
    allowed = np.ones(H, bool)
    allowed[[3, 50]] = False
    query, _ = phase_visible(panel, cm, dosage, allowed=allowed, options=PHASE_OPTIONS)
    vis = np.flatnonzero(dosage >= 0)
    match = dict(allowed=allowed, states=K, genotype=False, step=COMPOSITE_STEP, width=PHASE_OPTIONS.width,
                 matches=PHASE_OPTIONS.matches)
    segments = union_segments([composite_segments(panel, query[:, c:c + 1], **match) for c in range(2)])
    flips = np.zeros((2, vis.size), bool)
    flips[1, vis.size // 3:vis.size // 2] = True
    return panel, cm, query, vis, segments, flips, int(allowed.sum())


@pytest.mark.parametrize("ne", [1e4, 1e14])
def test_a_drawn_phasing_is_computed_within_its_window_and_the_decoded_haplotypes_outside(ne):
    """A drawn phasing's copy computed within `window` cM of its switches alone: exact inside
    (its forward rows before the window are the decoded haplotype's, its β after it the
    other decoded haplotype's), the decoded haplotypes' values outside; with no window
    limit it is every copy computed whole (to rounding). Where the HMM keeps no memory
    between sites (an Ne that makes every step a jump), outside is exact too."""
    rng = np.random.default_rng(21)
    panel, cm, query, vis, segments, flips, n_ref = _drawn_case(rng, 0.02)
    L = panel.shape[0]
    which = np.array([1])  # the drawn phasing alone, so the outputs are its copies

    def run(window):
        got = [np.empty((2, L)), np.full((2, L), np.nan), np.empty(L), np.full(L, np.nan)]
        composite_phase_probs(panel, cm, query, vis, flips, which, segments, n_ref=n_ref, ne=ne, eps=1e-3,
                              floor=1e-4, carriers=allele_carriers(panel), classes=hap_classes(panel, vis),
                              out=got[0], loo=got[1], both=got[2], held_both=got[3], window=window)
        return got

    whole = run(None)
    for a, b in zip(run(np.inf), whole):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    het = np.flatnonzero(query[vis, 0] != query[vis, 1])
    cmv = cm[vis]
    part = run(0.5)
    for c in range(2):
        beg, end, lo, hi = draw_window(flips[1], het, c, cmv, 0.5)
        assert 0 < lo and hi < vis.size - 1  # the window is inside the sequence
        assert (beg, end) == (c, c)  # the stretch swaps back: both ends are the copy's own haplotype
    inside = np.arange(vis[lo], vis[hi] + 1)
    for a, b in zip(part, whole):
        np.testing.assert_allclose(a[..., inside], b[..., inside], rtol=0, atol=1e-9)
    if ne > 1e10:
        for a, b in zip(part, whole):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    else:
        assert np.abs(part[0] - whole[0]).max() > 0  # outside it is an approximation here
