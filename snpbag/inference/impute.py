"""``snpbag impute``: array genotypes in, imputed VCF out.

Order of work: load the model directory, match the input's sites onto the model's
vocabulary (stopping early on a wrong build or chromosome), then run the model over
sample batches × tiles and hand probabilities to the VCF writer, which keeps
them in an on-disk buffer and writes the VCF site by site. Memory is bounded by one
batch of tiles plus the writer's chunk, whatever the cohort size.

Untyped sites and missing calls at typed sites enter the model as MASK tokens, the
token it was trained to fill in; typed calls enter as their ALT dosage.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from snpbag.data.tokens import IGNORE_INDEX, MASK, MISSING
from snpbag.errors import InputError
from snpbag import modeldir
from snpbag.inference import refpanel
from snpbag.inference.calibrate import apply_temperature, fit_temperature, held_out_rows
from snpbag.inference.report import RunFacts, write_impute_report
from snpbag.inference.sitematch import read_targets
from snpbag.inference.vcfout import ImputedVcfWriter, OutputSites, parse_format
from snpbag.parallel import in_order
from snpbag.progress import progress_bar
from snpbag.retrieval.haplotypes import HaplotypePanel

log = logging.getLogger(__name__)


@dataclass
class ImputeSummary:
    output: Path
    excluded: Path
    n_samples: int
    n_sites: int
    seconds: float
    site_report: str
    write_report: str

    @property
    def samples_per_second(self) -> float:
        return self.n_samples / self.seconds if self.seconds > 0 else float("inf")


def excluded_path_for(output: str | Path) -> Path:
    """``imputed.vcf.gz`` → ``imputed.excluded.tsv`` (input sites not used, with the reason)."""
    name = Path(output).name
    for suffix in (".vcf.gz", ".vcf.bgz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return Path(output).with_name(name + ".excluded.tsv")


def tile_jobs(vocab, targets) -> list[tuple[int, slice]]:
    """(tile index, output-row slice) for every tile the input covers."""
    jobs = []
    for c in range(vocab.n_tiles):
        s = vocab.tile_sites(c)
        rows = targets.rows_for(s.start, s.stop)
        if rows.stop > rows.start:
            jobs.append((c, rows))
    return jobs


def model_batch(loaded, targets, tile: int, rows: slice, samples: np.ndarray, *, loo: bool = False,
                hide: np.ndarray | None = None):
    """The Batch a model reads for one tile and a sample batch of ``targets``: typed calls as
    ALT dosages, untyped sites and missing calls as MASK, retrieval votes for retrieval
    models (shared by impute and embed). With ``loo``: ``(batch, held)``, ``held`` the
    haplotype-copying model's leave-one-out probabilities (n, L, 3) of the typed calls
    (:meth:`~snpbag.retrieval.haplotypes.HaplotypePanel.votes`), None without that model.
    ``hide``: rows (of ``targets``) entered as MASK although typed."""
    import torch

    from snpbag.data.batch import Batch

    vocab = loaded.vocab
    tokens = targets.tokens(rows.start, rows.stop, samples=samples)  # (n, L): 0/1/2 or MISSING
    tokens = np.where(tokens == MISSING, MASK, tokens)
    if hide is not None:
        tokens[:, hide[(hide >= rows.start) & (hide < rows.stop)] - rows.start] = MASK
    site = targets.site_index[rows]
    n, L = tokens.shape
    dev = loaded.device
    site_t = torch.as_tensor(site, dtype=torch.long, device=dev).expand(n, L)
    batch = Batch(
        genotype=torch.as_tensor(tokens, dtype=torch.long, device=dev),
        site_index=site_t,
        position=torch.as_tensor(vocab.position[site], dtype=torch.long, device=dev).expand(n, L),
        valid=torch.ones(n, L, dtype=torch.bool, device=dev),
        target=torch.full((n, L), IGNORE_INDEX, dtype=torch.long, device=dev),
        tile=torch.full((n,), tile, dtype=torch.long, device=dev),
        sample=torch.as_tensor(samples, dtype=torch.long, device=dev),
        offset=torch.full((n,), int(site[0] - vocab.tile_start[tile]), dtype=torch.long, device=dev),
    )
    panel = getattr(loaded, "retrieval_panel", None)
    held = None
    if panel is not None:  # a target that is also a panel genome does not vote for itself
        exclude = [panel.row_of(targets.samples[int(j)]) for j in samples]
        if loo and isinstance(panel, HaplotypePanel):
            votes, held = panel.votes(tokens, site, exclude=exclude, loo=True)
        else:
            votes = panel.votes(tokens, site, exclude=exclude)
        batch = batch.replace(retrieval=torch.as_tensor(votes, device=dev))
    return (batch, held) if loo else batch


#: Tokens per forward pass on CPU. A whole sample batch × tile in one pass allocates
#: activations of hundreds of MB that glibc maps and unmaps on every call, and the page
#: faults of touching them again became a quarter of the CPU time as system time
#: (docs/imputation.md, "Speed"); passes of this size reuse the heap.
CPU_FORWARD_TOKENS = 1 << 15


def predict_probabilities(loaded, targets, tile: int, rows: slice, samples: np.ndarray, *, loo: bool = False,
                          hide: np.ndarray | None = None):
    """Genotype probabilities (n_samples, n_rows, 3) for one tile and a sample batch; with
    ``loo``, ``(probs, held, None)``: ``held`` as :func:`model_batch` gives it, no haplotype
    dosages."""
    import torch

    batch, held = model_batch(loaded, targets, tile, rows, samples, loo=True, hide=hide) if loo else (
        model_batch(loaded, targets, tile, rows, samples, hide=hide), None)
    n, L = batch.shape
    step = n if loaded.device.type != "cpu" else max(1, CPU_FORWARD_TOKENS // max(L, 1))
    with torch.inference_mode():
        parts = [torch.softmax(loaded.model(batch.rows(slice(i, i + step))).logits.float(), dim=-1).cpu().numpy()
                 for i in range(0, n, step)]
    probs = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return (probs, held, None) if loo else probs


@dataclass
class Engine:
    """What fills in the genotypes: a site vocabulary and, per tile and sample batch,
    genotype probabilities (n_samples, n_rows, 3) in the vocabulary's orientation."""

    vocab: object  # snpbag.store.vocab.SiteVocab
    # (targets, tile, rows, samples, *, loo=False, hide=None), as predict_probabilities; with
    # loo: (probs, held, hds), leave-one-out probabilities and haplotype dosages or None
    probabilities: Callable[..., np.ndarray | tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]
    header_line: str  # names the model or panel in the output's header
    # fit inference/calibrate.py's temperature first: the encoder's probabilities need it,
    # the copying model's are as well calibrated without (docs/benchmarks.md, "R2 calibration")
    fit_temperature: bool = True


