"""Match a user's VCF onto a model's site vocabulary before any model work.

Imputation is only as good as this step: a wrong build, a chromosome naming mismatch or
an array exported on the other strand silently turns into garbage dosages. So every
input site gets exactly one fate (matched, allele-swapped, strand-flipped, or dropped
with a reason), the counts are printed as one line, dropped sites go to a TSV, and an
implausibly small overlap stops the run with a SiteMismatchError. Rules: docs/imputation.md.

Genotypes are kept in the model's REF/ALT orientation (the model sees what it was trained
on); the user's orientation is remembered per site so the writer can turn results back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snpbag.data.tokens import MISSING
from snpbag.io.chrom import chrom_key
from snpbag.io.header import read_header
from snpbag.io.vcf import VcfReader, parse_region, read_sample_file
from snpbag.errors import InputError, SampleError, SiteMismatchError
from snpbag.fileio import atomic_output

log = logging.getLogger(__name__)

__all__ = [
    "ModelSites", "SiteMatch", "SiteReport", "TargetGenotypes", "classify_alleles", "match_sites", "read_targets",
]

_COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A"}
_AMBIGUOUS = ({"A", "T"}, {"C", "G"})
#: Reasons an input biallelic SNP is excluded (the ``reason`` column of the exclusion TSV).
EXCLUDE_REASONS = ("ambiguous", "allele_mismatch", "not_in_model", "outside_model_region")


@dataclass(frozen=True)
class ModelSites:
    """A model's site list as plain arrays, in vocabulary (genome) order."""

    chrom: np.ndarray  # object (S,): chromosome names as the model stores them
    pos: np.ndarray  # int64 (S,), 1-based
    ref: np.ndarray  # object (S,)
    alt: np.ndarray  # object (S,)

    @classmethod
    def coerce(cls, model) -> ModelSites:
        """Accept a ModelSites, a SiteVocab (snpbag.store.vocab) or a (chrom, pos, ref, alt) tuple."""
        if isinstance(model, ModelSites):
            return model
        if hasattr(model, "chrom_names") and hasattr(model, "position"):
            chrom, pos, ref, alt = model.chrom(), model.position, model.ref, model.alt
        else:
            chrom, pos, ref, alt = model
        out = cls(np.asarray(chrom, dtype=object), np.asarray(pos, dtype=np.int64),
                  np.asarray(ref, dtype=object), np.asarray(alt, dtype=object))
        if not (out.chrom.shape == out.pos.shape == out.ref.shape == out.alt.shape) or out.pos.ndim != 1:
            raise ValueError("model chrom, pos, ref and alt must be 1-D arrays of equal length")
        return out

    def __len__(self) -> int:
        return int(self.pos.size)


def classify_alleles(ref: str, alt: str, model_ref: str, model_alt: str) -> tuple[str | None, bool, bool]:
    """Compare one input site's alleles with one model site's at the same position.

    Returns ``(reason, swap, flip)``: reason is None when the site matches, else
    ``"ambiguous"`` or ``"allele_mismatch"``; swap means input REF is the model's ALT
    (genotypes must be recoded 0<->1); flip means the input is on the other strand.
    A/T and C/G model sites only match exactly: swapped alleles there are
    indistinguishable from a strand flip, so they are dropped as ambiguous.
    """
    r, a, mr, ma = ref.upper(), alt.upper(), model_ref.upper(), model_alt.upper()
    if r == mr and a == ma:
        return None, False, False
    if r == ma and a == mr:
        if {mr, ma} in _AMBIGUOUS:
            return "ambiguous", False, False
        return None, True, False
    cr, ca = _COMPLEMENT.get(r), _COMPLEMENT.get(a)
    if cr == mr and ca == ma:
        return None, False, True
    if cr == ma and ca == mr:
        return None, True, True
    return "allele_mismatch", False, False


@dataclass
class SiteMatch:
    """Per input site: the matched model site (-1 if none), swap/flip flags and drop reason."""

    model_index: np.ndarray  # int64 (n,)
    swap: np.ndarray  # bool (n,)
    flip: np.ndarray  # bool (n,)
    reason: np.ndarray  # object (n,): None where matched, else one of EXCLUDE_REASONS / "chrom_not_in_model"


