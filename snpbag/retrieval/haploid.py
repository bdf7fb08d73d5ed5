"""Imputation after phasing: the haploid copying HMM of Beagle 5 and minimac.

The pair HMM of :mod:`snpbag.retrieval.copying` integrates over the target's phase: its
state is an ordered pair of copied haplotypes, K² states per visible site, and most of
``snpbag impute --ref``'s time went there. Beagle and minimac phase the target first and
then impute each of its two haplotypes on its own (Browning, Zhou & Browning 2018, AJHG
103:338; Das et al. 2016, Nat Genet 48:1284): a haploid Li–Stephens HMM over K states,
O(K) per visible site. Here (``selection="phased"`` of
:class:`~snpbag.retrieval.haplotypes.HaplotypePanel`):

1. the visible sites are phased against the panel (:func:`~snpbag.retrieval.phasing.phase_visible`);
2. each phased haplotype gets its own K composite haplotypes, matched to it alone
   (:func:`~snpbag.retrieval.states.composite_panel`);
3. on each, a haploid forward–backward over the visible sites: a state keeps its
   haplotype with 1 − ρ or jumps to any of the K with ρ/K (ρ as in the pair model, H the
   allowed reference haplotypes), and emits the phased allele with 1 − ε, the other with ε;
4. at a hidden site the state posteriors of the flanking visible sites are interpolated
   linearly in cM (Beagle's imputation) and summed over the states carrying ALT: p_c, the
   ALT probability of haplotype c (its HDS);
5. the genotype probabilities are those of two independent haplotypes:
   P0 = (1 − p₁)(1 − p₂), P1 = p₁(1 − p₂) + p₂(1 − p₁), P2 = p₁p₂.

Leave-one-out at a visible site divides its emission out of the posterior, as the pair
model does; the phase and the composite states were still found with the call counted.
A phase error is not integrated over as in the pair model: it moves a stretch of ALT
probability to the other haplotype, which changes the genotype probabilities only where
the two haplotypes differ in what they copy.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from snpbag.retrieval.copying import right_weight, switch_rho, visible_sites
from snpbag.retrieval.phasing import PhaseOptions, phase_visible
from snpbag.retrieval.states import composite_panel

#: The phaser's settings for imputation: the pair model (the haploid phasing model is not
#: yet measured inside imputation), 80 states (K² = 6,400 pair states per visible
#: site) instead of phasing's default 40 — imputed r² 0.9926 against 0.9919 at a 20 % array
#: and 0.9672 against 0.9642 at 5 % on 30 targets of docs/benchmarks.md's 3 Mb cohort
#: (the phase is what the haploid model cannot integrate over), at about 3× the phasing time.
PHASE_OPTIONS = PhaseOptions(states=80, model="pair")

#: The mass of each flanking posterior a hidden site may leave out (:func:`haploid_probs`).
FLOOR = 1e-4

#: Visible sites per step of the composite states matched to one phased haplotype (as the
#: pair model's composite states, :func:`~snpbag.retrieval.phasing.phased_composite`).
COMPOSITE_STEP = 4


@njit(cache=True, nogil=True, fastmath=True)
def _interval_states(post, tl, tr, K, thr, idx):  # pragma: no cover - compiled
    """idx[:n] = the states whose posterior at visible index tl or tr (−1: none) reaches
    ``thr``; returns n."""
    n = 0
    for k in range(K):
        if (tl >= 0 and post[tl, k] >= thr) or (tr >= 0 and post[tr, k] >= thr):
            idx[n] = k
            n += 1
    return n


@njit(cache=True, nogil=True, fastmath=True)
def _alt_mass(post_row, panel_row, cols, idx, n):  # pragma: no cover - compiled
    """Σ over the states idx[:n] of posterior × the state's allele at this site."""
    acc = 0.0
    for i in range(n):
        k = idx[i]
        acc += post_row[k] * panel_row[cols[k]]
    return acc


@njit(cache=True, nogil=True)
def _alleles(panel, s, cols, whole, x):  # pragma: no cover - compiled
    """The states' alleles at site s: the panel row itself when the states are its columns
    in order (contiguous loads that vectorise), else gathered into x."""
    if whole:
        return panel[s]
    for k in range(cols.size):
        x[k] = panel[s, cols[k]]
    return x


