"""The haploid copying HMM of Beagle 5 and minimac, and imputation from its posteriors.

Beagle and minimac phase the target first and then impute each of its two haplotypes on
its own (Browning, Zhou & Browning 2018, AJHG 103:338; Das et al. 2016, Nat Genet
48:1284): a haploid Li–Stephens HMM over K states, O(K) per visible site, where the pair
HMM of :mod:`snpbag.retrieval.copying` has K² states. Here, for one phased haplotype:

1. a haploid forward–backward over the visible sites: a state keeps its haplotype with
   1 − ρ or jumps to any of the K with ρ/K (ρ as in the pair model, H the allowed
   reference haplotypes), and emits the phased allele with 1 − ε, the other with ε;
2. at a hidden site the state posteriors of the flanking visible sites are interpolated
   linearly in cM (Beagle's imputation) and summed over the states carrying ALT: the
   haplotype's ALT probability (its HDS), over the site's minor-allele carriers alone
   (:class:`Carriers`).

Leave-one-out at a visible site divides its emission out of the posterior, as the pair
model does. Phasing, the choice of states and the average over phasings are
:mod:`snpbag.retrieval.draws`'.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from snpbag.retrieval.copying import carrier_mass, left_flank, right_weight, switch_rho, visible_sites

#: The mass of each flanking posterior a hidden site may leave out (:func:`haploid_probs`).
FLOOR = 1e-4

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


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def forward_rows(panel, cols, hap, vis, cm, n_ref, ne, eps, post, start):  # pragma: no cover - compiled
    """post[t] = the normalised forward probabilities of :func:`haploid_posteriors`' HMM at
    visible site vis[t] for t >= start, from the rows before it (which depend only on the
    haplotype's alleles at vis[:start]: a phasing that agrees with another up to there
    starts from its rows, :func:`~snpbag.retrieval.draws.sampled_phase_probs`)."""
    K = cols.size
    m = vis.size
    miss = eps
    gain = 1.0 - 2.0 * eps  # emission = miss + gain · (the state's allele is the haplotype's)
    x = np.empty(K, dtype=np.int8)  # the states' alleles at the current site (gathered)
    e = np.empty(K)  # their emissions there
    whole = K == panel.shape[1] and cols[0] == 0 and cols[K - 1] == K - 1  # the states are the panel's rows
    for t in range(start, m):
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


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def backward_posteriors(panel, cols, hap, vis, cm, n_ref, ne, eps, fwd, start, post, out, loo):  # pragma: no cover - compiled
    """The backward pass of :func:`haploid_posteriors`: post[t] = the posteriors from the
    forward rows, which are fwd[t] for t < start and post[t] from there on (out, loo as
    there). A drawn phasing's forward rows before its first swapped heterozygote are the
    decoded phase's (:func:`~snpbag.retrieval.draws.sampled_phase_probs`), read where they are instead of copied."""
    K = cols.size
    m = vis.size
    miss = eps
    gain = 1.0 - 2.0 * eps
    x = np.empty(K, dtype=np.int8)
    e = np.empty(K)  # the emissions at the site after the current one
    whole = K == panel.shape[1] and cols[0] == 0 and cols[K - 1] == K - 1
    beta = np.ones(K)
    want_loo = loo.shape[0] == m
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
        src = fwd[t] if t < start else post[t]
        row = post[t]
        z = 0.0
        p = 0.0
        zl = 0.0
        pl = 0.0
        for k in range(K):
            v = src[k] * beta[k]
            z += v
            p += v * xs[k]
            vl = v / e[k]  # without this site's emission: leave-one-out
            zl += vl
            pl += vl * xs[k]
        inv = 1.0 / z
        for k in range(K):
            row[k] = src[k] * beta[k] * inv
        out[t] = p * inv
        if want_loo:
            loo[t] = pl / zl


@njit(cache=True, nogil=True)
def haploid_posteriors(panel, cols, hap, vis, cm, n_ref, ne, eps, post, out, loo):  # pragma: no cover - compiled
    """post[t] = the state posteriors of the haploid copying HMM (module doc) at visible
    site vis[t]; out[t] = P(ALT) there, loo[t] the same with its own emission left out (a
    (0,) loo skips that). Arguments as :func:`haploid_probs`; vis : (m,) its visible sites.
    Both passes compile with ``error_model="numpy"``: no zero-division check per state (an
    emission is at least ε > 0), which kept the leave-one-out loop from vectorising."""
    forward_rows(panel, cols, hap, vis, cm, n_ref, ne, eps, post, 0)
    backward_posteriors(panel, cols, hap, vis, cm, n_ref, ne, eps, post, 0, post, out, loo)


