"""snpbag.retrieval.haploid and .draws: imputation after phasing, against a dense haploid forward–backward."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from test_haplotypes import _panel
from snpbag.errors import InputError
from snpbag.retrieval.draws import (COMPOSITE_MATCHES, COMPOSITE_STEP, COMPOSITE_WIDTH, PHASE_OPTIONS,
                                    copies_at_once, distinct_phasings, genotype_probs, phase_draws,
                                    sampled_phase_probs)
from snpbag.retrieval.hapclasses import hap_classes, no_classes
from snpbag.retrieval.haploid import (allele_carriers, haploid_posteriors, haploid_probs, interpolate_carriers,
                                      interpolate_hidden)
from snpbag.retrieval.haplotypes import HaplotypePanel
from snpbag.retrieval.phasing import PhaseOptions, phase_rounds, phase_visible
from snpbag.retrieval.states import composite_panel


def _dense_posteriors(comp, hap, cm, n_ref, ne, eps, *, silent=None):
    """(visible sites, state posteriors (m, K)): forward–backward over the K states with the
    dense K × K transition matrix. ``silent``: a visible site that emits nothing (its
    leave-one-out posterior)."""
    K = comp.shape[1]
    vis = np.flatnonzero(hap >= 0)
    m = vis.size
    emit = np.where(comp[vis] == hap[vis, None], 1 - eps, eps)
    if silent is not None:
        emit[np.searchsorted(vis, silent)] = 1.0
    trans = [(1 - r) * np.eye(K) + r / K
             for r in 1 - np.exp(-0.04 * ne * np.diff(cm[vis]) / n_ref)]
    alpha = np.zeros((m, K))
    alpha[0] = emit[0] / emit[0].sum()
    for t in range(1, m):
        a = (alpha[t - 1] @ trans[t - 1]) * emit[t]
        alpha[t] = a / a.sum()
    beta = np.ones((m, K))
    for t in range(m - 2, -1, -1):
        b = trans[t] @ (emit[t + 1] * beta[t + 1])
        beta[t] = b / b.sum()
    post = alpha * beta
    return vis, post / post.sum(1, keepdims=True)


def _interpolated(comp, vis, cm, post):
    """P(ALT) at every site: a visible site's posterior, a hidden site's flanking visible
    posteriors interpolated in cM."""
    L, m = comp.shape[0], vis.size
    out = np.empty(L)
    for s in range(L):
        right = np.searchsorted(vis, s)
        if right < m and vis[right] == s:
            out[s] = post[right] @ comp[s]
            continue
        left = right - 1
        if left < 0 or right >= m:
            out[s] = post[max(left, 0) if right >= m else right] @ comp[s]
            continue
        span = cm[vis[right]] - cm[vis[left]]
        w = (cm[s] - cm[vis[left]]) / span if span > 0 else 0.5
        out[s] = (1 - w) * post[left] @ comp[s] + w * post[right] @ comp[s]
    return out


def _dense(comp, hap, cm, n_ref, ne, eps, *, silent=None):
    """P(ALT) at every site from the dense haploid forward–backward (:func:`_dense_posteriors`)."""
    vis, post = _dense_posteriors(comp, hap, cm, n_ref, ne, eps, silent=silent)
    return _interpolated(comp, vis, cm, post)


def _dense_over_phasings(comp, query, flips, cm, n_ref, ne, eps):
    """((L, 2) P(ALT) of the two decoded haplotypes, (L,) P(ALT on both)) averaged over
    phasings (flips (S, m): the visible sites each swaps): every phasing's copy c counts for
    decoded haplotype c, or 1 − c where it is swapped (at a hidden site: where the nearer
    flanking visible site is); P(both) averages the product of the two copies'."""
    L = comp.shape[0]
    vis = np.flatnonzero(query[:, 0] >= 0)
    nearest = np.empty(L, dtype=np.int64)  # the visible index whose orientation a site takes
    for s in range(L):
        right = np.searchsorted(vis, s)
        if right < vis.size and vis[right] == s:
            nearest[s] = right
        elif right == 0 or right == vis.size:
            nearest[s] = min(right, vis.size - 1)
        else:
            left = right - 1
            span = cm[vis[right]] - cm[vis[left]]
            w = (cm[s] - cm[vis[left]]) / span if span > 0 else 0.5
            nearest[s] = left if w < 0.5 else right
    p, both = np.zeros((L, 2)), np.zeros(L)
    for f in flips:
        copies = []
        for c in range(2):
            hap = np.full(L, -1, np.int8)
            hap[vis] = np.where(f, query[vis, 1 - c], query[vis, c])
            copies.append(_dense(comp, hap, cm, n_ref, ne, eps))
        swapped = f[nearest]
        p[:, 0] += np.where(swapped, copies[1], copies[0]) / len(flips)
        p[:, 1] += np.where(swapped, copies[0], copies[1]) / len(flips)
        both += copies[0] * copies[1] / len(flips)
    return p, both


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_equals_the_dense_haploid_forward_backward(seed):
    rng = np.random.default_rng(seed)
    L, K = 40, 7
    comp = rng.integers(0, 2, (L, K)).astype(np.int8)
    cm = np.cumsum(rng.random(L) * 0.05)
    cm[10] = cm[9]  # two sites at one genetic position
    hap = comp[np.arange(L), rng.integers(0, K, L)].copy()  # a mosaic of the states
    hap[rng.random(L) < 0.6] = -1
    hap[[0, L - 1]] = -1  # hidden sites before the first and after the last visible one
    hap[[3, 20]] = 1 - comp[[3, 20], 0]  # visible and visible
    hap[20] = 1 - hap[20] if (comp[20] == hap[20]).all() else hap[20]
    n_ref, ne, eps = 30, 2e3, 0.01
    cols = np.arange(K)
    out, loo = np.empty(L), np.full(L, np.nan)
    haploid_probs(comp, cols, hap, cm, n_ref, ne, eps, 0.0, out, loo)
    want = _dense(comp, hap, cm, n_ref, ne, eps)
    np.testing.assert_allclose(out, want, atol=1e-6)
    visible = np.flatnonzero(hap >= 0)
    assert np.isnan(loo[hap < 0]).all()
    for s in visible:
        np.testing.assert_allclose(loo[s], _dense(comp, hap, cm, n_ref, ne, eps, silent=s)[s], atol=1e-6)
    assert np.abs(loo[visible] - out[visible]).max() > 0.1  # a call moves its posterior, not its leave-one-out
    without = np.empty(L)
    haploid_probs(comp, cols, hap, cm, n_ref, ne, eps, 0.0, without, np.zeros(0))
    np.testing.assert_array_equal(without, out)
    # the states may be any columns of a wider panel; a floor leaves out at most that much mass
    wide = np.concatenate([1 - comp, comp], 1)
    haploid_probs(wide, cols + K, hap, cm, n_ref, ne, eps, 0.0, without, np.zeros(0))
    np.testing.assert_array_equal(without, out)
    haploid_probs(comp, cols, hap, cm, n_ref, ne, eps, 0.05, without, np.zeros(0))
    assert np.abs(without - want).max() < 0.05 and (without == out)[visible].all()