@njit(cache=True, nogil=True, fastmath=True)
def haploid_probs(panel, cols, hap, cm, n_ref, ne, eps, floor, out, loo):  # pragma: no cover - compiled
    """out[s] = P(ALT) of the haplotype at every site s from the haploid copying HMM whose K
    states copy the panel columns ``cols`` (module doc); loo[s] the same at each visible site
    with its own emission left out (a (0,) loo skips that; hidden sites are left as they are).

    panel : (L, H) int8 site-major alleles; cols : (K,) the states' columns; hap : (L,) int8
    the haplotype's alleles, −1 hidden (at least one visible); n_ref : H in the switch
    probability. A hidden site sums over the states whose posterior at a flanking visible
    site reaches floor / K (they leave out at most ``floor`` of each side's mass; 0: every
    state, exact), as Beagle keeps only the likely states between typed sites."""
    L = panel.shape[0]
    K = cols.size
    vis = visible_sites(hap)
    m = vis.size
    miss = eps
    gain = 1.0 - 2.0 * eps  # emission = miss + gain · (the state's allele is the haplotype's)
    x = np.empty(K, dtype=np.int8)  # the states' alleles at the current site (gathered)
    e = np.empty(K)  # their emissions there
    whole = K == panel.shape[1] and cols[0] == 0 and cols[K - 1] == K - 1  # the states are the panel's rows
    post = np.empty((m, K), dtype=np.float32)  # forward probabilities, then posteriors
    for t in range(m):
        s = vis[t]
        a = hap[s]
        row = post[t]
        xs = _alleles(panel, s, cols, whole, x)
        for k in range(K):
            e[k] = miss + gain * (xs[k] == a)
        z = 0.0
        if t == 0:
            for k in range(K):
                row[k] = e[k]
                z += e[k]
        else:
            rho = switch_rho(cm, vis[t - 1], s, ne, n_ref)
            stay, jump = 1.0 - rho, rho / K  # the previous row sums to 1
            prev = post[t - 1]
            for k in range(K):
                v = e[k] * (stay * prev[k] + jump)
                row[k] = v
                z += v
        inv = 1.0 / z
        for k in range(K):
            row[k] *= inv
    beta = np.ones(K)
    want_loo = loo.shape[0] == L
    for t in range(m - 1, -1, -1):
        s = vis[t]
        if t < m - 1:  # beta[t] from beta[t + 1] and e, the emissions at t + 1
            tot = 0.0
            for k in range(K):
                beta[k] *= e[k]
                tot += beta[k]
            rho = switch_rho(cm, s, vis[t + 1], ne, n_ref)
            stay, jump = (1.0 - rho) / tot, rho / K  # normalised: the new beta sums to tot
            for k in range(K):
                beta[k] = stay * beta[k] + jump
        a = hap[s]
        xs = _alleles(panel, s, cols, whole, x)
        for k in range(K):
            e[k] = miss + gain * (xs[k] == a)
        row = post[t]
        z = 0.0
        p = 0.0
        zl = 0.0
        pl = 0.0
        for k in range(K):
            v = row[k] * beta[k]
            z += v
            p += v * xs[k]
            vl = v / e[k]  # without this site's emission: leave-one-out
            zl += vl
            pl += vl * xs[k]
        inv = 1.0 / z
        for k in range(K):
            row[k] = row[k] * beta[k] * inv
        out[s] = p * inv
        if want_loo:
            loo[s] = pl / zl
    idx = np.empty(K, dtype=np.int64)
    thr = floor / K
    n = 0
    t_left = -1  # the last visible site at or before s
    built = -2  # the interval whose states are in idx
    for s in range(L):
        while t_left + 1 < m and vis[t_left + 1] <= s:
            t_left += 1
        if t_left >= 0 and vis[t_left] == s:
            continue  # visible: its posterior, above
        t_right = t_left + 1 if t_left + 1 < m else -1
        if built != t_left:
            n = _interval_states(post, t_left, t_right, K, thr, idx)
            built = t_left
        wr = right_weight(cm, vis, t_left, s)
        p = 0.0
        if wr < 1.0:
            p += (1.0 - wr) * _alt_mass(post[t_left], panel[s], cols, idx, n)
        if wr > 0.0:
            p += wr * _alt_mass(post[t_right], panel[s], cols, idx, n)
        out[s] = p


def genotype_probs(p: np.ndarray) -> np.ndarray:
    """(..., 3) P(ALT dosage 0/1/2) of two independent haplotypes with ALT probabilities
    p (..., 2)."""
    p1, p2 = p[..., 0], p[..., 1]
    return np.stack([(1 - p1) * (1 - p2), p1 * (1 - p2) + p2 * (1 - p1), p1 * p2], -1)


def phased_probs(panel: np.ndarray, cm: np.ndarray, dosage: np.ndarray, *, allowed: np.ndarray, states: int,
                 ne: float, eps: float, loo: bool, options: PhaseOptions | None = None, floor: float = FLOOR):
    """Imputation of one unphased sequence by phasing, then the haploid HMM per haplotype.

    panel : (L, H) int8 site-major panel alleles; cm : (L,) genetic positions;
    dosage : (L,) int8 0/1/2 visible, −1 hidden (at least one visible); allowed : (H,) bool;
    states : K, the states per phased haplotype: every allowed haplotype when K reaches
    their number (Beagle's default of 1,600 does for panels up to 800 genomes), else K
    composite haplotypes matched to that haplotype; ne, eps : as the pair model;
    options : the phaser's (default :data:`PHASE_OPTIONS`); floor : :func:`haploid_probs`.

    Returns ``(gp, held, hds)``: (L, 3) genotype probabilities, (L, 3) leave-one-out ones
    (NaN at hidden sites; (0, 3) without ``loo``) and (L, 2) the haplotypes' ALT
    probabilities, all float32, the haplotypes in the phaser's order.
    """
    o = options or PHASE_OPTIONS
    L = panel.shape[0]
    n_ref = int(np.count_nonzero(allowed))
    query = phase_visible(panel, cm, dosage, allowed=allowed, options=o)
    p = np.empty((2, L))
    q = np.full((2, L if loo else 0), np.nan)
    for c in range(2):
        if states >= n_ref:
            copied, cols = panel, np.flatnonzero(allowed)
        else:
            copied = composite_panel(panel, query[:, c:c + 1], allowed=allowed, states=states, genotype=False,
                                     step=COMPOSITE_STEP, width=o.width, matches=o.matches)
            cols = np.arange(copied.shape[1])
        haploid_probs(copied, cols, np.ascontiguousarray(query[:, c]), cm, n_ref, ne, eps, floor, p[c], q[c])
    hds = np.clip(p.T, 0.0, 1.0)
    held = genotype_probs(q.T)
    return genotype_probs(hds).astype(np.float32), held.astype(np.float32), hds.astype(np.float32)