@njit(cache=True, nogil=True, fastmath=True)
def interpolate_hidden(panel, cols, vis, cm, post, floor, out):  # pragma: no cover - compiled
    """out[s] = P(ALT) at every hidden site s (not in vis) from the state posteriors ``post``
    (m, K) of the flanking visible sites, interpolated linearly in cM and summed over the
    states whose posterior at a flanking site reaches floor / K (they leave out at most
    ``floor`` of each side's mass; 0: every state, exact), as Beagle keeps only the likely
    states between typed sites. Visible sites are left as they are."""
    L = panel.shape[0]
    K = cols.size
    m = vis.size
    idx = np.empty(K, dtype=np.int64)
    thr = floor / K
    n = 0
    t_left = -1  # the last visible site at or before s
    built = -2  # the interval whose states are in idx
    for s in range(L):
        t_left = left_flank(vis, t_left, s)
        if t_left >= 0 and vis[t_left] == s:
            continue  # visible
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


class Carriers(NamedTuple):
    """Each site's carriers of its minor allele among a panel's columns, compressed by site
    (CSR): site s's are indices[indptr[s]:indptr[s + 1]], ascending; ``alt_minor[s]``: they
    carry ALT (else REF; ties: ALT). A panel row has a few percent of its columns carrying
    the minor allele, so a hidden site's ALT mass sums over those alone
    (:func:`interpolate_carriers`)."""

    indptr: np.ndarray  # (L + 1,) int64
    indices: np.ndarray  # (nnz,) int32 panel columns
    alt_minor: np.ndarray  # (L,) bool


@njit(cache=True, nogil=True)
def _carriers(panel):  # pragma: no cover - compiled
    L, H = panel.shape
    alt_minor = np.empty(L, dtype=np.bool_)
    indptr = np.zeros(L + 1, dtype=np.int64)
    for s in range(L):
        a = 0
        for j in range(H):
            a += panel[s, j]
        alt_minor[s] = 2 * a <= H
        indptr[s + 1] = indptr[s] + (a if alt_minor[s] else H - a)
    indices = np.empty(indptr[L], dtype=np.int32)
    for s in range(L):
        want = 1 if alt_minor[s] else 0
        i = indptr[s]
        for j in range(H):
            if panel[s, j] == want:
                indices[i] = j
                i += 1
    return indptr, indices, alt_minor


def allele_carriers(panel: np.ndarray) -> Carriers:
    """:class:`Carriers` of ``panel`` (L, H) int8 0/1 site-major alleles."""
    return Carriers(*_carriers(panel))


#: States per block of :func:`_kept_rows`: the G copies' values of BLOCK states fill
#: BLOCK · G · 4 bytes of the state-major rows, which stay in L1 while they are written.
BLOCK = 16


@njit(cache=True, nogil=True)
def _kept_rows(post, tl, tr, thr, rows_l, rows_r, tot_l, tot_r):  # pragma: no cover - compiled
    """rows_l[k, g] = post[g, tl, k] and rows_r[k, g] = post[g, tr, k] for the states kept
    between visible sites tl and tr (posterior >= thr at either, as :func:`_interval_states`;
    −1: no such site, its row all 0), else 0, and tot_l[g], tot_r[g] their sums over k; row
    K (the state of a column that is none) is left 0.

    The rows are state-major and G wide, so they are written a block of states at a time
    for every copy (the block's lines stay in cache until they are full, where one copy's
    whole row at a time touched a new line per state), and the G sums advance together:
    each copy's is still a sequential sum in state order (the same bits however this was
    compiled and whatever G), but the G chains of additions overlap, where one copy's whole
    row summed alone waited on each addition."""
    G, m, K = post.shape
    keep_l, keep_r = tl >= 0, tr >= 0
    zero = np.float32(0.0)
    tot_l[:] = 0.0
    tot_r[:] = 0.0
    for k0 in range(0, K, BLOCK):
        k1 = min(K, k0 + BLOCK)
        for g in range(G):
            left, right = post[g, tl], post[g, tr]  # tl, tr = −1 read a row, masked
            sl, sr = tot_l[g], tot_r[g]
            for k in range(k0, k1):
                hit = (keep_l & (left[k] >= thr)) | (keep_r & (right[k] >= thr))
                vl = left[k] if hit & keep_l else zero
                vr = right[k] if hit & keep_r else zero
                rows_l[k, g] = vl
                rows_r[k, g] = vr
                sl += vl
                sr += vr
            tot_l[g], tot_r[g] = sl, sr


