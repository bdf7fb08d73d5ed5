"""Recombination maps for simulation: uniform, or hotspots on a low background.

A uniform rate flatters every imputer that assumes one (1 cM/Mb, snpbag's default without a
map): in human genomes most crossovers fall in narrow hotspots, so linkage disequilibrium
comes in blocks and the genetic distance between two array sites is far from proportional
to their base-pair distance. ``--recombination hotspots`` simulates such a map and writes it
as a PLINK ``.map`` (``chrom . cM bp``, what Beagle's ``map=`` and ``snpbag --map`` read) so
that every tool in a benchmark gets the true map.

The hotspot map keeps the mean rate of the uniform one: hotspots start at Poisson
positions (one per :data:`HOTSPOT_SPACING` bp on average), each :data:`HOTSPOT_WIDTH` bp wide
with an exponentially distributed intensity, and together carry :data:`HOTSPOT_SHARE` of all
crossovers (about 80 % of recombination in about 10–20 % of the sequence in humans; Myers
et al. 2005, Science 310:321).
"""

from __future__ import annotations

import numpy as np

RECOMBINATION_MAPS = ("uniform", "hotspots")
HOTSPOT_SPACING = 50_000
HOTSPOT_WIDTH = 2_000
HOTSPOT_SHARE = 0.7


def hotspot_map(length: int, mean_rate: float, *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(breakpoints, rates) of a hotspot map over [0, length): ``len(rates) + 1`` breakpoints
    from 0 to ``length`` (msprime.RateMap's ``position`` and ``rate``), mean rate ``mean_rate``."""
    n = max(1, int(rng.poisson(length / HOTSPOT_SPACING)))
    starts = np.unique(rng.integers(0, max(1, length - HOTSPOT_WIDTH), n))
    starts = starts[np.r_[True, np.diff(starts) >= HOTSPOT_WIDTH]]  # hotspots do not overlap
    weight = 0.2 + rng.exponential(1.0, len(starts))  # the weakest still well above the background
    hot_total = HOTSPOT_SHARE * mean_rate * length  # expected crossovers (Morgans) in hotspots
    cold_rate = (1 - HOTSPOT_SHARE) * mean_rate * length / (length - len(starts) * HOTSPOT_WIDTH)
    hot_rate = hot_total * weight / weight.sum() / HOTSPOT_WIDTH
    edges = np.stack([starts, starts + HOTSPOT_WIDTH], 1).reshape(-1)
    position = np.unique(np.r_[0, edges, length]).astype(np.float64)
    rate = np.full(len(position) - 1, cold_rate)
    rate[np.searchsorted(position, starts)] = hot_rate
    return position, rate


def plink_map_lines(chrom: str, position: np.ndarray, rate: np.ndarray) -> str:
    """The map as PLINK ``.map`` lines (``chrom . cM bp``, bp 1-based) at every breakpoint."""
    cm = np.r_[0.0, np.cumsum(np.diff(position) * rate)] * 100.0
    bp = position.astype(np.int64) + 1
    return "".join(f"{chrom}\t.\t{c:.8f}\t{b}\n" for c, b in zip(cm, bp))
