"""Composite states at the visible sites only, and the hidden sites read through them.

A target haplotype's K composite states (:func:`~snpbag.retrieval.states.composite_segments`)
are K slots, each copying one panel haplotype after another. Their segments start at
visible sites only (a replacement's switch is placed at a visible site, the first segment
at site 0), so between two visible sites every slot copies one haplotype. The haploid HMM
(:mod:`snpbag.retrieval.haploid`) steps over the visible sites alone, so it needs the slots'
alleles there alone (:func:`composite_at`, an (m, K) matrix: a sparse array's m is a few
percent of the panel's sites, where laying the slots out over every panel site cost as much
as the HMM). A hidden site's ALT probability sums the kept states' interpolated posteriors
over the slots whose haplotype carries ALT there (as
:func:`~snpbag.retrieval.haploid.interpolate_hidden` does over a dense layout);
:func:`interpolate_segments` lists each copy's kept slots with the haplotype each copies
once per interval between visible sites, and reads the hidden sites through the classes of
the panel's haplotypes there (:mod:`~snpbag.retrieval.hapclasses`), as
:func:`~snpbag.retrieval.haploid.interpolate_carriers` does for the panel's own haplotypes.
Two slots that copy one haplotype both count.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from snpbag.retrieval.hapclasses import carried, class_buffers, interval_sites
from snpbag.retrieval.haploid import keep_states, kept_buffers, read_hidden, scan_buffers
from snpbag.retrieval.states import advance_segments, fill_composite_rows, segment_cursor


def composite_at(panel: np.ndarray, vis: np.ndarray, segments: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """(m, K) int8: the composite states' alleles at the visible sites ``vis`` (m,) of
    ``panel`` (L, H), ``segments`` = (seg_start, seg_hap, n_seg) of
    :func:`~snpbag.retrieval.states.composite_segments`."""
    seg_start, seg_hap, n_seg = segments
    out = np.zeros((vis.size, seg_start.shape[0]), dtype=np.int8)
    fill_composite_rows(panel, vis, seg_start, seg_hap, n_seg, out)
    return out


def union_segments(sets: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The slots of several composite state sets side by side, as one set (seg_start,
    seg_hap, n_seg) with their Σ K slots."""
    width = max(a.shape[1] for a, _, _ in sets)
    pad = [np.pad(x, ((0, 0), (0, width - x.shape[1]))) for a, h, _ in sets for x in (a, h)]
    return np.concatenate(pad[0::2]), np.concatenate(pad[1::2]), np.concatenate([n for _, _, n in sets])


@njit(cache=True, nogil=True)
def interpolate_segments(seg_start, seg_hap, n_seg, panel, vis, cm, post, floor, indptr, indices, alt_minor, typed, cls,
                         n_cls, cptr, cidx, alt_short, out, first=0, last=-1):  # pragma: no cover - compiled
    """out[g, s] = P(ALT) at every hidden site s of G haplotypes whose K states are the
    composite slots (seg_start, seg_hap, n_seg) over ``panel`` (L, H), from their state
    posteriors ``post`` (G, m, K) at the visible sites vis: the sum of
    :func:`~snpbag.retrieval.haploid.interpolate_hidden` over a dense layout of the slots
    (up to rounding), the same states kept (posterior >= floor / K at a flanking visible
    site). Visible sites are left as they are.

    Per interval between two visible sites each copy's kept slots are listed with the
    haplotype each copies there (:func:`~snpbag.retrieval.haploid.keep_states`), and the
    hidden sites are read through the panel's classes (typed … alt_short:
    :class:`~snpbag.retrieval.hapclasses.HapClasses`) or its minor-allele carriers (indptr,
    indices, alt_minor: :class:`~snpbag.retrieval.haploid.Carriers`) by
    :func:`~snpbag.retrieval.haploid.read_hidden`, as
    :func:`~snpbag.retrieval.haploid.interpolate_carriers` does for the panel's own
    haplotypes: a slot copies one haplotype between two visible sites, so its class there
    is that haplotype's. Segments must start at visible sites or at 0 (module doc). first,
    last : only the hidden sites between visible indices first − 1 and last (−1: every
    hidden site; the posteriors elsewhere are not read)."""
    G, m, K = post.shape
    L = alt_minor.size
    kept = kept_buffers(G, K, panel.shape[1] if carried(typed, vis) else 0)
    scan = scan_buffers(G, K)
    ml = np.empty(G)
    mr = np.empty(G)
    mass_l, mass_r = class_buffers(n_cls, G)
    cur, hap, nxt = segment_cursor(seg_start, n_seg, K, L)
    live = cur >= 0  # a slot with no segment yet copies nothing
    event = 0  # the next site where some slot changes haplotype
    thr = floor / K
    for i in range(first, (m if last < 0 else last) + 1):  # the hidden sites between visible i − 1 and i
        a, b = interval_sites(vis, i, L)
        if a >= b:
            continue
        if a >= event:
            event = advance_segments(a, cur, hap, nxt, seg_start, seg_hap, n_seg, L)
            live = cur >= 0
        keep_states(post, i - 1, i if i < m else -1, thr, hap, live, *scan, *kept)
        read_hidden(panel, a, b, vis, i - 1, cm, *kept, indptr, indices, alt_minor, typed, cls, n_cls, cptr, cidx,
                    alt_short, ml, mr, mass_l, mass_r, out)
