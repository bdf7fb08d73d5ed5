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
   haplotype's ALT probability (its HDS), read through the panel's classes of haplotypes
   that share their alleles between two typed sites
   (:mod:`snpbag.retrieval.hapclasses`), or over the site's minor-allele carriers
   (:class:`Carriers`).

Leave-one-out at a visible site divides its emission out of the posterior, as the pair
model does. Phasing, the choice of states and the average over phasings are
:mod:`snpbag.retrieval.draws`'.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from snpbag.retrieval.copying import left_flank, right_weight, switch_rho, visible_sites
from snpbag.retrieval.hapclasses import carried, class_buffers, class_masses, interval_sites

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
def forward_rows(panel, cols, hap, vis, cm, n_ref, ne, eps, post, start, stop):  # pragma: no cover - compiled
    """post[t] = the normalised forward probabilities of :func:`haploid_posteriors`' HMM at
    visible site vis[t] for start <= t < stop, from the rows before it (which depend only on
    the haplotype's alleles at vis[:start]: a phasing that agrees with another up to there
    starts from its rows, :func:`~snpbag.retrieval.draws.sampled_phase_probs`)."""
    K = cols.size
    m = min(stop, vis.size)
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
    m = vis.size
    backward_rows(panel, cols, hap, vis, cm, n_ref, ne, eps, fwd, start, post, out, loo, m - 1, np.ones(cols.size), 0,
                  np.zeros(0, dtype=np.int64), np.zeros((0, cols.size)))


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def backward_rows(panel, cols, hap, vis, cm, n_ref, ne, eps, fwd, start, post, out, loo, top, beta, bottom, keep_t,
                  kept):  # pragma: no cover - compiled
    """:func:`backward_posteriors` over the visible indices bottom <= t <= top alone, from
    ``beta`` (K,), the backward probabilities at ``top`` (any scale; ones at the last
    site), which it overwrites; the β it passes at the indices keep_t (ascending) are
    copied to the rows of ``kept``. A drawn phasing's β after its last switch is the decoded
    haplotype's (:func:`~snpbag.retrieval.draws.composite_phase_probs`)."""
    K = cols.size
    m = vis.size
    miss = eps
    gain = 1.0 - 2.0 * eps
    x = np.empty(K, dtype=np.int8)
    e = np.empty(K)  # the emissions at the site after the current one
    whole = K == panel.shape[1] and cols[0] == 0 and cols[K - 1] == K - 1
    want_loo = loo.shape[0] == m
    j = keep_t.size - 1
    while j >= 0 and keep_t[j] > top:
        j -= 1
    for t in range(top, bottom - 1, -1):
        s = vis[t]
        if t < top:  # beta[t] from beta[t + 1] and e, the emissions at t + 1
            tot = 0.0
            for k in range(K):
                beta[k] *= e[k]
                tot += beta[k]
            rho = switch_rho(cm, s, vis[t + 1], ne, n_ref)
            stay, jump = (1.0 - rho) / tot, rho / K  # normalised: the new beta sums to tot
            for k in range(K):
                beta[k] = stay * beta[k] + jump
        while j >= 0 and keep_t[j] == t:
            for k in range(K):
                kept[j, k] = beta[k]
            j -= 1
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
    forward_rows(panel, cols, hap, vis, cm, n_ref, ne, eps, post, 0, vis.size)
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


@njit(cache=True, nogil=True)
def kept_buffers(G, K, H):  # pragma: no cover - compiled
    """Empty kept-state fields of G haplotypes over K states of an H-column panel, as
    :func:`keep_states` fills them: (cols, at_l, at_r, nk, rows_l, rows_r, tot_l, tot_r)."""
    return (np.zeros((G, K), np.int64), np.zeros((G, K), np.float32), np.zeros((G, K), np.float32),
            np.zeros(G, np.int64), np.zeros((H, G), np.float32), np.zeros((H, G), np.float32),
            np.zeros(G), np.zeros(G))


@njit(cache=True, nogil=True)
def scan_buffers(G, K):  # pragma: no cover - compiled
    """Empty scan fields of G haplotypes over K states, as :func:`keep_states` fills them:
    per copy the states at or above its threshold in the last two posterior rows it
    scanned, (lists (G, 2, K), counts (G, 2), rows (G, 2): the visible index each list is
    of, −2 none; row t's in slot t % 2)."""
    return np.zeros((G, 2, K), np.int64), np.zeros((G, 2), np.int64), np.full((G, 2), -2, np.int64)


@njit(cache=True, nogil=True)
def _above(row, thr, out):  # pragma: no cover - compiled
    """out[:n] = the ascending indices of ``row`` whose value reaches ``thr``; returns n."""
    n = 0
    for k in range(row.size):
        if row[k] >= thr:
            out[n] = k
            n += 1
    return n


