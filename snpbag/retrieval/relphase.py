"""Relative phase: the one quantity the phasing head and the copying model both predict.

For a heterozygous site s of one sequence whose previous heterozygous site is p, the
quantity is ``P(same) = P(the ALT at s lies on the haplotype that carries the ALT at p)``.
Why this parameterisation: phase is only defined relative to other sites (the two copies
are exchangeable), a switch error counts exactly one decision per consecutive pair of
heterozygous sites, and a chain of these decisions is a full phasing. It is also what the
copying model reports (:mod:`snpbag.retrieval.phasing`: ``pp`` is the probability that the
printed orientation relative to the previous heterozygote is right), so the copying model's
answer converts to a prior for the head without touching its kernels
(:func:`prior_from_phased`), and the head's answer converts back to haplotypes and PP by
:func:`decode`.

Conventions: arrays are per sequence, sites first; "het" means a dosage of 1 in the phased
(complete) haplotypes. Every het carries a value (the first het of a sequence 0.5, it has
nothing to be relative to) and every other site NaN, so a NaN-free entry marks a het and
the previous het is recoverable from the array alone (:func:`previous_het`).
"""

from __future__ import annotations

import numpy as np

from snpbag.retrieval import phasing

FIRST = 0.5  # the value of a sequence's first het (no previous het to be relative to)


def previous_het(het: np.ndarray) -> np.ndarray:
    """(L,) index of the previous het before each site (−1: none), for a (L,) bool het mask."""
    idx = np.where(het, np.arange(het.size), -1)
    last = np.maximum.accumulate(idx) if het.size else idx
    return np.concatenate([[-1], last[:-1]]).astype(np.int64)


def same_as_previous(haplotypes: np.ndarray) -> np.ndarray:
    """(L,) float32 truth of :data:`P(same)` for phased (L, 2) alleles: 1/0 at hets after the
    first, :data:`FIRST` at the first het, NaN at other sites."""
    h = np.asarray(haplotypes)
    het = (h[:, 0] != h[:, 1]) & (h >= 0).all(1)
    prev = previous_het(het)
    out = np.full(h.shape[0], np.nan, dtype=np.float32)
    out[het] = FIRST
    s = np.flatnonzero(het & (prev >= 0))
    out[s] = (h[s, 1] == h[prev[s], 1]).astype(np.float32)
    return out


def prior_from_phased(haplotypes: np.ndarray, pp: np.ndarray) -> np.ndarray:
    """The copying model's P(same) of a phased sequence (``haplotypes`` (L, 2), ``pp`` (L,)
    as :class:`~snpbag.retrieval.phasing.Phased` gives them): ``pp`` where the printed
    orientation says "same", ``1 − pp`` where it says "opposite", 0.5 where ``pp`` is NaN."""
    same = same_as_previous(haplotypes)
    p = np.where(np.isnan(pp), 0.5, pp).astype(np.float32)
    out = np.where(same == 1, p, np.where(same == 0, 1 - p, same))
    return out.astype(np.float32)


def copying_prior(panel, dosage: np.ndarray, sites: np.ndarray, *, exclude=None,
                  options: phasing.PhaseOptions | None = None) -> np.ndarray:
    """The copying model's P(same) (L,) for one unphased sequence against a
    :class:`~snpbag.retrieval.haplotypes.HaplotypePanel` (what the phasing head's training
    items carry as ``phase_prior``).

    dosage : (L,) ALT dosages 0/1/2 (anything else missing); sites : (L,) vocabulary indices;
    exclude : panel genome rows the sequence may not copy (its own, its mosaic's sources).
    """
    d = np.asarray(dosage)
    calls = np.stack([(d >= 2), (d >= 1)], axis=1).astype(np.int8)  # 0/0, 0/1, 1/1: no phase given
    calls[(d < 0) | (d > 2)] = -1
    by_site = panel.by_site[sites]
    allowed = np.ones(by_site.shape[1], dtype=np.bool_)
    if exclude is not None:
        ex = np.atleast_1d(np.asarray(exclude, dtype=np.int64))
        ex = ex[(ex >= 0) & (ex < allowed.size // 2)]
        allowed[2 * ex] = allowed[2 * ex + 1] = False
    if allowed.sum() < 2:  # nothing to copy from (e.g. a mosaic of the whole panel): no information
        return np.where(np.isnan(same_as_previous(calls)), np.nan, 0.5).astype(np.float32)
    o = options or phasing.PhaseOptions()
    hap, pp, _ = phasing.phase_rounds(by_site, panel.cm[sites], calls, bounds=[(0, d.size)], allowed=allowed,
                                      options=o, rounds=o.rounds)
    return prior_from_phased(hap, pp)


def decode(haplotypes: np.ndarray, p_same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chain P(same) into haplotypes: the first het keeps the orientation of ``haplotypes``
    (L, 2), every later het goes on the same haplotype as the previous het's ALT when
    P(same) ≥ 0.5. Returns (haplotypes (L, 2) int8, pp (L,) float32 = max(p, 1 − p) at
    later hets, NaN elsewhere). Homozygous sites are unchanged."""
    h = np.array(haplotypes, dtype=np.int8, copy=True)
    het = (h[:, 0] != h[:, 1]) & (h >= 0).all(1)
    prev = previous_het(het)
    pp = np.full(h.shape[0], np.nan, dtype=np.float32)
    for s in np.flatnonzero(het & (prev >= 0)).tolist():
        p = float(p_same[s])
        alt = h[prev[s], 1] if p >= 0.5 else 1 - h[prev[s], 1]  # the copy that carries s's ALT
        h[s, 1], h[s, 0] = alt, 1 - alt
        pp[s] = max(p, 1.0 - p)
    return h, pp
