"""What ``snpbag relate`` reads: per-patch KING counts, the genomes' patch embeddings, or both — on the same families.

Steps: ``snpbag simulate --pedigree N --max-degree D`` (one simulation, so every genome is typed
at the same sites, as embeddings of one model need); ``snpbag convert`` of its VCF; a small
patch-embedding model trained from scratch on that store (``experiment=embed_demo`` with the
encoder unfrozen, ``--embed-steps`` steps; self-supervised: it sees no relationship) and
exported; ``snpbag embed`` of every genome. The families are split: the first
``--train-families`` train, the rest are held out (other founders; pairs across a held-out and a
training family are left out). The relatedness classifier is trained three times on the same
training pairs — ``--inputs counts``, ``embeddings``, ``both`` — and scored on the same held-out
pairs: per true degree exact and within-±1 accuracy, and the degree-2 type per true type.

    .venv/bin/python tools/bench/relate_inputs.py --workdir /tmp/bench_relate_inputs --families 10 \\
        --train-families 6 --length 1000000 --embed-steps 300
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np

import _results

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before torch: 2-core machines (docs/cpu.md)

INPUTS = ("counts", "embeddings", "both")


def _embed_model(store: Path, workdir: Path, steps: int) -> Path:
    from snpbag.train.export import export
    from snpbag.train.run import train

    run = train(["experiment=embed_demo", f"data.store={store}", "task.freeze_encoder=false",
                 f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}",
                 "trainer.enable_progress_bar=false", f"paths.run_dir={workdir / 'run_embed'}"])
    return export(run, workdir / "model_embed")


def _family_split(sim: Path, n_train: int) -> dict[str, bool]:
    """sample -> in a training family (the first ``n_train`` families of samples.tsv)."""
    rows = [x.split("\t") for x in (sim / "samples.tsv").read_text().splitlines()[1:]]
    families = list(dict.fromkeys(r[3] for r in rows))
    train = set(families[:n_train])
    return {r[0]: r[3] in train for r in rows}


def main() -> None:
    import torch

    from snpbag.eval.relate import degree_accuracy
    from snpbag.inference import relate as rel
    from snpbag.inference.embed import embed
    from snpbag.inference.relateinput import read_embedding_input
    from snpbag.model.relate import SUBTYPES
    from snpbag.simulate.cohort import simulate
    from snpbag.store.convert import convert

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_relate_inputs"))
    p.add_argument("--families", type=int, default=10)
    p.add_argument("--train-families", type=int, default=6)
    p.add_argument("--chromosomes", type=int, default=22)
    p.add_argument("--length", type=int, default=1_000_000)
    p.add_argument("--max-degree", type=int, default=12)
    p.add_argument("--patch-sites", type=int, default=512, help="SNPs per patch of the KING counts")
    p.add_argument("--embed-steps", type=int, default=300)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=1)
    _results.add_json_option(p)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if not 0 < a.train_families < a.families:
        p.error("--train-families: must be between 1 and --families - 1")
    shutil.rmtree(a.workdir, ignore_errors=True)
    a.workdir.mkdir(parents=True)
    seconds, t = {}, time.perf_counter()
    sim = a.workdir / "sim"
    simulate(sim, length=a.length, pedigree=a.families, chromosomes=a.chromosomes, seed=a.seed,
             max_degree=a.max_degree)
    store = a.workdir / "pedigree.zarr"
    convert(str(sim / "pedigree.vcf.gz"), str(store))
    seconds["simulate_convert"], t = time.perf_counter() - t, time.perf_counter()
    model = _embed_model(store, a.workdir, a.embed_steps)
    seconds["embed_train"], t = time.perf_counter() - t, time.perf_counter()
    summary = embed(model=model, input=sim / "pedigree.vcf.gz", output=a.workdir / "emb.zarr", dtype="f32",
                    progress=False)
    seconds["embed"], t = time.perf_counter() - t, time.perf_counter()
    emb = read_embedding_input(a.workdir / "emb.zarr")
    data = rel.pedigree_pairs(sim, max_degree=a.max_degree, patch_sites=a.patch_sites, unrelated_per_related=2.0,
                              seed=a.seed, embeddings=emb)
    seconds["pairs"], t = time.perf_counter() - t, time.perf_counter()
    in_train = _family_split(sim, a.train_families)
    side = np.array([[in_train[data.ids[i]], in_train[data.ids[j]]] for i, j in data.pairs])
    train, test = data.subset(side.all(1)), data.subset(~side.any(1))
    truth = rel.degrees_of_classes(test.y, a.max_degree)
    two = test.sub >= 0
    tables: dict[str, list] = {"degrees": [], "subtypes": []}
    acc, typ = {}, {}
    for inputs in INPUTS:
        t = time.perf_counter()
        net = rel.fit_net(train, max_degree=a.max_degree, patch_sites=a.patch_sites,
                          fit=rel.Fit(epochs=a.epochs, seed=a.seed), options={"inputs": inputs})
        net.eval()
        acc[inputs] = degree_accuracy(truth, rel.called_degrees(net, test, a.patch_sites))
        typ[inputs] = rel.called_subtypes(net, test.subset(two), a.patch_sites)
        seconds[f"fit_{inputs}"] = time.perf_counter() - t
        print(f"{inputs}: " + "  ".join(f"{k} {v['exact']:.2f}/{v['within1']:.2f}" for k, v in acc[inputs].items()),
              flush=True)
    for k in acc["counts"]:
        tables["degrees"].append({"degree": k, "pairs": acc["counts"][k]["n"],
                                  **{f"{i}_{m}": acc[i][k][m] for i in INPUTS for m in ("exact", "within1")}})
    for k, name in enumerate(SUBTYPES):
        m = test.sub[two] == k
        tables["subtypes"].append({"true type": name, "pairs": int(m.sum()),
                                   **{f"{i}_correct": float(np.mean(typ[i][m] == k)) if m.any() else None
                                      for i in INPUTS}})
    _results.write(a.json, command="relate_inputs", results=tables, info={
        "genomes": len(data.ids), "variants": data.variants, "embedding_patches": int(emb.vectors.shape[1]),
        "embedding_dims": int(emb.vectors.shape[2]), "embedding_bytes_per_genome": summary.bytes_per_genome,
        "count_patches": int(data.counts.shape[1]), "training_pairs": len(train.y), "test_pairs": len(test.y),
        **{f"seconds_{k}": round(v, 1) for k, v in seconds.items()}})


if __name__ == "__main__":
    main()
