"""Imputation of array data: snpbag vs Beagle 5.4, minimac4 and the allele-frequency baseline.

One run simulates (or reuses) a cohort, hides the non-array sites of held-out targets,
runs every tool on the same files and prints one markdown table with all of them side
by side: genotype concordance, non-reference discordance (NRD), dosage r² overall and per
MAF bin, per population, R2 calibration, wall time and peak memory.

    python tools/bench/impute_vs_peers.py --workdir /tmp/impbench \
        --samples-per-pop 934 --length 10000000 --targets 200 --densities 0.2,0.05 \
        --error-rate 0.005 --snpbag-model runs/impute/model

Peers are the Debian packages ``beagle`` (5.4), ``minimac4`` (targets pre-phased with
Beagle, ``impute=false``) and ``bcftools``. snpbag is evaluated from a model directory
trained only on ``reference.vcf.gz`` (``--snpbag-model``); without it the snpbag rows are
left out and the table says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from cyvcf2 import VCF

from snpbag.data.bgzf import write_vcf_bgzf
from snpbag.eval import MAF_BINS
from snpbag.eval.metrics import af_baseline, imputation_table, per_site_r2, r2_calibration


def sh(cmd: list[str], *, log: Path, stdout: Path | None = None) -> dict:
    """Run a command under /usr/bin/time -v; return wall seconds and peak RSS (MiB)."""
    full = ["/usr/bin/time", "-v"] + cmd if Path("/usr/bin/time").exists() else cmd
    t0 = time.perf_counter()
    with open(log, "w") as err, (open(stdout, "wb") if stdout else open(log.with_suffix(".out"), "wb")) as out:
        rc = subprocess.run(full, stdout=out, stderr=err).returncode
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    if rc:
        raise SystemExit(f"failed ({rc}): {shlex.join(cmd)}; see {log}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"wall_s": wall, "peak_mib": int(m.group(1)) / 1024 if m else float("nan"), "cmd": shlex.join(cmd)}


def read_dosage(path: Path, samples: list[str], field: str = "DS") -> tuple[dict, np.ndarray, np.ndarray]:
    """Map (chrom, pos, ref, alt) → row; dosages (sites, samples); INFO R2/DR2 per site."""
    vcf = VCF(str(path), samples=samples, lazy=True, threads=1)
    order = [vcf.samples.index(s) for s in samples]
    keys, rows, r2 = {}, [], []
    for v in vcf:
        if len(v.ALT) != 1:
            continue
        ds = v.format(field)
        if ds is None:
            gt = v.genotype.array()[:, :2].astype(float)
            d = np.where((gt < 0).any(1), np.nan, gt.sum(1))
        else:
            d = ds[:, 0].astype(float)
        keys[(v.CHROM, v.POS, v.REF, v.ALT[0])] = len(rows)
        rows.append(d[order])
        est = v.INFO.get("R2", v.INFO.get("DR2"))
        r2.append(float(est) if est is not None else np.nan)
    vcf.close()
    return keys, np.array(rows), np.array(r2)


def read_truth(path: Path) -> tuple[list, np.ndarray, list[str]]:
    vcf = VCF(str(path), threads=1)
    samples = list(vcf.samples)
    keys, rows = [], []
    for v in vcf:
        g = v.genotype.array()[:, :2]
        rows.append(np.where((g < 0).any(1), -1, g.sum(1)).astype(np.int8))
        keys.append((v.CHROM, v.POS, v.REF, v.ALT[0]))
    return keys, np.array(rows), samples


def make_array_input(truth_vcf: Path, sites: set, out: Path, *, error_rate: float, seed: int) -> None:
    """Targets restricted to the array sites, with genotype errors at ``error_rate``."""
    rng = np.random.default_rng(seed)
    vcf = VCF(str(truth_vcf), threads=1)
    header = vcf.raw_header

    def lines():
        yield header
        for v in vcf:
            if (v.CHROM, v.POS, v.REF, v.ALT[0]) not in sites:
                continue
            g = v.genotype.array()[:, :2].copy()
            err = rng.random(len(g)) < error_rate
            # an error replaces the genotype by one of the two others, unphased as arrays are
            dose = g.sum(1)
            new = (dose + rng.integers(1, 3, len(g))) % 3
            g[err] = np.stack([new[err] >= 1, new[err] == 2], 1).astype(g.dtype)
            gts = [f"{a}|{b}" for a, b in g]
            fields = str(v).rstrip("\n").split("\t")[:9]
            fields[8] = "GT"
            yield "\t".join(fields + gts) + "\n"

    write_vcf_bgzf(lines(), out)


def evaluate(name: str, truth: np.ndarray, dosage: np.ndarray, mask_sites: np.ndarray, maf: np.ndarray,
             groups: np.ndarray, est_r2: np.ndarray | None) -> dict:
    mask = np.broadcast_to(mask_sites[:, None], truth.shape)
    rows = imputation_table(truth, dosage, maf=maf, groups=groups, mask=mask)
    out = {"tool": name, "rows": rows}
    if est_r2 is not None and np.isfinite(est_r2).any():
        true_r2 = per_site_r2(truth[mask_sites], dosage[mask_sites])
        out["calibration"] = r2_calibration(est_r2[mask_sites], true_r2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--samples-per-pop", type=int, default=934)
    ap.add_argument("--length", type=int, default=10_000_000)
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--densities", default="0.2,0.05")
    ap.add_argument("--error-rate", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--snpbag-model", type=Path, default=None, help="model dir, or a template with {density}")
    ap.add_argument("--tools", default="af,beagle,minimac4,snpbag")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    tools = args.tools.split(",")
    densities = [float(d) for d in args.densities.split(",")]
    wd = args.workdir
    sim = wd / "sim"
    if not (sim / "reference.vcf.gz").exists():
        cmd = [sys.executable, "-m", "snpbag.cli", "simulate", str(sim), "--samples-per-pop",
               str(args.samples_per_pop), "--length", str(args.length), "--split-targets", str(args.targets),
               "--array-fraction", str(max(densities)), "--seed", str(args.seed)]
        wd.mkdir(parents=True, exist_ok=True)
        print("simulating:", shlex.join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
    ref_vcf, truth_vcf = sim / "reference.vcf.gz", sim / "targets.vcf.gz"
    keys, truth, samples = read_truth(truth_vcf)
    pops = dict(line.split("\t")[:2] for line in (sim / "samples.tsv").read_text().splitlines()[1:])
    groups = np.array([pops[s] for s in samples])
    # reference-panel allele frequencies define the MAF bins and the baseline
    rkeys, rdos, _ = read_dosage(ref_vcf, list(VCF(str(ref_vcf)).samples), field="__GT__")
    ref_af = np.nanmean(rdos, axis=1) / 2
    af = np.array([ref_af[rkeys[k]] if k in rkeys else np.nan for k in keys])
    maf = np.minimum(af, 1 - af)
    array_all = [tuple(line.split("\t")[:4]) for line in (sim / "array_sites.tsv").read_text().splitlines()[1:]]
    array_all = [(c, int(p), r, a) for c, p, r, a in array_all]
    results = {"date": dt.date.today().isoformat(), "machine": platform.node(), "args": vars(args) | {
        "workdir": str(wd), "snpbag_model": str(args.snpbag_model)}, "densities": {}}
    for density in densities:
        step = max(1, round(max(densities) / density))
        array = set(array_all[::step])
        dd = wd / f"d{density:g}"
        dd.mkdir(parents=True, exist_ok=True)
        target_in = dd / "targets_array.vcf.gz"
        if not target_in.exists():
            make_array_input(truth_vcf, array, target_in, error_rate=args.error_rate, seed=args.seed)
        # evaluated: sites not on the array that the reference panel has at MAF >= 1%
        on_array = np.array([k in array for k in keys])
        eval_sites = ~on_array & (maf >= MAF_BINS[0])
        res = {"n_array_sites": len(array), "n_eval_sites": int(eval_sites.sum()), "tools": []}
        if "af" in tools:
            _, d = af_baseline(np.nan_to_num(af), truth.shape[1])
            res["tools"].append(evaluate("AF baseline", truth, d, eval_sites, maf, groups, None) | {"wall_s": 0})
        if "beagle" in tools and shutil.which("beagle"):
            t = sh(["beagle", f"ref={ref_vcf}", f"gt={target_in}", f"out={dd / 'beagle'}", f"nthreads={args.threads}",
                    "gp=true", f"seed={args.seed}"], log=dd / "beagle.time")
            k, d, r2 = read_dosage(dd / "beagle.vcf.gz", samples)
            idx = np.array([k.get(x, -1) for x in keys])
            dos = np.where(idx[:, None] >= 0, d[np.maximum(idx, 0)], np.nan)
            r2e = np.where(idx >= 0, r2[np.maximum(idx, 0)], np.nan)
            res["tools"].append(evaluate("Beagle 5.4", truth, dos, eval_sites, maf, groups, r2e) | t)
        if "minimac4" in tools and shutil.which("minimac4") and shutil.which("beagle"):
            msav = wd / "reference.msav"
            t0 = {"wall_s": 0.0, "peak_mib": 0.0}
            if not msav.exists():
                t0 = sh(["minimac4", "--compress-reference", str(ref_vcf)], log=wd / "msav.time", stdout=msav)
            tp = sh(["beagle", f"ref={ref_vcf}", f"gt={target_in}", f"out={dd / 'phased'}", "impute=false",
                     f"nthreads={args.threads}", f"seed={args.seed}"], log=dd / "phase.time")
            ti = sh(["minimac4", str(msav), str(dd / "phased.vcf.gz"), "-f", "GT,DS,GP", "-O", "vcf.gz",
                     "-o", str(dd / "minimac.vcf.gz"), "-t", str(args.threads)], log=dd / "minimac.time")
            k, d, r2 = read_dosage(dd / "minimac.vcf.gz", samples)
            idx = np.array([k.get(x, -1) for x in keys])
            dos = np.where(idx[:, None] >= 0, d[np.maximum(idx, 0)], np.nan)
            r2e = np.where(idx >= 0, r2[np.maximum(idx, 0)], np.nan)
            t = {"wall_s": tp["wall_s"] + ti["wall_s"], "peak_mib": max(tp["peak_mib"], ti["peak_mib"]),
                 "cmd": f"{tp['cmd']} && {ti['cmd']}", "ref_compress_s": t0["wall_s"]}
            res["tools"].append(evaluate("Beagle phasing + minimac4", truth, dos, eval_sites, maf, groups, r2e) | t)
        if "snpbag" in tools and args.snpbag_model is not None:
            model = Path(str(args.snpbag_model).format(density=f"{density:g}"))
            out = dd / "snpbag.vcf.gz"
            out.unlink(missing_ok=True)
            Path(str(out) + ".tbi").unlink(missing_ok=True)
            t = sh([sys.executable, "-m", "snpbag.cli", "impute", "--model", str(model), "--input", str(target_in),
                    "--output", str(out), "--batch-size", "32"], log=dd / "snpbag.time")
            k, d, r2 = read_dosage(out, samples)
            idx = np.array([k.get(x, -1) for x in keys])
            dos = np.where(idx[:, None] >= 0, d[np.maximum(idx, 0)], np.nan)
            r2e = np.where(idx >= 0, r2[np.maximum(idx, 0)], np.nan)
            res["tools"].append(evaluate(f"snpbag ({model.name})", truth, dos, eval_sites, maf, groups, r2e) | t)
        results["densities"][f"{density:g}"] = res
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return 0


def _f(x: float, nd: int = 4) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def render(results: dict) -> str:
    """The markdown table for docs/benchmarks.md: one row per tool and density."""
    from snpbag.eval.metrics import maf_bin_labels

    bins = maf_bin_labels()
    lines = ["| density | tool | concordance | NRD | r² | " + " | ".join(f"r² {b}" for b in bins)
             + " | wall s | peak MiB |", "|" + "---|" * (7 + len(bins))]
    pops = []
    for dens, res in results["densities"].items():
        for t in res["tools"]:
            rows = {(r["group"], r["maf_bin"]): r for r in t["rows"]}
            a = rows[("all", "all")]
            lines.append(f"| {dens} | {t['tool']} | {_f(a['concordance'])} | {_f(a['nrd'])} | {_f(a['r2'])} | "
                         + " | ".join(_f(rows[("all", b)]["r2"]) for b in bins)
                         + f" | {_f(t.get('wall_s', float('nan')), 1)} | {_f(t.get('peak_mib', float('nan')), 0)} |")
            pops = sorted({g for g, _ in rows if g != "all"})
    out = "\n".join(lines)
    if pops:
        pl = ["", "| density | tool | " + " | ".join(f"r² {p}" for p in pops) + " | "
              + " | ".join(f"conc. {p}" for p in pops) + " |", "|" + "---|" * (2 + 2 * len(pops))]
        for dens, res in results["densities"].items():
            for t in res["tools"]:
                rows = {(r["group"], r["maf_bin"]): r for r in t["rows"]}
                pl.append(f"| {dens} | {t['tool']} | " + " | ".join(_f(rows[(p, "all")]["r2"]) for p in pops)
                          + " | " + " | ".join(_f(rows[(p, "all")]["concordance"]) for p in pops) + " |")
        out += "\n".join(pl)
    cal = ["", "R2 calibration (mean estimated R2 → mean true r² per estimated-R2 decile, sites with ≥1 site):"]
    for dens, res in results["densities"].items():
        for t in res["tools"]:
            if "calibration" in t:
                cells = [f"{c['mean_estimated']:.2f}→{c['mean_true']:.2f}" for c in t["calibration"] if c["n_sites"]]
                cal.append(f"- {dens} {t['tool']}: " + ", ".join(cells))
    return out + "\n" + "\n".join(cal)


if __name__ == "__main__":
    sys.exit(main())
