"""Per-patch KING counts of chosen pairs: the evidence a relatedness classifier learns IBD from.

KING sums five counts over the whole genome (:mod:`snpbag.kinship.counts`). Identity by
descent is a run of adjacent sites, so the relatedness classifier (``snpbag relate``)
reads the same five counts per *patch* — ``patch_sites`` consecutive sites of the
dosage stream — for each pair it is asked about: an IBD stretch shows as patches with no
opposite homozygotes and a raised share of common heterozygotes. The counts are
defined once, by :func:`indicators` (the H, C, S vectors of the KING counting
kernels), so the patch counts of a pair summed over patches equal its whole-genome KING
counts exactly.

Patches run over the stream without regard to chromosome ends (a patch can span two
chromosomes); pairs are computed directly, not all-against-all, so the cost is
variants × pairs.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numba import njit

from snpbag.errors import InputError
from snpbag.kinship.estimators import kinship

#: The counts per patch, in this order along the last axis of :func:`patch_counts`'s output.
COUNTS = ("hethet", "ibs0", "het_row", "het_col", "nsnp")


def indicators(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, C, S) of a dosage array (−1 missing): heterozygous, called, +1 hom-alt / −1 hom-ref / 0.

    The KING counts of a pair with indicator vectors (H, C, S) and (H', C', S') are
    HETHET = H·H', NSNP = C·C', het_row = H·C' − H·H', het_col = C·H' − H·H' and
    IBS0 = (C·C' − H·C' − C·H' + H·H' − S·S') / 2 (see :mod:`snpbag.kinship.counts`).
    """
    h = (g == 1).astype(np.int8)
    c = (g >= 0).astype(np.int8)
    s = ((g == 2).astype(np.int8) - (g == 0).astype(np.int8))
    return h, c, s


