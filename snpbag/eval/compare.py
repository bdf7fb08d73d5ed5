"""Score imputed VCFs (snpbag's or any peer's) against true genotypes, side by side.

The demo and tools/bench/impute_vs_peers.py both use this, so every tool is read and
scored by the same code, read by snpbag's VCF reader (:class:`~snpbag.io.vcf.VcfReader`,
biallelic SNPs): dosages from FORMAT/DS (GT where a record has no DS), estimated quality
from INFO/R2 (minimac4, snpbag) or INFO/DR2 (Beagle), matched to the truth by
(chrom, pos, ref, alt).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from snpbag.eval import MAF_BINS
from snpbag.eval.metrics import imputation_table, maf_bin_labels, per_site_r2, r2_calibration
from snpbag.io.vcf import VcfReader

SiteKey = tuple[str, int, str, str]
#: Records read per block.
BLOCK = 4096


def read_truth(path: str | Path) -> tuple[list[SiteKey], np.ndarray, list[str]]:
    """Biallelic SNPs of a truth VCF: keys, ALT dosages (sites, samples) with -1 missing, samples."""
    reader = VcfReader(path)
    keys, rows = [], []
    try:
        for b in reader.blocks(BLOCK):
            keys += site_keys(reader, b)
            g = b.genotype
            rows.append(np.where((g < 0).any(-1), -1, g.sum(-1)).astype(np.int8))  # a haploid call is missing
    finally:
        reader.close()
    truth = np.concatenate(rows) if rows else np.zeros((0, reader.n_samples), np.int8)
    return keys, truth, list(reader.samples)


def read_dosages(path: str | Path, samples: Sequence[str], keys: Sequence[SiteKey]) -> tuple[np.ndarray, np.ndarray]:
    """Dosages (len(keys), len(samples)) aligned to ``keys`` (NaN where the VCF lacks a site)
    and the VCF's estimated R2/DR2 per key (NaN where absent)."""
    want = {k: i for i, k in enumerate(keys)}
    dos = np.full((len(keys), len(samples)), np.nan)
    est = np.full(len(keys), np.nan)
    reader = VcfReader(path, samples=list(samples))
    order = [reader.samples.index(s) for s in samples]  # the reader keeps file order
    try:
        for b in reader.blocks(BLOCK, dosage=True, info=("R2", "DR2")):
            idx = np.array([want.get(k, -1) for k in site_keys(reader, b)], dtype=np.int64)
            hit = idx >= 0
            dos[idx[hit]] = b.dosage[hit][:, order]
            r2, dr2 = b.info["R2"], b.info["DR2"]
            est[idx[hit]] = np.where(np.isnan(r2), dr2, r2)[hit]
    finally:
        reader.close()
    return dos, est


def site_keys(reader: VcfReader, b) -> list[SiteKey]:
    """(chrom, pos, REF, ALT) of each record of block ``b``: how every scorer matches sites."""
    names = [reader.contigs[c] for c in b.contig.tolist()]
    return list(zip(names, b.position.tolist(), b.allele[:, 0].tolist(), b.allele[:, 1].tolist()))


def score(name: str, truth: np.ndarray, dosage: np.ndarray, *, eval_sites: np.ndarray, maf: np.ndarray,
          groups: np.ndarray | None = None, estimated_r2: np.ndarray | None = None) -> dict:
    """Rows of :func:`imputation_table` on ``eval_sites`` plus R2 calibration when estimates exist."""
    mask = np.broadcast_to(eval_sites[:, None], truth.shape)
    out = {"tool": name, "rows": imputation_table(truth, dosage, maf=maf, groups=groups, mask=mask)}
    if estimated_r2 is not None and np.isfinite(estimated_r2[eval_sites]).any():
        true_r2 = per_site_r2(truth[eval_sites], dosage[eval_sites])
        out["calibration"] = r2_calibration(estimated_r2[eval_sites], true_r2)
    return out


def _f(x, nd: int = 4) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def render(scored: Sequence[dict], *, label: str = "", bins=MAF_BINS) -> str:
    """A markdown table: concordance, NRD, r² overall and per MAF bin, wall time and memory."""
    labels = maf_bin_labels(bins)
    head = ("| " + (f"{label} | " if label else "") + "tool | concordance | NRD | r² | "
            + " | ".join(f"r² {b}" for b in labels) + " | wall s | peak MiB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for t in scored:
        rows = {(r["group"], r["maf_bin"]): r for r in t["rows"]}
        a = rows[("all", "all")]
        lines.append("| " + (f"{t.get('label', '')} | " if label else "") + f"{t['tool']} | {_f(a['concordance'])} | "
                     f"{_f(a['nrd'])} | {_f(a['r2'])} | " + " | ".join(_f(rows[("all", b)]["r2"]) for b in labels)
                     + f" | {_f(t.get('wall_s', np.nan), 1)} | {_f(t.get('peak_mib', np.nan), 0)} |")
    return "\n".join(lines)


def render_groups(scored: Sequence[dict]) -> str:
    """Per-population dosage r² and concordance, one row per tool."""
    groups = sorted({r["group"] for t in scored for r in t["rows"]} - {"all"})
    if not groups:
        return ""
    lines = ["| tool | " + " | ".join(f"r² {g}" for g in groups) + " | " + " | ".join(f"conc. {g}" for g in groups) + " |",
             "|" + "---|" * (1 + 2 * len(groups))]
    for t in scored:
        rows = {(r["group"], r["maf_bin"]): r for r in t["rows"]}
        lines.append(f"| {t['tool']} | " + " | ".join(_f(rows[(g, 'all')]["r2"]) for g in groups) + " | "
                     + " | ".join(_f(rows[(g, 'all')]["concordance"]) for g in groups) + " |")
    return "\n".join(lines)


def render_calibration(scored: Sequence[dict]) -> str:
    out = []
    for t in scored:
        if "calibration" in t:
            cells = [f"{c['mean_estimated']:.2f}→{c['mean_true']:.2f} (n={c['n_sites']})"
                     for c in t["calibration"] if c["n_sites"]]
            out.append(f"- {t['tool']}: " + ", ".join(cells))
    return "\n".join(out)
