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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snpbag.data.tokens import IGNORE_INDEX, MASK, MISSING
from snpbag.errors import InputError
from snpbag import modeldir
from snpbag.inference.calibrate import apply_temperature, fit_temperature, held_out_rows
from snpbag.inference.report import RunFacts, write_impute_report
from snpbag.inference.sitematch import read_targets
from snpbag.inference.vcfout import ImputedVcfWriter, OutputSites, parse_format
from snpbag.retrieval.haplotypes import HaplotypePanel
from snpbag.progress import progress_bar

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


def predict_probabilities(loaded, targets, tile: int, rows: slice, samples: np.ndarray, *, loo: bool = False,
                          hide: np.ndarray | None = None):
    """Genotype probabilities (n_samples, n_rows, 3) for one tile and a sample batch; with
    ``loo``, ``(probs, held)`` as :func:`model_batch` gives ``held``."""
    import torch

    batch, held = model_batch(loaded, targets, tile, rows, samples, loo=True, hide=hide) if loo else (
        model_batch(loaded, targets, tile, rows, samples, hide=hide), None)
    with torch.inference_mode():
        out = loaded.model(batch)
        probs = torch.softmax(out.logits.float(), dim=-1).cpu().numpy()
    return (probs, held) if loo else probs


def fit_input_temperature(loaded, targets, jobs, *, n_samples: int = 32) -> float:
    """The temperature of :mod:`snpbag.inference.calibrate`, fitted on the first
    ``n_samples`` samples' held-out typed calls (one extra model pass over those samples)."""
    hide = held_out_rows(targets.typed_rows)
    cal = np.arange(min(n_samples, targets.n_samples))
    gps, calls = [], []
    for tile, rows in jobs:
        local = hide[(hide >= rows.start) & (hide < rows.stop)] - rows.start
        if local.size:
            gps.append(predict_probabilities(loaded, targets, tile, rows, cal, hide=hide)[:, local])
            calls.append(targets.tokens(rows.start, rows.stop, samples=cal)[:, local])
    if not gps:
        return 1.0
    return fit_temperature(np.concatenate(gps, axis=1), np.concatenate(calls, axis=1))


def impute(
    *,
    model: str | Path,
    input: str | Path,
    output: str | Path,
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
    """Impute untyped sites and missing calls of ``input`` with a model directory.

    Parameters
    ----------
    model : directory written by ``snpbag export``.
    input : target VCF/BCF (array genotypes), any chromosome naming (``chr22``/``22``).
    output : ``.vcf.gz`` to write; a ``.tbi``, ``<prefix>.info.tsv`` (sites, AF, R2) and
        ``<prefix>.excluded.tsv`` (input sites not used, with the reason) are written beside it.
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
    InputError, SampleError : malformed input, unknown or duplicated samples, bad options.
    """

    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    parse_format(fmt)  # fail on a bad --format before any work
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: no CUDA device is available here; use --device cpu")
    t0 = time.perf_counter()
    loaded = modeldir.read(model, device=device)
    targets = read_targets(input, loaded.vocab, samples=samples, region=region)
    report = targets.report.line()
    log.info("%s", report)
    excluded = excluded_path_for(output)
    sites = OutputSites.from_targets(targets, loaded.vocab)
    jobs = tile_jobs(loaded.vocab, targets)
    n = targets.n_samples
    batches = [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    temperature = fit_input_temperature(loaded, targets, jobs)
    log.info("probability temperature %.3f (fitted on held-out typed calls)", temperature)

    with ImputedVcfWriter(output, sites, targets.samples, fmt=fmt, min_r2=min_r2,
                          replace_typed=replace_typed, header_lines=(f"snpbag_model={Path(model).resolve()}",
                                                                 f"snpbag_temperature={temperature:.4f}")) as w:
        with progress_bar(total=n, description="imputing", unit="samples", enabled=progress) as advance:
            for b in batches:
                for tile, rows in jobs:
                    gp, held = predict_probabilities(loaded, targets, tile, rows, b, loo=True)
                    gp = apply_temperature(gp, temperature)
                    w.add(gp, sites=rows, samples=slice(int(b[0]), int(b[-1]) + 1), held_out=held)
                advance(len(b))
        written = w.close()
    targets.report.write_tsv(excluded, overwrite=True)
    seconds = time.perf_counter() - t0
    if report_dir is not None:
        facts = RunFacts(command=shlex.join(sys.argv), model=str(model), n_samples=n, seconds=seconds,
                         site_report=report, write_report=written.line(), loo_concordance=written.loo_concordance)
        write_impute_report(report_dir, targets=targets, vocab=loaded.vocab, info_path=written.info_path, facts=facts)
    return ImputeSummary(Path(output), excluded, n, len(sites), seconds, report, written.line())
