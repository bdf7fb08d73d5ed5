"""The kernels of the pair-copying HMM (Li & Stephens 2003) that imputation
(:mod:`snpbag.retrieval.haplotypes`) and phasing (:mod:`snpbag.retrieval.phasing`) share:
emissions, the O(K²) transition step (and its form for phasing's conditioned forward),
forward, backward, posteriors, the running conflict table of the ``conflicts`` state
selection, and imputation's block loop. The model is described in
:mod:`snpbag.retrieval.haplotypes`; which K states it runs over, in :mod:`snpbag.retrieval.states`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from snpbag.retrieval.states import count_allowed, rank_states


def conflict_stride(block: int, margin: int) -> int:
    """Visible sites between the rows of the conflict table that block selection reads: every
    block start and margin edge is a multiple of gcd(block, margin), or the end."""
    return math.gcd(block, margin)


@njit(cache=True, nogil=True)
def select_states(cc, w0, w1, v0, v1, n_wide, allowed, K, out):  # pragma: no cover - compiled
    """out[:K] = the K allowed haplotypes with the fewest conflicts between rows w0 and w1 of
    the running conflict table (:func:`conflicts`: the block and its margins), ties by
    conflicts between rows v0 and v1 (``n_wide`` visible sites), then by a fixed hash of the row."""
    rank_states(cc[w1] - cc[w0], cc[v1] - cc[v0], np.int64(n_wide + 1), allowed, K, out)


@njit(cache=True, nogil=True)
def visible_sites(g):  # pragma: no cover - compiled
    """Indices of the sites with a visible call (g >= 0), in order: where the HMM steps."""
    m = 0
    for s in range(g.size):
        if g[s] >= 0:
            m += 1
    vis = np.empty(m, dtype=np.int64)
    t = 0
    for s in range(g.size):
        if g[s] >= 0:
            vis[t] = s
            t += 1
    return vis


@njit(cache=True, nogil=True, fastmath=True)
def _pair_gp(P, r, x, K):  # pragma: no cover - compiled
    """(P0, P1, P2): probabilities of allele sum 0/1/2 under the symmetric pair posterior P
    (row sums r) when the K states carry alleles x — summed over the smaller allele class."""
    n1 = 0
    for i in range(K):
        n1 += x[i]
    want = 1 if n1 <= K - n1 else 0  # the class summed over
    both = 0.0
    one = 0.0
    for i in range(K):
        if x[i] != want:
            continue
        one += r[i]
        for j in range(K):
            if x[j] == want:
                both += P[i, j]
    other = max(0.0, 1.0 - 2.0 * one + both)  # both copies in the other class
    if want == 1:
        p2, p0 = both, other
    else:
        p0, p2 = both, other
    p1 = max(0.0, 1.0 - p0 - p2)
    return p0, p1, p2


@njit(cache=True, nogil=True, fastmath=True)
def emission_rows(panel, s, gt, cand, K, hit, miss, x, ev):  # pragma: no cover - compiled
    """x = the candidates' alleles at site s; ev[a][j] = P(genotype gt | alleles a and x[j]).

    Allele 2 means "0 or 1, equally likely" (a panel of unphased genotypes, the start of
    cohort phasing, codes its heterozygotes so); ev then has a third row, a = 2."""
    alleles_at(panel, s, cand, K, x)
    for j in range(K):
        for a in range(ev.shape[0]):
            if a < 2 and x[j] < 2:
                ev[a, j] = hit if a + x[j] == gt else miss
            else:
                acc = 0.0
                for a1 in range(2):
                    for x1 in range(2):
                        if (a == 2 or a1 == a) and (x[j] == 2 or x1 == x[j]):
                            acc += hit if a1 + x1 == gt else miss
                ev[a, j] = acc / ((2 if a == 2 else 1) * (2 if x[j] == 2 else 1))


@njit(cache=True, nogil=True, fastmath=True)
def _row_sums(A, K, r):  # pragma: no cover - compiled
    """r[i] = sum of row i of A (K × K); returns the total."""
    tot = 0.0
    for i in range(K):
        row = A[i]
        acc = np.float32(0.0)
        for j in range(K):
            acc += row[j]
        r[i] = acc
        tot += acc
    return tot


@njit(cache=True, nogil=True, fastmath=True)
def normalise(A, K):  # pragma: no cover - compiled
    z = np.float32(0.0)
    for i in range(K):
        row = A[i]
        for j in range(K):
            z += row[j]
    inv = np.float32(1.0) / z
    for i in range(K):
        row = A[i]
        for j in range(K):
            row[j] *= inv


@njit(cache=True, nogil=True)
def conflicts(panel, g, vis, stride):  # pragma: no cover - compiled
    """Running opposite-homozygote conflicts of every haplotype with genotypes g over the
    visible sites ``vis``, kept every ``stride`` visible sites and at the end (a span's count
    is a difference of two rows, :func:`_cc_row`): all the block selection reads. A table of
    every site was sites x haplotypes x 4 bytes per sequence, tens of MB freshly faulted in.
    Returns the table and the index of its last row (the counts over all of ``vis``)."""
    m = vis.size
    nh = panel.shape[1]
    last = m // stride + 1
    cc = np.zeros((last + 1, nh), dtype=np.int32)
    run = np.zeros(nh, dtype=np.int32)
    for t in range(m):
        s = vis[t]
        gt = g[s]
        for h in range(nh):
            x = panel[s, h]
            if (gt == 0 and x == 1) or (gt == 2 and x == 0):
                run[h] += 1
        if (t + 1) % stride == 0:
            cc[(t + 1) // stride, :] = run
    cc[last, :] = run
    return cc, last


@njit(cache=True, nogil=True)
def switch_rho(cm, s0, s1, ne, n_allowed):  # pragma: no cover - compiled
    """Probability that one copy switches haplotype between sites s0 < s1 (module doc)."""
    return 1.0 - np.exp(-0.04 * ne * max(0.0, cm[s1] - cm[s0]) / n_allowed)


@njit(cache=True, nogil=True, fastmath=True)
def advance(prev, cur, ev, x, K, rho, rsum):  # pragma: no cover - compiled
    """cur = emission × transition(prev) over the K × K pair states, unnormalised.

    Each copy keeps its haplotype with 1 − ρ or jumps to any of the K with ρ/K, so the
    step is O(K²): a pair's emission depends only on its two alleles, so row i reads the
    emission vector of its own allele over all j (branch-free inner loops over contiguous
    rows, which vectorise)."""
    a = np.float32((1.0 - rho) * (1.0 - rho))
    bb = np.float32((1.0 - rho) * rho / K)
    tot = _row_sums(prev, K, rsum)
    c = np.float32((rho / K) * (rho / K) * tot)
    for i in range(K):
        e = ev[x[i]]
        p = prev[i]
        row = cur[i]
        base = bb * rsum[i] + c
        for j in range(K):
            row[j] = e[j] * (a * p[j] + bb * rsum[j] + base)


@njit(cache=True, nogil=True, fastmath=True)
def advance_conditioned(prev, cur, ev, x, K, rho, rsum, csum):  # pragma: no cover - compiled
    """cur = emission × transition(prev), as :func:`advance`, for a
    forward conditioned on an orientation, which is not symmetric: copy 1 jumping into pair
    (i, j) reads column j's mass, copy 2 jumping reads row i's. (The shared step reads row
    sums for both, right only for the symmetric forward; on the conditioned one it let the
    anchor's ALT leak onto copy 2 with probability ρ per site instead of ρ², which pulled
    P(same) towards 1/2 across every gap between heterozygotes; phasing's conditioned forward,
    :mod:`snpbag.retrieval.phasing`.)"""
    a = (1.0 - rho) * (1.0 - rho)
    bb = (1.0 - rho) * rho / K
    tot = 0.0
    for j in range(K):
        csum[j] = 0.0
    for i in range(K):
        acc = 0.0
        for j in range(K):
            acc += prev[i, j]
            csum[j] += prev[i, j]
        rsum[i] = acc
        tot += acc
    c = (rho / K) * (rho / K) * tot
    for i in range(K):
        e = ev[x[i]]
        base = bb * rsum[i] + c
        for j in range(K):
            cur[i, j] = e[j] * (a * prev[i, j] + bb * csum[j] + base)


@njit(cache=True, nogil=True, fastmath=True)
def forward(panel, g, cm, vis, w0, n, cand, K, ne, n_allowed, hit, miss, x, ev, rsum, alpha):  # pragma: no cover
    """alpha[t] (normalised) over the sites vis[w0:w0+n] for the candidates ``cand``."""
    for t in range(n):
        s = vis[w0 + t]
        emission_rows(panel, s, g[s], cand, K, hit, miss, x, ev)
        if t == 0:
            for i in range(K):
                e = ev[x[i]]
                row = alpha[0, i]
                for j in range(K):
                    row[j] = e[j]
        else:
            advance(alpha[t - 1], alpha[t], ev, x, K, switch_rho(cm, vis[w0 + t - 1], s, ne, n_allowed), rsum)
        normalise(alpha[t], K)


@njit(cache=True, nogil=True, fastmath=True)
def backward(panel, g, cm, vis, w0, n, cand, K, ne, n_allowed, hit, miss, x, ev, rsum, emit, beta):  # pragma: no cover
    """beta[t] (normalised, without site t's emission) over the sites vis[w0:w0+n]."""
    beta[n - 1, :, :] = 1.0
    for t in range(n - 2, -1, -1):
        s1 = vis[w0 + t + 1]
        rho = switch_rho(cm, vis[w0 + t], s1, ne, n_allowed)
        a = np.float32((1.0 - rho) * (1.0 - rho))
        bb = np.float32((1.0 - rho) * rho / K)
        emission_rows(panel, s1, g[s1], cand, K, hit, miss, x, ev)
        for i in range(K):
            e = ev[x[i]]
            nxt = beta[t + 1, i]
            row = emit[i]
            for j in range(K):
                row[j] = nxt[j] * e[j]
        tot = _row_sums(emit, K, rsum)
        c = np.float32((rho / K) * (rho / K) * tot)
        for i in range(K):
            src = emit[i]
            row = beta[t, i]
            base = bb * rsum[i] + c
            for j in range(K):
                row[j] = a * src[j] + bb * rsum[j] + base
        normalise(beta[t], K)


@njit(cache=True, nogil=True, inline="always")
def left_flank(vis, t_left, s):  # pragma: no cover - compiled
    """The index of the last visible site at or before site s (−1 before the first), moving on
    from ``t_left``, that of an earlier site: the step of every walk over a haplotype's sites
    that reads a hidden site from its flanking visible ones (the right flank is the next index)."""
    while t_left + 1 < vis.size and vis[t_left + 1] <= s:
        t_left += 1
    return t_left


@njit(cache=True, nogil=True, fastmath=True)
def right_weight(cm, vis, t_left, s):  # pragma: no cover - compiled
    """Weight of the right flanking visible site's posterior at hidden site s (the left one
    gets 1 − it): linear in cM between visible indices t_left and t_left + 1, as Beagle
    interpolates; 1 before the first visible site (t_left < 0), 0 after the last, ½ where
    the two flanks share a position."""
    if t_left < 0:
        return 1.0
    if t_left + 1 >= vis.size:
        return 0.0
    span = cm[vis[t_left + 1]] - cm[vis[t_left]]
    if span > 0:
        return (cm[s] - cm[vis[t_left]]) / span
    return 0.5


@njit(cache=True, nogil=True, fastmath=True)
def _copy_probs(panel, g, cm, allowed, n_ref, K, block, margin, ne, eps, stride, out, loo):  # pragma: no cover - compiled
    """out[s] = P(ALT dosage = 0/1/2) at every site s from the pair-copying HMM (module doc);
    with loo of shape (L, 3), loo[s] = the same at each visible site s with its own emission
    left out (leave-one-out), NaN elsewhere; a (0, 3) loo skips that. Conflict counts are
    kept every ``stride`` visible sites (:func:`conflict_stride`); ``n_ref`` haplotypes in the
    switch probability (0: the allowed ones of ``panel``; a composite panel's are fewer)."""
    L, nh = panel.shape
    n_allowed = count_allowed(allowed)
    K = min(K, n_allowed)
    if n_ref > 0:
        n_allowed = n_ref
    vis = visible_sites(g)
    m = vis.size
    if m == 0:  # nothing to copy from: the panel's Hardy-Weinberg genotype frequencies
        for s in range(L):
            c = 0
            for h in range(nh):
                if allowed[h]:
                    c += panel[s, h]
            p = c / n_allowed
            out[s, 0] = (1 - p) * (1 - p)
            out[s, 1] = 2 * p * (1 - p)
            out[s, 2] = p * p
        return
    cc, last = conflicts(panel, g, vis, stride)
    cand = np.empty(K, dtype=np.int64)
    W = min(m, block + 2 * margin)
    alpha = np.empty((W, K, K), dtype=np.float32)
    beta = np.empty((W, K, K), dtype=np.float32)
    emit = np.empty((K, K), dtype=np.float32)
    rsum = np.empty(K, dtype=np.float32)
    P = np.empty((K, K))
    Pr = np.empty((K, K))
    rr = np.empty(K)
    rl = np.empty(K)
    x = np.empty(K, dtype=np.int64)
    ev = np.empty((2, K), dtype=np.float32)
    hit, miss = np.float32(1.0 - eps), np.float32(eps / 2.0)
    want_loo = loo.shape[0] == L
    Q = np.empty((K, K))
    rq = np.empty(K)
    n_blocks = (m + block - 1) // block
    for b in range(n_blocks):
        c0 = b * block
        c1 = min(m, c0 + block)
        w0 = max(0, c0 - margin)
        w1 = min(m, c1 + margin)
        v0, v1 = max(0, w0 - 2 * margin), min(m, w1 + 2 * margin)
        select_states(cc, _cc_row(w0, stride, m, last), _cc_row(w1, stride, m, last), _cc_row(v0, stride, m, last),
                      _cc_row(v1, stride, m, last), v1 - v0, allowed, K, cand)
        n = w1 - w0
        forward(panel, g, cm, vis, w0, n, cand, K, ne, n_allowed, hit, miss, x, ev, rsum, alpha)
        backward(panel, g, cm, vis, w0, n, cand, K, ne, n_allowed, hit, miss, x, ev, rsum, emit, beta)
        # the block's sites: from just after the previous block's last visible site (the
        # chromosome start for the first block) to this block's last visible site (the end
        # for the last block); a hidden site uses the posteriors of its flanking visible sites
        lo = 0 if b == 0 else vis[c0 - 1] + 1
        hi = L if b == n_blocks - 1 else vis[c1 - 1] + 1
        t_left = c0 - 1  # visible index (global) of the last visible site before s
        have = -1  # local index whose posterior is in P (left flank), Pr (right flank)
        have_r = -1
        for s in range(lo, hi):
            t_left = left_flank(vis, t_left, s)
            if t_left >= 0 and vis[t_left] == s:
                tl = t_left - w0
                if have != tl:
                    _posterior(alpha, beta, tl, K, P, rl)
                    have = tl
                alleles_at(panel, s, cand, K, x)
                p0, p1, p2 = _pair_gp(P, rl, x, K)
                out[s, 0], out[s, 1], out[s, 2] = p0, p1, p2
                if want_loo:
                    _posterior_loo(alpha, beta, tl, K, x, g[s], hit, miss, Q, rq)
                    p0, p1, p2 = _pair_gp(Q, rq, x, K)
                    loo[s, 0], loo[s, 1], loo[s, 2] = p0, p1, p2
                continue
            t_right = t_left + 1
            alleles_at(panel, s, cand, K, x)
            q0 = q1 = q2 = 0.0
            w = right_weight(cm, vis, t_left, s)
            if w < 1.0:
                tl = t_left - w0
                if have != tl:
                    _posterior(alpha, beta, tl, K, P, rl)
                    have = tl
                p0, p1, p2 = _pair_gp(P, rl, x, K)
                q0 += (1 - w) * p0
                q1 += (1 - w) * p1
                q2 += (1 - w) * p2
            if w > 0.0:
                tr = t_right - w0
                if have_r != tr:
                    _posterior(alpha, beta, tr, K, Pr, rr)
                    have_r = tr
                p0, p1, p2 = _pair_gp(Pr, rr, x, K)
                q0 += w * p0
                q1 += w * p1
                q2 += w * p2
            out[s, 0], out[s, 1], out[s, 2] = q0, q1, q2


@njit(cache=True, nogil=True)
def _cc_row(t, stride, m, last):  # pragma: no cover - compiled
    """Row of the conflict table holding the counts over the first t visible sites (t is a
    multiple of the stride, or m)."""
    return last if t == m else t // stride


@njit(cache=True, nogil=True)
def alleles_at(panel, s, cand, K, x):  # pragma: no cover - compiled
    """x[i] = the allele of candidate i at site s."""
    for i in range(K):
        x[i] = panel[s, cand[i]]


@njit(cache=True, nogil=True, fastmath=True)
def _posterior_loo(alpha, beta, t, K, x, gt, hit, miss, P, r):  # pragma: no cover - compiled
    """As :func:`_posterior` with site t's own emission divided out: alpha[t] includes it,
    beta[t] does not, so the pair posterior given every other visible site (minimac's
    leave-one-out dosage, in the same pass)."""
    for i in range(K):
        for j in range(K):
            e = hit if x[i] + x[j] == gt else miss
            P[i, j] = alpha[t, i, j] * beta[t, i, j] / e
    _symmetrise(P, K, r)


@njit(cache=True, nogil=True, fastmath=True)
def _symmetrise(P, K, r):  # pragma: no cover - compiled
    """P = (P + Pᵀ) / (2·sum P), r its row sums."""
    z = 0.0
    for i in range(K):
        for j in range(K):
            z += P[i, j]
    for i in range(K):
        for j in range(i, K):
            v = 0.5 * (P[i, j] + P[j, i]) / z
            P[i, j] = v
            P[j, i] = v
    for i in range(K):
        acc = 0.0
        for j in range(K):
            acc += P[i, j]
        r[i] = acc


@njit(cache=True, nogil=True, fastmath=True)
def _posterior(alpha, beta, t, K, P, r):  # pragma: no cover - compiled
    """P = normalised alpha[t]·beta[t] (symmetrised), r its row sums."""
    for i in range(K):
        for j in range(K):
            P[i, j] = alpha[t, i, j] * beta[t, i, j]
    _symmetrise(P, K, r)