@pytest.mark.parametrize("typed", ["none", "visible", "more"])
@pytest.mark.parametrize("floor", [0.0, 0.05, 3.0])
def test_interpolation_over_minor_allele_carriers_equals_the_whole_rows(floor, typed):
    """The sparse interpolation (each hidden site read from its minor-allele carriers or
    from the kept states' alleles, whichever list is shorter; or, given the panel's
    classes between typed sites, from the kept states' mass per class) gives what the
    dense one (every state's allele) gives: ALT the minor or the major allele, ties, a
    monomorphic site, states a subset of the panel's columns in any order, hidden sites
    before the first and after the last visible one, a floor that drops states (3.0: a few
    states kept, fewer than the common sites' carriers, so both lists are read); classes
    typed at the visible sites, or at more (typed sites this target misses, read from the
    carriers, and intervals of its that span several of theirs)."""
    rng = np.random.default_rng(5)
    L, H = 60, 24
    freq = rng.choice([0.02, 0.1, 0.5, 0.9, 0.98], L)
    panel = (rng.random((L, H)) < freq[:, None]).astype(np.int8)
    panel[7], panel[8, :12], panel[8, 12:] = 1, 0, 1  # monomorphic ALT; a tie
    c = allele_carriers(panel)
    assert c.alt_minor[8] and not c.alt_minor[7] and c.indptr[8] == c.indptr[7]  # ties: ALT; no REF carriers
    for s in range(L):
        np.testing.assert_array_equal(c.indices[c.indptr[s]:c.indptr[s + 1]],
                                      np.flatnonzero(panel[s] == (1 if c.alt_minor[s] else 0)))
    cols = rng.permutation(H)[:17]
    hap = np.full(L, -1, np.int8)
    vis = np.sort(rng.choice(np.arange(3, L - 3), 12, replace=False))
    hap[vis] = panel[vis, cols[0]]
    cm = np.cumsum(rng.random(L) * 0.02)
    post = np.empty((vis.size, cols.size), np.float32)
    haploid_posteriors(panel, cols, hap, vis, cm, H, 1e4, 0.01, post, np.empty(vis.size), np.empty(0))
    want, got = np.full(L, np.nan), np.full(L, np.nan)
    interpolate_hidden(panel, cols, vis, cm, post, floor, want)
    more = np.union1d(vis, rng.choice(L, 9, replace=False))
    k = {"none": no_classes(L, H), "visible": hap_classes(panel, vis), "more": hap_classes(panel, more)}[typed]
    interpolate_carriers(panel, cols, vis, cm, post[None], floor, *c, *k, got[None])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.isnan(got[vis]).all() and np.isfinite(np.delete(got, vis)).all()  # visible sites are left as they are