@njit(cache=True, nogil=True)
def keep_states(post, tl, tr, thr, col, live, lists, counts, rows, cols, at_l, at_r, nk, rows_l, rows_r, tot_l,
                tot_r):  # pragma: no cover - compiled
    """The states G haplotypes keep between visible indices tl and tr = tl + 1 (either −1:
    no such site), from their state posteriors ``post`` (G, m, K): state k (panel column
    col[k], where live[k]) is kept where its posterior reaches ``thr`` at either flank (as
    :func:`_interval_states`). Copy g's nk[g] kept states' columns cols[g, :nk[g]] and
    posteriors at the left and right flank at_l, at_r (0 at a flank that is none), in state
    order; the same laid out one row per panel column, rows_l, rows_r (H, G) with zeros
    elsewhere (two states on one column add up; (0, G): not laid out, for a walk that reads
    no carriers), and their sums tot_l, tot_r (G,). The previous interval's rows are
    cleared first by its own lists, so an interval costs a write per kept state.

    Each flank's row is scanned once for the states that reach ``thr`` (lists, counts,
    rows: :func:`scan_buffers`, kept across the calls of one walk), and the kept states are
    the union of the two flanks' lists: the previous interval's right flank is this one's
    left, so a walk scans each row once where reading both flanks per interval scanned it
    twice (a fifth of the 10 Mb benchmark's interpolation)."""
    G, m, K = post.shape
    lay = rows_l.shape[0] > 0
    for g in range(G if lay else 0):
        for j in range(nk[g]):
            rows_l[cols[g, j], g] = 0.0
            rows_r[cols[g, j], g] = 0.0
    keep_l, keep_r = tl >= 0, tr >= 0
    zero = np.float32(0.0)
    for g in range(G):
        jl, jr = tl % 2, tr % 2  # row t's list sits in slot t % 2: the two flanks never share one
        if keep_l and rows[g, jl] != tl:  # not scanned as an earlier interval's right flank
            counts[g, jl] = _above(post[g, tl], thr, lists[g, jl])
            rows[g, jl] = tl
        if keep_r and rows[g, jr] != tr:
            counts[g, jr] = _above(post[g, tr], thr, lists[g, jr])
            rows[g, jr] = tr
        nl = counts[g, jl] if keep_l else 0
        nr = counts[g, jr] if keep_r else 0
        left, right = post[g, max(tl, 0)], post[g, max(tr, 0)]  # −1 reads row 0, masked
        x = 0
        y = 0
        n = 0
        sl = 0.0
        sr = 0.0
        while x < nl or y < nr:  # the union of the two ascending lists, in state order
            kx = lists[g, jl, x] if x < nl else K
            ky = lists[g, jr, y] if y < nr else K
            k = min(kx, ky)
            x += kx == k
            y += ky == k
            if not live[k]:
                continue
            a = left[k] if keep_l else zero
            b = right[k] if keep_r else zero
            c = col[k]
            cols[g, n] = c
            at_l[g, n] = a
            at_r[g, n] = b
            if lay:
                rows_l[c, g] += a
                rows_r[c, g] += b
            sl += a
            sr += b
            n += 1
        nk[g] = n
        tot_l[g] = sl
        tot_r[g] = sr


@njit(cache=True, nogil=True)
def kept_alt(row, s, wr, cols, at_l, at_r, nk, rows_l, rows_r, tot_l, tot_r, indptr, indices, alt_minor, ml, mr,
             out):  # pragma: no cover - compiled
    """out[g, s] = P(ALT) at hidden site s (panel alleles ``row``) of G haplotypes from their
    kept states (:func:`keep_states`' fields), interpolated with weight ``wr`` on the right flank
    (:func:`~snpbag.retrieval.copying.right_weight`): the kept states' posteriors summed over
    those whose column carries ALT, per flank. Each copy reads whichever is shorter: its
    kept states' alleles in ``row`` (a few where the posterior is sharp), or the site's
    minor-allele carriers' rows (indptr, indices, alt_minor: a panel's :class:`Carriers`;
    the kept total less their sum where the minor allele is REF), walked once for every
    copy that needs them. ml, mr : (G,) scratch. Not fast-math: a copy's sum runs in state
    or carrier order, chosen by its own count, so its bits do not depend on G."""
    G = nk.size
    lo, hi = indptr[s], indptr[s + 1]
    walk = False
    for g in range(G):
        walk |= nk[g] > hi - lo
    if walk:
        for g in range(G):
            ml[g] = 0.0
            mr[g] = 0.0
        for i in range(lo, hi):
            c = indices[i]
            for g in range(G):
                ml[g] += rows_l[c, g]
                mr[g] += rows_r[c, g]
        if not alt_minor[s]:
            for g in range(G):
                ml[g] = tot_l[g] - ml[g]
                mr[g] = tot_r[g] - mr[g]
    for g in range(G):
        if nk[g] <= hi - lo:
            a = 0.0
            b = 0.0
            for j in range(nk[g]):
                if row[cols[g, j]] == 1:
                    a += at_l[g, j]
                    b += at_r[g, j]
            ml[g] = a
            mr[g] = b
        p = 0.0
        if wr < 1.0:
            p += (1.0 - wr) * ml[g]
        if wr > 0.0:
            p += wr * mr[g]
        out[g, s] = p