def n_patches(n_variants: int, patch_sites: int) -> int:
    """Patches of ``patch_sites`` sites covering ``n_variants`` (the last one may be short)."""
    return -(-n_variants // patch_sites)


def _categories() -> np.ndarray:
    """(16,) int8: the count a site adds to for dosages (a, b) ∈ {−1, 0, 1, 2}², at index
    (a + 1) · 4 + b + 1 — 0–3 the first four of :data:`COUNTS`, 4 none of them (both called:
    NSNP alone), 5 nothing (a call missing) — from :func:`indicators`' definitions."""
    vals = np.array([-1, 0, 1, 2], dtype=np.int8)
    (ha, ca, sa), (hb, cb, sb) = indicators(np.repeat(vals, 4)), indicators(np.tile(vals, 4))
    hh, hc, ch, cc, ss = ha * hb, ha * cb, ca * hb, ca * cb, sa * sb
    four = np.stack([hh, (cc - hc - ch + hh - ss) // 2, hc - hh, ch - hh], 1)  # each site adds to one at most
    return np.where(four.any(1), four.argmax(1), np.where(cc > 0, 4, 5)).astype(np.int8)


CATEGORIES = _categories()


@njit(cache=True, nogil=True)
def _patch_counts(g, pi, pj, patch_sites, table, out):  # pragma: no cover - compiled
    """out[p, k, :] = the counts of pair (pi[p], pj[p]) in patch k of g (v, n) int8.

    Site by site over all pairs: a site's row (one byte a sample) stays in cache while every
    pair reads its two samples from it, and the pairs' running counts of the open patch sit
    in six rows of the pairs (``acc[category, pair]``), written out when the patch closes.
    The numpy products of indicator columns this replaced gathered every pair's columns from
    rows as wide as the cohort, so their cost per pair grew with the number of samples
    (docs/benchmarks.md). g holds −1..2 only (:func:`patch_counts` sees to it)."""
    v = g.shape[0]
    P = pi.size
    acc = np.zeros((6, P), dtype=np.int32)
    for t0 in range(0, v, patch_sites):
        k = t0 // patch_sites
        for t in range(t0, min(v, t0 + patch_sites)):
            row = g[t]
            for p in range(P):
                acc[table[(row[pi[p]] + 1) * 4 + row[pj[p]] + 1], p] += 1
        for p in range(P):
            for c in range(4):
                out[p, k, c] = acc[c, p]
            out[p, k, 4] = acc[0, p] + acc[1, p] + acc[2, p] + acc[3, p] + acc[4, p]
        acc[:] = 0


def patch_counts(g: np.ndarray, pairs: np.ndarray, *, patch_sites: int) -> np.ndarray:
    """KING counts of each pair in each patch of ``patch_sites`` consecutive variants.

    Parameters
    ----------
    g : int8 dosages (n_variants, n_samples), −1 missing.
    pairs : int (n_pairs, 2) sample indices (i, j); "row" in :data:`COUNTS` is i.
    patch_sites : variants per patch.

    Returns
    -------
    int32 array (n_pairs, n_patches, 5), counts in the order of :data:`COUNTS`.

    Raises
    ------
    InputError : ``patch_sites`` < 1 or a pair index out of range.
    """
    if patch_sites < 1:
        raise InputError(f"--patch-sites {patch_sites}: must be >= 1")
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    nv, ns = g.shape
    if pairs.size and (pairs.min() < 0 or pairs.max() >= ns):
        raise InputError(f"pair index out of range for {ns} samples")
    out = np.zeros((len(pairs), n_patches(nv, patch_sites), len(COUNTS)), dtype=np.int32)
    if nv == 0 or len(pairs) == 0:
        return out
    g = np.ascontiguousarray(g, dtype=np.int8)
    if g.min() < -1 or g.max() > 2:  # another missing code (a haploid fill): missing
        g = np.clip(g, -1, 2)
    _patch_counts(g, np.ascontiguousarray(pairs[:, 0]),
                  np.ascontiguousarray(pairs[:, 1]), patch_sites, CATEGORIES, out)
    return out


def stream_patch_counts(chunks: Iterable[np.ndarray], pairs: np.ndarray, *, patch_sites: int) -> np.ndarray:
    """:func:`patch_counts` over a stream of dosage chunks (v, n_samples), patches continuing across chunks.

    Each chunk is cut at patch boundaries; a patch split between chunks is the sum of its parts.
    """
    parts: list[np.ndarray] = []
    carry: np.ndarray | None = None  # (pairs, 5) counts of the open patch
    filled = 0  # variants in the open patch
    for g in chunks:
        k = 0
        if filled:  # complete the open patch first
            take = min(patch_sites - filled, g.shape[0])
            carry = carry + patch_counts(g[:take], pairs, patch_sites=patch_sites)[:, 0]
            filled += take
            k = take
            if filled == patch_sites:
                parts.append(carry[:, None])
                carry, filled = None, 0
        rest = g[k:]
        whole = (rest.shape[0] // patch_sites) * patch_sites
        if whole:
            parts.append(patch_counts(rest[:whole], pairs, patch_sites=patch_sites))
        if rest.shape[0] > whole:
            carry = patch_counts(rest[whole:], pairs, patch_sites=patch_sites)[:, 0]
            filled = rest.shape[0] - whole
    if filled:
        parts.append(carry[:, None])
    if not parts:
        return np.zeros((len(np.asarray(pairs).reshape(-1, 2)), 0, len(COUNTS)), dtype=np.int32)
    return np.concatenate(parts, axis=1)


#: Names of :func:`patch_features`' columns (symmetric in the pair: swapping i and j leaves them).
FEATURES = ("ibs0_rate", "hethet_rate", "het_one_rate", "het_imbalance", "king", "called")
#: Names of :func:`pair_summary`'s columns.
SUMMARY = ("king", "ibs0_rate", "hethet_rate", "king_within")


def _rates(c: np.ndarray) -> tuple[np.ndarray, ...]:
    """(hethet, ibs0, het_row, het_col, nsnp) as float64 arrays, nsnp floored at 1."""
    c = c.astype(np.float64)
    return c[..., 0], c[..., 1], c[..., 2], c[..., 3], np.maximum(c[..., 4], 1.0)


def _king(hh, i0, a, b) -> np.ndarray:
    """KING-robust between-family kinship (snpbag.kinship.estimators), 0 where undefined, clipped to [−1, 0.5]."""
    k = kinship(hh, i0, a, b, estimator="between")
    return np.clip(np.nan_to_num(k, nan=0.0, neginf=-1.0, posinf=0.5), -1.0, 0.5)


def patch_features(counts: np.ndarray, *, patch_sites: int) -> tuple[np.ndarray, np.ndarray]:
    """Classifier inputs from :func:`patch_counts`: float32 (pairs, patches, len(FEATURES)) and a validity mask.

    Rates are per site called in both; ``king`` is the patch's KING-robust kinship;
    ``called`` the share of the patch's ``patch_sites`` sites called in both. A patch with
    no site called in both is masked out.
    """
    hh, i0, a, b, n = _rates(counts)
    feats = np.stack([i0 / n, hh / n, (a + b) / n, np.abs(a - b) / n,
                      _king(counts[..., 0], counts[..., 1], counts[..., 2], counts[..., 3]),
                      counts[..., 4] / patch_sites], axis=-1)
    return feats.astype(np.float32), counts[..., 4] > 0


def pair_summary(counts: np.ndarray) -> np.ndarray:
    """Genome-wide numbers of each pair from its patch counts: float32 (pairs, len(SUMMARY))."""
    t = counts.sum(axis=1, dtype=np.int64)  # (pairs, 5): the pair's KING counts
    hh, i0, _, _, n = _rates(t)
    within = kinship(t[:, 0], t[:, 1], t[:, 2], t[:, 3], estimator="within")
    return np.stack([_king(t[:, 0], t[:, 1], t[:, 2], t[:, 3]), i0 / n, hh / n,
                     np.nan_to_num(within, nan=0.0, neginf=-1.0)], axis=-1).astype(np.float32)