@pytest.mark.parametrize("wide", [False, True])
def test_phased_selection_is_the_haploid_model_on_its_phase_and_composite_states(wide, monkeypatch):
    """votes(selection="phased") = phase the visible sites (with the phaser's window of the
    panel's size, :func:`~snpbag.retrieval.draws.phase_options`), then the dense haploid model
    averaged over the decoded phase and the phasings drawn from its PP, with the panel's
    own haplotypes as states where twice K reaches them, else the K composites of each
    phased haplotype, both sets for every copy."""
    import snpbag.retrieval.draws as draws

    monkeypatch.setattr(draws, "PHASE_DRAWS", 8)  # fewer than the default: a faster dense reference
    if wide:  # a step either side per 4 haplotypes: these 16-20 take the widened window, and the
        # phaser 6 of them as states, in steps of 2 sites (with every haplotype a state, or a
        # window that spans the sequence either way, the width would change nothing)
        monkeypatch.setattr(draws, "PHASE_HAPLOTYPES_PER_STEP", 4)
        monkeypatch.setattr(draws, "PHASE_OPTIONS", replace(PHASE_OPTIONS, haploid_states=6, step=2))
    rng = np.random.default_rng(4)
    h, cm = _panel(rng, n=10, L=60)
    g = (h[2, :, 0] + h[7, :, 1]).astype(np.int8)
    g[rng.random(g.size) < 0.5] = 4
    g[5] = -1
    ne, eps, K = 3e3, 0.01, 6
    panel = HaplotypePanel(h, cm, states=K, ne=ne, eps=eps, selection="phased")
    by_site = h.transpose(1, 0, 2).reshape(h.shape[1], -1)
    gi = np.where(g <= 2, g, -1).astype(np.int8)
    every = HaplotypePanel(h, cm, states=20, ne=ne, eps=eps, selection="phased")  # states: the panel itself
    for exclude, panel in ((None, panel), ([1, 3], panel), ([1, 3], every)):
        allowed = np.ones(20, dtype=bool)
        for e in np.atleast_1d(exclude if exclude is not None else []):
            allowed[2 * e: 2 * e + 2] = False
        o = draws.phase_options(int(allowed.sum()))
        assert (o.width > PHASE_OPTIONS.width) == wide and o.width <= draws.PHASE_MAX_WIDTH
        query, pp = phase_visible(by_site, cm, gi, allowed=allowed, options=o)
        if wide:  # the wider window phases differently here: the comparison below tells them apart
            narrow = phase_visible(by_site, cm, gi, allowed=allowed, options=draws.PHASE_OPTIONS)
            assert not (np.array_equal(narrow[0], query) and np.array_equal(narrow[1], pp, equal_nan=True))
        vis = np.flatnonzero(gi >= 0)
        calls = np.stack([np.minimum(gi[vis], 1), gi[vis] - np.minimum(gi[vis], 1)], -1).astype(np.int8)
        hv, pp, _ = phase_rounds(by_site[vis], cm[vis], calls, bounds=[(0, vis.size)], allowed=allowed,
                                 options=o, rounds=o.rounds)
        np.testing.assert_array_equal(hv, query[vis])
        flips = phase_draws(hv, pp, 8)
        assert flips[1:].any()  # some phase is uncertain here, so the draws differ from the decoded one
        if panel is every:  # the panel's own haplotypes as states
            states = by_site[:, allowed]
        else:  # composite: every copy over the K composites of both decoded haplotypes
            states = np.concatenate([composite_panel(by_site, query[:, c:c + 1], allowed=allowed, states=K,
                                                     genotype=False, step=COMPOSITE_STEP, width=COMPOSITE_WIDTH,
                                                     matches=COMPOSITE_MATCHES) for c in range(2)], 1)
        p, both = _dense_over_phasings(states, query, flips, cm, int(allowed.sum()), ne, eps)
        assert np.abs(both - p[:, 0] * p[:, 1]).max() > 0.02  # the phasings' haplotypes are not independent
        gp, held, hds = panel.votes(g, np.arange(60), exclude=exclude, loo=True, hds=True)
        np.testing.assert_allclose(hds, p, atol=1.5e-4, err_msg=str(exclude))
        want = np.stack([1 - p.sum(1) + both, p.sum(1) - 2 * both, both], 1)
        np.testing.assert_allclose(gp, want, atol=3e-4, err_msg=str(exclude))
        np.testing.assert_allclose(gp.sum(1), 1, atol=1e-6)
        assert np.isnan(held[gi < 0]).all() and np.isfinite(held[gi >= 0]).all()
        np.testing.assert_array_equal(panel.votes(g, np.arange(60), exclude=exclude), gp)
        # a batch reads untyped sites through the panel's classes between the batch's typed
        # sites; a sequence missing some of them reads those from the carriers
        g2 = g.copy()
        g2[np.flatnonzero(gi < 0)[:4]] = 1
        batch = panel.votes(np.stack([g, g2]), np.arange(60), exclude=None if exclude is None else [exclude] * 2)
        np.testing.assert_allclose(batch[0], gp, atol=1e-6, err_msg=str(exclude))
        np.testing.assert_allclose(batch[1], panel.votes(g2, np.arange(60), exclude=exclude), atol=1e-6)


