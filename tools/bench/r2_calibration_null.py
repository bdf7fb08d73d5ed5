"""R2 calibration against what a perfectly calibrated model would show on the same targets.

The benchmark's R2 calibration (impute_vs_peers.py) compares, per decile of estimated R2, the
mean INFO/R2 (DR2) with the mean per-site r² over the targets. At a few hundred targets the
middle deciles hold rare sites with a few carriers each, where the per-site r² is biased
upwards from the population r² that DR2 estimates: a model whose genotype probabilities are
exactly right looks under-confident there. This script reads each tool's FORMAT/GP from an
impute_vs_peers work directory (run first; nothing is imputed here), draws the truth from
those probabilities (:func:`snpbag.eval.metrics.calibrated_r2_calibration`) and prints per
decile the observed mean true r² beside that expectation, and the largest gap a calibrated
model shows over deciles of >= 30 sites (mean and 90th percentile over draws).

    python tools/bench/r2_calibration_null.py --workdir /tmp/icb/b --densities 0.2,0.05

Beagle writes GP to two decimals, so its expectation uses rounded probabilities.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from cyvcf2 import VCF

from snpbag.eval import MAF_BINS
from snpbag.eval.compare import read_dosages, read_truth
from snpbag.eval.metrics import calibrated_r2_calibration, per_site_r2, r2_calibration, r2_calibration_gap

import _results
from _peers import array_sites, reference_af

#: The tools' output files in an impute_vs_peers work directory (those present are read).
OUTPUTS = {"Beagle 5.4": "beagle.vcf.gz", "snpbag --ref": "snpbag_ref.vcf.gz",
           "snpbag --ref --state-selection phased": "snpbag_ref_phased.vcf.gz"}
MIN_SITES = 30  # impute_vs_peers.MIN_CALIBRATION_SITES


def read_gp(path: Path, samples: list[str], keys) -> np.ndarray:
    """FORMAT/GP (len(keys), len(samples), 3) aligned to ``keys`` (NaN where absent)."""
    want = {k: i for i, k in enumerate(keys)}
    gp = np.full((len(keys), len(samples), 3), np.nan)
    vcf = VCF(str(path), samples=samples, lazy=True)
    order = [vcf.samples.index(s) for s in samples]
    for rec in vcf:
        i = want.get((rec.CHROM, rec.POS, rec.REF, rec.ALT[0] if rec.ALT else "."))
        if i is not None:
            gp[i] = rec.format("GP")[order, :3]
    vcf.close()
    return gp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, required=True, help="an impute_vs_peers.py work directory")
    ap.add_argument("--densities", default="0.2,0.05")
    ap.add_argument("--draws", type=int, default=100)
    _results.add_json_option(ap)
    args = ap.parse_args(argv)
    sim = args.workdir / "sim"
    keys, truth, samples = read_truth(sim / "targets.vcf.gz")
    af = reference_af(sim / "reference.vcf.gz", keys)
    maf = np.minimum(af, 1 - af)
    densities = [float(d) for d in args.densities.split(",")]
    array_all = array_sites(sim)
    deciles, gaps = [], []
    for density in densities:
        array = set(array_all[::max(1, round(max(densities) / density))])
        ev = np.array([k not in array for k in keys]) & (maf >= MAF_BINS[0])
        for tool, name in OUTPUTS.items():
            vcf = args.workdir / f"d{density:g}" / name
            if not vcf.is_file():
                continue
            dos, est = read_dosages(vcf, samples, keys)
            gp, est, t = read_gp(vcf, samples, keys)[ev], est[ev], truth[ev]
            seen = r2_calibration(est, per_site_r2(t, dos[ev]))
            want = calibrated_r2_calibration(gp, est, draws=args.draws)
            null = [r2_calibration_gap(calibrated_r2_calibration(gp, est, draws=1, seed=1 + s), min_sites=MIN_SITES)
                    for s in range(args.draws)]
            for s, w in zip(seen, want):
                if s["n_sites"]:
                    deciles.append({"density": density, "tool": tool, "estimated R2": f"{s['lo']:.1f}-{s['hi']:.1f}",
                                    "sites": s["n_sites"], "mean estimated": s["mean_estimated"],
                                    "mean true": s["mean_true"], "calibrated model's mean true": w["mean_true"],
                                    "true - calibrated": s["mean_true"] - w["mean_true"]})
            kept = [(s, w) for s, w in zip(seen, want) if s["n_sites"] >= MIN_SITES]
            gaps.append({"density": density, "tool": tool, "max gap (bins >= 30 sites)": r2_calibration_gap(seen, min_sites=MIN_SITES),
                         "calibrated model's max gap, mean": float(np.nanmean(null)),
                         "calibrated model's max gap, 90 %": float(np.nanquantile(null, 0.9)),
                         "max |true - calibrated| (bins >= 30 sites)": max(abs(s["mean_true"] - w["mean_true"]) for s, w in kept)})
    for rows in (deciles, gaps):
        cols = list(rows[0])
        print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        for r in rows:
            print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
        print()
    _results.write(args.json, command="r2_calibration_null", argv=argv,
                   results={"r2_calibration_vs_calibrated": deciles, "r2_calibration_null_gap": gaps})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