def copying_probabilities(panels, targets, tile: int, rows: slice, samples: np.ndarray, *, loo: bool = False,
                          hide: np.ndarray | None = None):
    """The copying model alone for one tile and a sample batch: what a haplotype-retrieval
    model reads as its retrieval input, used as the answer (``loo``, ``hide`` as for
    :func:`predict_probabilities`; with ``loo`` also the haplotype dosages of a panel that
    gives them, else None). ``panels(tile)`` gives the panel and the vocabulary index of its
    first site."""
    panel, first = panels(tile)
    tokens = targets.tokens(rows.start, rows.stop, samples=samples)  # MISSING (hidden) where untyped
    if hide is not None:
        tokens[:, hide[(hide >= rows.start) & (hide < rows.stop)] - rows.start] = MISSING
    exclude = [panel.row_of(targets.samples[int(j)]) for j in samples]  # as model_batch
    sites = targets.site_index[rows] - first
    if not loo:
        return panel.votes(tokens, sites, exclude=exclude)
    if panel.gives_hds:
        return panel.votes(tokens, sites, exclude=exclude, loo=True, hds=True)
    return (*panel.votes(tokens, sites, exclude=exclude, loo=True), None)


def model_engine(model: str | Path, *, device: str = "cpu", copying_only: bool = False) -> Engine:
    """The engine of a model directory: the network, or with ``copying_only`` its shipped
    haplotype panel alone (no encoder; torch is not loaded)."""
    line = f"snpbag_model={Path(model).resolve()}"
    if copying_only:
        vocab, panel = modeldir.read_panel(model, kind="haplotypes")
        return Engine(vocab, partial(copying_probabilities, lambda tile: (panel, 0)), line + " (copying model alone)",
                      fit_temperature=False)
    loaded = modeldir.read(model, device=device)
    return Engine(loaded.vocab, partial(predict_probabilities, loaded), line)