class _Matcher:
    """Hash lookup of model sites by (chrom_key, pos) plus each chromosome's span."""

    def __init__(self, model: ModelSites):
        self.model = model
        keys = np.array([chrom_key(str(c)) for c in model.chrom], dtype=object)
        self.keys = keys
        self.by_pos: dict[tuple[str, int], list[int]] = {}
        for i, (k, p) in enumerate(zip(keys.tolist(), model.pos.tolist())):
            self.by_pos.setdefault((k, p), []).append(i)
        self.span: dict[str, tuple[int, int]] = {}
        for k in dict.fromkeys(keys.tolist()):
            p = model.pos[keys == k]
            self.span[k] = (int(p.min()), int(p.max()))

    def match(self, key: str, pos: int, ref: str, alt: str) -> tuple[int, str | None, bool, bool]:
        span = self.span.get(key)
        if span is None:
            return -1, "chrom_not_in_model", False, False
        if not span[0] <= pos <= span[1]:
            return -1, "outside_model_region", False, False
        cands = self.by_pos.get((key, pos))
        if not cands:
            return -1, "not_in_model", False, False
        best = (-1, "allele_mismatch", False, False)
        for i in cands:
            reason, swap, flip = classify_alleles(ref, alt, self.model.ref[i], self.model.alt[i])
            if reason is None:
                # Prefer an exact match over a swap over a flip when a position has several model sites.
                if best[1] is not None or (best[3], best[2]) > (flip, swap):
                    best = (i, None, swap, flip)
            elif reason == "ambiguous" and best[1] == "allele_mismatch":
                best = (-1, reason, False, False)
        return best


def match_sites(model, chrom, pos, ref, alt) -> SiteMatch:
    """Match input sites (arrays) onto model sites; no file I/O.

    Parameters
    ----------
    model : ModelSites, SiteVocab or (chrom, pos, ref, alt) arrays of the model.
    chrom, pos, ref, alt : the input's biallelic SNPs.

    Returns
    -------
    SiteMatch with one entry per input site (rules: :func:`classify_alleles`).
    """
    m = _Matcher(ModelSites.coerce(model))
    n = len(pos)
    out = SiteMatch(np.full(n, -1, np.int64), np.zeros(n, bool), np.zeros(n, bool), np.full(n, None, object))
    for j, (c, p, r, a) in enumerate(zip(chrom, pos, ref, alt)):
        idx, reason, swap, flip = m.match(chrom_key(str(c)), int(p), str(r), str(a))
        out.model_index[j], out.reason[j], out.swap[j], out.flip[j] = idx, reason, swap, flip
    return out


