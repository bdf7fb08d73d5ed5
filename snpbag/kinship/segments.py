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
length is the genetic distance from its first to its last site (:class:`Segments`). On phased
input, :mod:`snpbag.kinship.hapibd` finds the same kind of segments on the haplotypes instead
(fewer false runs, exact ends); both detectors fill :class:`Segments` through :func:`gather`.
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
    haplotypes: np.ndarray | None = None  # int8 (v, n, 2) phased alleles, −1 missing; read only when asked

    @property
    def chromosome_cm(self) -> np.ndarray:
        """Genetic length (cM) each chromosome's sites span."""
        out = np.zeros(len(self.chromosomes))
        for k in range(len(self.chromosomes)):
            c = self.cm[self.chrom == k]
            out[k] = c[-1] - c[0] if c.size else 0.0
        return out

    def only(self, chromosomes) -> Genome:
        """The sites of the named chromosomes (those it holds; in its own order), e.g. the chromosomes two inputs
        share when one of them covers part of the genome."""
        wanted = set(chromosomes)
        names = [c for c in self.chromosomes if c in wanted]
        index = np.array([names.index(c) if c in wanted else -1 for c in self.chromosomes], dtype=np.int32)
        keep = index[self.chrom] >= 0 if len(index) else np.zeros(0, bool)
        return Genome(self.ids, self.dosages[keep], index[self.chrom[keep]], self.cm[keep], names,
                      None if self.haplotypes is None else self.haplotypes[keep])


def read_genome(path: str | Path, genetic_map: GeneticMap, *, haplotypes: bool = False) -> Genome:
    """Dosages, chromosomes and genetic positions (``genetic_map``) of a VCF/BCF's autosomal biallelic SNPs;
    with ``haplotypes``, also the phased alleles (the haplotype detector's input).

    Raises
    ------
    InputError : no autosomal SNPs, a chromosome absent from the map, or (``haplotypes``) an unphased call.
    """
    reader = VcfReader(path)
    try:
        ids = list(reader.samples)
        parts, chroms, cms, names, haps = [], [], [], [], []
        for block in reader.blocks(CHUNK):
            for c in np.unique(block.contig):
                name = reader.contigs[int(c)]
                if not is_autosome(name):
                    continue
                m = block.contig == c
                if name not in names:
                    names.append(name)
                parts.append(alt_dosage(block.genotype[m]))
                if haplotypes:
                    _require_phased(path, reader.contigs, block, m)
                    haps.append(np.maximum(block.genotype[m], -1).astype(np.int8))
                chroms.append(np.full(int(m.sum()), names.index(name), dtype=np.int32))
                cms.append(genetic_map.cm(name, block.position[m].astype(np.float64)))
    finally:
        reader.close()
    if not parts:
        raise InputError(f"{path}: no autosomal biallelic SNPs to find shared segments on")
    return Genome(ids, np.concatenate(parts), np.concatenate(chroms), np.concatenate(cms), names,
                  np.concatenate(haps) if haplotypes else None)


def _require_phased(path, contigs: list[str], block, rows: np.ndarray) -> None:
    """Refuse a block whose calls on ``rows`` are not all phased (a missing call has no phase to lose)."""
    called = (block.genotype[rows] >= 0).all(axis=2)
    bad = np.flatnonzero((called & ~block.phased[rows]).any(axis=1))
    if bad.size:
        v = np.flatnonzero(rows)[bad[0]]
        raise InputError(f"{path}: unphased genotype at {contigs[int(block.contig[v])]}:{int(block.position[v])}; "
                         "the haplotype IBD detector needs phased input: run `snpbag phase` on it first, "
                         "or use the IBS0 detector")


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


def check_pairs(genome: Genome, pairs: np.ndarray, min_cm: float) -> np.ndarray:
    """``pairs`` as contiguous int64 (n_pairs, 2), checked against the genome's samples and ``min_cm``.

    Raises
    ------
    InputError : a negative ``min_cm`` or a pair index out of range.
    """
    if min_cm < 0:
        raise InputError(f"--min-cm {min_cm}: must be >= 0")
    pairs = np.ascontiguousarray(np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
    if pairs.size and (pairs.min() < 0 or pairs.max() >= genome.dosages.shape[1]):
        raise InputError(f"pair index out of range for {genome.dosages.shape[1]} samples")
    return pairs


def chromosome_bounds(chrom: np.ndarray) -> np.ndarray:
    """int64 (chromosomes + 1,): where each run of equal ``chrom`` values (sites sorted by chromosome)
    starts, then the number of sites; [0] for no sites."""
    if not len(chrom):
        return np.zeros(1, np.int64)
    return np.flatnonzero(np.r_[True, chrom[1:] != chrom[:-1], True]).astype(np.int64)


def gather(kernel, args: tuple, n_pairs: int, cm: np.ndarray, chrom: np.ndarray) -> Segments:
    """Run a segment kernel over all pairs into :class:`Segments`, growing its output as needed.

    The kernel's contract: ``kernel(*args, k0, offsets, first, last) -> k`` writes pair k's segments
    (first and last site index, genome order) from row ``offsets[k]`` on, sets ``offsets[k + 1]``, starts at
    pair ``k0`` and returns the first pair it could not finish for lack of rows (``n_pairs`` when done), so
    one pass over the sites suffices whatever the number of segments.
    """
    offsets = np.zeros(n_pairs + 1, dtype=np.int64)
    first = np.zeros(max(64, 8 * n_pairs), np.int64)
    last = np.zeros_like(first)
    k = 0
    while k < n_pairs:
        k = kernel(*args, k, offsets, first, last)
        if k < n_pairs:
            first, last = np.resize(first, 2 * first.size), np.resize(last, 2 * last.size)
    n = int(offsets[-1])
    first, last = first[:n], last[:n]
    return Segments(offsets, chrom[first].astype(np.int32), cm[first].astype(np.float64), cm[last].astype(np.float64))


@njit(cache=True, nogil=True)
def _runs(g, chrom, cm, pairs, min_cm, k0, offsets, out_first, out_last):
    """The IBS0-free runs of pairs k0.. (:func:`gather`'s contract)."""
    nv = g.shape[0]
    cap = out_first.shape[0]
    for k in range(k0, pairs.shape[0]):
        i, j = pairs[k, 0], pairs[k, 1]
        w = offsets[k]
        first, last, cur = -1, -1, -1
        a, b = 0, 0
        for v in range(nv + 1):
            close = v == nv
            if not close:
                a, b = g[v, i], g[v, j]
                if chrom[v] != cur:
                    close = True
            ibs0 = v < nv and a >= 0 and b >= 0 and ((a == 0 and b == 2) or (a == 2 and b == 0))
            if (close or ibs0) and first >= 0:  # a chromosome ended or IBS0 ends the run
                if cm[last] - cm[first] >= min_cm:
                    if w == cap:
                        return k
                    out_first[w], out_last[w] = first, last
                    w += 1
                first = -1
            if v == nv:
                break
            cur = chrom[v]
            if a < 0 or b < 0 or ibs0:
                continue
            if first < 0:
                first = v
            last = v
        offsets[k + 1] = w
    return pairs.shape[0]


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
    pairs = check_pairs(genome, pairs, min_cm)
    g = np.ascontiguousarray(genome.dosages, dtype=np.int8)
    chrom = np.ascontiguousarray(genome.chrom, dtype=np.int32)
    cm = np.ascontiguousarray(genome.cm, dtype=np.float64)
    return gather(_runs, (g, chrom, cm, pairs, float(min_cm)), len(pairs), cm, chrom)
