"""Which panel haplotypes the copying model may copy: the one home of state selection.

The pair-copying HMM (:mod:`snpbag.retrieval.haplotypes`, :mod:`snpbag.retrieval.phasing`)
runs over K states. Two rules choose them:

``conflicts``
    K haplotypes per block of sites, the ones with the fewest opposite-homozygote conflicts
    over the block and its margins (:func:`rank_states`). Every block starts afresh: a
    haplotype the target copied in one block is gone in the next if it ranks K+1st there,
    and the HMM has to re-find the copy, which is where long-range switch errors come from.

``composite``
    K *composite haplotypes* per target, as Beagle 5 builds them (Browning, Zhou & Browning
    2018, "A one-penny imputed genome from next-generation reference panels", AJHG 103:338;
    Beagle's ``CompositeHapStates``): the sites are cut into steps of ``step`` informative
    sites; at each step the ``matches`` panel haplotypes closest to each query sequence over
    the steps within ``width`` either side are found, and each is put in a slot — its own
    slot if it already holds one, else the slot whose haplotype was matched longest ago.
    A slot therefore keeps its haplotype as long as that haplotype keeps matching somewhere
    near, and where it is replaced the switch lies halfway between the old haplotype's last
    match and the new one's first, so the slot carries one haplotype, then another, along
    the chromosome. The HMM runs over the K slots, a K-column panel of alleles per target
    (:func:`composite_panel`), so a copied haplotype persists across block boundaries. Beagle
    finds the matches with the PBWT (exact IBS segments); here "closest" is the fewest
    mismatches over the window (opposite-homozygote conflicts for an unphased genotype),
    which tolerates genotype errors and costs one pass over the panel per target, O(sites ×
    haplotypes) — the same as the conflict counts — and O(sites × K) bytes of output.

A query is a haplotype estimate (phasing's later rounds: mismatches count) or a genotype
(conflicts count); the panel may hold allele 2 (an unphased heterozygote, cohort phasing),
which never counts against a haplotype.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from snpbag.errors import InputError

#: The state-selection rules (module doc); ``conflicts`` is the per-block rule.
SELECTIONS = ("conflicts", "composite")

#: Levels of the rank :func:`_best` finds by minimum passes before it falls back to a histogram.
BEST_LEVELS = 3

#: Rotation steps :func:`_take` counts at once before it walks them one by one.
TAKE_CHUNK = 64


def check_selection(selection: str, what: str, choices: tuple[str, ...] = SELECTIONS) -> None:
    """Refuse an unknown rule in one line; ``what`` names the option that carried it,
    ``choices`` the rules it takes."""
    if selection not in choices:
        raise InputError(f"{what} {selection!r}; use one of {', '.join(choices)}")


@njit(cache=True, nogil=True)
def count_allowed(allowed):  # pragma: no cover - compiled
    """Haplotypes a sequence may copy from (the ones not excluded as its own or its sources):
    the H in the switch probability and the cap on K."""
    n = 0
    for h in range(allowed.size):
        if allowed[h]:
            n += 1
    return n


@njit(cache=True, nogil=True)
def tie_hash(h):  # pragma: no cover - compiled
    """A fixed pseudo-random tie-break of haplotype row h, so no population is favoured by
    its row order in the panel."""
    return (np.int64(h) * np.int64(2654435761)) & np.int64(0xFFFFF)


@njit(cache=True, nogil=True)
def rank_states(near, wide, span, allowed, K, out):  # pragma: no cover - compiled
    """out[:K] = the K allowed haplotypes with the fewest conflicts ``near`` (block and
    margins), ties by ``wide`` (< ``span``), then by :func:`tie_hash`: the ``conflicts`` rule
    shared by imputation and phasing."""
    nh = near.size
    key = np.empty(nh, dtype=np.int64)
    for h in range(nh):
        if allowed[h]:
            key[h] = ((np.int64(near[h]) * span + np.int64(wide[h])) << 20) | tie_hash(h)
        else:
            key[h] = np.iinfo(np.int64).max
    order = np.argsort(key)
    for i in range(K):
        out[i] = order[i]


@njit(cache=True, nogil=True)
def _step_counts(panel, q, vis, v0, v1, genotype, counts):  # pragma: no cover - compiled
    """counts[c, h] = disagreements of haplotype h with query c over visible sites vis[v0:v1]."""
    counts[:, :] = 0
    nh = panel.shape[1]
    for t in range(v0, v1):
        s = vis[t]
        for c in range(q.shape[1]):
            a = q[s, c]
            if a < 0 or (genotype and a == 1):
                continue
            bad = (1 - a // 2) if genotype else 1 - a  # the panel allele that disagrees
            row = counts[c]
            prow = panel[s]
            for h in range(nh):  # branch-free on narrow counters, so it vectorises
                row[h] += prow[h] == bad


@njit(cache=True, nogil=True)
def _take(key, lo, hi, cut, strict, out, n, limit):  # pragma: no cover - compiled
    """out[n:] += the rows lo..hi−1 in order whose key is below ``cut`` (``strict``) or equals
    it, until ``limit`` are in ``out``; returns the new count. A chunk is counted first, in
    a branch-free pass, and walked only where it holds one."""
    c0 = lo
    while c0 < hi and n < limit:
        c1 = min(hi, c0 + TAKE_CHUNK)
        hit = 0
        kc = key[c0:c1]  # a slice from 0: numba vectorises a loop over range(n), not range(c0, c1)
        if strict:
            for i in range(c1 - c0):
                hit += kc[i] < cut
        else:
            for i in range(c1 - c0):
                hit += kc[i] == cut
        if hit:
            for h in range(c0, c1):
                if (key[h] < cut) if strict else (key[h] == cut):
                    out[n] = h
                    n += 1
                    if n == limit:
                        break
        c0 = c1
    return n


@njit(cache=True, nogil=True)
def _best(score, allowed, slot_of, want, offset, out):  # pragma: no cover - compiled
    """out[:want] = the allowed haplotypes with the lowest score; at equal score one already
    in a slot first, then in a fixed rotation of rows starting at ``offset`` (O(H), no sort).
    Returns how many were found (fewer than ``want`` only if fewer are allowed).

    The rank is a key, 2·score + (0 in a slot, 1 not), taken in one branch-free pass with its
    minimum; the cut (the key of the want-th) is found level by level from there, a count and
    a minimum pass each (for the few levels a small ``want`` reaches; a histogram past
    :data:`BEST_LEVELS`), and the rotation is walked only as far as it must (:func:`_take`):
    for the keys below the cut until all are found (not at all when none is), then for the
    cut until enough."""
    nh = score.size
    none = np.iinfo(np.int32).max  # not allowed
    key = np.empty(nh, dtype=np.int32)
    low = none
    for h in range(nh):
        k = np.int32(2 * np.int32(score[h]) + np.int32(slot_of[h] < 0))
        k = k if allowed[h] else none
        key[h] = k
        low = min(low, k)
    below = 0
    cut = low
    levels = 0
    while cut < none:
        count = 0
        for h in range(nh):
            count += key[h] == cut
        if below + count >= want:
            break
        below += count
        levels += 1
        if levels == BEST_LEVELS:  # many levels below the cut: a histogram of the rest
            top = 0
            for h in range(nh):
                if key[h] != none:
                    top = max(top, key[h])
            hist = np.zeros(top + 2, dtype=np.int64)
            for h in range(nh):
                if key[h] != none and key[h] > cut:
                    hist[key[h]] += 1
            cut += 1
            while cut <= top and below + hist[cut] < want:  # past top: every allowed row is below
                below += hist[cut]
                cut += 1
            break
        nxt = none
        for h in range(nh):
            k = key[h]
            nxt = min(nxt, k if k > cut else none)
        cut = nxt
    start = offset % nh
    n = 0
    if below:
        n = _take(key, start, nh, cut, True, out, n, below)
        n = _take(key, 0, start, cut, True, out, n, below)
    if cut < none and n < want:
        n = _take(key, start, nh, cut, False, out, n, want)
        n = _take(key, 0, start, cut, False, out, n, want)
    return n


@njit(cache=True, nogil=True)
def _first_fill(window, allowed, slot_of, K, seg_start, seg_hap, n_seg):  # pragma: no cover - compiled
    """Fill every slot at the first step, taking the queries' best matches in turn: query c's
    pick is the first haplotype not yet in a slot in :func:`_best`'s order for all K
    (score, then one in a slot, then the rotation from ``tie_hash(c)``) — below its cut
    the first in rotation, else the first at the cut. That rule is read here incrementally:
    filling a slot lowers that haplotype's key for every query, so a query's cut only falls
    and the haplotypes that qualify only shrink; one pointer per query (and per rule) then
    walks its rotation once, O(H + K) per query instead of a call of :func:`_best` per slot
    (O(K·H), most of the time of a few hundred states)."""
    Q, nh = window.shape
    top = 0
    for c in range(Q):
        for h in range(nh):
            if allowed[h] and window[c, h] > top:
                top = window[c, h]
    hist = np.zeros((Q, 2 * top + 2), dtype=np.int64)  # keys 2·score + (0 in a slot, 1 not)
    for c in range(Q):
        for h in range(nh):
            if allowed[h]:
                hist[c, 2 * window[c, h] + 1] += 1
    ptr = np.zeros((Q, 2), dtype=np.int64)  # rotation steps walked: below the cut, at the cut
    filled = 0
    while filled < K:
        before = filled
        for c in range(Q):
            if filled == K:
                break
            cut = 0
            acc = 0
            while cut < hist.shape[1] and acc + hist[c, cut] < K:
                acc += hist[c, cut]
                cut += 1
            off = tie_hash(c)
            pick = -1
            for rule in range(2):  # 0: key < cut; 1: key == cut (none below)
                i = ptr[c, rule]
                while i < nh:
                    h = (off + i) % nh
                    if allowed[h] and slot_of[h] < 0:
                        key = 2 * window[c, h] + 1
                        if key < cut or (rule == 1 and key == cut):
                            pick = h
                            break
                    i += 1
                ptr[c, rule] = i
                if pick >= 0:
                    break
            if pick < 0:
                continue
            slot_of[pick] = filled
            seg_start[filled, 0] = 0
            seg_hap[filled, 0] = pick
            n_seg[filled] = 1
            filled += 1
            for c2 in range(Q):
                k2 = 2 * window[c2, pick] + 1
                hist[c2, k2] -= 1
                hist[c2, k2 - 1] += 1
        if filled == before:
            break


@njit(cache=True, nogil=True)
def composite_slots(panel, q, genotype, allowed, K, step, width, matches, seg_start, seg_hap,
                    window, ring):  # pragma: no cover - compiled
    """The composite haplotypes of one target (module doc) as segments: slot k copies
    haplotype seg_hap[k, j] from site seg_start[k, j] to the next segment's start. Returns the
    number of segments per slot (n_seg, (K,)). seg_start and seg_hap are (K, n_max) with
    n_max >= 1 + (informative steps) × matches × queries, so every replacement fits; window
    is (queries, H) zeros, the mismatch counters, of an integer type that holds
    (2·width + 1)·step (:func:`composite_segments` takes int16 where it can: twice the
    vector lanes of int32), and ring (2·width + 1, queries, H) the steps' counts in the
    window, of a type that holds ``step`` (int8 where it can, the same reason)."""
    L, nh = panel.shape
    Q = q.shape[1]
    m = 0
    for s in range(L):
        for c in range(Q):
            if q[s, c] >= 0:
                m += 1
                break
    vis = np.empty(max(m, 1), dtype=np.int64)
    t = 0
    for s in range(L):
        for c in range(Q):
            if q[s, c] >= 0:
                vis[t] = s
                t += 1
                break
    n_steps = max(1, (m + step - 1) // step)
    R = 2 * width + 1
    slot_of = np.full(nh, -1, dtype=np.int64)
    slot_last = np.zeros(K, dtype=np.int64)  # the last step the slot's haplotype matched at
    n_seg = np.zeros(K, dtype=np.int64)
    found = np.empty(max(K, matches), dtype=np.int64)
    for t_in in range(n_steps + width):
        r = t_in % R
        if t_in >= R:  # step t_in - R leaves the window
            for c in range(Q):
                for h in range(nh):
                    window[c, h] -= ring[r, c, h]
        if t_in < n_steps:
            _step_counts(panel, q, vis, t_in * step, min(m, (t_in + 1) * step), genotype, ring[r])
            for c in range(Q):
                for h in range(nh):
                    window[c, h] += ring[r, c, h]
        else:
            ring[r] = 0
        t = t_in - width  # the step whose window [t - width, t + width] is now summed
        if t < 0:
            continue
        if t == 0:
            _first_fill(window, allowed, slot_of, K, seg_start, seg_hap, n_seg)
            continue
        for c in range(Q):
            got = _best(window[c], allowed, slot_of, matches, tie_hash(t * Q + c), found)
            for i in range(got):
                h = found[i]
                k = slot_of[h]
                if k >= 0:
                    slot_last[k] = t
                    continue
                k = 0  # the slot matched longest ago (not at this step)
                for j in range(1, K):
                    if slot_last[j] < slot_last[k]:
                        k = j
                if slot_last[k] == t:
                    break
                # switch halfway between the old haplotype's last window end and this window's start
                old_end = min(m, (slot_last[k] + width + 1) * step) - 1
                new_start = min(m - 1, max(0, (t - width) * step))
                site = vis[(old_end + new_start + 1) // 2]
                j = n_seg[k]
                slot_of[seg_hap[k, j - 1]] = -1
                if site <= seg_start[k, j - 1]:  # the old segment would be empty: h takes it over
                    seg_hap[k, j - 1] = h
                else:
                    seg_start[k, j] = site
                    seg_hap[k, j] = h
                    n_seg[k] = j + 1
                slot_of[h] = k
                slot_last[k] = t
    return n_seg


@njit(cache=True, nogil=True)
def segment_cursor(seg_start, n_seg, K, L):  # pragma: no cover - compiled
    """The start of a walk along K slots' segments (slot k copies seg_hap[k, j] from site
    seg_start[k, j] on): each slot's current segment (−1: none yet), its haplotype, and the
    site where its next segment starts (L: none)."""
    cur = np.full(K, -1, dtype=np.int64)
    hap = np.zeros(K, dtype=np.int64)
    nxt = np.full(K, L, dtype=np.int64)
    for k in range(K):
        if n_seg[k] > 0:
            nxt[k] = seg_start[k, 0]
    return cur, hap, nxt


@njit(cache=True, nogil=True)
def advance_segments(s, cur, hap, nxt, seg_start, seg_hap, n_seg, L):  # pragma: no cover - compiled
    """Move every slot of the walk (:func:`segment_cursor`) to its segment at site s;
    returns the next site where some slot changes haplotype (L: none), so callers step
    only there."""
    event = L
    for k in range(cur.size):
        while nxt[k] <= s:
            cur[k] += 1
            hap[k] = seg_hap[k, cur[k]]
            nxt[k] = seg_start[k, cur[k] + 1] if cur[k] + 1 < n_seg[k] else L
        event = min(event, nxt[k])
    return event


@njit(cache=True, nogil=True)
def fill_composite_rows(panel, rows, seg_start, seg_hap, n_seg, out):  # pragma: no cover - compiled
    """out[i, k] = the allele of slot k's haplotype at site rows[i] (rows increasing): the
    K-column composite panel at those sites alone (:func:`fill_composite`)."""
    L = panel.shape[0]
    K = out.shape[1]
    cur, hap, nxt = segment_cursor(seg_start, n_seg, K, L)
    event = 0  # the first site where some slot may change haplotype
    for i in range(rows.size):
        s = rows[i]
        if s >= event:
            event = advance_segments(s, cur, hap, nxt, seg_start, seg_hap, n_seg, L)
        row = panel[s]
        o = out[i]
        for k in range(K):
            if cur[k] >= 0:
                o[k] = row[hap[k]]


@njit(cache=True, nogil=True)
def fill_composite(panel, seg_start, seg_hap, n_seg, out):  # pragma: no cover - compiled
    """out[s, k] = the allele of slot k's haplotype at site s (the K-column composite panel),
    written row by row: a gather from each contiguous panel row (column by column, the
    writes strided by K cost 8x the whole composite step)."""
    fill_composite_rows(panel, np.arange(panel.shape[0]), seg_start, seg_hap, n_seg, out)


def composite_segments(panel: np.ndarray, query: np.ndarray, *, allowed: np.ndarray, states: int, genotype: bool,
                       step: int = 16, width: int = 2,
                       matches: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The K composite haplotypes of one target (module doc) as segments, (seg_start,
    seg_hap, n_seg): slot k copies panel haplotype seg_hap[k, j] from row seg_start[k, j]
    of ``panel`` on, for j < n_seg[k]; :func:`fill_composite` lays them out as alleles.
    The arguments as :func:`composite_panel`'s."""
    q = np.ascontiguousarray(query, dtype=np.int8)
    if q.ndim == 1:
        q = q[:, None]
    K = int(min(states, int(np.count_nonzero(allowed))))
    m = int(((q >= 0).any(1)).sum())
    n_max = 2 + ((m + step - 1) // step) * matches * q.shape[1]
    # room for the most segments a slot can get; nothing past n_seg is read, and the slots
    # use a few (at most 2 on the 10 Mb benchmark, against room for 1,532), so the arrays
    # returned keep only the columns used: zeroed and padded to the bound they were 2 × 20 MB
    # per phased haplotype, most of the state selection's time at a 20 % array
    seg_start = np.empty((K, n_max), dtype=np.int64)
    seg_hap = np.empty((K, n_max), dtype=np.int64)
    narrow = (2 * width + 1) * step <= np.iinfo(np.int16).max  # a window's most mismatches
    window = np.zeros((q.shape[1], panel.shape[1]), dtype=np.int16 if narrow else np.int32)
    ring = np.zeros((2 * width + 1, q.shape[1], panel.shape[1]), dtype=np.int8 if step <= 127 else window.dtype)
    n_seg = composite_slots(panel, q, genotype, np.asarray(allowed, dtype=np.bool_), K, int(step), int(width),
                            int(matches), seg_start, seg_hap, window, ring)
    used = max(1, int(n_seg.max()) if n_seg.size else 1)
    keep = np.arange(used)[None, :] < n_seg[:, None]  # zeros past each slot's segments, as before
    return (np.where(keep, seg_start[:, :used], 0), np.where(keep, seg_hap[:, :used], 0), n_seg)


def composite_panel(panel: np.ndarray, query: np.ndarray, *, allowed: np.ndarray, states: int, genotype: bool,
                    step: int = 16, width: int = 2, matches: int = 2) -> np.ndarray:
    """(L, K) int8 alleles of the K composite haplotypes of one target (module doc).

    panel : (L, H) int8 site-major alleles (0/1, or 2 for "either");
    query : (L, Q) int8, Q haplotype estimates (alleles, −1 unknown) or, with ``genotype``,
        genotypes (ALT dosage 0/1/2, −1 missing);
    allowed : (H,) bool, the haplotypes that may be copied; states : K (at most the allowed);
    step : informative sites per step; width : steps either side in a match's window;
    matches : haplotypes matched per query per step.
    """
    seg_start, seg_hap, n_seg = composite_segments(panel, query, allowed=allowed, states=states, genotype=genotype,
                                                   step=step, width=width, matches=matches)
    out = np.empty((panel.shape[0], seg_start.shape[0]), dtype=np.int8)
    fill_composite(panel, seg_start, seg_hap, n_seg, out)
    return out
