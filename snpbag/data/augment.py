"""Synthetic genomes recombined from a reference panel (numpy only).

SNPBag was pre-trained on a million genomes synthesised from 1000 Genomes haplotypes
(RESHAPE, HAPNEST). This module does the same on the fly: each synthetic haplotype is a
mosaic of reference haplotypes, switching source at crossovers that fall as a Poisson
process along the genetic map, and each synthetic genome pairs two such mosaics. A panel
of a few thousand genomes thus yields an unlimited stream of new, realistic genotype
sequences with the panel's linkage disequilibrium within segments.

The crossover intensity is ``generations`` per Morgan of genetic distance: a mosaic after
``g`` generations of random mating in a large population has ~``g`` switches per Morgan.
The default ``generations = 8`` mirrors the 8th-generation offspring of the paper's RESHAPE
data. Genetic distance comes from a uniform rate (cM/Mb, default 1) or from a genetic map
file (:mod:`~snpbag.io.genmap`). Everything is a pure function of the caller's ``numpy.random.Generator``.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def crossover_sites(genetic_cm: np.ndarray, rng: np.random.Generator, *, generations: float = 8.0) -> np.ndarray:
    """Sites at which a mosaic haplotype switches source.

    Crossovers are a Poisson process of intensity ``generations`` per Morgan on the
    genetic interval spanned by the sites; a crossover between sites ``i-1`` and ``i``
    starts a new segment at ``i``. Several crossovers between the same two sites count
    once (the haplotype simply switches source).

    Parameters
    ----------
    genetic_cm : non-decreasing genetic positions (cM) of the L sites.
    rng : source of randomness.
    generations : crossovers per Morgan.

    Returns
    -------
    int64 array of segment starts in 1..L-1, increasing, unique.
    """
    g = np.asarray(genetic_cm, dtype=np.float64)
    if g.size < 2:
        return np.zeros(0, dtype=np.int64)
    span = (g[-1] - g[0]) / 100.0  # Morgans
    k = rng.poisson(generations * span) if span > 0 else 0
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    u = rng.uniform(g[0], g[-1], size=k)
    idx = np.searchsorted(g, u, side="left")
    idx = idx[(idx >= 1) & (idx < g.size)]
    return np.unique(idx).astype(np.int64)


def mosaic_segments(
    genetic_cm: np.ndarray, n_sources: int, rng: np.random.Generator, *, generations: float = 8.0
) -> tuple[np.ndarray, np.ndarray]:
    """Segment layout of one mosaic haplotype: where segments start and which source
    haplotype each copies. Consecutive segments copy different sources (when there are
    at least two), so every recorded crossover is visible.

    Returns
    -------
    (starts, sources): int64 arrays of equal length; ``starts[0] == 0``.
    """
    if n_sources < 1:
        raise ValueError("mosaic_segments: need at least one source haplotype")
    starts = np.concatenate([[0], crossover_sites(genetic_cm, rng, generations=generations)]).astype(np.int64)
    sources = np.empty(starts.size, dtype=np.int64)
    sources[0] = rng.integers(n_sources)
    if n_sources == 1:
        sources[:] = 0
        return starts, sources
    # a different source from the previous segment: draw among the other n-1
    step = rng.integers(1, n_sources, size=starts.size - 1)
    for i in range(1, starts.size):
        sources[i] = (sources[i - 1] + step[i - 1]) % n_sources
    return starts, sources


def copy_segments(panel: np.ndarray, starts: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Assemble a haplotype (L,) from panel rows (n_sources, L) given a segment layout."""
    L = panel.shape[1]
    out = np.empty(L, dtype=panel.dtype)
    stops = np.append(starts[1:], L)
    for s, e, src in zip(starts.tolist(), stops.tolist(), sources.tolist()):
        out[s:e] = panel[src, s:e]
    return out


def flatten_panel(haplotypes: np.ndarray) -> np.ndarray:
    """(n_ref, L, 2) genomes → (2 n_ref, L) haplotype rows, row ``2 * sample + k``; do it once
    per panel when making many genomes from it."""
    h = np.asarray(haplotypes)
    if h.ndim != 3 or h.shape[2] != 2:
        raise ValueError(f"expected diploid (n, L, 2) haplotypes, got shape {h.shape}")
    return np.ascontiguousarray(h.transpose(0, 2, 1).reshape(2 * h.shape[0], h.shape[1]))


def synthetic_genome(panel: np.ndarray, genetic_cm: np.ndarray, rng: np.random.Generator, *,
                     generations: float = 8.0, segments: list | None = None) -> np.ndarray:
    """One synthetic genome (L, 2) from a flattened panel (see :func:`flatten_panel`); appends
    the two haplotypes' (starts, sources) to ``segments`` when given."""
    L = panel.shape[1]
    out = np.empty((L, 2), dtype=panel.dtype)
    for k in range(2):
        starts, sources = mosaic_segments(genetic_cm, panel.shape[0], rng, generations=generations)
        out[:, k] = copy_segments(panel, starts, sources)
        if segments is not None:
            segments.append((starts, sources))
    return out


def synthetic_genomes(
    haplotypes: np.ndarray,
    genetic_cm: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    generations: float = 8.0,
    return_segments: bool = False,
):
    """Synthetic diploid genomes recombined from a reference panel.

    Parameters
    ----------
    haplotypes : int8 (n_ref, L, 2) panel alleles (-1 missing, copied as is).
    genetic_cm : (L,) genetic positions of the sites in cM.
    n : number of genomes to make.
    rng : source of randomness.
    generations : crossovers per Morgan.
    return_segments : also return each haplotype's (starts, sources); sources index the
        flattened panel, row ``2 * sample + haplotype``.

    Returns
    -------
    int8 (n, L, 2) alleles, and when asked a list of 2n segment layouts (genome-major).

    Raises
    ------
    ValueError : haplotypes not (n, L, 2) or genetic_cm not (L,).
    """
    panel = flatten_panel(haplotypes)
    L = panel.shape[1]
    if np.asarray(genetic_cm).shape != (L,):
        raise ValueError(f"synthetic_genomes: genetic_cm has shape {np.shape(genetic_cm)}, expected ({L},)")
    segments: list | None = [] if return_segments else None
    out = np.empty((n, L, 2), dtype=panel.dtype)
    for i in range(n):
        out[i] = synthetic_genome(panel, genetic_cm, rng, generations=generations, segments=segments)
    return (out, segments) if return_segments else out
