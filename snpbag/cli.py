"""The ``snpbag`` command group. Each command parses options and calls one library
function of the same name; all behaviour lives in the library so it can be tested and
used from Python. Library errors (SnpbagError) become one line on stderr and exit 2.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

# 2-core machines: busy-waiting OpenMP threads slow torch ~8x (docs/cpu.md). Set before
# torch is imported anywhere below.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("WANDB_MODE", "offline")

from snpbag.errors import SnpbagError  # noqa: E402
# modules, not functions: each command calls MODULE.FUNCTION at run time (mock.patch-able)
from snpbag import api  # noqa: E402
from snpbag import demo as _demo  # noqa: E402
from snpbag.inference import classify as _classify  # noqa: E402
from snpbag.inference import embed as _embed  # noqa: E402
from snpbag.inference import impute as _impute  # noqa: E402
from snpbag.inference import phase as _phase  # noqa: E402
from snpbag.inference import relate as _relate  # noqa: E402
from snpbag.inference import relatepairs as _relatepairs  # noqa: E402
from snpbag.inference import seq2king as _s2k_inference  # noqa: E402
from snpbag.kinship.seq2king import config as _s2k_config  # noqa: E402
from snpbag.kinship.seq2king import train as _s2k_train  # noqa: E402
from snpbag.kinship.seq2king.inputs import KINSHIP_COLUMNS  # noqa: E402
from snpbag.retrieval.haplotypes import PANEL_SELECTIONS  # noqa: E402
from snpbag.retrieval.phasing import MODELS  # noqa: E402
from snpbag.retrieval.states import SELECTIONS  # noqa: E402
from snpbag.simulate.coalescent import DEMOGRAPHIES  # noqa: E402
from snpbag.store.schema import TILE_LEN  # noqa: E402
from snpbag.train import export as _export  # noqa: E402

path_in = click.Path(exists=False, dir_okay=True, path_type=str)


class _FloatOrAuto(click.ParamType):
    """A number, or the word ``auto`` (passed on as the string)."""

    name = "X|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or value == "auto":
            return value
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number nor 'auto'", param, ctx)


def _renamed(new: str):
    """Callback of a hidden option that was renamed: refuse it, naming the new one."""
    def refuse(ctx, param, value):
        if value is not None:
            raise click.UsageError(f"{param.opts[0]} was renamed {new}; use {new}", ctx)
    return refuse


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SnpbagError as e:
            click.echo(f"snpbag: error: {e}", err=True)
            sys.exit(e.exit_code)


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="snpbag")
def main(verbose: int) -> None:
    """snpbag: a foundation model of human genotype variation."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


# --- data -------------------------------------------------------------------------------


@main.command()
@click.argument("outdir", type=path_in)
@click.option("--samples-per-pop", default=100, show_default=True, type=int)
@click.option("--length", default=1_000_000, show_default=True, type=int, help="Region length in bp.")
@click.option("--chrom", default="22", show_default=True)
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--array-fraction", default=None, type=float, help="Write an array site list covering this fraction of the MAF >= 1% sites.")
@click.option("--split-targets", default=None, type=int, help="Hold out N target samples (reference/target split).")
@click.option("--pedigree", default=None, type=int, help="Simulate N families of relatives from the founders.")
@click.option("--chromosomes", default=None, type=int, help="With --pedigree: number of chromosomes to simulate.")
@click.option("--demography", type=click.Choice(DEMOGRAPHIES), default="ooa", show_default=True,
              help="ooa: out-of-Africa (3 populations); finescale: 3 continents x 4 recent sub-populations; "
                   "admixed: AFR, EUR, ASIA and an admixed American population; growth: AFR and EUR with "
                   "explosive recent growth and an admixed African-American-like AFAM (the last two need "
                   "stdpopsim). With --pedigree: the founders' populations.")
@click.option("--max-degree", default=None, type=int,
              help="With --pedigree: families whose most distant relatives are of this degree (default 9).")
@click.option("--genotype-error", default=None, type=float,
              help="With --pedigree: replace this share of the written genotype calls by another genotype.")
@click.option("--recombination", type=click.Choice(["uniform", "hotspots"]), default="uniform", show_default=True,
              help="hotspots: a map with recombination hotspots (same mean rate), written as genetic_map.map.")
@click.option("--founder-map", type=click.Choice(["pedigree", "physical"]), default=None,
              help="With --pedigree: founders' coalescent on the pedigree's map (default) or at the cohort's "
                   "rate per bp (fast, background sharing too long; tests only).")