def output_parts(output: str | Path, sites: OutputSites, *, split_chrom: bool) -> list[tuple[Path, slice]]:
    """(path, output rows) of each VCF to write: one, or one per chromosome with
    ``split_chrom`` (``out.vcf.gz`` -> ``out.<chrom>.vcf.gz``, the chromosome named as in the input)."""
    if not split_chrom:
        return [(Path(output), slice(0, len(sites)))]
    name = Path(output).name
    stem = next((name[: -len(x)] for x in (".vcf.gz", ".vcf.bgz") if name.endswith(x)), name)
    starts = np.flatnonzero(np.r_[True, sites.chrom[1:] != sites.chrom[:-1]])
    stops = np.r_[starts[1:], len(sites)]
    return [(Path(output).with_name(f"{stem}.{sites.chrom[a]}.vcf.gz"), slice(int(a), int(b)))
            for a, b in zip(starts, stops)]


def chromosome_jobs(vocab, targets) -> list[tuple[str, list[tuple[int, slice]]]]:
    """:func:`tile_jobs` grouped by chromosome, in genome order."""
    out: dict[str, list[tuple[int, slice]]] = {}
    for tile, rows in tile_jobs(vocab, targets):
        out.setdefault(vocab.tile_chrom_name(tile), []).append((tile, rows))
    return list(out.items())


def fit_input_temperature(predict, targets, jobs, *, n_samples: int = 32) -> float:
    """The temperature of :mod:`snpbag.inference.calibrate`, fitted on the first
    ``n_samples`` samples' held-out typed calls (one extra pass of ``predict``, an
    :class:`Engine`'s probabilities, over those samples)."""
    hide = held_out_rows(targets.typed_rows)
    cal = np.arange(min(n_samples, targets.n_samples))
    gps, calls = [], []
    for tile, rows in jobs:
        local = hide[(hide >= rows.start) & (hide < rows.stop)] - rows.start
        if local.size:
            gps.append(predict(targets, tile, rows, cal, hide=hide)[:, local])
            calls.append(targets.tokens(rows.start, rows.stop, samples=cal)[:, local])
    if not gps:
        return 1.0
    return fit_temperature(np.concatenate(gps, axis=1), np.concatenate(calls, axis=1))


