"""``snpbag phase``: unphased VCF in, phased VCF out, with a reference panel or the cohort alone.

Order of work: read the input's biallelic SNPs (refusing haploid calls, unsorted records
and duplicated samples before any work), find the panel — a phased reference VCF
(``--ref``), the haplotype panel of a model directory (``--model``) or, with neither, the
cohort itself — and match the input's SNPs onto it, then phase every sample with the
copying model (:mod:`snpbag.retrieval.phasing`) and write the input again with phased GT
(:mod:`snpbag.inference.phaseout`).

What is phased: biallelic SNPs on the panel (all of them without one). Multi-allelic
records, indels and SNPs the panel lacks pass through unchanged and unphased, counted in
the report line. Samples whose calls are all phased and complete are kept as they are
unless ``rephase``; in cohort mode they are copied from as fixed haplotypes.

Memory: with a panel, the calls of one batch of samples (:data:`SAMPLE_BATCH`, 2 + 7 bytes per
genotype while it is phased; the results of finished batches wait in a temporary file beside the
output, site-major for the writer) and the panel; each further batch reads the input again. The
cohort alone holds every sample's calls and result (the cohort is its own panel). The copying
model's working memory is one window per thread; output is streamed.

``--model``: a phasing model (``snpbag train task=phase``): the copying model against its
haplotype panel, then the encoder's phasing head re-decides the relative phase of every
heterozygous site (:mod:`snpbag.inference.phasehead`). ``copying_only`` uses the panel of
any haplotype-retrieval model through the copying model alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snpbag import modeldir
from snpbag.config import ModelConfig
from snpbag.errors import InputError, SampleError, SiteMismatchError
from snpbag.inference import phasehead
from snpbag.inference.phaseout import write_phased_vcf
from snpbag.inference.phasereport import PhaseFacts, write_phase_report
from snpbag.inference.sitematch import ModelSites, match_sites
from snpbag.io.bgzf import index_path
from snpbag.io.chrom import chrom_key
from snpbag.io.genmap import genetic_positions, read_genetic_map
from snpbag.io.header import read_header
from snpbag.io.vcf import VcfReader, read_sample_file
from snpbag.progress import progress_bar
from snpbag.retrieval import phasing
from snpbag.retrieval.haplotypes import HaplotypePanel

log = logging.getLogger(__name__)

_BLOCK = 4096  # records read per block
#: Samples read and phased per pass over the input when phasing against a panel: the calls held are a
#: batch's (2 bytes per genotype), and the phased result waits on disk for the writer, so memory follows
#: the batch and the panel, not the cohort; each further batch reads the input again.
SAMPLE_BATCH = 2000


@dataclass
class SnpCalls:
    """The biallelic SNPs of a VCF, in file order."""

    path: Path
    samples: list[str]
    contigs: list[str]
    chrom: np.ndarray  # object (L,)
    pos: np.ndarray  # int64 (L,)
    ref: np.ndarray  # object (L,)
    alt: np.ndarray  # object (L,)
    calls: np.ndarray  # int8 (L, N, 2), -1 missing
    phased: np.ndarray  # bool (L, N)
    dropped: dict  # reason -> records not read (multiallelic, indel, ...)
    region: str | None = None  # as resolved against the file's chromosome names

    def __len__(self) -> int:
        return int(self.pos.size)


@dataclass
class PhaseSummary:
    output: Path
    n_samples: int
    n_records: int
    n_phased_sites: int
    n_kept_samples: int
    n_filled: int
    seconds: float
    report: str

    @property
    def samples_per_second(self) -> float:
        return self.n_samples / self.seconds if self.seconds > 0 else float("inf")


def read_snps(path: str | Path, *, samples: list[str] | None = None, region: str | None = None,
              what: str = "--input", threads: int | None = None) -> SnpCalls:
    """All biallelic SNPs of a VCF with their calls.

    Raises
    ------
    InputError : no such file, unsorted records, haploid or mixed-ploidy calls (from here
        or :class:`~snpbag.io.vcf.VcfReader`).
    SampleError : duplicated sample ids in the header, requested samples absent.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path}: no such file; check the path")
    header = read_header(path)
    dup = header.duplicated_samples() if header is not None else []
    if dup:
        raise SampleError(f"{path}: duplicated sample ids in the header ({', '.join(dup[:5])}); "
                          "rename them, e.g. `bcftools reheader -s new_names.txt`")
    reader = VcfReader(path, region=region, samples=samples, threads=threads)
    parts = []
    try:
        for blk in reader.blocks(_BLOCK):
            hap = (blk.genotype[..., 1] == -2) & (blk.genotype[..., 0] >= 0)
            if hap.any():
                v, s = np.argwhere(hap)[0]
                mixed = "mixed ploidy: " if (blk.genotype[..., 1] != -2).any() else ""
                raise InputError(f"{path}: {mixed}haploid call at {reader.contigs[blk.contig[v]]}:{blk.position[v]} "
                                 f"(sample {reader.samples[s]}); phasing needs diploid calls: drop chrX/Y/MT "
                                 "records (`bcftools view -t ^X,Y,MT`) or code calls as diploid")
            parts.append(blk)
    finally:
        reader.close()
    n = reader.n_samples
    if not parts:
        raise InputError(f"{path}: no biallelic SNP records{' in --region ' + region if region else ''}; "
                         "nothing to phase")
    names = np.array(reader.contigs, dtype=object)
    return SnpCalls(
        path=path, samples=list(reader.samples), contigs=list(reader.contigs),
        chrom=np.concatenate([names[b.contig] for b in parts]),
        pos=np.concatenate([b.position for b in parts]).astype(np.int64),
        ref=np.concatenate([b.allele[:, 0] for b in parts]), alt=np.concatenate([b.allele[:, 1] for b in parts]),
        calls=np.concatenate([b.genotype for b in parts]).reshape(-1, n, 2),
        phased=np.concatenate([b.phased for b in parts]).reshape(-1, n),
        dropped=dict(reader.counts.dropped), region=reader.region)