def simulate(outdir, samples_per_pop, length, chrom, seed, array_fraction, split_targets, pedigree, chromosomes,
             demography, max_degree, genotype_error, recombination, founder_map):
    """Simulate a human cohort (msprime, published demography) as a phased VCF."""
    from snpbag.simulate.cohort import simulate as run

    run(outdir, samples_per_pop=samples_per_pop, length=length, chrom=chrom, seed=seed,
        array_fraction=array_fraction, split_targets=split_targets, pedigree=pedigree, chromosomes=chromosomes,
        demography=demography, max_degree=max_degree, genotype_error=genotype_error, recombination=recombination,
        founder_map=founder_map)


@main.command()
@click.argument("input", type=path_in)
@click.argument("output", type=path_in)
@click.option("--region", default=None, help="CHR:START-END (needs an index).")
@click.option("--samples", default=None, type=path_in, help="File with one sample id per line.")
@click.option("--min-maf", default=0.01, show_default=True, type=float)
@click.option("--tile-len", default=TILE_LEN, show_default=True, type=int,
              help="Vocabulary sites per tile, the stretch of a chromosome a model reads a sequence from.")
@click.option("--contig-len", hidden=True, expose_value=False, callback=_renamed("--tile-len"))
@click.option("--threads", default=None, type=int, help="Decompression/compression threads (default: all cores).")
def convert(input, output, region, samples, min_maf, tile_len, threads):
    """Convert a VCF/BCF into a VCF-Zarr genotype store with a site vocabulary."""
    from snpbag.store.convert import convert as run

    run(input, output, region=region, samples=samples, min_maf=min_maf, tile_len=tile_len, threads=threads)


# --- kinship ----------------------------------------------------------------------------


@main.command()
@click.argument("input", type=path_in)
@click.option("--out", "out", required=True, help="Output prefix: PREFIX.kin0 (and PREFIX.king.zarr).")
@click.option("--estimator", type=click.Choice(["between", "within"]), default="between", show_default=True)
@click.option("--min-kinship", default=None, type=float)
@click.option("--counts", is_flag=True, help="Add the HET1_HOM2/HET2_HOM1 count columns.")
@click.option("--matrix", is_flag=True, help="Also write the square kinship matrix as Zarr.")
@click.option("--block-size", default=2048, show_default=True, type=int)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", default=None, type=int, help="CPU threads (default: all available cores, like plink2).")
@click.option("--po-ibs0", default=0.008, show_default=True, type=_FloatOrAuto(), metavar="X|auto",
              help="INFTYPE: 1st-degree pairs with IBS0 below X are PO, else FS (KING's cut); "
                   "auto: a tenth of the cohort's expected unrelated IBS0 (sequence data).")
@click.option("--kernel", type=click.Choice(["auto", "popcount", "gemm"]), default="auto", show_default=True,
              help="Pair counting: bit-packed popcounts (CPU, numba) or int8 GEMMs (torch); auto: popcount on CPU.")
@click.option("--parallel", nargs=2, type=int, default=None, metavar="K N",
              help="Only part K of N (e.g. a SLURM array task; plink2's --parallel): writes PREFIX.kin0.K; "
                   "`cat PREFIX.kin0.{1..N}` is the single-run PREFIX.kin0, byte for byte.")
def king(input, out, estimator, min_kinship, counts, matrix, block_size, device, threads, po_ibs0, kernel, parallel):
    """KING-robust kinship for all sample pairs (plink2-compatible .kin0)."""
    from snpbag.kinship.king import king_part

    part, n_parts = parallel or (1, 1)
    king_part(input, out=out, part=part, n_parts=n_parts, estimator=estimator, min_kinship=min_kinship,
              counts=counts, matrix=matrix, block_size=block_size, device=device, threads=threads, po_ibs0=po_ibs0,
              kernel=kernel)
    import atexit
    import gc

    # at exit, before the interpreter's last collection, which would walk every object
    # numba made (~0.15 s of a 1.5 s run); at exit only, so in-process callers keep their gc
    atexit.register(gc.freeze)


# --- seq2king ---------------------------------------------------------------------------


@main.group()
def seq2king() -> None:
    """Seq2KING: a transformer over the KING matrix and its attention analysis (docs/seq2king.md)."""


_s2k_embeddings_option = click.option(
    "--embeddings", type=path_in, default=None,
    help="`snpbag embed --pool mean` output for every individual (token input features=embedding).")


