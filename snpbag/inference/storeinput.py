"""A genotype store (``snpbag convert`` output) as inference input: its sites matched onto a
model's vocabulary by the same rules and report as a VCF's (snpbag.inference.sitematch),
its genotypes read per sample batch and tile, so memory stays one batch whatever
the cohort size.

:class:`StoreTargets` offers the part of :class:`~snpbag.inference.sitematch.TargetGenotypes`
that the model batches read (``samples``, ``site_index``, ``typed_rows``, ``rows_for``,
``tokens``, ``report``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snpbag.data.tokens import MISSING
from snpbag.errors import SiteMismatchError
from snpbag.inference.sitematch import EXCLUDE_REASONS, ModelSites, SiteReport, match_sites
from snpbag.io.chrom import chrom_key
from snpbag.io.vcf import read_sample_file

log = logging.getLogger(__name__)


@dataclass
class StoreTargets:
    path: str
    store: object  # snpbag.store.genotypes.GenotypeStore
    samples: list[str]
    sample_rows: np.ndarray  # int64 (N,): store rows of the samples
    site_index: np.ndarray  # int64 (R,): model sites on the store's matched chromosomes
    typed_rows: np.ndarray  # int64 (T,), increasing
    store_sites: np.ndarray  # int64 (T,): the store vocabulary site of each typed row
    swapped: np.ndarray  # bool (T,)
    report: SiteReport

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    @property
    def n_rows(self) -> int:
        return int(self.site_index.size)

    def rows_for(self, vocab_start: int, vocab_stop: int) -> slice:
        lo, hi = np.searchsorted(self.site_index, [vocab_start, vocab_stop])
        return slice(int(lo), int(hi))

    def tokens(self, start: int = 0, stop: int | None = None, samples=slice(None)) -> np.ndarray:
        """Model input tokens (n, stop - start) int64: ALT dosage 0/1/2, MISSING where untyped."""
        stop = self.n_rows if stop is None else stop
        rows = self.sample_rows[samples]
        out = np.full((rows.size, stop - start), MISSING, np.int64)
        lo, hi = np.searchsorted(self.typed_rows, [start, stop])
        if hi > lo:
            sites = self.store_sites[lo:hi]
            order = np.argsort(sites, kind="stable")  # the store reads increasing sites
            g = np.empty((rows.size, hi - lo, 2), np.int8)
            g[:, order] = self.store.read_sites(sites[order], rows)
            sw = self.swapped[lo:hi]
            g[:, sw] = np.where(g[:, sw] >= 0, 1 - g[:, sw], g[:, sw])
            out[:, self.typed_rows[lo:hi] - start] = np.where((g >= 0).all(-1), g.sum(-1, dtype=np.int64), MISSING)
        return out


def store_targets(path: str | Path, model, *, samples=None, min_overlap: float = 0.5) -> StoreTargets:
    """Match a store's site vocabulary onto a model's sites (swaps applied, strand-ambiguous
    and mismatched sites dropped with their reason, as for a VCF).

    Raises
    ------
    StoreFormatError : not a snpbag store.
    SampleError : requested samples absent from the store.
    SiteMismatchError : no chromosome in common, or an implausibly small overlap.
    """
    from snpbag.store.genotypes import open_store

    store = open_store(str(path))
    sv = store.vocab
    ids = [str(s) for s in store.sample_ids.tolist()]
    if samples is not None:
        wanted = read_sample_file(samples) if isinstance(samples, (str, Path)) else [str(s) for s in samples]
        rows = store.sample_index(wanted)
        ids = wanted
    else:
        rows = np.arange(len(ids), dtype=np.int64)
    model = ModelSites.coerce(model)
    m = match_sites(model, sv.chrom(), sv.position, sv.ref, sv.alt)
    report = SiteReport(path=str(path), records=int(sv.n_sites))
    chroms = sv.chrom()
    seen = set()
    for j, reason in enumerate(m.reason.tolist()):
        if reason == "chrom_not_in_model":
            report.other_chroms[str(chroms[j])] = report.other_chroms.get(str(chroms[j]), 0) + 1
            continue
        seen.add(chrom_key(str(chroms[j])))
        if reason == "outside_model_region":
            report.outside_model_region += 1
        elif reason is not None:
            assert reason in EXCLUDE_REASONS
            report.considered += 1
            setattr(report, reason, getattr(report, reason) + 1)
        else:
            report.considered += 1
        if reason not in (None, "chrom_not_in_model"):
            report.exclusions.append((str(chroms[j]), int(sv.position[j]), str(sv.ref[j]), str(sv.alt[j]), reason))
    ok = m.reason == None  # noqa: E711 - object array
    report.matched = int(ok.sum())
    report.allele_swapped = int(m.swap[ok].sum())
    report.strand_flipped = int(m.flip[ok].sum())
    model_keys = np.array([chrom_key(str(c)) for c in model.chrom], dtype=object)
    if not seen:
        raise SiteMismatchError(f"{path}: chromosome(s) {', '.join(sorted(report.other_chroms)[:5])} but the model "
                                f"covers {', '.join(list(dict.fromkeys(model_keys.tolist()))[:5])}; "
                                "wrong build or wrong chromosome?")
    site_index = np.flatnonzero(np.isin(model_keys, list(seen))).astype(np.int64)
    report.n_model_sites = int(site_index.size)
    if report.overlap < min_overlap and report.coverage < min_overlap:
        raise SiteMismatchError(f"{path}: only {report.matched:,} of {report.considered:,} store sites "
                                f"({100 * report.overlap:.1f}%) match model sites; wrong build or wrong chromosome?")
    model_idx = m.model_index[ok]
    typed = np.searchsorted(site_index, model_idx)
    order = np.argsort(typed, kind="stable")
    log.info(report.line())
    return StoreTargets(str(path), store, ids, rows, site_index, typed[order], np.flatnonzero(ok)[order],
                        m.swap[ok][order], report)
