"""ERSA on held-out pedigrees: shared segments (IBS0-free runs or haplotype IBD, in cM) and ERSA's likelihood per degree, beside
``snpbag relate`` and KING, standalone and as extra inputs to the trained classifier.

Reads a ``relate_vs_king.py`` work directory (its simulations and its trained model; nothing is
re-simulated). Per ``--setting`` (``array``: pedigree_array.vcf.gz; ``sequence``: pedigree.vcf.gz):

1. the labelled pairs of the training and held-out families exactly as ``relate_vs_king.py``
   draws them (same seeds), their KING counts per patch, and each pair's shared segments on the
   simulation's own genetic map: ``--detector ibs0`` runs free of opposite homozygotes
   (:mod:`snpbag.kinship.segments`), ``--detector hap`` IBD on the phased haplotypes
   (:mod:`snpbag.kinship.hapibd`; the simulation's VCFs carry the true phase, ``--train-vcf`` /
   ``--test-vcf`` name others on the same samples and sites, e.g. the same genotypes phased by
   ``snpbag phase`` or Beagle, all of its chromosomes or some (both sets keep the chromosomes they share);
   ``--max-gap`` joins segments across short gaps free of opposite homozygotes);
2. ERSA's background — count and length of segments of at least each ``--thresholds`` t cM between
   unrelated pairs — fitted on the *training* simulation's unrelated pairs, one per group of
   populations (the pair's two populations; ERSA assumes one population, and a bottlenecked one
   shares many more segments; lengths one exponential or, ``--background-components 2``, a mixture of
   two); ERSA's degree by maximum likelihood on the held-out pairs
   (:mod:`snpbag.kinship.ersa`), called related when its log-likelihood ratio against the
   background passes ERSA's χ²₁ test (α = 0.05, 1.92) or, second row, the LOD that keeps
   ``--specificity`` of the training unrelated pairs unrelated;
3. ``snpbag relate`` (the work directory's model, when it has one) and KING's thresholds on the same pairs;
4. with ``--head-epochs N``: the classifier trained on the training pairs for N epochs with and
   without ERSA's per-pair numbers (log-likelihood ratio per degree, segments, shared cM)
   appended to its genome-wide inputs.

    .venv/bin/python tools/bench/relate_ersa.py --workdir /tmp/relreal --setting array --thresholds 10,15,20 \\
        --head-epochs 10 --json /tmp/relate_ersa.json
    .venv/bin/python tools/bench/relate_ersa.py --workdir /tmp/relfix --setting array --thresholds 2,3,5,10 \\
        --detector hap --background-components 2 --json /tmp/relate_ersa_hap.json
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

import _results

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before torch: 2-core machines (docs/cpu.md)


def _groups(simdir: Path, ids: list[str], pairs: np.ndarray) -> np.ndarray:
    """Each pair's populations, sorted and joined (``CEU``, ``CEU|YRI``)."""
    rows = [x.split("\t") for x in (simdir / "samples.tsv").read_text().splitlines()[1:]]
    pop = {r[0]: r[1] for r in rows}
    return np.array(["|".join(sorted({pop[ids[i]], pop[ids[j]]})) for i, j in pairs])


