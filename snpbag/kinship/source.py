"""Genotypes for KING: autosomal biallelic SNP dosages of a VCF/BCF or a snpbag store.

:class:`GenotypeSource` streams ALT dosages (−1 missing) of the first n samples in variant
chunks, skipping (and counting) non-autosomal variants; VCF records go through the reader
of ``snpbag convert`` (indels, MNPs, multi-allelic and symbolic records skipped), a store
through :meth:`GenotypeStore.iter_dosage_blocks`. :func:`expected_ibs0_sum` accumulates
the IBS0 an unrelated pair is expected to show, for ``--po-ibs0 auto``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snpbag.io.chrom import is_autosome
from snpbag.io.dosage import alt_dosage
from snpbag.errors import SampleError
from snpbag.io.vcf import VcfReader
from snpbag.io.vcf import cpu_count


@dataclass
class ScanStats:
    """What a pass over the input used and skipped (filled by :meth:`GenotypeSource.dosages`)."""

    variants: int = 0
    non_autosomal: int = 0
    dropped: dict = field(default_factory=dict)
    ibs0_expected_sum: float = 0.0  # sum over variants of 2p²q², p from all samples' calls

    @property
    def expected_ibs0(self) -> float:
        """IBS0 proportion expected for an unrelated pair under Hardy–Weinberg."""
        return self.ibs0_expected_sum / self.variants if self.variants else float("nan")


class GenotypeSource:
    """Autosomal biallelic SNP dosages of a VCF/BCF or a snpbag store, in variant chunks.

    Parameters
    ----------
    path : ``.vcf``, ``.vcf.gz``, ``.bcf`` or a store directory written by ``snpbag convert``.
    threads : threads that inflate and decode VCF text in :meth:`dosage_jobs` (default:
        the cores this process may use); :meth:`dosages` reads in the calling thread.

    Raises
    ------
    InputError : missing or unreadable input.
    StoreFormatError : a store that fails validation.
    SampleError : duplicated sample ids.
    """

    def __init__(self, path: str | Path, *, threads: int | None = None):
        self.path = str(path)
        self.threads = threads
        p = Path(self.path)
        self.is_store = p.is_dir() or self.path.rstrip("/").endswith(".zarr") or "://" in self.path
        if self.is_store:
            from snpbag.store.genotypes import open_store

            self._store = open_store(self.path)
            self.sample_ids = [str(s) for s in self._store.sample_ids.tolist()]
        else:

            reader = VcfReader(self.path)
            self.sample_ids = list(reader.samples)
            reader.close()
        if len(set(self.sample_ids)) != len(self.sample_ids):
            seen, dup = set(), []
            for s in self.sample_ids:
                if s in seen:
                    dup.append(s)
                seen.add(s)
            raise SampleError(f"{self.path}: duplicated sample ids ({', '.join(dup[:5])}); "
                              "rename them (`bcftools reheader -s`) so every pair is identifiable")

    @property
    def n_samples(self) -> int:
        return len(self.sample_ids)

    def dosage_jobs(self, n: int, *, chunk: int, stats: ScanStats | None = None, reuse: bool = False
                    ) -> Iterator[Callable[[], list[np.ndarray]]]:
        """The chunks of :meth:`dosages` as jobs for a thread pool: each returns a list of them.

        A store read shard by shard gives one job per outer variant chunk, which decodes
        it (jobs may run in parallel; their lists, concatenated in order, are exactly
        what :meth:`dosages` yields). Otherwise (a VCF, other store layouts) the input is
        read while iterating and each job just returns one chunk. ``stats`` is filled as
        the jobs are iterated. ``reuse``: a job's chunks may be overwritten by the next
        job run in the same thread (:meth:`ShardScan.chunk_jobs
        <snpbag.store.genotypes.ShardScan.chunk_jobs>`), for callers that are done with them
        inside the job.
        """
        stats = stats if stats is not None else ScanStats()
        jobs = self._store.dosage_block_jobs(n, block=chunk, reuse=reuse) if self.is_store else None
        if jobs is None and not self.is_store:

            yield from self._vcf_jobs(n, chunk, stats, threads=self.threads or cpu_count())
            return
        if jobs is None:
            for d in self.dosages(n, chunk=chunk, stats=stats):
                yield functools.partial(list, (d,))
            return
        auto = np.array([is_autosome(c) for c in self._store.contig_ids], dtype=bool)
        vcontig = self._store.variant_contig
        for sl, job in jobs:
            keep = auto[vcontig[sl]]
            stats.non_autosomal += int((~keep).sum())
            if keep.any():
                stats.variants += int(keep.sum())
                yield functools.partial(_take, job, keep, chunk)

    def dosages(self, n: int, *, chunk: int, stats: ScanStats | None = None) -> Iterator[np.ndarray]:
        """Yield ALT dosages (v, n) int8 of the first ``n`` samples; −1 = missing.

        Half-calls (``0/.``) are missing; a haploid call on an autosome counts as
        homozygous, as plink2 imports it. Non-autosomal variants are skipped and counted.
        """
        stats = stats if stats is not None else ScanStats()
        if self.is_store:
            store = self._store
            contigs = store.contig_ids
            auto = np.array([is_autosome(c) for c in contigs], dtype=bool)
            vcontig = store.variant_contig
            for sl, d in store.iter_dosage_blocks(n, block=chunk):
                keep = auto[vcontig[sl]]
                stats.non_autosomal += int((~keep).sum())
                if keep.any():
                    stats.variants += int(keep.sum())
                    yield d if keep.all() else d[keep]
        else:
            for job in self._vcf_jobs(n, chunk, stats, threads=None):
                yield from job()

    def _vcf_jobs(self, n: int, chunk: int, stats: ScanStats, *, threads: int | None
                  ) -> Iterator[Callable[[], list[np.ndarray]]]:
        """A VCF's chunks as jobs: GT-first text is decoded by the job (compiled, GIL released).

        Records are read, filtered and cut into chunks while iterating (BGZF blocks inflated
        by ``threads`` threads, None: this one); each job decodes one chunk, so jobs run in
        parallel. Other inputs (BCF, FORMAT not starting with GT) are decoded by htslib while
        iterating.
        """

        reader = VcfReader(self.path, samples=self.sample_ids[:n] if n < self.n_samples else None, threads=threads)
        try:
            auto: dict[int, bool] = {}

            def autosomal(contig: np.ndarray) -> np.ndarray:
                for c in np.unique(contig):
                    if int(c) not in auto:
                        auto[int(c)] = is_autosome(reader.contigs[int(c)])
                return np.array([auto[int(c)] for c in contig], dtype=bool)

            text = reader._text
            if text is not None:
                for block in text.blocks(reader, chunk):
                    keep = autosomal(block.contig)
                    if block.error is None:
                        stats.non_autosomal += int((~keep).sum())
                        stats.variants += int(keep.sum())
                    out = np.empty((len(block), text.n), dtype=np.int8)  # here: one malloc arena for all
                    yield functools.partial(_text_dosages, text, block, keep, reader.contigs, out)
            else:
                for block in reader.blocks(chunk):
                    keep = autosomal(block.contig)
                    stats.non_autosomal += int((~keep).sum())
                    if keep.any():
                        stats.variants += int(keep.sum())
                        d = alt_dosage(block.genotype if keep.all() else block.genotype[keep])
                        yield functools.partial(list, (d,))
            stats.dropped = dict(reader.counts.dropped)
        finally:
            reader.close()


def _text_dosages(text, block, keep: np.ndarray, contigs: list[str], out: np.ndarray) -> list[np.ndarray]:
    """A text block's autosomal dosages (every row is decoded: a bad call raises wherever it is)."""
    d = text.dosages(block, contigs, out)
    if not keep.any():
        return []
    return [d if keep.all() else d[keep]]


def _take(job, keep: np.ndarray, block: int) -> list[np.ndarray]:
    """The autosomal rows (``keep``) of a store job's dosage blocks."""
    out = []
    for a, d in zip(range(0, keep.size, block), job()):
        k = keep[a:a + d.shape[0]]
        if k.any():
            out.append(d if k.all() else d[k])
    return out


def expected_ibs0_sum(g: np.ndarray, alt: np.ndarray | None = None) -> float:
    """Sum over variants of 2p²q² (p: ALT frequency among the called genotypes).

    ``alt``: the per-variant dosage sums of ``g`` when it has no missing call.
    """
    if alt is not None:
        called = np.full(g.shape[0], g.shape[1], dtype=np.int64)
    else:
        called = (g >= 0).sum(axis=1)
        alt = np.where(g > 0, g, 0).sum(axis=1, dtype=np.int64)
    ok = called > 0
    p = alt[ok] / (2.0 * called[ok])
    return float(np.sum(2.0 * p * p * (1.0 - p) * (1.0 - p)))