@dataclass
class Reference:
    """Phased panel haplotypes at the input's phased sites, in the input's allele orientation."""

    sites: np.ndarray  # int64 (P,): input SNP rows on the panel, increasing
    by_site: np.ndarray  # int8 (P, 2H)
    cm: np.ndarray | None  # (P,) from the panel (model directories), else None
    sample_ids: np.ndarray  # (H,) panel sample ids (a target with the same id does not copy itself)
    source: str
    panel_index: np.ndarray | None = None  # (P,) the panel's site of each of ``sites`` (a model's vocabulary index)


def _contigs_bounds(chrom: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of one chromosome."""
    if chrom.size == 0:
        return []
    cut = np.flatnonzero(chrom[1:] != chrom[:-1]) + 1
    edges = [0, *cut.tolist(), int(chrom.size)]
    return list(zip(edges[:-1], edges[1:]))


def _match(target: SnpCalls, sites: ModelSites, haps: np.ndarray, source: str, cm=None,
           sample_ids=None) -> Reference:
    """Lay the panel's (S, 2H) alleles onto the input's SNPs (swapped alleles recoded)."""
    m = match_sites(sites, target.chrom, target.pos, target.ref, target.alt)
    on = np.flatnonzero(m.model_index >= 0)
    if on.size == 0:
        raise SiteMismatchError(f"{target.path}: none of its {len(target):,} SNPs is in the panel {source}; "
                                "check the chromosome names and genome build of both, or phase without a panel")
    idx = m.model_index[on]
    by_site = haps[idx].astype(np.int8)
    sw = m.swap[on]
    by_site[sw] = 1 - by_site[sw]
    return Reference(on, np.ascontiguousarray(by_site), None if cm is None else np.asarray(cm)[idx],
                     np.asarray([] if sample_ids is None else sample_ids, dtype=str), source, idx)


def reference_from_vcf(path: str | Path, target: SnpCalls, *, region: str | None = None,
                       threads: int | None = None) -> Reference:
    """The phased reference VCF ``path`` matched onto ``target``'s SNPs.

    Raises
    ------
    InputError : the panel has unphased heterozygous or missing calls at shared sites.
    SiteMismatchError : no SNP in common.
    """
    ref = read_snps(path, region=region, what="--ref", threads=threads)
    sites = ModelSites(ref.chrom, ref.pos, ref.ref, ref.alt)
    haps = ref.calls.reshape(len(ref), -1)
    out = _match(target, sites, haps, str(path), sample_ids=ref.samples)
    used = np.zeros(len(ref), bool)
    used[match_sites(sites, target.chrom[out.sites], target.pos[out.sites], target.ref[out.sites],
                     target.alt[out.sites]).model_index] = True
    if (ref.calls[used] < 0).any():
        raise InputError(f"--ref {path}: the panel has missing calls at sites shared with the input; fill and phase "
                         "the reference panel first (e.g. with Beagle)")
    het = (ref.calls[used, :, 0] != ref.calls[used, :, 1]) & ~ref.phased[used]
    if het.any():
        raise InputError(f"--ref {path}: the panel is not phased ({int(het.sum()):,} unphased heterozygous calls); "
                         "phase the reference panel first (Beagle, SHAPEIT)")
    return out


def reference_from_model(directory: str | Path, target: SnpCalls, meta: dict | None = None) -> Reference:
    """The haplotype panel of a model directory matched onto ``target``'s SNPs.

    Raises
    ------
    CheckpointError : not a model directory, or its panel is missing.
    InputError : the model has no haplotype panel (a genome panel or none).
    """
    meta = meta or modeldir.read_meta(directory)
    cfg = ModelConfig.from_dict(meta["model"])
    if not cfg.retrieval_k or cfg.retrieval != "haplotypes":
        raise InputError(f"--model {directory}: the model has no haplotype panel (model.retrieval="
                         f"{cfg.retrieval if cfg.retrieval_k else 'none'}); give a phased panel with --ref instead")
    vocab = modeldir.load_vocab(directory)
    panel: HaplotypePanel = modeldir.load_panel(directory, cfg, vocab.n_sites)
    sites = ModelSites.coerce(vocab)
    return _match(target, sites, panel.by_site, str(directory), cm=panel.cm, sample_ids=panel.sample_ids)


def kept_samples(target: SnpCalls, rows: np.ndarray) -> np.ndarray:
    """(N,) bool: samples whose calls at ``rows`` are all called and every heterozygote phased."""
    c = target.calls[rows]
    het = c[..., 0] != c[..., 1]
    ok = (c >= 0).all(-1) & (~het | target.phased[rows])
    return ok.all(0)


def phase(
    *,
    input: str | Path,
    output: str | Path,
    ref: str | Path | None = None,
    model: str | Path | None = None,
    copying_only: bool = False,
    genetic_map: str | Path | None = None,
    samples: str | Path | None = None,
    region: str | None = None,
    threads: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    rephase: bool = False,
    phasing_model: str | None = None,
    state_selection: str | None = None,
    options: phasing.PhaseOptions | None = None,
    progress: bool = True,
    report_dir: str | Path | None = None,
    sample_batch: int = SAMPLE_BATCH,
) -> PhaseSummary:
    """Phase the diploid biallelic SNPs of ``input`` and write them as ``output``.

    Parameters
    ----------
    input : VCF (plain or bgzipped; bgzipped + indexed for ``region``).
    output : ``.vcf.gz`` to write, with its ``.tbi``.
    ref : phased reference panel VCF; model : a phasing model directory (task=phase);
        neither: the cohort is its own reference (needs at least 2 samples).
    copying_only : with ``model``: its haplotype panel through the copying model alone (any
        haplotype-retrieval model; a phasing model's head is then not used).
    genetic_map : PLINK .map or HapMap-style map (default: the panel's, else 1 cM/Mb).
    samples : file with one sample id per line (default: all); region : ``CHR[:START-END]``.
    threads : samples phased at once (the output does not depend on it).
    device : where the phasing head runs (``cuda`` only with a phasing model; the copying model runs on the CPU).
    seed : the random start of cohort-only phasing.
    rephase : phase samples that are already phased too.
    phasing_model : ``haploid`` or ``pair`` (:class:`~snpbag.retrieval.phasing.PhaseOptions`),
        replacing that of ``options``.
    state_selection : the pair model's state selection, ``conflicts`` or ``composite``
        (:mod:`snpbag.retrieval.states`), replacing that of ``options``.
    report_dir : also write an HTML report there (:mod:`snpbag.inference.phasereport`).
    sample_batch : with a panel, samples read and phased per pass over the input (the output
        does not depend on it).

    Raises
    ------
    InputError, SampleError, SiteMismatchError, CheckpointError : bad input (one line naming
        the file and the fix); nothing is written.
    """
    t0 = time.perf_counter()
    if ref is not None and model is not None:
        raise InputError("--ref and --model both given; phase against one panel")
    if sample_batch < 1:
        raise InputError(f"--batch-size {sample_batch}: must be at least 1 (samples phased per pass over the input)")
    if copying_only and model is None:
        raise InputError("--copying-only needs --model (a model directory whose haplotype panel to copy from)")
    meta = modeldir.read_meta(model) if model is not None else None
    use_head = model is not None and phasehead.check_phase_model(model, meta, copying_only=copying_only)
    if device != "cpu" and not use_head:
        raise InputError(f"--device {device}: only a phasing model's head runs on a GPU, the copying model runs on "
                         "the CPU; use --device cpu")
    out = Path(output)
    if not out.name.endswith((".vcf.gz", ".vcf.bgz")):
        raise InputError(f"--output {output}: must end in .vcf.gz (the output is bgzipped and indexed)")
    for p in (out, index_path(out)):
        if p.exists():
            raise InputError(f"--output {p}: already exists; remove it or choose another --output")
    if Path(input).suffix == ".bcf":
        raise InputError(f"--input {input}: BCF input is not supported for phasing (records are rewritten as text); "
                         "convert it with `bcftools view -Oz -o input.vcf.gz`")
    options = options or phasing.PhaseOptions()
    if phasing_model is not None:
        options = dataclasses.replace(options, model=phasing_model)
    if state_selection is not None:
        if options.model != "pair":
            raise InputError(f"--state-selection {state_selection}: it chooses the pair model's states; "
                             "add --phasing-model pair")
        options = dataclasses.replace(options, selection=state_selection)
    sample_list = read_sample_file(samples) if samples is not None else None
    ids = _input_samples(input, sample_list)
    batched = (ref is not None or model is not None) and len(ids) > sample_batch
    target = read_snps(input, samples=ids[:sample_batch] if batched else sample_list, region=region, threads=threads)
    if ref is not None:
        panel = reference_from_vcf(ref, target, region=region if _indexed(ref) else None, threads=threads)
    elif model is not None:
        panel = reference_from_model(model, target, meta)
    else:
        panel = None
    rows = np.arange(len(target)) if panel is None else panel.sites
    cm = _genetic_positions(target, rows, genetic_map, None if panel is None else panel.cm)
    bounds = _contigs_bounds(target.chrom[rows])
    what = "the cohort" if panel is None else f"panel {panel.source}" + (" and its phasing head" if use_head else "")
    if panel is None:
        g, keep = _calls(target, rows, rephase)
        with progress_bar(total=int((~keep).sum()) * options.iterations, description="phasing", unit="samples",
                          enabled=progress) as advance:
            res = phasing.phase_cohort(g, cm, bounds=bounds, options=options, seed=seed, keep=keep,
                                       threads=threads, on_sample=advance)
        half = _half_calls(target, rows)
        res.filled &= ~half
        return _finish(input, out, target, rows, res, half, keep, _Tally().add(res, half, keep), what=what,
                       region=region, report_dir=report_dir, t0=t0)
    # With a panel, a batch of samples at a time: read, phase, re-decide with the head; with more than one
    # batch the results wait on disk, site-major, for the writer, so the calls in memory are a batch's.
    stages = phasing.panel_stages(panel.by_site, options)
    loaded = modeldir.read(model, device=device) if use_head else None
    n, per = (len(ids) if batched else len(target.samples)), options.rounds + use_head
    step = sample_batch if batched else max(n, 1)  # one pass over ``target`` unless batched
    keep, tally = np.zeros(n, bool), _Tally()
    with contextlib.ExitStack() as stack:
        advance = stack.enter_context(progress_bar(total=n * per, description="phasing", unit="samples",
                                                   enabled=progress))
        if batched:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".snpbag-phase-", dir=out.parent)))
            mm = {k: np.lib.format.open_memmap(tmp / f"{k}.npy", mode="w+", dtype=t, shape=(rows.size, n, *e))
                  for k, t, e in (("haplotypes", np.int8, (2,)), ("pp", np.float32, ()), ("filled", bool, ()),
                                  ("half", bool, ()))}
        for lo in range(0, max(n, 1), step):
            hi = min(lo + step, n)
            part = target if lo == 0 else read_snps(input, samples=ids[lo:hi], region=region, threads=threads)
            g, keep[lo:hi] = _calls(part, rows, rephase)
            advance(int(keep[lo:hi].sum()) * per)
            todo = np.flatnonzero(~keep[lo:hi])
            exclude = _exclude(panel.sample_ids, [part.samples[i] for i in todo])
            sub = phasing.phase_with_panel(panel.by_site, cm, g[todo], bounds=bounds, options=options,
                                           exclude=exclude, threads=threads, stages=stages,
                                           on_sample=lambda k: advance(k * options.rounds))
            res = phasing.Phased(g.copy(), np.full(g.shape[:2], np.nan, np.float32), np.zeros(g.shape[:2], bool))
            if todo.size:
                res.haplotypes[todo], res.pp[todo], res.filled[todo] = sub.haplotypes, sub.pp, sub.filled
                if loaded is not None:
                    res = phasehead.refine(loaded, res, g, panel.panel_index, bounds, samples=todo, exclude=exclude,
                                           on_batch=advance)
            half = _half_calls(part, rows)
            res.filled &= ~half
            tally.add(res, half, keep[lo:hi])
            if batched:
                for k, v in (("haplotypes", res.haplotypes), ("pp", res.pp), ("filled", res.filled), ("half", half)):
                    mm[k][:, lo:hi] = np.swapaxes(v, 0, 1)
        if batched:
            res = phasing.Phased(*(np.swapaxes(mm[k], 0, 1) for k in ("haplotypes", "pp", "filled")))
            half = np.swapaxes(mm["half"], 0, 1)
            target = dataclasses.replace(target, samples=list(ids), calls=np.zeros((len(target), 0, 2), np.int8),
                                         phased=np.zeros((len(target), 0), bool))
        return _finish(input, out, target, rows, res, half, keep, tally, what=what, region=region,
                       report_dir=report_dir, t0=t0)


@dataclass
class _Tally:
    """What the summary and the report count over the phased samples, added a batch at a time while
    the batch is in memory (sample-major), so the writer's site-major results are not read again."""

    n_filled: int = 0
    pp: list = dataclasses.field(default_factory=list)  # PP of the phased heterozygotes, per batch
    hets: list = dataclasses.field(default_factory=list)  # heterozygotes per phased sample, per batch

    def add(self, res: phasing.Phased, half: np.ndarray, keep: np.ndarray) -> _Tally:
        mine = ~keep
        het = (phasing.dosages(res.haplotypes[mine]) == 1) & ~half[mine]  # (phased samples, P)
        self.n_filled += int(res.filled[mine].sum())
        self.pp.append(res.pp[mine][het])
        self.hets.append(het.sum(1))
        return self


def _input_samples(path, requested: list[str] | None) -> list[str]:
    """The samples to phase in the input's order (as :func:`read_snps` reads them): ``requested`` or,
    without it, all; requested ids the input lacks come first, so the first read names them. Empty
    when the header cannot be read here (:func:`read_snps` then says why)."""
    header = read_header(path) if Path(path).exists() else None
    if header is None:
        return list(requested or [])
    if requested is None:
        return list(header.samples)
    want, have = set(requested), set(header.samples)
    return [s for s in requested if s not in have] + [s for s in header.samples if s in want]


def _calls(target: SnpCalls, rows: np.ndarray, rephase: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N, P, 2) int8 calls at ``rows`` (half calls missing to the model) and the samples kept as given."""
    g = np.ascontiguousarray(target.calls[rows].transpose(1, 0, 2))
    g = np.where((g >= 0).all(-1, keepdims=True), g, -1).astype(np.int8)
    keep = np.zeros(g.shape[0], bool) if rephase else kept_samples(target, rows)
    return g, keep


def _half_calls(target: SnpCalls, rows: np.ndarray) -> np.ndarray:
    """(N, P) bool: calls with one allele missing, left as given."""
    c = target.calls[rows]
    return ((c >= 0).any(-1) & (c < 0).any(-1)).T


def _finish(input, out: Path, target: SnpCalls, rows: np.ndarray, res: phasing.Phased, half: np.ndarray,
            keep: np.ndarray, tally: _Tally, *, what: str, region, report_dir, t0: float) -> PhaseSummary:
    """Write the phased VCF (and the report) and say what was done."""
    written = write_phased_vcf(input, out, target, rows=rows, result=res, phase_samples=~keep, skip=half,
                               region=region, header_lines=(f"snpbag_phase=reference {what}",))
    report = (f"phased {rows.size:,} of {len(target):,} biallelic SNPs against {what}; "
              f"{written.line()}; {int(keep.sum()):,} already phased samples kept; "
              f"{tally.n_filled:,} missing calls filled")
    log.info(report)
    summary = PhaseSummary(out, len(target.samples), written.n_records, int(rows.size), int(keep.sum()),
                           tally.n_filled, time.perf_counter() - t0, report)
    if report_dir is not None:
        facts = PhaseFacts(command="snpbag phase", input=str(input), reference=what, n_samples=summary.n_samples,
                           n_kept=summary.n_kept_samples, n_filled=tally.n_filled, seconds=summary.seconds,
                           report=report)
        write_phase_report(report_dir, facts=facts, passed=written.passed, n_phased=written.n_phased,
                           pp=np.concatenate(tally.pp), hets=np.concatenate(tally.hets))
    return summary


def _indexed(path) -> bool:
    return any(Path(str(path) + e).exists() for e in (".tbi", ".csi"))


def _exclude(panel_ids: np.ndarray, target_ids: list[str]) -> np.ndarray:
    """Panel genome row of each target (−1: not in the panel): a target does not copy itself."""
    where = {s: i for i, s in enumerate(panel_ids.tolist())}
    return np.array([where.get(s, -1) for s in target_ids], dtype=np.int64)


def _genetic_positions(target: SnpCalls, rows: np.ndarray, genetic_map, panel_cm) -> np.ndarray:
    if genetic_map is None and panel_cm is not None:
        return np.asarray(panel_cm, dtype=np.float64)
    gmap = None if genetic_map is None else read_genetic_map(genetic_map)
    cm = np.empty(rows.size)
    chrom = target.chrom[rows]
    for a, b in _contigs_bounds(chrom):
        cm[a:b] = genetic_positions(target.pos[rows[a:b]], chrom=chrom_key(str(chrom[a])), genetic_map=gmap)
    return cm