def impute(
    *,
    model: str | Path | None = None,
    input: str | Path,
    output: str | Path,
    ref: str | Path | None = None,
    genetic_map: str | Path | None = None,
    state_selection: str | None = None,
    copying_only: bool = False,
    split_chrom: bool = False,
    samples: str | Path | None = None,
    region: str | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    min_r2: float | None = None,
    fmt: str = "GT,DS,GP",
    replace_typed: bool = False,
    progress: bool = True,
    report_dir: str | Path | None = None,
) -> ImputeSummary:
    """Impute untyped sites and missing calls of ``input`` with a model directory, or from a
    phased reference panel with the copying model (``ref``, no training).

    Parameters
    ----------
    model : directory written by ``snpbag export`` (give ``model`` or ``ref``).
    input : target VCF/BCF (array genotypes), any chromosome naming (``chr22``/``22``),
        one or several chromosomes.
    output : ``.vcf.gz`` to write; a ``.tbi``, ``<prefix>.info.tsv`` (sites, AF, R2) and
        ``<prefix>.excluded.tsv`` (input sites not used, with the reason) are written beside it.
    ref : phased reference panel, VCF/BCF or ``snpbag convert`` store (snpbag.inference.refpanel).
    genetic_map : PLINK .map or HapMap-style map for ``ref`` (default 1 cM/Mb).
    state_selection : with ``ref``: the copying model's state selection, ``conflicts``,
        ``composite`` (:mod:`snpbag.retrieval.states`) or ``phased`` (phase, then a haploid
        HMM per haplotype, :mod:`snpbag.retrieval.draws`; phased GT and HDS in the output);
        default and states: refpanel.ref_options.
    copying_only : with ``model``: its haplotype panel's copying model alone, no encoder.
    split_chrom : one output per chromosome (:func:`output_parts` names them).
    samples : file with one sample id per line (default: all).
    region : ``CHR[:START-END]`` (needs an indexed input).
    batch_size : samples per model batch.
    device : ``cpu`` or ``cuda``.
    min_r2 : drop imputed sites whose estimated R2 is below this.
    fmt : FORMAT fields, a subset of GT,DS,GP (GT always first).
    replace_typed : write model genotypes at typed sites too (default: keep the input calls).
    report_dir : also write an HTML report there (:mod:`snpbag.inference.report`).

    Returns
    -------
    ImputeSummary

    Raises
    ------
    CheckpointError : the model directory cannot be loaded.
    SiteMismatchError : implausibly small overlap (wrong build or chromosome).
    InputError, SampleError : malformed input or panel, unknown or duplicated samples, bad options.
    """

    if (model is None) == (ref is None):
        raise InputError("give --model DIR (a trained model) or --ref PANEL (a phased panel), not both or neither")
    if ref is not None and copying_only:
        raise InputError("--copying-only applies to --model; --ref always uses the copying model")
    if model is not None and genetic_map is not None:
        raise InputError("--map applies to --ref; a model directory carries the genetic map it was trained with")
    if report_dir is not None and split_chrom:
        raise InputError("--report with --split-chrom: the report covers one output; drop one of them")
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    parse_format(fmt)  # fail on a bad --format before any work
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: no CUDA device is available here; use --device cpu")
    t0 = time.perf_counter()
    with ExitStack() as stack:
        if ref is not None:
            store = stack.enter_context(refpanel.panel_store(ref))
            panels = refpanel.ChromosomePanels(store, ref, genetic_map=genetic_map,
                                               options=refpanel.ref_options(state_selection))
            engine = Engine(store.vocab, partial(copying_probabilities, panels.for_tile),
                            f"snpbag_ref={Path(ref).resolve()}", fit_temperature=False)
        else:
            engine = model_engine(model, device=device, copying_only=copying_only)
        targets = read_targets(input, engine.vocab, samples=samples, region=region)
        report = targets.report.line()
        log.info("%s", report)
        excluded = excluded_path_for(output)
        sites = OutputSites.from_targets(targets, engine.vocab)
        n = targets.n_samples
        batches = [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
        temperature, header = 1.0, (engine.header_line,)
        if engine.fit_temperature:
            temperature = fit_input_temperature(engine.probabilities, targets, tile_jobs(engine.vocab, targets))
            log.info("probability temperature %.3f (fitted on held-out typed calls)", temperature)
            header += (f"snpbag_temperature={temperature:.4f}",)
        writers = [(rows, stack.enter_context(ImputedVcfWriter(
            path, sites.part(rows), targets.samples, fmt=fmt, min_r2=min_r2, replace_typed=replace_typed,
            header_lines=header))) for path, rows in output_parts(output, sites, split_chrom=split_chrom)]

        def add(gp, held, hds, rows: slice, b: np.ndarray) -> None:
            part, w = next((p, w) for p, w in writers if p.start <= rows.start < p.stop)
            w.add(apply_temperature(gp, temperature), sites=slice(rows.start - part.start, rows.stop - part.start),
                  samples=slice(int(b[0]), int(b[-1]) + 1), held_out=held, hds=hds)

        with progress_bar(total=n * len(sites), description="imputing", unit="genotypes", enabled=progress) as advance:
            for chrom, jobs in chromosome_jobs(engine.vocab, targets):  # one chromosome's panel in memory
                log.info("imputing chromosome %s", chrom)
                work = [(tile, rows, b) for b in batches for tile, rows in jobs]
                # the next job computed in a helper thread while this one is written (its kernels release
                # the GIL; writing is GIL-bound numpy and gzip): two results held at most
                for (tile, rows, b), result in zip(work, in_order(
                        lambda job: engine.probabilities(targets, job[0], job[1], job[2], loo=True), work, threads=1)):
                    add(*result, rows, b)
                    advance(len(b) * (rows.stop - rows.start))
        written = [w.close() for _, w in writers]
    targets.report.write_tsv(excluded, overwrite=True)
    seconds = time.perf_counter() - t0
    write_report = "\n".join(s.line() for s in written)
    if report_dir is not None:
        facts = RunFacts(command=shlex.join(sys.argv), model=str(model if model is not None else ref), n_samples=n,
                         seconds=seconds, site_report=report, write_report=write_report,
                         loo_concordance=written[0].loo_concordance)
        write_impute_report(report_dir, targets=targets, vocab=engine.vocab, info_path=written[0].info_path,
                            facts=facts)
    return ImputeSummary(Path(output), excluded, n, len(sites), seconds, report, write_report)
