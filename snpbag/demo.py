"""``snpbag demo``: the main job end to end on built-in simulated data.

simulate → convert → pretrain a tiny model on CPU → export → impute held-out array
samples → score them next to the allele-frequency baseline (and Beagle 5.4 when it is
installed) → phase the held-out targets against the panel and score switch errors (Beagle
beside it when installed) → train the patch-embedding head, embed the reference panel and cross-validate a
continent classifier on the embeddings next to PCA + logistic regression. Each step reuses its output when a previous demo run completed it, so a
second ``make demo`` only repeats what is missing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snpbag.io.bgzf import copy_contigs, index_path
from snpbag.api import load_model
from snpbag.eval.compare import read_dosages, read_truth, render, score
from snpbag.eval.metrics import af_baseline
from snpbag.eval.phase import score_phasing, write_unphased
from snpbag.inference import classify
from snpbag.inference.embed import embed
from snpbag.inference.impute import impute
from snpbag.inference.phase import phase
from snpbag.train.export import export

log = logging.getLogger(__name__)


@dataclass
class DemoSettings:
    """Sizes of the demo. The defaults give ~2,000 training samples and 100 held-out
    targets on 1 Mb; tests shrink them."""

    samples_per_pop: int = 700
    length: int = 1_000_000
    targets: int = 100
    array_fraction: float = 0.2
    seed: int = 1
    tile_len: int = 2048
    train_overrides: tuple[str, ...] = ()
    beagle: bool = True
    phase: bool = True  # step 6: phase the held-out array targets against the panel
    embed: bool = True  # step 7: embeddings and continent classification next to PCA
    embed_overrides: tuple[str, ...] = ()
    classify_epochs: int = 100  # epochs of the classifier when its kind is mlp (configs/classify/default.yaml)
    # genomes per continent embedded and classified in step 6 (the copying input makes each
    # genome's pass cost ~0.1 s on a core; all 1,800 doubled the demo's run time)
    embed_per_continent: int = 200


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _store_summary(out: Path, sim: Path, report: dict) -> list[str]:
    from snpbag.store.genotypes import open_store

    store = open_store(out / "cohort.zarr")
    vocab = store.vocab
    pops: dict[str, int] = {}
    for line in (sim / "samples.tsv").read_text().splitlines()[1:]:
        f = line.split("\t")
        pops[f"{f[1]} ({f[2]})"] = pops.get(f"{f[1]} ({f[2]})", 0) + 1
    size = _du(out / "cohort.zarr")
    n_gt = store.n_samples * store.n_variants * 2
    return [
        f"samples      {store.n_samples:,} in the reference store; populations: "
        + ", ".join(f"{k} {v}" for k, v in pops.items()) + " (cohort incl. held-out targets)",
        f"sites        {store.n_variants:,} biallelic SNPs; {vocab.n_sites:,} in the model vocabulary (MAF >= "
        f"{vocab.min_maf:g}) cut into {vocab.n_tiles} tile(s) of up to {vocab.tile_len:,}",
        f"store        {out / 'cohort.zarr'}: {size / 2**20:.2f} MiB, "
        f"{8 * size / max(n_gt, 1):.3f} bits per genotype (all arrays)",
        f"dropped      {json.dumps(report.get('dropped', {}))}",
    ]


def _accuracy_table(metrics: dict[str, float]) -> list[str]:
    """Masked accuracy per MAF bin, model vs allele-frequency baseline (validation samples)."""
    rows = ["MAF bin        model   AF baseline   gain"]
    rows.append(f"{'all':<12} {metrics.get('val/acc', float('nan')):7.4f}   "
                f"{metrics.get('val/base_acc', float('nan')):11.4f}   {metrics.get('val/acc_gain', float('nan')):+.4f}")
    for k in sorted(metrics):
        if k.startswith("val/acc_maf_"):
            b = k[len("val/acc_maf_"):]
            m, base = metrics[k], metrics.get(f"val/base_acc_maf_{b}", float("nan"))
            rows.append(f"{b:<12} {m:7.4f}   {base:11.4f}   {m - base:+.4f}")
    return rows


def demo(out: str | Path = "demo_out", *, settings: DemoSettings | None = None,
         echo: Callable[[str], None] = log.info) -> dict:
    """Run the demo into ``out``; ``echo`` receives the report lines. Returns the scores."""
    from snpbag.store.convert import convert
    from snpbag.simulate.cohort import simulate
    from snpbag.train.run import train

    os.environ.setdefault("WANDB_SILENT", "true")  # the run is offline; keep its banner out of the report
    s = settings or DemoSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sim = out / "sim"
    t0 = time.perf_counter()

    echo("== 1. simulate (msprime, out-of-Africa demography) ==")
    if not (sim / "simulation.json").exists():
        simulate(sim, samples_per_pop=s.samples_per_pop, length=s.length, seed=s.seed,
                 array_fraction=s.array_fraction, split_targets=s.targets)
    echo(f"{sim}: reference.vcf.gz, targets.vcf.gz (truth), targets_array.vcf.gz "
         f"({s.array_fraction:.0%} of sites), samples.tsv")

    echo("== 2. convert the reference panel to a Zarr store ==")
    store = out / "cohort.zarr"
    report_file = out / "convert_report.json"
    if not store.exists():
        report = convert(sim / "reference.vcf.gz", store, tile_len=s.tile_len)
        report_file.write_text(json.dumps(report, indent=2, default=str))
    report = json.loads(report_file.read_text()) if report_file.exists() else {}
    for line in _store_summary(out, sim, report):
        echo(line)

    echo("== 3. pretrain the tiny model (masked genotype prediction on augmented genomes, 50-99% masked) ==")
    run_dir = out / "run"
    model_dir = out / "model"
    if not model_dir.exists():
        if run_dir.exists():
            shutil.rmtree(run_dir)  # an interrupted earlier demo: start the run again
        train(["experiment=pretrain_demo", f"data.store={store}", f"paths.run_dir={run_dir}", *s.train_overrides])
        export(run_dir, model_dir)
    loaded = load_model(model_dir)
    echo(f"validation masked accuracy at step {loaded.training.get('global_step')} (held-out samples):")
    for line in _accuracy_table(loaded.training.get("val_metrics", {})):
        echo("  " + line)

    echo("== 4. impute the held-out targets from their array sites ==")
    imputed = out / "imputed.vcf.gz"
    for p in (imputed, Path(f"{imputed}.tbi"), out / "imputed.info.tsv", out / "imputed.excluded.tsv"):
        p.unlink(missing_ok=True)
    summary = impute(model=model_dir, input=sim / "targets_array.vcf.gz", output=imputed, progress=False)
    echo(summary.site_report)
    echo(f"{summary.write_report}; {summary.samples_per_second:.1f} samples/s")

    echo("== 5. score against the truth (untyped model sites) ==")
    keys, truth, samples = read_truth(sim / "targets.vcf.gz")
    vocab = loaded.vocab
    vidx = vocab.index_of([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [k[3] for k in keys])
    array = {tuple(line.split("\t")[:2]) for line in (sim / "array_sites.tsv").read_text().splitlines()[1:]}
    on_array = np.array([(k[0], str(k[1])) in array for k in keys])
    eval_sites = (vidx >= 0) & ~on_array
    af = np.where(vidx >= 0, vocab.af[np.maximum(vidx, 0)], np.nan)
    maf = np.minimum(af, 1 - af)
    scored = []
    _, base = af_baseline(np.nan_to_num(af), truth.shape[1])
    scored.append(score("AF baseline", truth, base, eval_sites=eval_sites, maf=maf))
    dos, est = read_dosages(imputed, samples, keys)
    scored.append(score("snpbag (demo tiny model)", truth, dos, eval_sites=eval_sites, maf=maf, estimated_r2=est)
                  | {"wall_s": summary.seconds})
    if s.beagle and shutil.which("beagle"):
        bg = out / "beagle"
        t = time.perf_counter()
        subprocess.run(["beagle", f"ref={sim / 'reference.vcf.gz'}", f"gt={sim / 'targets_array.vcf.gz'}",
                        f"out={bg}", "nthreads=2", f"seed={s.seed}"], check=True, capture_output=True)
        copy_contigs(sim / "targets_array.vcf.gz", f"{bg}.vcf.gz")  # Beagle writes none; htslib warns per record
        dos, est = read_dosages(f"{bg}.vcf.gz", samples, keys)
        scored.append(score("Beagle 5.4 (reference panel)", truth, dos, eval_sites=eval_sites, maf=maf,
                            estimated_r2=est) | {"wall_s": time.perf_counter() - t})
    else:
        echo("(Beagle not installed: `apt-get install beagle` to see it side by side)")
    echo(f"{int(eval_sites.sum()):,} untyped model sites x {truth.shape[1]} targets:")
    for line in render(scored).splitlines():
        echo(line)
    result = {"scores": scored, "eval_sites": int(eval_sites.sum())}
    if s.phase:
        result["phasing"] = _phase_targets(out, sim, s, echo)
    if s.embed:
        result["classification"] = _embed_and_classify(out, sim, store, model_dir, s, echo)
    echo(f"demo finished in {time.perf_counter() - t0:.0f} s; outputs in {out}/")
    return result


def _phase_targets(out: Path, sim: Path, s: DemoSettings, echo: Callable[[str], None]) -> list[dict]:
    """Step 6: phase the held-out targets at array density against the reference panel (the
    copying model; Beagle 5.4 beside it when installed) and score switch errors."""
    echo("== 6. phase the held-out targets (array sites, reference panel) ==")
    given = out / "targets_array.unphased.vcf.gz"
    if not given.exists():
        write_unphased(sim / "targets_array.vcf.gz", given)
    phased = out / "phased.vcf.gz"
    for p in (phased, index_path(phased)):
        p.unlink(missing_ok=True)
    summary = phase(input=given, output=phased, ref=sim / "reference.vcf.gz", threads=2, seed=s.seed, progress=False)
    rows = [_phase_row("snpbag (copying model)", sim, phased, given, summary.seconds)]
    echo(f"{summary.report}; {summary.samples_per_second:.1f} samples/s")
    if s.beagle and shutil.which("beagle"):
        bg = out / "beagle_phased"
        t = time.perf_counter()
        subprocess.run(["beagle", f"ref={sim / 'reference.vcf.gz'}", f"gt={given}", f"out={bg}", "impute=false",
                        "nthreads=2", f"seed={s.seed}"], check=True, capture_output=True)
        copy_contigs(given, f"{bg}.vcf.gz")  # Beagle writes none; htslib warns per record
        rows.append(_phase_row("Beagle 5.4 (reference panel)", sim, Path(f"{bg}.vcf.gz"), given,
                               time.perf_counter() - t))
    else:
        echo("(Beagle not installed: `apt-get install beagle` to see its switch error rate beside)")
    echo("phaser                          SER %   switches  flips  het pairs  genotypes changed  wall s")
    for r in rows:
        echo(f"{r['tool']:<30} {r['ser_pct']:7.3f}  {r['switches']:9,}  {r['flips']:5,}  {r['het_pairs']:9,}  "
             f"{r['genotypes_changed']:17,}  {r['wall_s']:6.1f}")
    return rows


def _phase_row(tool: str, sim: Path, estimate: Path, given: Path, seconds: float) -> dict:
    res = score_phasing(sim / "targets.vcf.gz", estimate, given=given)
    a = res["rows"][0]
    return {"tool": tool, "ser_pct": 100 * a["ser"], "switches": a["switches"], "flips": a["flips"],
            "het_pairs": a["opportunities"], "genotypes_changed": res["genotypes"]["changed"], "wall_s": seconds}


def _embed_and_classify(out: Path, sim: Path, store: Path, model_dir: Path, s: DemoSettings,
                        echo: Callable[[str], None]) -> dict:
    """Step 6: train the patch-embedding head on the pretrained encoder, embed the reference
    panel, and cross-validate a continent classifier on the embeddings next to PCA + LR."""
    from snpbag.train.run import train

    echo("== 7. embed the reference panel (one vector per patch of sites) and classify continents ==")
    run_dir, emb_model = out / "run_embed", out / "model_embed"
    if not emb_model.exists():
        if run_dir.exists():
            shutil.rmtree(run_dir)
        train(["experiment=embed_demo", f"data.store={store}", f"task.init_from={model_dir}",
               f"paths.run_dir={run_dir}", *s.embed_overrides])
        export(run_dir, emb_model)
    embeddings = out / "embeddings.zarr"
    if embeddings.exists():
        shutil.rmtree(embeddings)
    rows = [line.split("\t") for line in (sim / "samples.tsv").read_text().splitlines()[1:]]
    chosen, per = [], {}
    for r in rows:
        if r[3] != "target" and per.get(r[2], 0) < s.embed_per_continent:
            per[r[2]] = per.get(r[2], 0) + 1
            chosen.append(r)
    subset = out / "embed_samples.txt"
    subset.write_text("".join(r[0] + "\n" for r in chosen))
    summary = embed(model=emb_model, input=store, output=embeddings, samples=subset, progress=False)
    echo(summary.line())
    labels = out / "continents.tsv"
    labels.write_text("sample\tpopulation\tcontinent\n" + "".join("\t".join(r[:3]) + "\n" for r in chosen))
    clf = out / "classifier"
    if clf.exists():
        shutil.rmtree(clf)
    res = classify.train(embeddings=embeddings, labels=labels, out=clf, label_column="continent", genotypes=store,
                         folds=5, repeats=1, fit=classify.Fit(epochs=s.classify_epochs), embedding_model=emb_model)
    for line in res.table().splitlines():
        echo(line)
    return {m: r["mean_macro_f1"] for m, r in res.cv.items()}