def main() -> None:
    from snpbag.eval.relate import degree_accuracy
    from snpbag.inference import relate as rel
    from snpbag.inference.relateersa import king_threshold_degrees
    from snpbag.kinship import ersa
    from snpbag.kinship.estimators import kinship
    from snpbag.kinship.hapibd import MIN_EXTEND, MIN_SEED, hap_ibd_segments
    from snpbag.kinship.segments import ibs0_free_segments, read_genome
    from snpbag.simulate.pedigree import simulation_genetic_map

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/relreal"), help="a relate_vs_king.py work directory")
    p.add_argument("--setting", default="array", choices=("array", "sequence"))
    p.add_argument("--thresholds", default="10,15,20", help="ERSA's t, each a row: shortest segment counted (cM)")
    p.add_argument("--detector", default="ibs0", choices=("ibs0", "hap"), help="shared segments: IBS0-free runs "
                   "(unphased) or haplotype IBD (phased)")
    p.add_argument("--min-seed", type=float, default=MIN_SEED, help="hap: shortest seed (cM)")
    p.add_argument("--min-extend", type=float, default=MIN_EXTEND, help="hap: shortest run joined across a mismatch (cM)")
    p.add_argument("--min-markers", type=int, default=1, help="hap: fewest sites in a seed")
    p.add_argument("--min-maf", type=float, default=0.0, help="hap: sites with a rarer minor allele are not used")
    p.add_argument("--max-gap", type=float, default=0.0, help="hap: join segments at most this far apart (cM)")
    p.add_argument("--max-discord", type=int, default=1, help="hap: opposite homozygotes allowed in a joined gap")
    p.add_argument("--train-vcf", type=Path, default=None, help="segments of the training pairs from this VCF "
                   "(default: the simulation's, true phase)")
    p.add_argument("--test-vcf", type=Path, default=None, help="segments of the held-out pairs from this VCF")
    p.add_argument("--background-components", type=int, default=1, choices=(1, 2),
                   help="background lengths: one exponential (ERSA) or a two-exponential mixture")
    p.add_argument("--head-threshold", type=float, default=15.0, help="the t of the classifier's ERSA inputs")
    p.add_argument("--types", default="ersa", choices=("ersa", "all", "best"),
                   help="relationship types per degree (snpbag.kinship.ersa.TYPES)")
    p.add_argument("--specificity", type=float, default=0.99, help="training unrelated pairs kept unrelated")
    p.add_argument("--max-degree", type=int, default=12)
    p.add_argument("--patch-sites", type=int, default=128, help="the work directory model's patch size")
    p.add_argument("--head-epochs", type=int, default=0, help="train the classifier with/without ERSA inputs")
    p.add_argument("--seed", type=int, default=1, help="relate_vs_king.py's --seed")
    _results.add_json_option(p)
    a = p.parse_args()
    thresholds = [float(x) for x in a.thresholds.split(",")]
    vcf = "pedigree_array.vcf.gz" if a.setting == "array" else "pedigree.vcf.gz"
    sims = {s: a.workdir / "sim" / s for s in ("train", "test")}
    dirs = {s: a.workdir / a.setting / s for s in ("train", "test")}
    inputs = {"train": a.train_vcf or sims["train"] / vcf, "test": a.test_vcf or sims["test"] / vcf}
    seconds, t0 = {}, time.perf_counter()
    c0 = time.process_time()
    data = {"train": rel.pedigree_pairs(dirs["train"], max_degree=a.max_degree, patch_sites=a.patch_sites,
                                        unrelated_per_related=2.0, seed=a.seed, counts=a.head_epochs > 0),
            "test": rel.pedigree_pairs(dirs["test"], max_degree=a.max_degree, patch_sites=a.patch_sites,
                                       unrelated_per_related=1.0, seed=a.seed + 100)}
    seconds["pairs"], t0 = time.perf_counter() - t0, time.perf_counter()
    segs, genome_cm, n_chrom, groups = {}, {}, {}, {}
    t_read = time.perf_counter()
    genomes = {s: read_genome(inputs[s], simulation_genetic_map(sims[s]), haplotypes=a.detector == "hap")
               for s in ("train", "test")}
    seconds["read"] = time.perf_counter() - t_read
    shared = set(genomes["train"].chromosomes) & set(genomes["test"].chromosomes)  # a partly phased input
    for s in ("train", "test"):
        genome = genomes.pop(s).only(shared)
        if genome.ids != data[s].ids:
            p.error(f"{inputs[s]}: its samples are not {dirs[s]}'s in order; give the same cohort's VCF")
        t_min = min(thresholds + [a.head_threshold])
        segs[s] = ibs0_free_segments(genome, data[s].pairs, min_cm=t_min) if a.detector == "ibs0" else \
            hap_ibd_segments(genome, data[s].pairs, min_cm=t_min, min_seed=a.min_seed, min_extend=a.min_extend,
                             min_markers=a.min_markers, min_maf=a.min_maf, max_gap=a.max_gap,
                             max_discord=a.max_discord)
        genome_cm[s], n_chrom[s] = float(genome.chromosome_cm.sum()), len(genome.chromosomes)
        groups[s] = _groups(sims[s], data[s].ids, data[s].pairs)
        del genome
    seconds["segments"], t0 = time.perf_counter() - t0, time.perf_counter()
    un_train = data["train"].y == a.max_degree + 1

    def background(t: float) -> dict[str, ersa.Background]:
        return {g: ersa.fit_background(segs["train"].subset(un_train & (groups["train"] == g)), threshold=t,
                                      components=a.background_components)
                for g in np.unique(groups["train"])}

    def model(s: str, t: float) -> ersa.Model:
        return ersa.Model(threshold=t, genome_cm=genome_cm[s], chromosomes=n_chrom[s],
                          background=ersa.per_pair(background(t), groups[s]), max_degree=a.max_degree, types=a.types)

    test = data["test"]
    truth = rel.degrees_of_classes(test.y, a.max_degree)
    train_truth = rel.degrees_of_classes(data["train"].y, a.max_degree)
    c = test.counts.sum(axis=1, dtype=np.int64)
    called = {"KING": king_threshold_degrees(kinship(c[:, 0], c[:, 1], c[:, 2], c[:, 3]))}
    if (a.workdir / a.setting / "model").is_dir():
        net, _ = rel.load(a.workdir / a.setting / "model")
        called = {"relate": rel.called_degrees(net, test, a.patch_sites), **called}
    calibrated, train_acc = {}, {}
    for t in thresholds:
        ll = {s: ersa.log_likelihoods(segs[s], model(s, t)) for s in ("train", "test")}
        lod_train = ll["train"][:, :-1].max(1) - ll["train"][:, -1]
        calibrated[t] = float(np.quantile(lod_train[un_train], a.specificity))
        called[f"ERSA{t:g}"] = ersa.call_degrees(ll["test"], min_lod=1.92)
        called[f"ERSA{t:g}cal"] = ersa.call_degrees(ll["test"], min_lod=calibrated[t])
        train_acc[t] = degree_accuracy(train_truth, ersa.call_degrees(ll["train"], min_lod=calibrated[t]))
    seconds["evaluate"], t0 = time.perf_counter() - t0, time.perf_counter()
    if a.head_epochs:
        fit = rel.Fit(epochs=a.head_epochs, seed=a.seed, unrelated_per_related=2.0)
        for name, extra in (("head", False), ("head+ERSA", True)):
            for s in ("train", "test"):
                data[s].extra = ersa.pair_features(segs[s], model(s, a.head_threshold)) if extra else None
            net = rel.fit_net(data["train"], max_degree=a.max_degree, patch_sites=a.patch_sites, fit=fit)
            called[name] = rel.called_degrees(net.eval(), data["test"], a.patch_sites)
            seconds[f"fit_{name}"], t0 = time.perf_counter() - t0, time.perf_counter()
    acc = {c: degree_accuracy(truth, v) for c, v in called.items()}
    rows = [{"degree": k, "pairs": acc["KING"][k]["n"],
             **{f"{c}_{m}": acc[c][k][m] for c in called for m in ("exact", "within1")}} for k in acc["KING"]]
    print("degree pairs " + " ".join(f"{c}(exact/±1)" for c in called))
    for r in rows:
        print(f"{r['degree']:>5} {r['pairs']:>6} " + " ".join(f"{r[f'{c}_exact']:.2f}/{r[f'{c}_within1']:.2f}"
                                                            for c in called))
    pop_rows = [{"populations": str(g), "degree": k, "pairs": v["n"], **{f"{c}_within1": acc_g[c][k]["within1"]
                                                                   for c in called if c.endswith("cal")}}
                for g in np.unique(groups["test"]) if "|" not in g
                for acc_g in [{c: degree_accuracy(truth[groups["test"] == g], x[groups["test"] == g])
                               for c, x in called.items()}]
                for k, v in acc_g["KING"].items() if k in ("6", "7", "8", "9", "UN")]
    for r in pop_rows:
        print("by population:", r)
    bg_rows = [{"threshold_cm": t, "populations": g, "unrelated_pairs": int((un_train & (groups["train"] == g)).sum()),
                "segments_per_pair": round(float(b.rate), 3), "mean_excess_cm": round(float(b.mean_excess), 3),
                "tail_weight": round(float(b.tail_weight), 4), "tail_excess_cm": round(float(b.tail_excess), 3)}
               for t in thresholds for g, b in background(t).items()]
    train_rows = [{"threshold_cm": t, "calibrated_lod": round(calibrated[t], 3),
                   **{f"within1_{k}": v["within1"] for k, v in train_acc[t].items()}} for t in thresholds]
    for r in train_rows:
        print("training families, calibrated:", r)
    _results.write(a.json, command="relate_ersa", results={f"degrees_{a.setting}": rows, "by_population": pop_rows,
                                                           "background": bg_rows,
                                                           "training_within1": train_rows},
                   info={"detector": a.detector, **({"min_seed_cm": a.min_seed, "min_extend_cm": a.min_extend,
                                                     "min_markers": a.min_markers, "min_maf": a.min_maf,
                                                     "max_gap_cm": a.max_gap, "max_discord": a.max_discord}
                                                    if a.detector == "hap" else {}),
                         "vcf_train": str(inputs["train"]), "vcf_test": str(inputs["test"]),
                         "chromosomes": sorted(shared, key=lambda c: (len(c), c)),
                         "background_components": a.background_components, "types": a.types, "specificity": a.specificity, "head_threshold_cm": a.head_threshold,
                         "genome_cm_test": round(genome_cm["test"], 1), "variants_test": test.variants,
                         "segments_test": int(segs["test"].count().sum()), "head_epochs": a.head_epochs,
                         "cpu_seconds": round(time.process_time() - c0, 1),
                         **{f"seconds_{k}": round(v, 1) for k, v in seconds.items()}})


if __name__ == "__main__":
    main()