@seq2king.command("train")
@click.option("--kinship", required=True, type=path_in, help="PREFIX.kin0 of `snpbag king`, or its --matrix Zarr.")
@click.option("--out", required=True, type=path_in, help="The Seq2KING model directory to write.")
@click.option("--preset", default="seq2king_paper", show_default=True, help="seq2king_paper (the original) or small.")
@click.option("--tokens", type=click.Choice(["id", "features"]), default=None,
              help="Token input (default: the preset's; seq2king_paper: id).")
@click.option("--kinship-column", type=click.Choice(KINSHIP_COLUMNS), default="KINSHIP", show_default=True,
              help="KINSHIP (KING's) or EXP_KINSHIP (`snpbag relate`'s expected kinship, from its PREFIX.rel).")
@_s2k_embeddings_option
@click.option("--overwrite", is_flag=True)
@click.argument("overrides", nargs=-1)
def seq2king_train(kinship, out, preset, tokens, kinship_column, embeddings, overwrite, overrides):
    """Train on a kinship matrix (labels are never read). OVERRIDES: KEY=VALUE, e.g. steps=500."""
    config = _s2k_config.make_config(preset, list(overrides) + ([f"tokens={tokens}"] if tokens else []))
    click.echo(_s2k_train.train(kinship, out=out, config=config, overwrite=overwrite, kinship_column=kinship_column,
                                embeddings=_s2k_inference.read_embeddings(embeddings) if embeddings else None))


@seq2king.command("report")
@click.option("--model", required=True, type=path_in)
@click.option("--kinship", required=True, type=path_in, help="PREFIX.kin0 or PREFIX.king.zarr (may add new individuals).")
@click.option("--labels", required=True, type=path_in, help="TSV: sample, population, continent.")
@click.option("--out", required=True, type=path_in, help="The report directory to write.")
@click.option("--sentences", default=50, show_default=True, type=int, help="Sentences per split.")
@click.option("--sentence-len", default=60, show_default=True, type=int)
@click.option("--permutations", default=1000, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--kinship-column", type=click.Choice(KINSHIP_COLUMNS), default=None,
              help="Default: the column the model was trained on.")
@_s2k_embeddings_option
@click.option("--overwrite", is_flag=True)
def seq2king_report(model, kinship, labels, out, sentences, sentence_len, permutations, seed, kinship_column,
                    embeddings, overwrite):
    """Connectivity of attention to continents and populations; tables, images, index.html."""
    from snpbag.kinship.seq2king import report  # torch and matplotlib: only when reporting

    click.echo(report.report(model, kinship=kinship, labels=labels, out=out, sentences=sentences,
                             sentence_len=sentence_len, permutations=permutations, seed=seed, overwrite=overwrite,
                             kinship_column=kinship_column,
                             embeddings=_s2k_inference.read_embeddings(embeddings) if embeddings else None))


# --- training and models ----------------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def train(overrides):
    """Train from Hydra configs: snpbag train experiment=pretrain_demo model=tiny ...
    (task=seq2king: Seq2KING on a kinship matrix, as `snpbag seq2king train`)."""
    from snpbag.train.run import train as run

    if _s2k_inference.HYDRA_TASK in overrides:
        click.echo(_s2k_inference.train_task(list(overrides)))
        return

    # a job log shows where the run is, what it resumed from and its global batch
    logging.getLogger("snpbag.train.run").setLevel(min(logging.INFO, logging.getLogger().level or logging.INFO))
    run(list(overrides))


@main.command()
@click.argument("checkpoint", type=path_in)
@click.argument("outdir", type=path_in)
def export(checkpoint, outdir):
    """Write a self-contained model directory from a training run or checkpoint."""
    _export.export(checkpoint, outdir)


@main.command()
@click.argument("model", type=path_in)
def info(model):
    """Describe a model directory (config, sites, parameters, provenance) or a relate directory."""
    click.echo(api.info(model))


@main.command()
@click.option("--model", default=None, type=path_in, help="Model directory (`snpbag export`).")
@click.option("--ref", default=None, type=path_in, help="Or: a phased panel (VCF/BCF or store); no training needed.")
@click.option("--input", "input", required=True, type=path_in)
@click.option("--output", required=True, type=path_in)
@click.option("--map", "genetic_map", default=None, type=path_in, help="With --ref: genetic map (PLINK .map).")
@click.option("--state-selection", type=click.Choice(PANEL_SELECTIONS), default=None,
              help="With --ref: the copying model's states; phased (default): phase, then a haploid HMM; conflicts, composite: the pair HMM.")