@njit(cache=True, nogil=True)
def read_hidden(panel, a, b, vis, t_left, cm, cols, at_l, at_r, nk, rows_l, rows_r, tot_l, tot_r, indptr, indices,
                alt_minor, typed, cls, n_cls, cptr, cidx, alt_short, ml, mr, mass_l, mass_r,
                out):  # pragma: no cover - compiled
    """out[g, s] = P(ALT) at the hidden sites a <= s < b, all between visible indices t_left
    and t_left + 1, of G copies from their kept states there (:func:`keep_states`' fields
    cols … tot_r). An untyped site is read through the panel's classes (typed … alt_short:
    :class:`~snpbag.retrieval.hapclasses.HapClasses`, which must type every visible site):
    per copy, its kept states' alleles one by one where it keeps no more states than the
    site lists short-allele classes, else its kept mass per class
    (:func:`~snpbag.retrieval.hapclasses.class_masses`, into mass_l, mass_r once per typed
    interval) summed over those classes, the kept total less that where the short allele
    is REF. A typed site this copy misses, or any site where there are no classes, is read
    from the carriers (:func:`kept_alt`; ml, mr its scratch). A copy's sums depend on its
    own states alone, not on G. The sites of an interval are read in one call: a call per
    site, its arrays passed one by one, cost as much as the reading."""
    G = nk.size
    have = typed.size > 0
    b_left = np.searchsorted(typed, a, side="right") - 1 if have else -1  # the last typed site at or before a
    built_b = -2  # the typed interval whose class masses are in mass_l, mass_r
    for s in range(a, b):
        wr = right_weight(cm, vis, t_left, s)
        if have:
            while b_left + 1 < typed.size and typed[b_left + 1] <= s:
                b_left += 1
            if b_left < 0 or typed[b_left] != s:  # untyped: through its interval's classes
                if b_left + 1 != built_b:
                    built_b = b_left + 1
                    class_masses(cls[built_b], n_cls[built_b], cols, at_l, at_r, nk, mass_l, mass_r)
                lo, hi = cptr[s], cptr[s + 1]
                row = panel[s]
                for g in range(G):
                    x = 0.0
                    y = 0.0
                    if nk[g] <= hi - lo:
                        for j in range(nk[g]):
                            if row[cols[g, j]] == 1:
                                x += at_l[g, j]
                                y += at_r[g, j]
                    else:
                        for i in range(lo, hi):
                            c = cidx[i]
                            x += mass_l[c, g]
                            y += mass_r[c, g]
                        if not alt_short[s]:
                            x = tot_l[g] - x
                            y = tot_r[g] - y
                    p = 0.0
                    if wr < 1.0:
                        p += (1.0 - wr) * x
                    if wr > 0.0:
                        p += wr * y
                    out[g, s] = p
                continue
        kept_alt(panel[s], s, wr, cols, at_l, at_r, nk, rows_l, rows_r, tot_l, tot_r, indptr, indices, alt_minor, ml,
                 mr, out)


@njit(cache=True, nogil=True)
def interpolate_carriers(panel, cols, vis, cm, post, floor, indptr, indices, alt_minor, typed, cls, n_cls, cptr, cidx,
                         alt_short, out):  # pragma: no cover - compiled
    """:func:`interpolate_hidden` of G haplotypes at once: the same sum (up to rounding),
    over the same kept states. cols : (K,) the states' panel columns; post : (G, m, K) the G
    haplotypes' state posteriors at the visible sites vis; out : (G, L); indptr, indices,
    alt_minor: ``panel``'s :class:`Carriers`; typed … alt_short: its
    :class:`~snpbag.retrieval.hapclasses.HapClasses` (they must type every visible site,
    :func:`~snpbag.retrieval.hapclasses.covers`; empty: none).

    Per interval between two visible sites each copy's kept states are listed once
    (:func:`keep_states`) and the interval's hidden sites read in one call
    (:func:`read_hidden`): through the classes where there are any (a site sums 1.4 classes
    on average at the 10 Mb benchmark's 20 % array, 3.6 at 5 %, where reading the kept
    states' alleles or the site's minor-allele carriers, whichever list was shorter, read
    dozens to hundreds: the 10 Mb command's CPU 294 → 222 s at 20 %, 171 → 107 s at 5 %,
    docs/benchmarks.md), else through the carriers (:func:`kept_alt`)."""
    G, m, K = post.shape
    L = alt_minor.size
    kept = kept_buffers(G, K, panel.shape[1] if carried(typed, vis) else 0)
    scan = scan_buffers(G, K)
    live = np.ones(K, dtype=np.bool_)
    ml = np.empty(G)
    mr = np.empty(G)
    mass_l, mass_r = class_buffers(n_cls, G)
    thr = floor / K
    for i in range(m + 1):  # the hidden sites between visible indices i − 1 and i (−1, m: none)
        a, b = interval_sites(vis, i, L)
        if a >= b:
            continue
        keep_states(post, i - 1, i if i < m else -1, thr, cols, live, *scan, *kept)  # as interpolate_hidden's
        read_hidden(panel, a, b, vis, i - 1, cm, *kept, indptr, indices, alt_minor, typed, cls, n_cls, cptr, cidx,
                    alt_short, ml, mr, mass_l, mass_r, out)


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
