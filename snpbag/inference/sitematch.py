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

import gzip
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snpbag.io.chrom import chrom_key
from snpbag.data.tokens import MISSING
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


def _header_samples(path: Path) -> list[str] | None:
    """Sample ids from the header text (VCF, bgzipped VCF or BCF), read without htslib.

    htslib refuses a header with duplicated sample ids with an unhelpful message, so the
    check runs on the raw text first. Returns None when the header cannot be read this way.
    """
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        opener = gzip.open if gz else open
        with opener(path, "rb") as f:
            head = f.read(5)
            if head.startswith(b"BCF"):
                (l_text,) = struct.unpack("<I", f.read(4))
                text = f.read(l_text).rstrip(b"\0").decode(errors="replace")
                lines = text.splitlines()
            else:
                first = head + f.readline()
                lines = [first.decode(errors="replace")]
                for raw in f:
                    lines.append(raw.decode(errors="replace"))
                    if raw.startswith(b"#CHROM") or not raw.startswith(b"#"):
                        break
    except (OSError, EOFError, struct.error):
        return None
    for line in lines:
        if line.startswith("#CHROM"):
            return line.rstrip("\r\n").split("\t")[9:]
    return None


def _check_samples(path: Path, samples) -> list[str] | None:
    ids = _header_samples(path)
    if ids is not None and len(set(ids)) != len(ids):
        seen, dup = set(), []
        for s in ids:
            if s in seen and s not in dup:
                dup.append(s)
            seen.add(s)
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
    row_mask, region_key = _region_mask(model, matcher.keys, region)
    if region_key is not None and not row_mask.any():
        raise SiteMismatchError(f"{path}: the model has no sites in --region {region}; check the region's "
                                "chromosome and coordinates (wrong build or wrong chromosome?)")
    reader = VcfReader(path, region=region, samples=sample_list, threads=threads)
    report = SiteReport(path=str(path))
    n = reader.n_samples
    typed_idx, calls, swaps, flips, irefs, ialts, iids = [], [], [], [], [], [], []
    seen_keys: set[str] = set()
    chrom_names: dict[str, str] = {}
    first_phased: str | None = None
    first_unphased: str | None = None
    try:
        for blk in reader.blocks(block_size):
            names = [reader.contigs[c] for c in blk.contig.tolist()]
            sel, idx, sw = [], [], []
            on_model = np.ones(len(blk), bool)
            for j, (name, p) in enumerate(zip(names, blk.position.tolist())):
                key = chrom_key(name)
                ref, alt = blk.allele[j, 0], blk.allele[j, 1]
                i, reason, swap, flip = matcher.match(key, p, ref, alt)
                if reason == "chrom_not_in_model":
                    report.other_chroms[name] = report.other_chroms.get(name, 0) + 1
                    on_model[j] = False
                    continue
                if key not in seen_keys:
                    seen_keys.add(key)
                    chrom_names[key] = name
                if reason == "outside_model_region":
                    report.outside_model_region += 1
                    report.exclusions.append((name, p, ref, alt, reason))
                    continue
                report.considered += 1
                if reason is not None:
                    setattr(report, reason, getattr(report, reason) + 1)
                    report.exclusions.append((name, p, ref, alt, reason))
                    continue
                if not row_mask[i]:  # pragma: no cover - the reader's region already excludes these
                    continue
                report.matched += 1
                report.allele_swapped += swap
                report.strand_flipped += flip
                sel.append(j)
                idx.append(i)
                sw.append(swap)
                flips.append(flip)
                irefs.append(ref)
                ialts.append(alt)
                iids.append(blk.id[j])
            g = blk.genotype
            _check_ploidy(path, g, on_model, names, blk.position)
            het = (g[..., 0] >= 0) & (g[..., 1] >= 0) & (g[..., 0] != g[..., 1]) & on_model[:, None]
            if first_phased is None and (het & blk.phased).any():
                first_phased = _first(het & blk.phased, names, blk.position, reader.samples)
            if first_unphased is None and (het & ~blk.phased).any():
                first_unphased = _first(het & ~blk.phased, names, blk.position, reader.samples)
            if first_phased and first_unphased:
                raise InputError(
                    f"{path}: mixes phased and unphased heterozygous genotypes ({first_phased} is phased, "
                    f"{first_unphased} is not); unphase all with `bcftools +setGT {path.name} -Oz -o unphased.vcf.gz "
                    "-- -t a -n u` or phase every sample"
                )
            if sel:
                c = g[np.asarray(sel)]
                c[(c < 0).any(-1)] = -1  # a half call ('0/.') is no genotype
                swap_rows = np.asarray(sw, bool)
                if swap_rows.any():
                    s = c[swap_rows]
                    c[swap_rows] = np.where(s >= 0, 1 - s, s)
                calls.append(c.astype(np.int8, copy=False))
                typed_idx.extend(idx)
                swaps.extend(sw)
    finally:
        reader.close()

    counts = reader.counts.dropped
    report.records = reader.counts.records
    report.multiallelic = counts.get("multiallelic", 0)
    report.no_alt = counts.get("no_alt", 0)
    report.not_snp = counts.get("indel", 0) + counts.get("mnp", 0) + counts.get("symbolic", 0)
    for name, k in report.other_chroms.items():
        log.info("%s: %d SNPs on %s, a chromosome the model does not cover", path, k, name)

    model_keys = list(dict.fromkeys(matcher.keys.tolist()))
    if not seen_keys:
        other = sorted(report.other_chroms) or sorted(reader.contigs)
        what = f"chromosome(s) {', '.join(other[:5])}" if other else "no biallelic SNP records"
        raise SiteMismatchError(
            f"{path}: {what} but the model covers {', '.join(model_keys[:5])}"
            f"{'...' if len(model_keys) > 5 else ''}; wrong build or wrong chromosome?"
        )
    row_mask &= np.isin(matcher.keys, list(seen_keys))
    site_index = np.flatnonzero(row_mask).astype(np.int64)
    report.n_model_sites = int(site_index.size)
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

    order_idx = np.asarray(typed_idx, np.int64)
    rows = np.searchsorted(site_index, order_idx)
    order = np.argsort(rows, kind="stable")
    all_calls = np.concatenate(calls) if calls else np.zeros((0, n, 2), np.int8)
    tg = TargetGenotypes(
        path=str(path), samples=list(reader.samples), phased=first_phased is not None,
        site_index=site_index, typed_rows=rows[order], calls=all_calls[order],
        swapped=np.asarray(swaps, bool)[order], flipped=np.asarray(flips, bool)[order],
        input_ref=np.asarray(irefs, object)[order], input_alt=np.asarray(ialts, object)[order],
        input_id=np.asarray(iids, object)[order], chrom_names=chrom_names,
        contig_lengths=dict(reader.contig_lengths), report=report,
    )
    if sample_list is not None and tg.samples != sample_list:
        log.info("%s: samples are kept in file order, not the order of --samples", path)
    log.info(report.line())
    return tg


def _first(mask: np.ndarray, names: list[str], pos: np.ndarray, samples: list[str]) -> str:
    v, s = np.argwhere(mask)[0]
    return f"{names[v]}:{pos[v]} sample {samples[s]}"


def _check_ploidy(path: Path, g: np.ndarray, rows: np.ndarray, names: list[str], pos: np.ndarray) -> None:
    hap = (g[..., 1] == -2) & (g[..., 0] >= 0) & rows[:, None]
    if hap.any():
        v = int(np.argwhere(hap)[0][0])
        raise InputError(f"{path}: haploid genotype at {names[v]}:{pos[v]}; snpbag imputes diploid autosomes "
                         "(drop chrX/Y/MT records or code calls as diploid)")