@click.option("--copying-only", is_flag=True, help="With --model: its haplotype panel's copying model alone.")
@click.option("--split-chrom", is_flag=True, help="One output per chromosome: OUT.<chrom>.vcf.gz.")
@click.option("--samples", default=None, type=path_in)
@click.option("--region", default=None)
@click.option("--batch-size", default=16, show_default=True, type=int)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--min-r2", default=None, type=float, help="Drop imputed sites with estimated R2 below X.")
@click.option("--format", "fmt", default="GT,DS,GP", show_default=True, help="FORMAT fields (GT,DS,GP,HDS).")
@click.option("--replace-typed", is_flag=True, help="Write model genotypes at typed sites too (default: keep input calls).")
@click.option("--report", "report_dir", default=None, type=path_in, help="Also write an HTML report (DIR/index.html).")
def impute(model, ref, input, output, genetic_map, state_selection, copying_only, split_chrom, samples, region,
           batch_size, device, min_r2, fmt, replace_typed, report_dir):
    """Impute untyped and missing genotypes of array data (with --model DIR or --ref PANEL)."""
    s = _impute.impute(model=model, ref=ref, input=input, output=output, genetic_map=genetic_map,
            state_selection=state_selection, copying_only=copying_only, split_chrom=split_chrom, samples=samples, region=region,
            batch_size=batch_size, device=device, min_r2=min_r2, fmt=fmt, replace_typed=replace_typed,
            report_dir=report_dir)
    click.echo(f"{s.site_report}\n{s.write_report}\n"
               f"{s.n_samples} samples in {s.seconds:.1f} s ({s.samples_per_second:.2f} samples/s)")


@main.command()
@click.option("--input", "input", required=True, type=path_in, help="Unphased VCF (.vcf.gz; indexed for --region).")
@click.option("--output", required=True, type=path_in, help="Phased .vcf.gz to write (with its .tbi).")
@click.option("--ref", default=None, type=path_in, help="Phased reference panel VCF (default: the cohort alone).")
@click.option("--model", default=None, type=path_in, help="Phasing model directory (task=phase): copying + head.")
@click.option("--copying-only", is_flag=True, help="With --model: its haplotype panel's copying model alone.")
@click.option("--map", "genetic_map", default=None, type=path_in, help="Genetic map (PLINK .map; default 1 cM/Mb).")
@click.option("--samples", default=None, type=path_in, help="File with one sample id per line.")
@click.option("--region", default=None, help="CHR[:START-END] (needs an index).")
@click.option("--threads", default=None, type=int, help="Samples phased at once (default: all cores; same output).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int, help="Random start of cohort-only phasing.")
@click.option("--rephase", is_flag=True, help="Phase already phased samples again (default: keep them).")
@click.option("--phasing-model", type=click.Choice(MODELS), default=None,
              help="The copying model: one haploid HMM per haplotype or the pair HMM (default: haploid).")
@click.option("--state-selection", type=click.Choice(SELECTIONS), default=None,
              help="The pair model's states (default: composite; needs --phasing-model pair).")
@click.option("--report", "report_dir", default=None, type=path_in, help="Also write an HTML report (DIR/index.html).")
@click.option("--batch-size", default=_phase.SAMPLE_BATCH, show_default=True, type=int,
              help="With a panel: samples read and phased per pass over the input (memory; same output).")
def phase(input, output, ref, model, copying_only, genetic_map, samples, region, threads, device, seed, rephase,
          phasing_model, state_selection, report_dir, batch_size):
    """Phase a VCF with the haplotype-copying model (and a phasing model's head), against a panel or the cohort."""
    s = _phase.phase(input=input, output=output, ref=ref, model=model, copying_only=copying_only,
                     genetic_map=genetic_map, samples=samples,
                     region=region, threads=threads, device=device, seed=seed, rephase=rephase,
                     phasing_model=phasing_model, state_selection=state_selection, report_dir=report_dir,
                     sample_batch=batch_size)
    click.echo(f"{s.report}\n{s.n_samples} samples in {s.seconds:.1f} s ({s.samples_per_second:.2f} samples/s)")


@main.command()
@click.option("--model", required=True, type=path_in, help="Model directory of an embedding model (task=embed).")
@click.option("--input", "input", required=True, type=path_in, help="VCF/BCF or snpbag store.")
@click.option("--output", required=True, type=path_in)
@click.option("--format", "fmt", type=click.Choice(["zarr", "npy", "parquet"]), default="zarr", show_default=True)
@click.option("--dtype", type=click.Choice(["bf16", "f16", "f32"]), default="bf16", show_default=True)
@click.option("--pool", type=click.Choice(["none", "mean"]), default="none", show_default=True,
              help="mean: one vector per genome (the mean over unflagged patches).")
@click.option("--samples", default=None, type=path_in, help="File with one sample id per line.")
@click.option("--batch-size", default=16, show_default=True, type=int)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--min-typed", default=0.5, show_default=True, type=float,
              help="Flag patches with fewer than this fraction of their sites typed.")
