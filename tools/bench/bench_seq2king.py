"""Benchmark Seq2KING on a simulated multi-continent cohort: every layer and head, with and
without inversion (chosen on calibration sentences), against the KING-only and PCA
baselines, for the ``id``, ``features`` (kinship to anchors) and ``embedding`` (genome
embeddings of ``snpbag embed``, ``--embeddings``) token inputs side by side; training time.

Cohort: msprime under a stdpopsim ``HomSap`` model (``--demography``), ``--per-pop`` diploids
of each population, one chromosome of ``--length`` bp, written with snpbag's VCF writer;
kinship from ``snpbag king``. ``AmericanAdmixture_4B18`` (Browning et al. 2018): AFR, EUR,
ASIA and an admixed American group, one population per continent, so the population level
repeats the continent level and is left out of the results. ``AshkSub_7G19`` (Gladstein &
Hammer 2019): YRI (AFR), CHB (EAS), CEU (EUR), ME and J (Middle East), and the admixed
Ashkenazi WAJ and EAJ (Middle Eastern with 17 % European admixture): both levels are kept.

Usage::

    OMP_WAIT_POLICY=passive python tools/bench/bench_seq2king.py --workdir /tmp/bench_s2k \
        --per-pop 250 --length 20000000 --steps 600 --batch-size 16

``--reuse`` keeps the workdir's cohort and kinship (the simulation is seeded: same cohort);
``--tokens id,features,embedding --embeddings EMB.zarr`` adds genome-embedding tokens
(``snpbag embed --pool mean`` of the cohort's VCF); ``--set KEY=VALUE`` passes a setting
to every model (e.g. ``--set readout=positions``).

Floor of issue #16: the best layer's connectivity (a) >= 85.34 % with permutation p < 0.05
on evaluation sentences, orientation chosen on calibration sentences.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import _results

FLOOR = 85.34
#: stdpopsim HomSap model -> {population: continent (or admixed group)}, in sampling order
DEMOGRAPHIES = {
    "AmericanAdmixture_4B18": {"AFR": "AFR", "EUR": "EUR", "ASIA": "EAS", "ADMIX": "AMR"},
    "AshkSub_7G19": {"YRI": "AFR", "CHB": "EAS", "CEU": "EUR", "ME": "MEA", "J": "MEA", "WAJ": "ASJ", "EAJ": "ASJ"},
}


def simulate(workdir: Path, demography: str, per_pop: int, length: int, seed: int) -> tuple[Path, Path, int]:
    import msprime
    import stdpopsim

    from snpbag.simulate.coalescent import Haplotypes, write_vcf

    continent = DEMOGRAPHIES[demography]
    dem = stdpopsim.get_species("HomSap").get_demographic_model(demography).model
    ts = msprime.sim_ancestry(samples=[msprime.SampleSet(per_pop, population=p, ploidy=2) for p in continent],
                              demography=dem, sequence_length=length, recombination_rate=1.2e-8, random_seed=seed)
    ts = msprime.sim_mutations(ts, rate=1.29e-8, random_seed=seed)
    keep = [v.site.id for v in ts.variants() if len(v.site.mutations) == 1]
    ts = ts.delete_sites(np.setdiff1d(np.arange(ts.num_sites), keep))
    geno = ts.genotype_matrix().astype(np.uint8)
    pos = ts.tables.sites.position.astype(np.int64) + 1
    _, first = np.unique(pos, return_index=True)
    ref = np.array([s.ancestral_state for s in ts.sites()])
    alt = np.array([s.mutations[0].derived_state for s in ts.sites()])
    haps = Haplotypes("1", length, pos[first], ref[first], alt[first], geno[first])
    samples = [f"{p}_{i}" for p in continent for i in range(per_pop)]
    vcf = write_vcf(workdir / "cohort.vcf.gz", [haps], samples)
    labels = workdir / "labels.tsv"
    labels.write_text("sample\tpopulation\tcontinent\n" +
                      "".join(f"{s}\t{s.split('_')[0]}\t{continent[s.split('_')[0]]}\n" for s in samples))
    return Path(vcf), labels, len(first)


def snpbag(*args) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from snpbag.cli import main; main()", *map(str, args)], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--demography", choices=list(DEMOGRAPHIES), default="AmericanAdmixture_4B18")
    ap.add_argument("--per-pop", type=int, default=250)
    ap.add_argument("--length", type=int, default=20_000_000)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--tokens", default="id,features", help="id, features and/or embedding, comma-separated")
    ap.add_argument("--embeddings", type=Path, default=None, help="snpbag embed --pool mean output (tokens embedding)")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="Seq2KING setting for every model (repeatable)")
    ap.add_argument("--reuse", action="store_true", help="keep WORKDIR's cohort.vcf.gz, labels and cohort.kin0")
    ap.add_argument("--sentences", type=int, default=50)
    ap.add_argument("--permutations", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    _results.add_json_option(ap)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    kin0, labels = args.workdir / "cohort.kin0", args.workdir / "labels.tsv"
    if args.reuse and kin0.is_file():
        t_sim = t_king = None
        n_snps = sum(1 for line in gzip.open(args.workdir / "cohort.vcf.gz", "rt") if not line.startswith("#"))
    else:
        t0 = time.perf_counter()
        vcf, labels, n_snps = simulate(args.workdir, args.demography, args.per_pop, args.length, args.seed)
        t_sim = time.perf_counter() - t0
        t_king = snpbag("king", vcf, "--out", args.workdir / "cohort", "--threads", 2)
    groups = DEMOGRAPHIES[args.demography]
    # one population per continent: the population level repeats the continent level
    levels = ("continent", "population") if len(set(groups.values())) < len(groups) else ("continent",)
    rows, training, best = [], [], {}
    for tokens in args.tokens.split(","):
        model, rep = args.workdir / f"model_{tokens}", args.workdir / f"report_{tokens}"
        inputs = ["--tokens", tokens] if tokens != "embedding" else \
            ["--tokens", "features", "features=embedding", "--embeddings", args.embeddings]
        emb = inputs[-2:] if tokens == "embedding" else []
        t_train = snpbag("seq2king", "train", "--kinship", kin0, "--out", model, "--preset", "seq2king_paper",
                         *inputs, "--overwrite", f"steps={args.steps}", f"seed={args.seed}",
                         f"batch_size={args.batch_size}", *args.settings)
        t_report = snpbag("seq2king", "report", "--model", model, "--kinship", kin0, "--labels", labels, "--out", rep,
                          "--sentences", args.sentences, "--permutations", args.permutations, "--overwrite", *emb)
        meta = json.loads((model / "seq2king.json").read_text())
        training.append({"tokens": tokens, "steps": args.steps, "batch": args.batch_size, "train_s": meta["record"]["seconds"],
                         "train_command_s": round(t_train, 1), "report_s": round(t_report, 1),
                         "final_loss": meta["record"]["losses"][-1][1], "held_out_loss": meta["record"]["held_out_loss"],
                         "constant_loss": meta["record"]["held_out_constant_loss"]})
        for r in csv.DictReader(open(rep / "connectivity.csv")):
            if r["level"] not in levels or (r["source"] == "baseline" and tokens != args.tokens.split(",")[0]):
                continue
            rows.append({"level": r["level"], "tokens": tokens if r["source"] == "attention" else "-",
                         "layer": r["layer"], "head": r["head"],
                         "inverted": r["inverted"], "chosen": r["chosen"], "connectivity_%": r["connectivity"],
                         "p_permutation": r["p_permutation"], "connectivity_b": r["connectivity_b"],
                         "p_wilcoxon": r["p_wilcoxon"], "spearman_cal": r["spearman_calibration"]})
        chosen = [r for r in csv.DictReader(open(rep / "connectivity.csv"))
                  if r["level"] == "continent" and r["source"] == "attention" and r["chosen"] == "true"]
        top = max(chosen, key=lambda r: float(r["connectivity"] or "nan"))
        best[tokens] = {"layer": top["layer"], "inverted": top["inverted"], "connectivity": float(top["connectivity"]),
                        "p_permutation": float(top["p_permutation"]),
                        "floor_met": float(top["connectivity"]) >= FLOOR and float(top["p_permutation"]) < 0.05}
    king_base = {r["level"]: r["connectivity_%"] for r in rows if r["layer"] == "king_softmax"}
    info = {"demography": args.demography, "individuals": len(groups) * args.per_pop,
            "groups": ", ".join(f"{p} ({c})" for p, c in groups.items()), "snps": n_snps,
            "length_bp": args.length, "simulate_s": t_sim and round(t_sim, 1), "king_s": t_king and round(t_king, 1),
            "settings": " ".join(args.settings) or None, "embeddings": args.embeddings and str(args.embeddings),
            "king_baseline_connectivity_%": king_base,
            **{f"best_{t}": f"{b['layer']} (inverted {b['inverted']}): {b['connectivity']:.2f} %, p={b['p_permutation']:.3g}, "
                            f"floor met: {'yes' if b['floor_met'] else 'no'}" for t, b in best.items()}}
    path = _results.write(args.json, command="bench_seq2king", results={"connectivity": rows, "training": training},
                          info=info)
    print(json.dumps(info, indent=1))
    print(path)


if __name__ == "__main__":
    main()
