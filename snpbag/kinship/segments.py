"""Shared segments of pairs along the genome: runs free of opposite homozygotes, measured in cM.

Two genomes that share a haplotype identical by descent (IBD) over a stretch can never be
opposite homozygotes (IBS0: one AA, the other BB) there, whatever the allele frequencies; an
unrelated pair shows IBS0 at a site with probability 2p²q², so its IBS0-free runs are short
(at 20 SNPs per cM of common array sites, a cM or so). A run whose genetic length passes a
threshold is therefore a shared segment — the input of ERSA's likelihood
(:mod:`snpbag.kinship.ersa`). This detector needs no phasing and no allele frequencies, so it
behaves the same on any simulation or cohort typed at a similar density; it sees IBD1 and IBD2
alike (one run) and overshoots each true segment by the distance to the next IBS0 site on
either side. The copying model's shared-haplotype evidence (:mod:`snpbag.retrieval`) would
place ends more exactly but costs a pair HMM per pair; runs cost one pass over the sites.

A run is a maximal stretch of one chromosome's sites called in both genomes with no IBS0; its
length is the genetic distance from its first to its last site (:class:`Segments`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from snpbag.errors import InputError
from snpbag.io.chrom import is_autosome
from snpbag.io.dosage import alt_dosage
from snpbag.io.genmap import GeneticMap
from snpbag.io.vcf import VcfReader

#: Variants per read of :func:`read_genome`.
CHUNK = 8192


@dataclass
class Genome:
    """Autosomal biallelic SNP dosages of an input with each site's chromosome and genetic position."""

    ids: list[str]
    dosages: np.ndarray  # int8 (v, n), −1 missing
    chrom: np.ndarray  # int32 (v,), index into chromosomes; each chromosome one run
    cm: np.ndarray  # float64 (v,), non-decreasing within a chromosome
    chromosomes: list[str]

    @property
    def chromosome_cm(self) -> np.ndarray:
        """Genetic length (cM) each chromosome's sites span."""
        out = np.zeros(len(self.chromosomes))
        for k in range(len(self.chromosomes)):
            c = self.cm[self.chrom == k]
            out[k] = c[-1] - c[0] if c.size else 0.0
        return out


def read_genome(path: str | Path, genetic_map: GeneticMap) -> Genome:
    """Dosages, chromosomes and genetic positions (``genetic_map``) of a VCF/BCF's autosomal biallelic SNPs.

    Raises
    ------
    InputError : no autosomal SNPs, or a chromosome absent from the map.
    """
    reader = VcfReader(path)
    try:
        ids = list(reader.samples)
        parts, chroms, cms, names = [], [], [], []
        for block in reader.blocks(CHUNK):
            for c in np.unique(block.contig):
                name = reader.contigs[int(c)]
                if not is_autosome(name):
                    continue
                m = block.contig == c
                if name not in names:
                    names.append(name)
                parts.append(alt_dosage(block.genotype[m]))
                chroms.append(np.full(int(m.sum()), names.index(name), dtype=np.int32))
                cms.append(genetic_map.cm(name, block.position[m].astype(np.float64)))
    finally:
        reader.close()
    if not parts:
        raise InputError(f"{path}: no autosomal biallelic SNPs to find shared segments on")
    return Genome(ids, np.concatenate(parts), np.concatenate(chroms), np.concatenate(cms), names)


