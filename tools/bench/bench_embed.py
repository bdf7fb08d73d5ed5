"""Genome embeddings end to end on the fine-scale simulation: reconstruction from the
embedding against the allele-frequency baseline (held-out genomes, per MAF bin), embedding
throughput and bytes per genome, and population classification from the embeddings against
PCA + logistic regression and kNN on PCs, on the same folds, at continent and at
sub-population level.

Steps: ``snpbag simulate --demography finescale`` → ``convert`` → pretrain a model
(``--preset``, ``--pretrain-steps``) → ``train task=embed`` on it (frozen encoder,
``--embed-steps``, ``--patch``, ``--shape``) → ``embed`` (bf16, ``--pool``) → ``classify
train`` with ``--genotypes`` (5 folds x 3 repeats) for each label level, the classifier reading
the embedding or (``--features decoded``) the embedding model's decoded dosages.

    .venv/bin/python tools/bench/bench_embed.py --workdir /tmp/bench_embed --samples-per-pop 20 \\
        --length 1000000 --pretrain-steps 300 --embed-steps 300
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import _results


def _train(overrides: list[str]) -> Path:
    from snpbag.train.run import train

    return train(overrides)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_embed"))
    p.add_argument("--samples-per-pop", type=int, default=20)
    p.add_argument("--length", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--pretrain-steps", type=int, default=300)
    p.add_argument("--embed-steps", type=int, default=300)
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--shape", default="1,32", help="n_vectors,vector_dim")
    p.add_argument("--pool", default="none", choices=["none", "mean"])
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mask", default="0.0,0.5", help="min,max share of input genotypes hidden per sequence")
    p.add_argument("--lr", type=float, default=3e-3, help="learning rate of the embedding training")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Hydra override for the embedding training (repeatable), e.g. "
                        "task.freeze_encoder=false")
    p.add_argument("--levels", default="continent,population",
                   help="label levels to classify, comma-separated ('' for reconstruction only)")
    p.add_argument("--features", default="decoded", choices=["embedding", "decoded"],
                   help="what the (linear) classifier reads: the embedding, or the embedding model's decoded dosages")
    p.add_argument("--plots", type=Path, default=None,
                   help="write classify's PNGs (projection, confusion matrices) under PLOTS/LEVEL/")
    p.add_argument("--reuse", action="store_true",
                   help="keep WORKDIR's simulation, store and pretrained model when present (compare "
                        "embedding settings on one pretrained encoder)")
    _results.add_json_option(p)
    a = p.parse_args()

    import torch

    from snpbag.inference import classify
    from snpbag.inference.embed import embed
    from snpbag.simulate.cohort import simulate
    from snpbag.store.convert import convert
    from snpbag.train.export import export

    torch.set_num_threads(a.threads)
    w = a.workdir
    store = w / "cohort.zarr"
    reuse = a.reuse and (w / "model_pre").is_dir()
    t = {}
    if not reuse:
        shutil.rmtree(w, ignore_errors=True)
        w.mkdir(parents=True)
        t0 = time.perf_counter()
        simulate(w / "sim", samples_per_pop=a.samples_per_pop, length=a.length, seed=a.seed, demography="finescale")
        t["simulate_s"] = time.perf_counter() - t0
        convert(str(w / "sim" / "cohort.vcf.gz"), str(store), min_maf=0.01, tile_len=4 * a.seq_len, threads=a.threads)
    common = ["trainer=cpu", "trainer.enable_progress_bar=false", "trainer.num_sanity_val_steps=0",
              "logger=none", "callbacks.throughput=false", "callbacks.lr_monitor=false", f"model={a.preset}",
              f"data.store={store}", f"data.seq_len={a.seq_len}", "data.batch_size=8", f"trainer.cpu_threads={a.threads}",
              f"seed={a.seed}"]
    if not reuse:
        t0 = time.perf_counter()
        _train([*common, f"paths.run_dir={w / 'pre'}", f"trainer.max_steps={a.pretrain_steps}",
                f"trainer.val_check_interval={a.pretrain_steps}", "callbacks.checkpoint.save_top_k=1"])
        export(w / "pre", w / "model_pre")
        t["pretrain_s"] = time.perf_counter() - t0
    for d in ("emb", "model_emb", "emb.zarr", "clf_continent", "clf_population"):
        shutil.rmtree(w / d, ignore_errors=True)
    n_vec, dim = (int(x) for x in a.shape.split(","))
    lo, hi = (float(x) for x in a.mask.split(","))
    t0 = time.perf_counter()
    _train([*common, f"paths.run_dir={w / 'emb'}", "task=embed", f"task.init_from={w / 'model_pre'}",
            f"task.head.options.patch={a.patch}", f"task.head.options.shape=[{n_vec},{dim}]",
            f"trainer.max_steps={a.embed_steps}", f"trainer.val_check_interval={a.embed_steps}",
            "callbacks.checkpoint.save_top_k=1", f"masking.min_rate={lo}", f"masking.max_rate={hi}", f"optim.lr={a.lr}", *a.overrides])
    export(w / "emb", w / "model_emb")
    t["embed_train_s"] = time.perf_counter() - t0
    val = json.loads((w / "model_emb" / "training.json").read_text())["val_metrics"]

    t0 = time.perf_counter()
    s = embed(model=w / "model_emb", input=store, output=w / "emb.zarr", pool=a.pool, progress=False)
    t["embed_s"] = time.perf_counter() - t0

    rows = [ln.split("\t") for ln in (w / "sim" / "samples.tsv").read_text().splitlines()]
    (w / "labels.tsv").write_text("".join(f"{r[0]}\t{r[1]}\t{r[2]}\n" for r in rows))
    cls = []
    for level in [x for x in a.levels.split(",") if x]:
        t0 = time.perf_counter()
        res = classify.train(embeddings=w / "emb.zarr", labels=w / "labels.tsv", out=w / f"clf_{level}",
                             label_column=level, genotypes=store, folds=a.folds, repeats=a.repeats,
                             plots=a.plots / level if a.plots else None, options={"features": a.features},
                             embedding_model=w / "model_emb")
        t[f"classify_{level}_s"] = time.perf_counter() - t0
        for method, r in res.cv.items():
            cls.append({"level": level, "method": method, "macro_f1": r["mean_macro_f1"], "sd": r["sd_macro_f1"],
                        "min_class_f1": min(r["f1"].values())})
        print(res.table())

    recon = []
    for key, label in [("", "all")] + [(f"_maf_{b}", f"MAF {b}") for b in
                                       ("0.01-0.02", "0.02-0.05", "0.05-0.1", "0.1-0.2", "0.2-0.5")] + \
            [(f"_{g}", f"true {g.replace('_', ' ')}") for g in ("hom_ref", "het", "hom_alt")]:
        if f"val/acc{key}" in val:
            recon.append({"sites": label, "embedding": val[f"val/acc{key}"], "af_baseline": val[f"val/base_acc{key}"],
                          "gain": val[f"val/acc{key}"] - val[f"val/base_acc{key}"]})
    for r in recon:
        print(f"| {r['sites']} | {r['embedding']:.4f} | {r['af_baseline']:.4f} | {r['gain']:+.4f} |")
    cost = [{"genomes": s.n_samples, "patches": s.n_patches, "numbers_per_patch": s.dims,
             "bytes_per_genome": s.bytes_per_genome, "genomes_per_s": s.n_samples / t["embed_s"]}]
    print(s.line())
    _results.write(a.json, command="bench_embed", results={"reconstruction": recon, "classification": cls,
                                                           "cost": cost},
                   info={"samples_per_pop": a.samples_per_pop, "length": a.length, "preset": a.preset,
                         "patch": a.patch, "shape": a.shape, "pretrain_steps": a.pretrain_steps,
                         "embed_steps": a.embed_steps, "mask": a.mask, "lr": a.lr, "overrides": " ".join(a.overrides) or None,
                         "folds": a.folds, "repeats": a.repeats, "features": a.features, "reused_pretrained": reuse,
                         "scored_genotypes": val.get("val/n_scored"), **{k: round(v, 1) for k, v in t.items()}})


if __name__ == "__main__":
    main()
