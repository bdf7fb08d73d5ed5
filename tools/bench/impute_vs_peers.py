"""Imputation of array data: snpbag vs Beagle 5.4, minimac4 and the allele-frequency baseline.

One run simulates (or reuses) a cohort, hides the non-array sites of held-out targets,
runs every tool on the same files and prints one markdown table with all of them side
by side: genotype concordance, non-reference discordance (NRD), dosage r² overall and per
MAF bin, per population, R2 calibration (mean estimated R2 against mean true per-site r² per
decile of estimated R2, for every tool that writes one), wall time and peak memory; and,
with ``--plots DIR``, PNGs of r² by MAF bin per tool and of the R2 calibration per density.

    python tools/bench/impute_vs_peers.py --workdir /tmp/impbench \
        --samples-per-pop 934 --length 10000000 --targets 200 --densities 0.2,0.05 \
        --error-rate 0.005 --snpbag-model runs/impute/model

Peers are the Debian packages ``beagle`` (5.4), ``minimac4`` (targets pre-phased with
Beagle, ``impute=false``) and ``bcftools``. snpbag is evaluated from a model directory
trained only on ``reference.vcf.gz`` (``--snpbag-model``); without it the snpbag rows are
left out and the table says so. For a ``model.retrieval=haplotypes`` model a further row
scores its retrieval input alone (the copying model, no encoder): what the encoder adds.
The ``ref`` row is ``snpbag impute --ref reference.vcf.gz``: the copying model straight from
the panel, no training.

Other cohorts: ``--demography admixed`` (an admixed population beside its three sources;
per-population rows show the admixed targets) and ``--recombination hotspots`` (a map with
hotspots, :mod:`snpbag.simulate.recmap`); the true map the simulation writes
(``genetic_map.map``) is given to every tool: Beagle ``map=``, minimac4 ``-m``,
``snpbag impute --ref --map`` (a ``--model`` directory carries its own). A biobank-scale panel
is the same script with ``--samples-per-pop 7000 --targets 1000 --length 1000000``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from cyvcf2 import VCF  # noqa: F401  (fail early without cyvcf2)

from snpbag import modeldir
from snpbag.io.bgzf import copy_contigs, index_vcf
from snpbag.eval import MAF_BINS
from snpbag.eval.compare import read_dosages, read_truth, render_calibration, render_groups, score
from snpbag.eval.compare import render as render_table
from snpbag.eval.metrics import af_baseline, maf_bin_labels, r2_calibration_gap

import _results
from _peers import array_sites, populations, reference_af, sh, simulate, unphased_input


def copying_dosages(model: Path, target_in: Path, keys, samples) -> np.ndarray:
    """Dosages of the haplotype-copying model on its own: the retrieval input of a
    ``model.retrieval=haplotypes`` model (its shipped panel), before the encoder — the
    ablation that says what the encoder adds. NaN off the model's vocabulary."""
    from snpbag.retrieval.haplotypes import HaplotypePanel

    panel, vocab = HaplotypePanel.load(model / modeldir.panel_file("haplotypes")), modeldir.load_vocab(model)
    akeys, adose, asamples = read_truth(target_in)
    order = [asamples.index(x) for x in samples]
    typed = vocab.index_of(*zip(*akeys))
    g = np.full((len(samples), vocab.n_sites), 4, dtype=np.int8)  # hidden unless typed
    ok = typed >= 0
    g[:, typed[ok]] = np.where(adose[ok][:, order] >= 0, adose[ok][:, order], 4).T
    gp = panel.votes(g, np.arange(vocab.n_sites))
    vidx = vocab.index_of(*zip(*keys))
    dos = np.full((len(keys), len(samples)), np.nan)
    dos[vidx >= 0] = (gp[:, vidx[vidx >= 0], 1] + 2 * gp[:, vidx[vidx >= 0], 2]).T
    return dos


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--samples-per-pop", type=int, default=934)
    ap.add_argument("--length", type=int, default=10_000_000)
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--densities", default="0.2,0.05")
    ap.add_argument("--error-rate", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--demography", default="ooa", help="snpbag simulate --demography (ooa, finescale, admixed)")
    ap.add_argument("--recombination", default="uniform",
                    help="snpbag simulate --recombination; hotspots: the true map goes to every tool")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--snpbag-model", type=Path, default=None, help="model dir, or a template with {density}")
    ap.add_argument("--tools", default="af,beagle,minimac4,snpbag,ref,copying",
                    help="copying: the haplotype-copying retrieval input of a haplotypes model alone; "
                         "ref: `snpbag impute --ref reference.vcf.gz` (no model; ref_conflicts / ref_composite / "
                         "ref_phased: with that --state-selection)")
    ap.add_argument("--plots", type=Path, default=None, help="write r2_by_maf_D.png and r2_calibration_D.png here")
    _results.add_json_option(ap)
    args = ap.parse_args(argv)
    tools = args.tools.split(",")
    densities = [float(d) for d in args.densities.split(",")]
    wd = args.workdir
    sim = simulate(wd / "sim", samples_per_pop=args.samples_per_pop, length=args.length, targets=args.targets,
                   seed=args.seed, array_fraction=max(densities), demography=args.demography,
                   recombination=args.recombination)
    gmap = sim / "genetic_map.map" if (sim / "genetic_map.map").is_file() else None
    map_args = {"beagle": [f"map={gmap}"], "minimac4": ["-m", str(gmap)], "ref": ["--map", str(gmap)]} if gmap else {}
    ref_vcf, truth_vcf = sim / "reference.vcf.gz", sim / "targets.vcf.gz"
    keys, truth, samples = read_truth(truth_vcf)
    pops = populations(sim)
    groups = np.array([pops[s] for s in samples])
    # reference-panel allele frequencies define the MAF bins and the baseline
    af = reference_af(ref_vcf, keys)
    maf = np.minimum(af, 1 - af)
    array_all = array_sites(sim)
    results = {"densities": {}}

    def scored(name: str, vcf: Path, timing: dict) -> dict:
        dos, est = read_dosages(vcf, samples, keys)
        return score(name, truth, dos, eval_sites=eval_sites, maf=maf, groups=groups, estimated_r2=est) | timing

    for density in densities:
        step = max(1, round(max(densities) / density))
        array = set(array_all[::step])
        dd = wd / (f"d{density:g}" + (f"_err{args.error_rate:g}" if args.error_rate else ""))  # inputs are cached
        dd.mkdir(parents=True, exist_ok=True)
        target_in = dd / "targets_array.vcf.gz"
        if not target_in.exists():
            unphased_input(truth_vcf, target_in, sites=array, error_rate=args.error_rate, seed=args.seed)
        # evaluated: sites not on the array that the reference panel has at MAF >= 1%
        on_array = np.array([k in array for k in keys])
        eval_sites = ~on_array & (maf >= MAF_BINS[0])
        res = {"n_array_sites": len(array), "n_eval_sites": int(eval_sites.sum()), "tools": []}
        if "af" in tools:
            _, d = af_baseline(np.nan_to_num(af), truth.shape[1])
            res["tools"].append(score("AF baseline", truth, d, eval_sites=eval_sites, maf=maf, groups=groups))
        if "beagle" in tools and shutil.which("beagle"):
            t = sh(["beagle", f"ref={ref_vcf}", f"gt={target_in}", f"out={dd / 'beagle'}", f"nthreads={args.threads}",
                    "gp=true", f"seed={args.seed}", *map_args.get("beagle", [])], log=dd / "beagle.time")
            copy_contigs(target_in, dd / "beagle.vcf.gz")  # Beagle writes none; htslib warns per record
            res["tools"].append(scored("Beagle 5.4", dd / "beagle.vcf.gz", t))
        if "minimac4" in tools and shutil.which("minimac4") and shutil.which("beagle"):
            msav = wd / "reference.msav"
            if not msav.exists():
                sh(["minimac4", "--compress-reference", str(ref_vcf)], log=wd / "msav.time", stdout=msav)
            tp = sh(["beagle", f"ref={ref_vcf}", f"gt={target_in}", f"out={dd / 'phased'}", "impute=false",
                     f"nthreads={args.threads}", f"seed={args.seed}", *map_args.get("beagle", [])],
                    log=dd / "phase.time")
            index_vcf(dd / "phased.vcf.gz", overwrite=True)  # minimac4 queries regions of its target
            ti = sh(["minimac4", str(msav), str(dd / "phased.vcf.gz"), "-f", "GT,DS,GP", "-O", "vcf.gz",
                     "-o", str(dd / "minimac.vcf.gz"), "-t", str(args.threads), *map_args.get("minimac4", [])],
                    log=dd / "minimac.time")
            t = {"wall_s": tp["wall_s"] + ti["wall_s"], "peak_mib": max(tp["peak_mib"], ti["peak_mib"]),
                 **{k: tp[k] + ti[k] for k in ("cpu_s", "user_s", "sys_s")},
                 "load_1min": max(tp["load_1min"], ti["load_1min"]), "cmd": f"{tp['cmd']} && {ti['cmd']}"}
            res["tools"].append(scored("Beagle phasing + minimac4", dd / "minimac.vcf.gz", t))
        if "snpbag" in tools and args.snpbag_model is not None:
            model = Path(str(args.snpbag_model).format(density=f"{density:g}"))
            out = dd / "snpbag.vcf.gz"
            for p in (out, Path(f"{out}.tbi"), dd / "snpbag.info.tsv", dd / "snpbag.excluded.tsv"):
                p.unlink(missing_ok=True)
            t = sh([sys.executable, "-m", "snpbag.cli", "impute", "--model", str(model), "--input", str(target_in),
                    "--output", str(out), "--batch-size", "32"], log=dd / "snpbag.time")
            res["tools"].append(scored(f"snpbag ({model.name})", out, t))
        for tool in [t for t in tools if t == "ref" or t.startswith("ref_")]:  # one command from the panel
            selection = tool[4:]  # ref_conflicts / ref_composite: with that --state-selection
            out = dd / f"snpbag_{tool}.vcf.gz"
            for p in (out, Path(f"{out}.tbi"), dd / f"snpbag_{tool}.info.tsv", dd / f"snpbag_{tool}.excluded.tsv"):
                p.unlink(missing_ok=True)
            t = sh([sys.executable, "-m", "snpbag.cli", "impute", "--ref", str(ref_vcf), "--input", str(target_in),
                    "--output", str(out), "--batch-size", "32", *map_args.get("ref", []),
                    *(["--state-selection", selection] if selection else [])], log=dd / f"snpbag_{tool}.time")
            label = ("" if not selection else ", phased + haploid HMM" if selection == "phased"
                     else f", {selection} states")
            res["tools"].append(scored(f"snpbag --ref (copying model{label}, no training)", out, t))
        model = Path(str(args.snpbag_model).format(density=f"{density:g}")) if args.snpbag_model else None
        if "copying" in tools and model is not None and (model / modeldir.panel_file("haplotypes")).is_file():
            t0 = time.perf_counter()
            dos = copying_dosages(model, target_in, keys, samples)
            res["tools"].append(score("copying model alone (snpbag retrieval input)", truth, dos,
                                      eval_sites=eval_sites, maf=maf, groups=groups)
                                | {"wall_s": time.perf_counter() - t0, "peak_mib": float("nan"), "cmd": "in-process"})
        results["densities"][f"{density:g}"] = res
        if args.plots is not None:
            plots(res, args.plots, f"{density:g}")
    print(render(results))
    _results.write(args.json, command="impute_vs_peers", argv=argv, results=tables(results), detail=results)
    return 0


#: Calibration bins with fewer sites are shown but not counted in the gap (their mean true
#: r² is mostly sampling noise of a few sites).
MIN_CALIBRATION_SITES = 30


def plots(res: dict, directory: Path, density: str) -> None:
    """r² by MAF bin per tool, and the R2 calibration of the tools that estimate R2."""
    from snpbag.eval.report import calibration_figure, series_figure

    directory.mkdir(parents=True, exist_ok=True)
    labels = maf_bin_labels()
    series = {}
    for t in res["tools"]:
        rows = {(r["group"], r["maf_bin"]): r for r in t["rows"]}
        series[t["tool"]] = [rows[("all", b)]["r2"] for b in labels]
    series_figure(directory / f"r2_by_maf_{density}.png", labels, series, xlabel="MAF bin (reference panel)",
                  ylabel="dosage r² (pooled per bin)", title=f"array density {density}")
    cal = {t["tool"]: t["calibration"] for t in res["tools"] if "calibration" in t}
    if cal:
        calibration_figure(directory / f"r2_calibration_{density}.png", cal, title=f"array density {density}")


def tables(results: dict) -> dict[str, list[dict]]:
    """Flat rows for tools/bench/make_tables.py: one per density and tool, overall and per
    population; the R2 calibration per decile, and its largest gap per tool."""
    imputation, populations, calibration, gaps = [], [], [], []
    for dens, res in results["densities"].items():
        for t in res["tools"]:
            rows = {(r["group"], r["maf_bin"]): r for r in t["rows"]}
            a = rows[("all", "all")]
            imputation.append({"density": dens, "tool": t["tool"], "concordance": a["concordance"], "nrd": a["nrd"],
                               "r2": a["r2"], **{f"r2 {b}": rows[("all", b)]["r2"] for b in maf_bin_labels()},
                               "wall_s": t.get("wall_s"), "cpu_s": t.get("cpu_s"), "user_s": t.get("user_s"),
                               "sys_s": t.get("sys_s"), "peak_mib": t.get("peak_mib"), "load": t.get("load_1min")})
            groups = sorted({g for g, _ in rows} - {"all"})
            populations.append({"density": dens, "tool": t["tool"], **{f"r2 {g}": rows[(g, "all")]["r2"] for g in groups},
                                **{f"concordance {g}": rows[(g, "all")]["concordance"] for g in groups}})
            if "calibration" not in t:
                continue
            calibration += [{"density": dens, "tool": t["tool"], "estimated R2": f"{c['lo']:.1f}-{c['hi']:.1f}",
                             "sites": c["n_sites"], "mean estimated": c["mean_estimated"], "mean true r²": c["mean_true"]}
                            for c in t["calibration"] if c["n_sites"]]
            gaps.append({"density": dens, "tool": t["tool"],
                         f"max gap (bins >= {MIN_CALIBRATION_SITES} sites)":
                             r2_calibration_gap(t["calibration"], min_sites=MIN_CALIBRATION_SITES),
                         "max gap (all bins)": r2_calibration_gap(t["calibration"])})
    return {"imputation": imputation, "per_population": populations, "r2_calibration": calibration,
            "r2_calibration_gap": gaps}


def render(results: dict) -> str:
    """The markdown tables for docs/benchmarks.md: all tools and densities side by side."""
    scored = [t | {"label": dens} for dens, res in results["densities"].items() for t in res["tools"]]
    parts = [render_table(scored, label="density")]
    for dens, res in results["densities"].items():
        parts += [f"\nPer population, density {dens} ({res['n_eval_sites']} evaluated sites, "
                  f"{res['n_array_sites']} on the array):\n", render_groups(res["tools"])]
        cal = render_calibration(res["tools"])
        if cal:
            parts += [f"\nR2 calibration, density {dens} (mean estimated → mean true r² per estimated-R2 decile):", cal]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
