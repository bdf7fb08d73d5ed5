"""snpbag.retrieval.composite: composite states at the visible sites, against their dense layout."""

from __future__ import annotations

import numpy as np
import pytest

from snpbag.retrieval.composite import composite_at, interpolate_segments
from snpbag.retrieval.haploid import (COMPOSITE_STEP, PHASE_OPTIONS, allele_carriers, genotype_probs, haploid_probs,
                                      interpolate_hidden, phased_probs)
from snpbag.retrieval.phasing import phase_visible
from snpbag.retrieval.states import composite_panel, fill_composite


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


@pytest.mark.parametrize("floor", [0.0, 0.05])
def test_hidden_sites_through_the_segments_equal_the_dense_composite_layout(floor):
    """Every hidden site, before the first visible site, between two and after the last,
    sums the same kept states' alleles as interpolate_hidden over the (L, K) layout, for
    each of G posteriors at once; visible sites are left alone."""
    rng = np.random.default_rng(3)
    L, H, K, G = 150, 30, 7, 3
    panel = (rng.random((L, H)) < rng.random((L, 1)) * 0.6).astype(np.int8)  # minor allele ALT and REF
    vis = np.sort(rng.choice(np.arange(5, L - 5), 25, replace=False))
    cm = np.cumsum(rng.random(L) * 0.01)
    cm[vis[3]] = cm[vis[4]] = cm[vis[3] + 1]  # two flanks at one position
    segments = _segments(rng, vis, K, H, L)
    dense = np.empty((L, K), np.int8)
    fill_composite(panel, *segments, dense)
    np.testing.assert_array_equal(composite_at(panel, vis, segments), dense[vis])
    post = rng.dirichlet(np.full(K, 0.3), (G, vis.size)).astype(np.float32)  # some below the floor
    out = np.full((G, L), -7.0)
    interpolate_segments(*segments, H, vis, cm, post, floor, *allele_carriers(panel), out)
    for g in range(G):
        want = np.full(L, -7.0)
        interpolate_hidden(dense, np.arange(K), vis, cm, post[g], floor, want)
        np.testing.assert_allclose(out[g], want, atol=2e-6, err_msg=f"copy {g}")
    assert (out[:, vis] == -7.0).all()


def test_the_composite_path_equals_the_dense_layout_it_replaced():
    """phased_probs with fewer states than haplotypes (composite states per decoded
    haplotype, the decoded phase alone) gives what laying the states out over every panel
    site and running haploid_probs on them gave: HDS, genotype and leave-one-out
    probabilities."""
    rng = np.random.default_rng(11)
    L, H, K = 400, 60, 9
    founders = (rng.random((L, 12)) < rng.random((L, 1)) * 0.5).astype(np.int8)
    panel = founders[:, rng.integers(0, 12, H)]
    flip = rng.random((L, H)) < 0.01  # mutations on the copies
    panel = np.where(flip, 1 - panel, panel).astype(np.int8)
    cm = np.cumsum(rng.random(L) * 0.005)
    dosage = panel[:, 3] + panel[:, 50]
    dosage = np.where(rng.random(L) < 0.2, dosage, -1).astype(np.int8)  # a sparse array
    allowed = np.ones(H, bool)
    allowed[[3, 50]] = False  # the target's own haplotypes are not copied
    n_ref, ne, eps = int(allowed.sum()), 1e4, 1e-3
    gp, held, hds = phased_probs(panel, cm, dosage, allowed=allowed, states=K, ne=ne, eps=eps, loo=True)
    query, _ = phase_visible(panel, cm, dosage, allowed=allowed, options=PHASE_OPTIONS)
    p, q = np.empty((2, L)), np.full((2, L), np.nan)
    for c in range(2):
        comp = composite_panel(panel, query[:, c:c + 1], allowed=allowed, states=K, genotype=False,
                               step=COMPOSITE_STEP, width=PHASE_OPTIONS.width, matches=PHASE_OPTIONS.matches)
        haploid_probs(comp, np.arange(K), np.ascontiguousarray(query[:, c]), cm, n_ref, ne, eps, 1e-4, p[c], q[c])
    np.testing.assert_allclose(hds, np.clip(p.T, 0, 1), atol=1e-5)
    np.testing.assert_allclose(gp, genotype_probs(np.clip(p.T, 0, 1)), atol=1e-5)
    np.testing.assert_allclose(held, genotype_probs(q.T), atol=1e-5)
    assert np.isnan(held[dosage < 0]).all()
    assert 0.05 < hds[dosage < 0].mean() < 0.95  # not a trivial panel