@njit(cache=True, nogil=True)
def interpolate_carriers(state_of, vis, cm, post, floor, indptr, indices, alt_minor, out):  # pragma: no cover - compiled
    """:func:`interpolate_hidden` of G haplotypes at once from each hidden site's
    minor-allele carriers (:class:`Carriers` fields indptr, indices, alt_minor of the panel)
    instead of its whole row: the same sum (up to rounding), over the carriers that are kept
    states, or the kept states' total mass less it where the minor allele is REF.
    state_of : (H,) the state of each panel column, −1 for none; post : (G, m, K) the G
    haplotypes' state posteriors at the visible sites vis; out : (G, L).

    Per interval between two visible sites the kept states' posteriors of every haplotype
    are laid out once, state-major with zeros for the others (:func:`_kept_rows`), so a
    carrier costs one index load and one contiguous G-wide add per flank, whatever G, and
    no branch: the carrier lists, most of the time at a sparse array, are walked once for
    the G haplotypes instead of once each. Not fast-math: each haplotype's sums run in
    carrier order, so its result has the same bits whatever G and however the compiler
    vectorised the loops."""
    G, m, K = post.shape
    L = alt_minor.size
    slot = np.empty(state_of.size, dtype=np.int64)  # state_of with none → K, a zero in the rows
    for j in range(state_of.size):
        slot[j] = state_of[j] if state_of[j] >= 0 else K
    rows_l = np.zeros((K + 1, G), dtype=np.float32)
    rows_r = np.zeros((K + 1, G), dtype=np.float32)
    ml = np.empty(G)
    mr = np.empty(G)
    tot_l = np.zeros(G)  # the kept states' mass, for the sites whose minor allele is REF
    tot_r = np.zeros(G)
    thr = floor / K
    t_left = -1  # the last visible site at or before s
    built = -2  # the interval whose kept states are in rows_l, rows_r and their mass in tot_l, tot_r
    for s in range(L):
        t_left = left_flank(vis, t_left, s)
        if t_left >= 0 and vis[t_left] == s:
            continue  # visible
        t_right = t_left + 1 if t_left + 1 < m else -1
        if built != t_left:  # the states kept between these two visible sites (as interpolate_hidden's)
            _kept_rows(post, t_left, t_right, thr, rows_l, rows_r, tot_l, tot_r)
            built = t_left
        carrier_mass(rows_l, rows_r, slot, indptr, indices, alt_minor, tot_l, tot_r, cm, vis, t_left, s, ml, mr, out)


@njit(cache=True, nogil=True)
def haploid_probs(panel, cols, hap, cm, n_ref, ne, eps, floor, out, loo):  # pragma: no cover - compiled
    """out[s] = P(ALT) of the haplotype at every site s from the haploid copying HMM whose K
    states copy the panel columns ``cols`` (module doc); loo[s] the same at each visible site
    with its own emission left out (a (0,) loo skips that; hidden sites are left as they are).

    panel : (L, H) int8 site-major alleles; cols : (K,) the states' columns; hap : (L,) int8
    the haplotype's alleles, −1 hidden (at least one visible); n_ref : H in the switch
    probability; floor : :func:`interpolate_hidden`."""
    vis = visible_sites(hap)
    m = vis.size
    post = np.empty((m, cols.size), dtype=np.float32)
    pv = np.empty(m)
    lv = np.empty(m if loo.shape[0] == panel.shape[0] else 0)
    haploid_posteriors(panel, cols, hap, vis, cm, n_ref, ne, eps, post, pv, lv)
    for t in range(m):
        out[vis[t]] = pv[t]
        if lv.size:
            loo[vis[t]] = lv[t]
    interpolate_hidden(panel, cols, vis, cm, post, floor, out)