def test_a_heterozygote_whose_phase_the_draws_split_stays_a_heterozygote():
    """Two visible heterozygotes with a hidden site between them, nearer the first; four
    panel haplotypes and no switching, so each phasing copies exactly one haplotype per
    copy. The decoded phase copies 111 and 000, the draw that switches at the second
    heterozygote copies 100 and 011: the hidden site is ALT on one haplotype in both
    phasings, on the first in one and the second in the other. Averaged, each haplotype is
    ALT with ½ (HDS), and the genotype is 0/1 for certain, not (¼, ½, ¼) as two independent
    haplotypes with ½ would be; the dose is 1 either way."""
    panel = np.array([[1, 0, 1, 0], [1, 0, 0, 1], [1, 0, 0, 1]], np.int8)  # sites × haplotypes 111 000 100 011
    hap = np.array([[1, 0], [-1, -1], [1, 0]], np.int8)  # the decoded phase: 1·1 and 0·0
    vis, cm = np.array([0, 2]), np.array([0.0, 0.1, 1.0])
    flips = np.array([[False, False], [False, True]])  # the draw swaps at the second heterozygote
    out, both = np.empty((2, 3)), np.empty(3)
    sampled_phase_probs(panel, np.arange(4), hap, vis, cm, 4, 1e-9, 1e-9, 0.0, flips, np.arange(2),
                        *allele_carriers(panel), *hap_classes(panel, vis), out, np.empty((2, 0)), both, np.empty(0), 1)
    np.testing.assert_allclose(out[:, 1], [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(both[1], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[:, [0, 2]], [[1, 1], [0, 0]], atol=1e-6)  # in the decoded phase
    gp = genotype_probs(out.T, both - out[0] * out[1])
    np.testing.assert_allclose(gp, [[0, 1, 0]] * 3, atol=1e-6)
    np.testing.assert_allclose(genotype_probs(out.T)[1], [0.25, 0.5, 0.25], atol=1e-6)  # as if independent


def _two_haplotypes(rng, L, H, n_visible, copied):
    """A random (L, H) panel, n_visible sites, a target phased as the panel columns
    ``copied`` there (−1 elsewhere), and genetic positions."""
    panel = rng.integers(0, 2, (L, H)).astype(np.int8)
    vis = np.sort(rng.choice(L, n_visible, replace=False))
    hap = np.full((L, 2), -1, np.int8)
    hap[vis] = panel[vis][:, copied]
    return panel, vis, hap, np.cumsum(rng.random(L) * 0.02)


@pytest.mark.parametrize("classes", [False, True])
def test_a_phasing_drawn_twice_is_computed_once_and_counted_twice(classes):
    """Draws that repeat a phasing give, bit for bit, what computing every draw gives; and
    so does interpolating the copies one at a time, in chunks, or all together, reading
    the hidden sites from the carriers or through the panel's classes."""
    rng = np.random.default_rng(6)
    L, H = 50, 16
    panel, vis, hap, cm = _two_haplotypes(rng, L, H, 15, [2, 9])
    k = hap_classes(panel, vis) if classes else no_classes(L, H)
    distinct = rng.random((3, vis.size)) < 0.3
    distinct[0] = False
    which = np.array([0, 2, 0, 1, 2, 2])
    want = None
    for flips, idx, chunk in ((distinct[which], np.arange(which.size), 1), (distinct, which, 1), (distinct, which, 4),
                              (distinct, which, 6), (distinct, which, 100)):
        out, loo, both, held = np.empty((2, L)), np.full((2, L), np.nan), np.empty(L), np.full(L, np.nan)
        sampled_phase_probs(panel, np.arange(H), hap, vis, cm, H, 1e4, 0.01, 1e-4, flips, idx, *allele_carriers(panel),
                            *k, out, loo, both, held, chunk)
        want = want or (out, loo, both, held)
        for a, b in zip((out, loo, both, held), want):
            np.testing.assert_array_equal(a, b, err_msg=f"chunk {chunk}")


def test_phasings_that_start_from_the_decoded_forward_rows_match_each_phasing_alone():
    """With several phasings each starts its forward pass from the decoded phase's rows
    before its first swapped heterozygote; one phasing alone runs its forward from the
    first site. Averaged over draws, the first equals the mean of the second (the
    reference), leave-one-out and P(both ALT) included."""
    rng = np.random.default_rng(12)
    L, H = 80, 20
    panel, vis, hap, cm = _two_haplotypes(rng, L, H, 30, [1, 7])
    flips = np.zeros((4, vis.size), bool)
    flips[1, 10:], flips[2, 3:20], flips[3, 25:] = True, True, True
    which = np.array([0, 1, 2, 3, 1])
    args = (1e4, 0.01, 1e-4)

    def run(f, w):
        out, loo, both, held = np.empty((2, L)), np.full((2, L), np.nan), np.empty(L), np.full(L, np.nan)
        sampled_phase_probs(panel, np.arange(H), hap, vis, cm, H, *args, f, w, *allele_carriers(panel),
                            *hap_classes(panel, vis), out, loo, both, held, 3)
        return out, loo, both, held

    got = run(flips, which)
    alone = [run(flips[u:u + 1], np.zeros(1, np.int64)) for u in range(4)]
    for k in range(4):
        want = np.mean([alone[u][k] for u in which], axis=0)
        np.testing.assert_allclose(got[k], want, rtol=0, atol=1e-12)


def test_distinct_phasings_are_np_unique_of_the_rows():
    """The fast row deduplication gives np.unique's rows, order and inverse (the slow
    reference), with repeats, a single draw and no sites."""
    rng = np.random.default_rng(8)
    for shape in ((12, 40), (12, 3), (1, 5), (4, 0)):
        d = rng.random(shape) < 0.3
        if shape[0] > 3:
            d[3] = d[1]
        d[0] = False
        rows, which = distinct_phasings(d)
        want_rows, want_which = np.unique(d, axis=0, return_inverse=True)
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_array_equal(which, want_which.reshape(-1))
        np.testing.assert_array_equal(rows[which], d)


def test_copies_at_once_fit_the_budget():
    assert copies_at_once(1000, 1500, budget=4 * 1000 * 1500 * 5 + 7) == 5
    assert copies_at_once(10**6, 10**4) == 1  # one copy whatever its size
    assert copies_at_once(0, 0) >= 1


def test_a_pair_of_panel_haplotypes_imputes_exactly_and_in_phase():
    """A target made of haplotype 0 of genome 2 and haplotype 1 of genome 5, a fifth of its
    sites typed (and the first and last few, where a random panel leaves the copy ambiguous):
    every hidden genotype is recovered, and its haplotype dosages are the two haplotypes (in
    one order or the other along the whole sequence)."""
    rng = np.random.default_rng(9)
    n, L = 40, 400
    h = rng.integers(0, 2, (n, L, 2)).astype(np.int8)
    a, b = h[2, :, 0], h[5, :, 1]
    target = (a + b).astype(np.int8)
    hidden = rng.random(L) > 0.2
    hidden[:4] = hidden[-4:] = False
    target[hidden] = 4
    panel = HaplotypePanel(h, np.arange(L) * 0.001, states=16, selection="phased")
    gp, hds = panel.votes(target, np.arange(L), exclude=7, hds=True)
    np.testing.assert_array_equal(gp.argmax(1), a + b)
    called = (hds > 0.5).astype(np.int8)
    assert (called == np.stack([a, b], 1)).all() or (called == np.stack([b, a], 1)).all()


def test_batch_and_threads_equal_one_at_a_time():
    rng = np.random.default_rng(3)
    h, cm = _panel(rng, n=12, L=80)
    panel = HaplotypePanel(h, cm, states=5, selection="phased")
    sites = np.arange(5, 70)
    g = rng.integers(0, 5, (5, sites.size)).astype(np.int8)
    g[3] = 4  # nothing visible: the panel's frequencies
    exclude = [0, -1, [3, 4], None, 11]
    one = [panel.votes(row, sites, exclude=e, loo=True, hds=True) for row, e in zip(g, exclude)]
    for threads in (1, 3):
        got = panel.votes(g, sites, exclude=exclude, threads=threads, loo=True, hds=True)
        for k in range(3):
            np.testing.assert_array_equal(got[k], np.stack([o[k] for o in one]))
    p = h.transpose(1, 0, 2).reshape(80, -1).mean(1)[sites]  # sequence 3 excludes nothing
    np.testing.assert_allclose(one[3][2], np.stack([p, p], 1), atol=1e-6)


def test_bad_options_are_refused():
    h, cm = _panel(np.random.default_rng(0))
    with pytest.raises(InputError, match="state selection 'haploid'; use one of conflicts, composite, phased"):
        HaplotypePanel(h, cm, selection="haploid")
    with pytest.raises(InputError, match="haplotype dosages need state selection 'phased'; this panel uses 'conflicts'"):
        HaplotypePanel(h, cm).votes(np.zeros(30, np.int8), np.arange(30), hds=True)
    with pytest.raises(InputError, match="selection 'phased'; use one of conflicts, composite$"):
        PhaseOptions(selection="phased")  # a phasing rule it is not


def test_phase_draws_switch_at_uncertain_heterozygotes_and_keep_the_rest():
    """Row 0 is the decoded phase; a draw switches at a heterozygote with probability 1 − PP
    (PP 1 or NaN: never) and the swap lasts to the next switch, homozygotes included."""
    hap = np.array([[0, 0], [1, 0], [0, 0], [0, 1], [1, 1], [1, 0], [0, 1], [0, 0]], np.int8)
    pp = np.array([np.nan, np.nan, np.nan, 0.5, np.nan, 1.0, 0.9, np.nan], np.float32)
    flips = phase_draws(hap, pp, 4001)
    assert not flips[0].any() and not flips[:, :3].any()  # nothing before the first uncertain het
    np.testing.assert_array_equal(flips[:, 3], flips[:, 4])  # a homozygote follows the last het
    np.testing.assert_array_equal(flips[:, 4], flips[:, 5])  # PP 1: never switched there
    assert abs(flips[1:, 3].mean() - 0.5) < 0.03
    assert abs((flips[1:, 6] != flips[1:, 5]).mean() - 0.1) < 0.02
    np.testing.assert_array_equal(flips[:, 6], flips[:, 7])
    np.testing.assert_array_equal(phase_draws(hap, pp, 5), phase_draws(hap, pp, 5))  # a fixed seed
    assert phase_draws(hap, pp, 1).shape == (1, 8) and not phase_draws(hap, pp, 1).any()
    homs = hap[[0, 2, 4, 7]]  # no heterozygote at all: every draw is the decoded phase
    assert phase_draws(homs, pp[[0, 2, 4, 7]], 3).shape == (3, 4) and not phase_draws(homs, pp[:4], 3).any()
