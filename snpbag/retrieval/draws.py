"""Imputation after phasing, averaged over phasings drawn from the phaser's PP.

``selection="phased"`` of :class:`~snpbag.retrieval.haplotypes.HaplotypePanel`
(:func:`phased_probs`):

1. the visible sites are phased against the panel (:func:`~snpbag.retrieval.phasing.phase_visible`
   with :data:`PHASE_OPTIONS`, the haploid phasing model of :mod:`~snpbag.retrieval.happhase`),
   with PP, the probability that each heterozygote's phase relative to the sites before it is right;
2. the states: the allowed panel haplotypes where they are at most 2K, else the K
   composite haplotypes matched to each phased haplotype
   (:func:`~snpbag.retrieval.states.composite_segments`), both sets, 2K states, for each
   haplotype (a drawn phasing's haplotype, below, is a mosaic of the two), laid out at the
   visible sites alone (:mod:`~snpbag.retrieval.composite`);
3. each haplotype runs the haploid HMM of :mod:`~snpbag.retrieval.haploid` over those
   states, its hidden sites interpolated from the flanking visible sites' posteriors: p_c,
   the ALT probability of haplotype c;
4. the genotype probabilities are those of two independent haplotypes:
   P0 = (1 − p₁)(1 − p₂), P1 = p₁(1 − p₂) + p₂(1 − p₁), P2 = p₁p₂.

The phase and the composite states are found with each visible call counted (the
leave-one-out of step 3 leaves out only the emission). A phase error moves a stretch of
ALT probability to the other haplotype, so the phase is averaged over instead of fixed:
the decoded phase and :data:`PHASE_DRAWS` − 1 phasings drawn from PP (a switch at each
heterozygote with probability 1 − PP; one drawn twice is computed once) each run steps 3–4
over the same states, and their genotype probabilities are averaged
(:func:`sampled_phase_probs`, :func:`composite_phase_probs`). Within a phasing the two
haplotypes are independent; across phasings they are not (a hidden ALT that one phasing
puts on the first haplotype and another on the second is p₁ = p₂ = ½ on average and still
a heterozygote), so the average is formed from p₁, p₂ and P2 = the mean of p₁p₂, not from
p₁, p₂ alone. HDS stays in the decoded phase: each phasing's copy counts for the decoded
haplotype whose alleles it carries at the nearer flanking visible site.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from numba import njit

from snpbag.retrieval.composite import composite_at, interpolate_segments, union_segments
from snpbag.retrieval.copying import left_flank, right_weight
from snpbag.retrieval.hapclasses import HapClasses, covers, no_classes
from snpbag.retrieval.haploid import (FLOOR, Carriers, allele_carriers, backward_posteriors, backward_rows,
                                      forward_rows, haploid_posteriors, interpolate_carriers)
from snpbag.retrieval.phasing import PhaseOptions, TypedPanel, phase_visible
from snpbag.retrieval.states import composite_segments

#: The phaser's settings for imputation: ``snpbag phase``'s haploid model (600 composite
#: states, two stages), with each het's PP recomputed from both haplotypes read whole
#: (``rescore``), which the phase draws sample from: the decision's own confidence reads only
#: the segments between unphased neighbours and is under-confident, which drew needless
#: switches (and distinct phasings to impute) and left INFO/R2 low. Against the pair model
#: at 80 states it phases the 3 Mb benchmark's arrays at a fifth of the CPU with fewer switch
#: errors, and imputes as well (docs/benchmarks.md, "Phase draws").
PHASE_OPTIONS = PhaseOptions(model="haploid", rescore=True)

#: The phaser's composite window widens with the panel (:func:`phase_options`): one step
#: either side per this many panel haplotypes, from PHASE_OPTIONS' 2 steps (16 sites each
#: side) up to PHASE_MAX_WIDTH. On a large panel a short window ties many haplotypes at no
#: mismatch and the states take far relatives: 2 steps lost 0.0004–0.0017 of r² on 20,000
#: and 40,000 haplotypes against 8 and 16, which came within 0.0001 of Beagle at a 20 %
#: array and passed it at 5 %, while on 1,500–5,204 haplotypes wider windows left INFO/R2
#: over-confident at a 5 % array (docs/benchmarks.md, "Composite windows").
PHASE_HAPLOTYPES_PER_STEP = 2500

#: The widest phaser window, in steps either side: its ring of step counts holds
#: (2·width + 1) × 2 × H bytes, and no wider window was measured.
PHASE_MAX_WIDTH = 16

#: Phasings each sequence is imputed over (:func:`phased_probs`): the decoded phase and
#: PHASE_DRAWS − 1 drawn from the phaser's PP. The phase is what a sparse array leaves
#: uncertain (imputing with the true phase would lift r² at a 5 % array by 0.007), and
#: averaging over drawn phasings recovers part of it with INFO/R2 still calibrated once the
#: genotype probabilities are averaged per phasing (docs/benchmarks.md, "Phase draws").
PHASE_DRAWS = 12

#: The seed of the phase draws: the same for every sequence, so a result does not depend on
#: the order or the threads sequences are computed in.
PHASE_SEED = 0

#: The bytes of state posteriors :func:`sampled_phase_probs` holds at once per sequence: the
#: copies (phasing × haplotype) that fit are interpolated together (:func:`copies_at_once`).
POSTERIOR_BYTES = 32 << 20

#: How far from its switches (cM) a drawn phasing's copy is computed over composite states
#: (:func:`draw_window`); beyond, it takes the decoded haplotype's ALT probabilities.
DRAW_WINDOW_CM = 2.0

#: Visible sites per step of the composite states matched to one phased haplotype (as the
#: pair model's composite states, :func:`~snpbag.retrieval.phasing.phased_composite`).
COMPOSITE_STEP = 4

#: Steps either side in a composite match's window (132 visible sites), and matches per step:
#: short windows tie many of a large panel's haplotypes at no mismatch, and the slots take
#: far relatives (docs/benchmarks.md, "Composite windows": 68 sites lost 0.0005 of r² on a
#: 40,000-haplotype panel at a 20 % array; 2 steps, 20 sites, lost 0.003).
COMPOSITE_WIDTH = 16
COMPOSITE_MATCHES = PHASE_OPTIONS.matches


@njit(cache=True, nogil=True)
def average_phasings(pc, lv, flips, which, vis, cm, out, loo, both, held_both):  # pragma: no cover - compiled
    """out, loo, both, held_both of :func:`sampled_phase_probs` from every phasing's two
    copies: pc (U, 2, L) their P(ALT) at every site, lv (U, 2, m or 0) at the visible sites
    with their own emission left out."""
    U, m = flips.shape
    S = which.size
    L = pc.shape[2]
    want_loo = loo.shape[1] == L
    w = 1.0 / S
    for s in range(L):
        out[0, s] = 0.0
        out[1, s] = 0.0
        both[s] = 0.0
    for t in range(m if want_loo else 0):
        loo[0, vis[t]] = 0.0
        loo[1, vis[t]] = 0.0
        held_both[vis[t]] = 0.0
    for z in range(S):
        u = which[z]
        t_left = -1  # the last visible site at or before s
        for s in range(L):
            t_left = left_flank(vis, t_left, s)
            if t_left >= 0 and vis[t_left] == s:  # visible
                t = t_left
                if want_loo:
                    d = 1 if flips[u, t] else 0
                    loo[d, s] += w * lv[u, 0, t]
                    loo[1 - d, s] += w * lv[u, 1, t]
                    held_both[s] += w * (lv[u, 0, t] * lv[u, 1, t])
            else:
                t = t_left if right_weight(cm, vis, t_left, s) < 0.5 else t_left + 1
            d = 1 if flips[u, t] else 0  # the output haplotype of copy 0
            out[d, s] += w * pc[u, 0, s]
            out[1 - d, s] += w * pc[u, 1, s]
            both[s] += w * (pc[u, 0, s] * pc[u, 1, s])


@njit(cache=True, nogil=True)
def sampled_phase_probs(panel, cols, hap, vis, cm, n_ref, ne, eps, floor, flips, which, indptr, indices,  # pragma: no cover - compiled
                        alt_minor, typed, cls, n_cls, cptr, cidx, alt_short, out, loo, both, held_both, chunk):
    """out[c, s] = P(ALT) of output haplotype c at every site s and both[s] = P(ALT on both
    haplotypes), averaged over phasings of the visible sites: ``hap`` (L, 2) the decoded
    phase (−1 hidden), ``flips`` (U, m) bool the distinct phasings, phasing u swapping the
    two alleles at visible site vis[t] where flips[u, t] (the decoded phase: a row of
    False), and ``which`` (S,) the phasing of each draw (a phasing drawn twice is computed
    once and counted twice, in draw order). Each phasing runs :func:`~snpbag.retrieval.haploid.haploid_probs`' model on
    both of its haplotypes (states ``cols`` of ``panel``); its copy c counts for output
    haplotype c, or 1 − c where it is swapped (at a hidden site: where its nearer flanking
    visible site, in cM, is swapped), so the outputs stay aligned with the decoded phase.
    ``both`` averages the product of the two copies' probabilities: the two haplotypes are
    independent within a phasing, not across phasings (a heterozygote whose phase the draws
    split is p₁ = p₂ = ½ and both = 0, a heterozygote). loo : (2, L) and held_both : (L,)
    the same at the visible sites with their own emission left out (hidden sites keep what
    they hold), or (2, 0) and (0,). indptr, indices, alt_minor : the panel's
    :class:`~snpbag.retrieval.haploid.Carriers`, and typed … alt_short: its
    :class:`~snpbag.retrieval.hapclasses.HapClasses`, which the hidden sites are summed over. chunk : the copies
    (phasing × haplotype) whose posteriors are held at once and interpolated together
    (:func:`~snpbag.retrieval.haploid.interpolate_carriers`; :func:`copies_at_once`). A phasing's forward rows before
    its first swapped heterozygote are those of the decoded phase, computed once and read in
    place by its backward pass (:func:`~snpbag.retrieval.haploid.backward_posteriors`' ``fwd``, ``start``)."""
    U, m = flips.shape
    L = panel.shape[0]
    G = max(1, min(2 * U, chunk))  # copies whose posteriors are held at once
    post = np.empty((G, m, cols.size), dtype=np.float32)
    pc = np.empty((U, 2, L))  # each phasing's two copies
    copies = pc.reshape((2 * U, L))  # copy j: phasing j // 2, haplotype j % 2
    q = np.empty(L, dtype=np.int8)
    pv = np.empty(m)
    want_loo = loo.shape[1] == L
    lv = np.empty((U, 2, m if want_loo else 0))
    held_copies = lv.reshape((2 * U, lv.shape[2]))
    for s in range(L):
        q[s] = -1
    # the decoded phase's forward rows (phasing 0: no swap), where other phasings start from
    fwd = np.empty((2 if U > 1 else 0, m, cols.size), dtype=np.float32)
    for c in range(fwd.shape[0]):
        for t in range(m):
            q[vis[t]] = hap[vis[t], c]
        forward_rows(panel, cols, q, vis, cm, n_ref, ne, eps, fwd[c], 0, m)
    for j0 in range(0, 2 * U, G):
        n = min(G, 2 * U - j0)
        for g in range(n):
            u, c = (j0 + g) // 2, (j0 + g) % 2
            for t in range(m):
                q[vis[t]] = hap[vis[t], 1 - c if flips[u, t] else c]
            start = 0  # the forward rows before the first swapped heterozygote are the decoded phase's
            if fwd.shape[0]:
                while start < m and not (flips[u, start] and hap[vis[start], 0] != hap[vis[start], 1]):
                    start += 1
                if 0 < start < m:  # the row forward_rows continues from
                    post[g, start - 1] = fwd[c, start - 1]
            forward_rows(panel, cols, q, vis, cm, n_ref, ne, eps, post[g], start, m)
            backward_posteriors(panel, cols, q, vis, cm, n_ref, ne, eps, fwd[c] if fwd.shape[0] else post[g], start,
                                post[g], pv, held_copies[j0 + g])
            for t in range(m):
                copies[j0 + g, vis[t]] = pv[t]
        interpolate_carriers(panel, cols, vis, cm, post[:n], floor, indptr, indices, alt_minor, typed, cls, n_cls, cptr,
                             cidx, alt_short, copies[j0:j0 + n])
    average_phasings(pc, lv, flips, which, vis, cm, out, loo, both, held_both)


def composite_phase_probs(panel: np.ndarray, cm: np.ndarray, hap: np.ndarray, vis: np.ndarray, flips: np.ndarray,
                          which: np.ndarray, segments: tuple, *, n_ref: int, ne: float, eps: float, floor: float,
                          carriers: Carriers, classes: HapClasses, out: np.ndarray, loo: np.ndarray, both: np.ndarray,
                          held_both: np.ndarray, window: float | None = DRAW_WINDOW_CM) -> None:
    """:func:`sampled_phase_probs` over composite states: every copy's states are the slots
    of ``segments`` ((seg_start, seg_hap, n_seg), :func:`~snpbag.retrieval.states.composite_segments`);
    the HMM runs over their alleles at the visible sites alone and the hidden sites are read
    through the slots' haplotypes (:mod:`snpbag.retrieval.composite`). A drawn phasing's copy
    is computed only within ``window`` cM of its switches (:func:`draw_window`; inf: everywhere)
    and is the decoded haplotype's outside (None: every copy computed whole, the reference)."""
    U, m = flips.shape
    L = panel.shape[0]
    comp = composite_at(panel, vis, segments)
    K = comp.shape[1]
    cols, steps, cmv, pv = np.arange(K), np.arange(m), np.ascontiguousarray(cm[vis]), np.empty(m)
    pc = np.empty((U, 2, L))  # each phasing's two copies
    copies = pc.reshape((2 * U, L))  # copy j: phasing j // 2, haplotype j % 2
    lv = np.empty((U, 2, m if loo.shape[1] == L else 0))
    interp = (*segments, panel, vis, cm)
    if U > 1 and window is not None:
        het = np.flatnonzero(hap[vis, 0] != hap[vis, 1])
        wins = [draw_window(flips[u], het, c, cmv, window) for u in range(1, U) for c in range(2)]
        post = np.empty((1, m, K), dtype=np.float32)
        fwd, betas = [], []  # per decoded haplotype: {visible index: its forward row / β there}, where drawn copies
        for c in range(2):  # start and end
            q = np.ascontiguousarray(hap[vis, c])
            forward_rows(comp, cols, q, steps, cmv, n_ref, ne, eps, post[0], 0, m)
            fwd.append({t: post[0, t].copy() for t in {lo - 1 for beg, _, lo, _ in wins if beg == c and lo > 0}})
            keep_t = np.array(sorted({hi for _, end, _, hi in wins if end == c and 0 <= hi < m - 1}), dtype=np.int64)
            kept = np.empty((keep_t.size, K))
            backward_rows(comp, cols, q, steps, cmv, n_ref, ne, eps, post[0], 0, post[0], pv, lv[0, c], m - 1,
                          np.ones(K), 0, keep_t, kept)
            copies[c, vis] = pv
            interpolate_segments(*interp, post, floor, *carriers, *classes, copies[c:c + 1])
            betas.append(dict(zip(keep_t.tolist(), kept)))
        for j, (beg, end, lo, hi) in enumerate(wins):
            u, c = divmod(j + 2, 2)
            if lo < 0:  # the same alleles as a decoded haplotype
                pc[u, c], lv[u, c] = pc[0, beg], lv[0, beg]
                continue
            q = np.where(flips[u], hap[vis, 1 - c], hap[vis, c]).astype(np.int8)
            if lo > 0:  # the rows before the window are the decoded haplotype's: the row forward_rows starts from
                post[0, lo - 1] = fwd[beg][lo - 1]
            forward_rows(comp, cols, q, steps, cmv, n_ref, ne, eps, post[0], lo, hi + 1)
            beta = betas[end][hi].copy() if hi < m - 1 else np.ones(K)
            backward_rows(comp, cols, q, steps, cmv, n_ref, ne, eps, post[0], lo, post[0], pv, lv[u, c], hi, beta, lo,
                          np.zeros(0, dtype=np.int64), np.zeros((0, K)))
            # the decoded haplotypes' values before and after the window; the hidden sites
            # before the first and after the last visible site read one posterior, in it or not
            a = 0 if lo == 0 else vis[lo]
            b = L if hi == m - 1 else vis[hi] + 1
            pc[u, c, :a], pc[u, c, b:] = pc[0, beg, :a], pc[0, end, b:]
            pc[u, c, vis[lo:hi + 1]] = pv[lo:hi + 1]
            if lv.shape[2]:
                lv[u, c, :lo], lv[u, c, hi + 1:] = lv[0, beg, :lo], lv[0, end, hi + 1:]
            interpolate_segments(*interp, post, floor, *carriers, *classes, copies[j + 2:j + 3],
                                 0 if lo == 0 else lo + 1, m if hi == m - 1 else hi)
    else:
        G = min(2 * U, copies_at_once(m, K))
        post = np.empty((G, m, K), dtype=np.float32)
        for j0 in range(0, 2 * U, G):
            n = min(G, 2 * U - j0)
            for g in range(n):
                u, c = divmod(j0 + g, 2)
                q = np.where(flips[u], hap[vis, 1 - c], hap[vis, c]).astype(np.int8)
                haploid_posteriors(comp, cols, q, steps, cmv, n_ref, ne, eps, post[g], pv, lv[u, c])
                copies[j0 + g, vis] = pv
            interpolate_segments(*interp, post[:n], floor, *carriers, *classes, copies[j0:j0 + n])
    average_phasings(pc, lv, flips, which, vis, cm, out, loo, both, held_both)


def draw_window(flips: np.ndarray, het: np.ndarray, c: int, cmv: np.ndarray, width: float) -> tuple[int, int, int, int]:
    """Where a drawn phasing's copy c differs from the decoded haplotypes: (beg, end, lo, hi),
    the decoded haplotype whose alleles it carries before its first switch and after its
    last (``flips`` (m,) its swaps at the visible sites, ``het`` the visible indices of the
    heterozygotes, the only sites a swap changes), and the visible indices lo..hi within
    ``width`` cM (``cmv``, the visible sites' positions) of the first and the last switch,
    and at least the visible sites either side of them (the hidden sites next to a switch
    read its posterior); lo = hi = −1 where it switches nowhere (it is haplotype beg
    throughout).

    Its forward rows before its first switch are haplotype beg's and its β after its last
    haplotype end's, so within lo..hi its posteriors are exact; outside, its ALT
    probabilities are taken as those haplotypes', which they approach with the distance from a
    switch (the HMM forgets the other haplotype's alleles: on the 10 Mb benchmark the
    largest difference beyond 2 cM was below 10⁻⁷ in most drawn copies, up to 2·10⁻³ in a few,
    docs/benchmarks.md)."""
    f = flips[het]
    if f.size == 0 or (f == f[0]).all():
        beg = c ^ int(f[0]) if f.size else c
        return beg, beg, -1, -1
    beg, end = c ^ int(f[0]), c ^ int(f[-1])
    first = het[np.flatnonzero(f != f[0])[0]]
    last = het[np.flatnonzero(f != f[-1])[-1]]
    lo = int(np.searchsorted(cmv, cmv[first] - width, side="left"))
    hi = int(np.searchsorted(cmv, cmv[last] + width, side="right")) - 1
    return beg, end, max(0, min(lo, first - 1)), min(cmv.size - 1, max(hi, last + 1))


def copies_at_once(m: int, states: int, budget: int = POSTERIOR_BYTES) -> int:
    """The copies whose (m, states) float32 posteriors fit in ``budget`` bytes (at least one)."""
    return max(1, budget // max(1, 4 * m * states))


def genotype_probs(p: np.ndarray, cov: np.ndarray | float = 0.0) -> np.ndarray:
    """(..., 3) P(ALT dosage 0/1/2) of two haplotypes with ALT probabilities p (..., 2):
    independent ones, plus ``cov`` (...), the covariance of their ALT alleles over the
    phasings averaged (P(both ALT) − p₁p₂; 0 for one phasing), which moves probability
    between the heterozygote and the homozygotes and keeps the dose p₁ + p₂."""
    p1, p2 = p[..., 0], p[..., 1]
    gp = np.stack([(1 - p1) * (1 - p2), p1 * (1 - p2) + p2 * (1 - p1), p1 * p2], -1)
    return gp if np.ndim(cov) == 0 and cov == 0 else gp + np.multiply.outer(cov, [1.0, -2.0, 1.0])


def phase_draws(hap: np.ndarray, pp: np.ndarray, draws: int, seed: int = PHASE_SEED) -> np.ndarray:
    """(draws, m) bool: phasings of m phased sites ``hap`` (m, 2) as swaps of the decoded
    one — row 0 the decoded phase (nothing swapped), each other row a draw that switches
    the phase at each heterozygous site with probability 1 − PP (``pp`` (m,), the phaser's
    probability that the phase relative to the previous heterozygote — with the default
    :data:`PHASE_OPTIONS`, to all the sites before it — is right; NaN: kept),
    independently; a swap lasts to the next switch."""
    het = np.flatnonzero(hap[:, 0] != hap[:, 1])
    if het.size == 0:  # nothing to swap: every draw is the decoded phase
        return np.zeros((draws, hap.shape[0]), dtype=np.bool_)
    keep = np.nan_to_num(pp[het].astype(np.float64), nan=1.0)
    u = np.random.default_rng(seed).random((draws - 1, het.size))
    switched = np.zeros((draws, het.size), dtype=np.int64)
    switched[1:] = u >= keep
    # the orientation at every site: that of the last heterozygote at or before it
    last = np.searchsorted(het, np.arange(hap.shape[0]), side="right") - 1
    orient = np.cumsum(switched, axis=1) % 2 == 1
    return np.where(last >= 0, orient[:, np.maximum(last, 0)], False)


def distinct_phasings(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(draws, axis=0, return_inverse=True)`` of (S, m) bool phasings: the
    distinct rows in lexicographic order (False before True) and the row of each draw.
    np.unique sorts the rows as records of m fields, which took tens of ms per sequence
    with the GIL held; a dozen rows hashed as bytes take microseconds."""
    d = np.ascontiguousarray(draws, dtype=np.bool_)
    keys = [row.tobytes() for row in d]
    order = sorted(set(keys))  # bytes 0/1 compare as False < True, field by field
    index = {k: i for i, k in enumerate(order)}
    rows = np.array([np.frombuffer(k, dtype=np.bool_) for k in order]).reshape(len(order), d.shape[1])
    return rows, np.array([index[k] for k in keys], dtype=np.int64)


def phase_options(n_ref: int) -> PhaseOptions:
    """:data:`PHASE_OPTIONS` for a panel of ``n_ref`` haplotypes: its window one step either
    side per :data:`PHASE_HAPLOTYPES_PER_STEP` haplotypes, at least its own, at most
    :data:`PHASE_MAX_WIDTH`."""
    width = min(max(round(n_ref / PHASE_HAPLOTYPES_PER_STEP), PHASE_OPTIONS.width), PHASE_MAX_WIDTH)
    return PHASE_OPTIONS if width == PHASE_OPTIONS.width else replace(PHASE_OPTIONS, width=width)


def phased_probs(panel: np.ndarray, cm: np.ndarray, dosage: np.ndarray, *, allowed: np.ndarray, states: int,
                 ne: float, eps: float, loo: bool, options: PhaseOptions | None = None, floor: float = FLOOR,
                 draws: int | None = None, carriers: Carriers | None = None, classes: HapClasses | None = None,
                 typed: TypedPanel | None = None):
    """Imputation of one unphased sequence by phasing, then the haploid HMM per haplotype.

    panel : (L, H) int8 site-major panel alleles; cm : (L,) genetic positions;
    dosage : (L,) int8 0/1/2 visible, −1 hidden (at least one visible); allowed : (H,) bool;
    states : K, the composite haplotypes matched to each phased haplotype; every haplotype
    runs over both sets (2K states), or over every allowed haplotype where 2K reaches
    their number (Beagle's default K of 1,600: panels up to 1,600 genomes);
    ne, eps : as the pair model; options : the phaser's (default :func:`phase_options` of the panel);
    floor : :func:`~snpbag.retrieval.haploid.interpolate_hidden`; draws : phasings averaged over (default
    :data:`PHASE_DRAWS`: the decoded one and draws − 1 from its PP, :func:`phase_draws`,
    :func:`sampled_phase_probs`, :func:`composite_phase_probs`);
    carriers : ``panel``'s :func:`~snpbag.retrieval.haploid.allele_carriers` (made here when none are given: give
    them for a batch); classes : ``panel``'s :func:`~snpbag.retrieval.hapclasses.hap_classes` between the batch's
    typed sites, which the untyped sites are read through where they cover the visible sites (none given:
    every hidden site is read from the carriers); typed : ``panel`` at the batch's typed sites as the phaser
    reads it (:func:`~snpbag.retrieval.phasing.typed_panel` with ``options``; none given: taken here).

    Returns ``(gp, held, hds)``: (L, 3) genotype probabilities, (L, 3) leave-one-out ones
    (NaN at hidden sites; (0, 3) without ``loo``) and (L, 2) the haplotypes' ALT
    probabilities, all float32, the haplotypes in the phaser's order.
    """
    draws = PHASE_DRAWS if draws is None else draws
    L = panel.shape[0]
    n_ref = int(np.count_nonzero(allowed))
    o = options or phase_options(n_ref)
    vis = np.flatnonzero(dosage >= 0)
    query, pp = phase_visible(panel, cm, dosage, allowed=allowed, options=o, typed=typed)
    p = np.empty((2, L))
    q = np.full((2, L if loo else 0), np.nan)
    both, held_both = np.empty(L), np.full(L if loo else 0, np.nan)
    flips, which = distinct_phasings(phase_draws(query[vis], pp[vis], draws))
    c = carriers or allele_carriers(panel)
    k = classes if classes is not None and covers(classes, vis, L) else no_classes(L, panel.shape[1])
    if 2 * states >= n_ref:
        sampled_phase_probs(panel, np.flatnonzero(allowed), query, vis, cm, n_ref, ne, eps, floor, flips, which, *c,
                            *k, p, q, both, held_both, copies_at_once(vis.size, n_ref))
    else:
        sets = [composite_segments(panel, query[:, c:c + 1], allowed=allowed, states=states, genotype=False,
                                   step=COMPOSITE_STEP, width=COMPOSITE_WIDTH, matches=COMPOSITE_MATCHES)
                for c in range(2)]
        composite_phase_probs(panel, cm, query, vis, flips, which, union_segments(sets), n_ref=n_ref,
                              ne=ne, eps=eps, floor=floor, carriers=c, classes=k, out=p, loo=q,
                              both=both, held_both=held_both)
    cov, held_cov = both - p[0] * p[1], held_both - q[0] * q[1]  # over the phasings: P(both ALT) − p₁p₂
    hds = np.clip(p.T, 0.0, 1.0)
    held = genotype_probs(q.T, held_cov)
    return genotype_probs(hds, cov).astype(np.float32), held.astype(np.float32), hds.astype(np.float32)