@dataclass
class Segments:
    """Shared segments of several pairs, pair ``k``'s at rows ``offsets[k]:offsets[k + 1]``."""

    offsets: np.ndarray  # int64 (pairs + 1,)
    chrom: np.ndarray  # int32 (segments,)
    start_cm: np.ndarray  # float64 (segments,)
    end_cm: np.ndarray  # float64 (segments,)

    @property
    def n_pairs(self) -> int:
        return len(self.offsets) - 1

    @property
    def length_cm(self) -> np.ndarray:
        return self.end_cm - self.start_cm

    def lengths(self, k: int) -> np.ndarray:
        """Segment lengths (cM) of pair ``k``."""
        return self.length_cm[self.offsets[k]:self.offsets[k + 1]]

    def count(self) -> np.ndarray:
        """Segments per pair, int64 (pairs,)."""
        return np.diff(self.offsets)

    def total_cm(self) -> np.ndarray:
        """Summed segment length per pair, float64 (pairs,)."""
        c = np.concatenate([[0.0], np.cumsum(self.length_cm)])
        return c[self.offsets[1:]] - c[self.offsets[:-1]]

    def subset(self, keep: np.ndarray) -> Segments:
        """The pairs where ``keep`` is true, in order."""
        rows = np.flatnonzero(np.asarray(keep))
        n = np.diff(self.offsets)[rows]
        take = np.concatenate([np.arange(self.offsets[k], self.offsets[k + 1]) for k in rows]) if rows.size else \
            np.zeros(0, np.int64)
        return Segments(np.concatenate([[0], np.cumsum(n)]).astype(np.int64), self.chrom[take],
                        self.start_cm[take], self.end_cm[take])


@njit(cache=True, nogil=True)
def _runs(g, chrom, cm, pairs, min_cm, offsets, out_chrom, out_start, out_end, fill):
    """Count (``fill`` False: into offsets[k + 1]) or write the IBS0-free runs of each pair."""
    nv = g.shape[0]
    for k in range(pairs.shape[0]):
        i, j = pairs[k, 0], pairs[k, 1]
        w = offsets[k] if fill else 0
        first, last, cur = -1, -1, -1
        a, b = 0, 0
        for v in range(nv + 1):
            close = v == nv
            if not close:
                a, b = g[v, i], g[v, j]
                if chrom[v] != cur:
                    close = True
            if close and first >= 0:  # a chromosome ended
                if cm[last] - cm[first] >= min_cm:
                    if fill:
                        out_chrom[w], out_start[w], out_end[w] = chrom[first], cm[first], cm[last]
                    w += 1
                first = -1
            if v == nv:
                break
            cur = chrom[v]
            if a < 0 or b < 0:
                continue
            if (a == 0 and b == 2) or (a == 2 and b == 0):  # IBS0 ends the run
                if first >= 0 and cm[last] - cm[first] >= min_cm:
                    if fill:
                        out_chrom[w], out_start[w], out_end[w] = chrom[first], cm[first], cm[last]
                    w += 1
                first = -1
                continue
            if first < 0:
                first = v
            last = v
        if not fill:
            offsets[k + 1] = w


def ibs0_free_segments(genome: Genome, pairs: np.ndarray, *, min_cm: float) -> Segments:
    """The runs free of opposite homozygotes of each pair that are at least ``min_cm`` long.

    Parameters
    ----------
    genome : sites and dosages (:func:`read_genome`).
    pairs : int (n_pairs, 2) sample indices; the result does not depend on the order within a pair.
    min_cm : detection threshold (cM); ERSA's t.

    Returns
    -------
    Segments, each pair's in genome order.

    Raises
    ------
    InputError : a negative ``min_cm`` or a pair index out of range.
    """
    if min_cm < 0:
        raise InputError(f"--min-cm {min_cm}: must be >= 0")
    pairs = np.ascontiguousarray(np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
    if pairs.size and (pairs.min() < 0 or pairs.max() >= genome.dosages.shape[1]):
        raise InputError(f"pair index out of range for {genome.dosages.shape[1]} samples")
    g = np.ascontiguousarray(genome.dosages, dtype=np.int8)
    chrom = np.ascontiguousarray(genome.chrom, dtype=np.int32)
    cm = np.ascontiguousarray(genome.cm, dtype=np.float64)
    offsets = np.zeros(len(pairs) + 1, dtype=np.int64)
    none_i, none_f = np.zeros(0, np.int32), np.zeros(0, np.float64)
    _runs(g, chrom, cm, pairs, float(min_cm), offsets, none_i, none_f, none_f, False)
    offsets = np.cumsum(offsets)
    n = int(offsets[-1])
    out_chrom, start, end = np.zeros(n, np.int32), np.zeros(n), np.zeros(n)
    _runs(g, chrom, cm, pairs, float(min_cm), offsets, out_chrom, start, end, True)
    return Segments(offsets, out_chrom, start, end)
