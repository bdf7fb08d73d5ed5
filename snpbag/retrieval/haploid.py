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

from snpbag.retrieval.copying import switch_rho
from snpbag.retrieval.phasing import PhaseOptions, phase_visible
from snpbag.retrieval.states import composite_panel

#: Visible sites per step of the composite states matched to one phased haplotype (as the
#: pair model's composite states, :func:`~snpbag.retrieval.phasing.phased_composite`).
COMPOSITE_STEP = 4


@njit(cache=True, nogil=True, fastmath=True)
def _dot(post, comp_row, K):  # pragma: no cover - compiled
    acc = 0.0
    for k in range(K):
        acc += post[k] * comp_row[k]
    return acc


@njit(cache=True, nogil=True, fastmath=True)
def haploid_probs(comp, hap, cm, n_ref, ne, eps, out, loo):  # pragma: no cover - compiled
    """out[s] = P(ALT) of the haplotype at every site s from the haploid copying HMM over the
    K columns of ``comp`` (module doc); loo[s] the same at each visible site with its own
    emission left out (a (0,) loo skips that; hidden sites are left as they are).

    comp : (L, K) int8 alleles of the states; hap : (L,) int8 the haplotype's alleles,
    −1 hidden (at least one visible); n_ref : H in the switch probability."""
    L, K = comp.shape
    m = 0
    for s in range(L):
        if hap[s] >= 0:
            m += 1
    vis = np.empty(m, dtype=np.int64)
    t = 0
    for s in range(L):
        if hap[s] >= 0:
            vis[t] = s
            t += 1
    hit, miss = 1.0 - eps, eps
    post = np.empty((m, K))  # forward probabilities, then (in the backward pass) posteriors
    for t in range(m):
        s = vis[t]
        a = hap[s]
        row = post[t]
        if t == 0:
            for k in range(K):
                row[k] = hit if comp[s, k] == a else miss
        else:
            rho = switch_rho(cm, vis[t - 1], s, ne, n_ref)
            stay, jump = 1.0 - rho, rho / K  # the previous row sums to 1
            prev = post[t - 1]
            for k in range(K):
                row[k] = (hit if comp[s, k] == a else miss) * (stay * prev[k] + jump)
        z = 0.0
        for k in range(K):
            z += row[k]
        for k in range(K):
            row[k] /= z
    beta = np.ones(K)
    w = np.empty(K)
    want_loo = loo.shape[0] == L
    for t in range(m - 1, -1, -1):
        s = vis[t]
        if t < m - 1:  # beta[t] from beta[t + 1] and the emission at t + 1
            s1 = vis[t + 1]
            a = hap[s1]
            tot = 0.0
            for k in range(K):
                w[k] = (hit if comp[s1, k] == a else miss) * beta[k]
                tot += w[k]
            rho = switch_rho(cm, s, s1, ne, n_ref)
            z = 0.0
            for k in range(K):
                beta[k] = (1.0 - rho) * w[k] + rho / K * tot
                z += beta[k]
            for k in range(K):
                beta[k] /= z
        row = post[t]
        a = hap[s]
        if want_loo:
            z = 0.0
            p = 0.0
            for k in range(K):
                v = row[k] * beta[k] / (hit if comp[s, k] == a else miss)
                z += v
                p += v * comp[s, k]
            loo[s] = p / z
        z = 0.0
        for k in range(K):
            row[k] *= beta[k]
            z += row[k]
        for k in range(K):
            row[k] /= z
    t_left = -1  # the last visible site at or before s
    for s in range(L):
        while t_left + 1 < m and vis[t_left + 1] <= s:
            t_left += 1
        if t_left >= 0 and vis[t_left] == s:
            out[s] = _dot(post[t_left], comp[s], K)
            continue
        t_right = t_left + 1
        wr = 0.5
        if t_left < 0:
            wr = 1.0
        elif t_right >= m:
            wr = 0.0
        else:
            span = cm[vis[t_right]] - cm[vis[t_left]]
            if span > 0:
                wr = (cm[s] - cm[vis[t_left]]) / span
        p = 0.0
        if wr < 1.0:
            p += (1.0 - wr) * _dot(post[t_left], comp[s], K)
        if wr > 0.0:
            p += wr * _dot(post[t_right], comp[s], K)
        out[s] = p


def genotype_probs(p: np.ndarray) -> np.ndarray:
    """(..., 3) P(ALT dosage 0/1/2) of two independent haplotypes with ALT probabilities
    p (..., 2)."""
    p1, p2 = p[..., 0], p[..., 1]
    return np.stack([(1 - p1) * (1 - p2), p1 * (1 - p2) + p2 * (1 - p1), p1 * p2], -1)


def phased_probs(panel: np.ndarray, cm: np.ndarray, dosage: np.ndarray, *, allowed: np.ndarray, states: int,
                 ne: float, eps: float, loo: bool, options: PhaseOptions | None = None):
    """Imputation of one unphased sequence by phasing, then the haploid HMM per haplotype.

    panel : (L, H) int8 site-major panel alleles; cm : (L,) genetic positions;
    dosage : (L,) int8 0/1/2 visible, −1 hidden (at least one visible); allowed : (H,) bool;
    states : K composite haplotypes per phased haplotype; ne, eps : as the pair model.

    Returns ``(gp, held, hds)``: (L, 3) genotype probabilities, (L, 3) leave-one-out ones
    (NaN at hidden sites; (0, 3) without ``loo``) and (L, 2) the haplotypes' ALT
    probabilities, all float32, the haplotypes in the phaser's order.
    """
    o = options or PhaseOptions()
    L = panel.shape[0]
    n_ref = int(np.count_nonzero(allowed))
    query = phase_visible(panel, cm, dosage, allowed=allowed, options=o)
    p = np.empty((2, L))
    q = np.full((2, L if loo else 0), np.nan)
    for c in range(2):
        comp = composite_panel(panel, query[:, c:c + 1], allowed=allowed, states=states, genotype=False,
                               step=COMPOSITE_STEP, width=o.width, matches=o.matches)
        haploid_probs(comp, np.ascontiguousarray(query[:, c]), cm, n_ref, ne, eps, p[c], q[c])
    hds = np.clip(p.T, 0.0, 1.0)
    held = genotype_probs(q.T)
    return genotype_probs(hds).astype(np.float32), held.astype(np.float32), hds.astype(np.float32)