def embed(model, input, output, fmt, dtype, pool, samples, batch_size, device, min_typed):
    """Genome embeddings: one vector per patch of sites, for downstream classifiers."""
    s = _embed.embed(model=model, input=input, output=output, fmt=fmt, dtype=dtype, pool=pool, samples=samples,
            batch_size=batch_size, device=device, min_typed=min_typed)
    click.echo(f"{s.site_report}\n{s.line()}")


@main.group()
def classify():
    """Population labels from genome embeddings: train (with cross-validation) and predict."""


@classify.command("train")
@click.option("--embeddings", required=True, type=path_in, help="Output of `snpbag embed`.")
@click.option("--labels", required=True, type=path_in, help="TSV with a header: sample, label column(s).")
@click.option("--out", required=True, type=path_in, help="Classifier directory to write.")
@click.option("--label-column", default=None, help="Label column of --labels (default: the second).")
@click.option("--kinship", default=None, type=path_in, help=".kin0 file: relatives stay in one fold.")
@click.option("--genotypes", default=None, type=path_in,
              help="Store of the same samples: adds the PCA + logistic regression and kNN baselines.")
@click.option("--folds", default=5, show_default=True, type=int)
@click.option("--repeats", default=3, show_default=True, type=int)
@click.option("--threshold", default=0.5, show_default=True, type=float,
              help="Calls with a top probability below this are 'unassigned'.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--plots", default=None, type=path_in,
              help="Directory for PNGs: 2-D projection of the embeddings, confusion matrices side by side.")
@click.option("--config", default=None, type=path_in,
              help="Classifier hyper-parameters (YAML; default: configs/classify/default.yaml).")
@click.option("--embedding-model", default=None, type=path_in,
              help="Model directory that wrote --embeddings, for features: decoded (its decoder is copied); default: "
                   "the directory the embeddings record.")
def classify_train(embeddings, labels, out, label_column, kinship, genotypes, folds, repeats, threshold, seed, plots,
                   config, embedding_model):
    """Cross-validate a classifier on embeddings, then fit it on all labelled samples."""
    s = _classify.train(embeddings=embeddings, labels=labels, out=out, label_column=label_column, kinship=kinship,
            genotypes=genotypes, folds=folds, repeats=repeats, threshold=threshold, seed=seed, plots=plots,
            config=config, embedding_model=embedding_model)
    click.echo(s.table())


@classify.command("predict")
@click.option("--model", required=True, type=path_in, help="Directory written by `snpbag classify train`.")
@click.option("--embeddings", required=True, type=path_in)
@click.option("--output", required=True, type=path_in, help="TSV: sample, label, probabilities, call.")
@click.option("--plots", default=None, type=path_in,
              help="Directory for a PNG of the embeddings in 2-D, coloured by the predicted label.")
def classify_predict(model, embeddings, output, plots):
    """Calibrated class probabilities and an assigned/unassigned call per sample."""
    click.echo(str(_classify.predict(model=model, embeddings=embeddings, output=output, plots=plots)))


@main.group(invoke_without_command=True)
@click.option("--model", default=None, type=path_in, help="Directory written by `snpbag relate train`.")
@click.option("--input", default=None, type=path_in,
              help="VCF/BCF or snpbag store; or `snpbag embed` output for a model trained with --inputs embeddings.")
@click.option("--embeddings", default=None, type=path_in,
              help="`snpbag embed` output of the input's genomes (models trained with --inputs embeddings or both).")
@click.option("--out", default=None, type=path_in, help="Output prefix: PREFIX.rel (per pair) and PREFIX.rel.log.")
@click.option("--pairs", default=None, type=path_in, help="Pairs to call (two ids per line, or a .kin0); default all.")
@click.option("--min-kinship", default=None, type=float,
              help="KING prefilter: only pairs with KING-robust kinship >= X (with --prefilter segments: the KING "
                   "part of the union, default 0.0442).")