@dataclass
class SiteReport:
    """What happened to every input record; ``line()`` is printed, ``write_tsv`` lists drops.

    ``considered`` counts the input's biallelic SNPs on model chromosomes inside the span
    of model sites: the denominator of the overlap check. ``allele_swapped`` and
    ``strand_flipped`` are subsets of ``matched`` (a site can be both).
    """

    path: str
    n_model_sites: int = 0  # model sites on the input's chromosomes (in --region)
    records: int = 0
    considered: int = 0
    matched: int = 0
    allele_swapped: int = 0
    strand_flipped: int = 0
    ambiguous: int = 0
    allele_mismatch: int = 0
    not_in_model: int = 0
    outside_model_region: int = 0
    multiallelic: int = 0
    not_snp: int = 0  # indels, MNPs, symbolic alleles
    no_alt: int = 0  # ALT '.', e.g. monomorphic sites exported by plink
    other_chroms: dict[str, int] = field(default_factory=dict)  # SNPs per chromosome absent from the model
    exclusions: list[tuple[str, int, str, str, str]] = field(default_factory=list, repr=False)
    excluded_af: list[float] = field(default_factory=list, repr=False)  # input ALT frequency, per exclusion

    def record(self, name: str, pos: int, ref: str, alt: str, reason: str | None, *, swap: bool = False,
               flip: bool = False, af: float = float("nan")) -> None:
        """Count one input SNP's fate: ``reason`` from :func:`match_sites` (None: matched);
        ``af``, its input ALT frequency, is kept for an excluded SNP (for reports)."""
        if reason == "chrom_not_in_model":
            self.other_chroms[name] = self.other_chroms.get(name, 0) + 1
            return
        if reason != "outside_model_region":
            self.considered += 1
        if reason is not None:
            setattr(self, reason, getattr(self, reason) + 1)
            self.exclusions.append((name, pos, ref, alt, reason))
            self.excluded_af.append(af)
            return
        self.matched += 1
        self.allele_swapped += swap
        self.strand_flipped += flip

    def add_read_counts(self, counts) -> None:
        """The records the reader read and dropped (:class:`~snpbag.io.records.ReadCounts`)."""
        self.records = counts.records
        self.multiallelic = counts.dropped.get("multiallelic", 0)
        self.no_alt = counts.dropped.get("no_alt", 0)
        self.not_snp = sum(counts.dropped.get(k, 0) for k in ("indel", "mnp", "symbolic"))

    @property
    def overlap(self) -> float:
        return self.matched / self.considered if self.considered else 0.0

    @property
    def coverage(self) -> float:
        return self.matched / self.n_model_sites if self.n_model_sites else 0.0

    def line(self) -> str:
        other = sum(self.other_chroms.values())
        return (
            f"{Path(self.path).name}: {self.matched:,} of {self.considered:,} input SNPs in the model region matched "
            f"({self.allele_swapped:,} allele-swapped, {self.strand_flipped:,} strand-flipped); dropped "
            f"{self.ambiguous:,} strand-ambiguous, {self.allele_mismatch:,} allele-mismatched, "
            f"{self.not_in_model:,} not in model, {self.outside_model_region + other:,} outside the model's region, "
            f"{self.multiallelic:,} multi-allelic, {self.not_snp + self.no_alt:,} not SNPs; "
            f"{self.matched:,}/{self.n_model_sites:,} model sites typed ({100 * self.coverage:.1f}%)"
        )

    def write_tsv(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the dropped biallelic SNPs as ``chrom pos ref alt reason`` (atomic).

        SNPs on chromosomes the model lacks are summarised per chromosome in the log, not listed.
        """
        path = Path(path)
        with atomic_output(path, overwrite=overwrite) as tmp, open(tmp, "w") as f:
            f.write("#chrom\tpos\tref\talt\treason\n")
            for c, p, r, a, why in self.exclusions:
                f.write(f"{c}\t{p}\t{r}\t{a}\t{why}\n")
        return path


@dataclass
class TargetGenotypes:
    """Input genotypes laid onto the model's sites (rows), in model REF/ALT orientation.

    Rows are all model sites on the chromosomes the input covers (restricted to
    ``--region``), in vocabulary order; ``site_index`` maps rows to vocabulary indices.
    Only typed rows are stored (``typed_rows``/``calls``); :meth:`block` and
    :attr:`genotypes` expand them with -1 for untyped sites.
    """

    path: str
    samples: list[str]
    phased: bool  # heterozygous input calls are phased ('|')
    site_index: np.ndarray  # int64 (R,)
    typed_rows: np.ndarray  # int64 (T,), increasing
    calls: np.ndarray  # int8 (T, N, 2), model orientation, -1 missing
    swapped: np.ndarray  # bool (T,): input REF/ALT is the model's ALT/REF
    flipped: np.ndarray  # bool (T,): input alleles are on the other strand
    input_ref: np.ndarray  # object (T,)
    input_alt: np.ndarray  # object (T,)
    input_id: np.ndarray  # object (T,)
    chrom_names: dict[str, str]  # chrom_key -> the input's name for that chromosome
    contig_lengths: dict[str, int]  # from the input header, keyed by the input's names
    report: SiteReport

    @property
    def n_rows(self) -> int:
        return int(self.site_index.size)

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    @property
    def typed(self) -> np.ndarray:
        """bool (R,): True for rows with an input record."""
        t = np.zeros(self.n_rows, bool)
        t[self.typed_rows] = True
        return t

    def rows_for(self, vocab_start: int, vocab_stop: int) -> slice:
        """Rows covering vocabulary sites ``vocab_start:vocab_stop`` (e.g. one tile).

        Rows are increasing vocabulary indices, so the result is the rows of that
        vocabulary range that this input covers (empty for another chromosome).
        """
        lo, hi = np.searchsorted(self.site_index, [vocab_start, vocab_stop])
        return slice(int(lo), int(hi))

    def block(self, start: int = 0, stop: int | None = None, samples=slice(None)) -> np.ndarray:
        """int8 (stop - start, n, 2) alleles of rows ``start:stop``; -1 untyped or missing."""
        stop = self.n_rows if stop is None else stop
        ids = np.arange(self.n_samples)[samples]
        out = np.full((stop - start, ids.size, 2), -1, np.int8)
        lo, hi = np.searchsorted(self.typed_rows, [start, stop])
        if hi > lo:
            out[self.typed_rows[lo:hi] - start] = self.calls[lo:hi][:, ids]
        return out

    @property
    def genotypes(self) -> np.ndarray:
        """int8 (R, N, 2) for all rows (dense; prefer :meth:`block` for large panels)."""
        return self.block()

    def tokens(self, start: int = 0, stop: int | None = None, samples=slice(None)) -> np.ndarray:
        """Model input tokens (n, stop - start) int64: ALT dosage 0/1/2, MISSING where untyped."""
        g = self.block(start, stop, samples).astype(np.int64)
        tok = np.where((g >= 0).all(-1), g.sum(-1), MISSING)
        return np.ascontiguousarray(tok.T)


def _check_samples(path: Path, samples) -> list[str] | None:
    """The requested samples (None: all), after checking the header's ids on its text.

    htslib refuses a header with duplicated sample ids with an unhelpful message, so the
    check reads the header itself (:func:`~snpbag.io.header.read_header`).
    """
    header = read_header(path)
    dup = header.duplicated_samples() if header is not None else []
    if dup:
        raise SampleError(f"{path}: duplicated sample ids in the header ({', '.join(dup[:5])}); "
                          "rename them, e.g. `bcftools reheader -s new_names.txt`")
    if samples is None:
        return None
    if isinstance(samples, (str, Path)):
        return read_sample_file(samples)
    samples = [str(s) for s in samples]
    if len(set(samples)) != len(samples):
        raise SampleError(f"{path}: the requested samples list a sample more than once; list each sample once")
    return samples


def _region_mask(model: ModelSites, keys: np.ndarray, region: str | None) -> tuple[np.ndarray, str | None]:
    if region is None:
        return np.ones(len(model), bool), None
    chrom, start, end = parse_region(region)
    key = chrom_key(chrom)
    mask = keys == key
    if start is not None:
        mask &= model.pos >= start
    if end is not None:
        mask &= model.pos <= end
    return mask, key


def read_targets(
    path: str | Path,
    model,
    *,
    samples: Sequence[str] | str | Path | None = None,
    region: str | None = None,
    min_overlap: float = 0.5,
    block_size: int = 2048,
    threads: int | None = None,
) -> TargetGenotypes:
    """Read a user's VCF/BCF onto the model's sites, with swaps and flips applied.

    Parameters
    ----------
    path : the target VCF/BCF (plain, bgzipped or BCF).
    model : ModelSites, SiteVocab or (chrom, pos, ref, alt) arrays of the model vocabulary.
    samples : sample ids, or a file with one id per line (the output keeps file order).
    region : ``CHR[:START-END]``; needs an indexed input; also restricts the model rows.
    min_overlap : stop unless at least this fraction of considered input SNPs matched,
        or this fraction of the model's sites on those chromosomes is typed.
    block_size : records read per block (memory: block_size x samples x 2 bytes).
    threads : htslib decompression threads.

    Returns
    -------
    TargetGenotypes with its SiteReport.

    Raises
    ------
    InputError : unreadable file, no GT, unsorted records, haploid calls, phased/unphased mixture.
    SampleError : duplicated sample ids, requested samples absent.
    SiteMismatchError : no chromosome in common with the model, or an implausibly small overlap.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file; check --input")
    model = ModelSites.coerce(model)
    sample_list = _check_samples(path, samples)
    matcher = _Matcher(model)
    row_mask = _region_rows(path, model, matcher.keys, region)
    reader = VcfReader(path, region=region, samples=sample_list, threads=threads)
    report = SiteReport(path=str(path))
    typed, phasing = _Typed(), _Phasing(path, reader.samples)
    chrom_names: dict[str, str] = {}  # chrom_key -> the input's name, for chromosomes the model covers
    try:
        for blk in reader.blocks(block_size):
            names = [reader.contigs[c] for c in blk.contig.tolist()]
            m = _classify_block(blk, names, matcher, row_mask, report, chrom_names)
            _check_ploidy(path, blk.genotype, m.on_model, names, blk.position)
            phasing.check(blk, m.on_model, names)
            typed.add(blk, m)
    finally:
        reader.close()
    report.add_read_counts(reader.counts)
    for name, k in report.other_chroms.items():
        log.info("%s: %d SNPs on %s, a chromosome the model does not cover", path, k, name)
    site_index = _model_rows(path, matcher, row_mask, chrom_names, report, reader.contigs)
    report.n_model_sites = int(site_index.size)
    _check_overlap(path, report, min_overlap)
    tg = typed.targets(path, site_index, samples=list(reader.samples), n=reader.n_samples,
                       phased=phasing.first_phased is not None, chrom_names=chrom_names,
                       contig_lengths=dict(reader.contig_lengths), report=report)
    if sample_list is not None and tg.samples != sample_list:
        log.info("%s: samples are kept in file order, not the order of --samples", path)
    log.info(report.line())
    return tg


def _region_rows(path: Path, model: ModelSites, keys: np.ndarray, region: str | None) -> np.ndarray:
    """bool (S,): the model sites inside ``--region`` (all without one)."""
    row_mask, region_key = _region_mask(model, keys, region)
    if region_key is not None and not row_mask.any():
        raise SiteMismatchError(f"{path}: the model has no sites in --region {region}; check the region's "
                                "chromosome and coordinates (wrong build or wrong chromosome?)")
    return row_mask


@dataclass
class _BlockMatch:
    """What one block's SNPs matched: block rows kept, their model sites and orientation."""

    on_model: np.ndarray  # bool (v,): on a chromosome the model covers
    rows: list[int] = field(default_factory=list)
    model_index: list[int] = field(default_factory=list)
    swap: list[bool] = field(default_factory=list)
    flip: list[bool] = field(default_factory=list)


def _classify_block(blk, names: list[str], matcher: _Matcher, row_mask: np.ndarray, report: SiteReport,
                    chrom_names: dict[str, str]) -> _BlockMatch:
    """Match each SNP of one block to a model site, recording its fate in ``report``."""
    out = _BlockMatch(on_model=np.ones(len(blk), bool))
    called = blk.genotype >= 0  # (v, n, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        af = np.where(called, blk.genotype, 0).sum((1, 2)) / called.sum((1, 2))
    for j, (name, p) in enumerate(zip(names, blk.position.tolist())):
        key = chrom_key(name)
        ref, alt = blk.allele[j, 0], blk.allele[j, 1]
        i, reason, swap, flip = matcher.match(key, p, ref, alt)
        if reason == "chrom_not_in_model":
            out.on_model[j] = False
        else:
            chrom_names.setdefault(key, name)
        if reason is None and not row_mask[i]:  # pragma: no cover - the reader's region already excludes these
            reason = "outside_model_region"
        report.record(name, p, ref, alt, reason, swap=swap, flip=flip, af=float(af[j]))
        if reason is None:
            out.rows.append(j)
            out.model_index.append(i)
            out.swap.append(swap)
            out.flip.append(flip)
    return out


class _Phasing:
    """The first phased and the first unphased heterozygous call: an input must not mix them."""

    def __init__(self, path: Path, samples: list[str]):
        self.path, self.samples = path, samples
        self.first_phased: str | None = None
        self.first_unphased: str | None = None

    def check(self, blk, on_model: np.ndarray, names: list[str]) -> None:
        g = blk.genotype
        het = (g[..., 0] >= 0) & (g[..., 1] >= 0) & (g[..., 0] != g[..., 1]) & on_model[:, None]
        if self.first_phased is None and (het & blk.phased).any():
            self.first_phased = _first(het & blk.phased, names, blk.position, self.samples)
        if self.first_unphased is None and (het & ~blk.phased).any():
            self.first_unphased = _first(het & ~blk.phased, names, blk.position, self.samples)
        if self.first_phased and self.first_unphased:
            raise InputError(
                f"{self.path}: mixes phased and unphased heterozygous genotypes ({self.first_phased} is phased, "
                f"{self.first_unphased} is not); unphase all with `bcftools +setGT {self.path.name} -Oz -o "
                "unphased.vcf.gz -- -t a -n u` or phase every sample"
            )


class _Typed:
    """The matched input SNPs, block by block, with their calls in model orientation."""

    def __init__(self):
        self.model_index: list[int] = []
        self.swapped: list[bool] = []
        self.flipped: list[bool] = []
        self.ref: list[str] = []
        self.alt: list[str] = []
        self.id: list[str] = []
        self.calls: list[np.ndarray] = []

    def add(self, blk, m: _BlockMatch) -> None:
        if not m.rows:
            return
        c = blk.genotype[np.asarray(m.rows)]
        c[(c < 0).any(-1)] = -1  # a half call ('0/.') is no genotype
        swap = np.asarray(m.swap, bool)
        if swap.any():
            s = c[swap]
            c[swap] = np.where(s >= 0, 1 - s, s)
        self.calls.append(c.astype(np.int8, copy=False))
        self.model_index += m.model_index
        self.swapped += m.swap
        self.flipped += m.flip
        self.ref += [blk.allele[j, 0] for j in m.rows]
        self.alt += [blk.allele[j, 1] for j in m.rows]
        self.id += [blk.id[j] for j in m.rows]

    def targets(self, path: Path, site_index: np.ndarray, *, samples: list[str], n: int, **kw) -> TargetGenotypes:
        """The typed SNPs as rows of ``site_index`` (sorted by row)."""
        rows = np.searchsorted(site_index, np.asarray(self.model_index, np.int64))
        order = np.argsort(rows, kind="stable")
        calls = np.concatenate(self.calls) if self.calls else np.zeros((0, n, 2), np.int8)
        return TargetGenotypes(
            path=str(path), samples=samples, site_index=site_index, typed_rows=rows[order], calls=calls[order],
            swapped=np.asarray(self.swapped, bool)[order], flipped=np.asarray(self.flipped, bool)[order],
            input_ref=np.asarray(self.ref, object)[order], input_alt=np.asarray(self.alt, object)[order],
            input_id=np.asarray(self.id, object)[order], **kw,
        )


def _model_rows(path: Path, matcher: _Matcher, row_mask: np.ndarray, chrom_names: dict[str, str],
                report: SiteReport, contigs: list[str]) -> np.ndarray:
    """Vocabulary indices of the output rows: model sites in --region on the chromosomes the input covers."""
    if not chrom_names:
        model_keys = list(dict.fromkeys(matcher.keys.tolist()))
        other = sorted(report.other_chroms) or sorted(contigs)
        what = f"chromosome(s) {', '.join(other[:5])}" if other else "no biallelic SNP records"
        raise SiteMismatchError(
            f"{path}: {what} but the model covers {', '.join(model_keys[:5])}"
            f"{'...' if len(model_keys) > 5 else ''}; wrong build or wrong chromosome?"
        )
    return np.flatnonzero(row_mask & np.isin(matcher.keys, list(chrom_names))).astype(np.int64)


def _check_overlap(path: Path, report: SiteReport, min_overlap: float) -> None:
    """Stop on an implausibly small overlap with the model; warn on many allele mismatches."""
    if report.considered == 0:
        raise SiteMismatchError(f"{path}: none of its SNPs lie inside the model's region "
                                f"({report.outside_model_region:,} outside); wrong build or wrong chromosome?")
    if report.overlap < min_overlap and report.coverage < min_overlap:
        raise SiteMismatchError(
            f"{path}: only {report.matched:,} of {report.considered:,} input SNPs ({100 * report.overlap:.1f}%) "
            f"match model sites ({report.allele_mismatch:,} allele mismatches, {report.not_in_model:,} positions "
            f"not in the model); wrong build or wrong chromosome?"
        )
    if report.allele_mismatch > 0.05 * report.considered:
        log.warning("%s: %d input SNPs sit at model positions with other alleles; check the build",
                    path, report.allele_mismatch)


def _first(mask: np.ndarray, names: list[str], pos: np.ndarray, samples: list[str]) -> str:
    v, s = np.argwhere(mask)[0]
    return f"{names[v]}:{pos[v]} sample {samples[s]}"


def _check_ploidy(path: Path, g: np.ndarray, rows: np.ndarray, names: list[str], pos: np.ndarray) -> None:
    hap = (g[..., 1] == -2) & (g[..., 0] >= 0) & rows[:, None]
    if hap.any():
        v = int(np.argwhere(hap)[0][0])
        raise InputError(f"{path}: haploid genotype at {names[v]}:{pos[v]}; snpbag imputes diploid autosomes "
                         "(drop chrX/Y/MT records or code calls as diploid)")