@click.option("--prefilter", default="auto", show_default=True, type=click.Choice(_relatepairs.PREFILTERS),
              help="Pairs to score without --pairs: segments (a shared haplotype seed, or KING's degree 1-3), king "
                   "(--min-kinship), none (all); auto: king with --min-kinship, segments on phased input, else none.")
@click.option("--seed-cm", default=_relatepairs.SEED_CM, show_default=True, type=float,
              help="Segment prefilter: shortest shared haplotype seed (cM).")
@click.option("--max-degree", default=None, type=int, help="Write only pairs called at this degree or closer.")
@click.option("--threads", default=None, type=int, help="Threads for reading and for scoring pair blocks (default: all CPUs).")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda"]))
@click.option("--genetic-map", default=None, type=path_in,
              help="PLINK .map / HapMap file (or a `snpbag simulate --pedigree` directory): segment lengths in cM.")
@click.option("--populations", default=None, type=path_in,
              help="Sample and population per line (e.g. samples.tsv): per-population segment backgrounds; "
                   "default one pooled background.")
@click.option("--detector", "segments", default="auto", show_default=True, type=click.Choice(_relate.relateersa.CHOICES),
              help="Segment detector: haplotype IBD (phased input), IBS0-free runs, or hap when phased.")
@click.option("--relatives/--no-relatives", default=True, show_default=True,
              help="Bound each pair's degree by its members' parents' calls (parents found from the calls): "
                   "DEGREE may be closer than the pair's own PAIR_DEGREE, VIA names the parent.")
@click.pass_context
def relate(ctx, model, input, embeddings, out, pairs, min_kinship, prefilter, seed_cm, max_degree, threads, device,
           genetic_map, populations, segments, relatives):
    """Relationship degrees 1..N of pairs of genomes: KING's thresholds to degree 3, ERSA on shared segments
    beyond (`relate train` fits the model)."""
    if ctx.invoked_subcommand is not None:
        return
    if not (model and input and out):
        raise click.UsageError("snpbag relate needs --model, --input and --out (or the subcommand `train`)")
    s = _relate.relate(model=model, input=input, out=out, pairs=pairs, min_kinship=min_kinship,
                       max_degree=max_degree, threads=threads, device=device, embeddings=embeddings,
                       genetic_map=genetic_map, populations=populations, segments=segments, prefilter=prefilter,
                       seed_cm=seed_cm, relatives=relatives)
    click.echo(s.line())


@relate.command("train")
@click.option("--pedigree", "pedigree", required=True, multiple=True, type=path_in,
              help="`snpbag simulate --pedigree` output directory (repeatable).")
@click.option("--out", required=True, type=path_in, help="Relate directory to write.")
@click.option("--max-degree", default=12, show_default=True, type=int, help="Degree classes 1..N (+ unrelated).")
@click.option("--patch-sites", default=256, show_default=True, type=int, help="Consecutive sites per patch.")
@click.option("--inputs", default="counts", show_default=True, type=click.Choice(["counts", "embeddings", "both"]),
              help="Per-patch evidence: KING counts of the genotypes, the genomes' patch embeddings, or both.")
@click.option("--embeddings", default=None, type=path_in,
              help="`snpbag embed` output of the --pedigree genomes (--inputs embeddings or both).")
@click.option("--epochs", default=40, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--segments/--no-segments", default=True, show_default=True,
              help="Also fit the shared-segment caller (backgrounds per population group, LOD cutoff).")
@click.option("--specificity", default=_relate.relateersa.SPECIFICITY, show_default=True, type=float,
              help="Share of training unrelated pairs the segment caller's LOD cutoff keeps unrelated.")
def relate_train(pedigree, out, max_degree, patch_sites, inputs, embeddings, epochs, seed, segments, specificity):
    """Fit the relatedness classifier and the shared-segment caller on simulated pedigrees."""
    s = _relate.train(pedigree=list(pedigree), out=out, max_degree=max_degree, patch_sites=patch_sites,
                      fit=_relate.Fit(epochs=epochs, seed=seed), options={"inputs": inputs}, embeddings=embeddings,
                      segments=segments, specificity=specificity)
    click.echo(s.line())


@main.command()
@click.option("--out", default="demo_out", show_default=True, type=path_in)
def demo(out):
    """Simulate, convert, pretrain, impute: the main job on built-in simulated data."""
    _demo.demo(Path(out), echo=click.echo)


if __name__ == "__main__":  # pragma: no cover
    main()
