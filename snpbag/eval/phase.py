"""Score phased VCFs (snpbag's or any peer's) against true haplotypes, side by side.

tools/bench/phase_vs_peers.py and the demo use this, so every phaser is read and scored
by the same code: snpbag's VCF reader (:class:`~snpbag.io.vcf.VcfReader`, biallelic SNPs
only; other records are not read), sites matched by (chrom, pos, REF, ALT), samples by name.

What is counted, per sample:

- **Scored sites**: sites of the evaluated set (the input's sites when the input is given,
  else the truth's) where the truth is a phased heterozygote and the estimate holds the
  same heterozygote written phased (``|``). The switch error rate (SER) is switches over
  consecutive scored sites / (scored sites - 1), flips (one site out of phase with both
  neighbours) are reported beside it; see :func:`snpbag.eval.metrics.phase_errors`.
- **Excluded truth heterozygotes**, by reason: ``absent`` (the estimate has no such site),
  ``missing`` (the estimate's call is missing or haploid), ``unphased`` (written with
  ``/``), ``genotype_differs`` (the estimate is homozygous there), ``truth_unphased``. An
  excluded site is skipped: the chain joins its neighbours, as SHAPEIT's and Beagle's
  papers score. A phaser that leaves sites unphased therefore shows it in these counts,
  not in its SER.
- **Genotypes changed** (with the input): called input genotypes whose unordered allele
  pair differs in the estimate, is missing there, or whose site the estimate dropped
  (``dropped`` counts those separately). Input calls that were missing and that the
  estimate filled are ``filled``, not changes. A phaser must change none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snpbag.eval.compare import BLOCK, SiteKey, site_keys
from snpbag.eval.metrics import phase_errors
from snpbag.io.vcf import VcfReader

#: Reasons a truth heterozygote is not scored, in report order.
EXCLUDED = ("absent", "missing", "unphased", "genotype_differs", "truth_unphased")


@dataclass
class Calls:
    """Biallelic SNP calls of one VCF aligned to a list of sites and samples."""

    keys: list[SiteKey]
    samples: list[str]
    genotype: np.ndarray  # int8 (sites, samples, 2): allele per haplotype, -1 missing or absent
    phased: np.ndarray  # bool (sites, samples)
    present: np.ndarray  # bool (sites,): the VCF has the site


def read_calls(path: str | Path, *, keys: Sequence[SiteKey] | None = None,
               samples: Sequence[str] | None = None) -> Calls:
    """Calls of ``path`` at ``keys`` (default: every biallelic SNP of the file, in file order)
    for ``samples`` (default: all, file order). Sites of ``keys`` the file lacks are missing
    calls with ``present`` False; sites of the file outside ``keys`` are not read.

    Raises
    ------
    SampleError : a requested sample is absent from the file.
    """
    reader = VcfReader(path, samples=None if samples is None else list(samples))
    order = None if samples is None else [reader.samples.index(s) for s in samples]  # the reader keeps file order
    names = list(reader.samples) if samples is None else list(samples)
    if keys is None:
        found, gts, phs = [], [], []
    else:
        want = {k: i for i, k in enumerate(keys)}
        gt = np.full((len(keys), len(names), 2), -1, np.int8)
        ph = np.zeros((len(keys), len(names)), bool)
        present = np.zeros(len(keys), bool)
    try:
        for b in reader.blocks(BLOCK):
            g, p = (b.genotype, b.phased) if order is None else (b.genotype[:, order], b.phased[:, order])
            g = np.where(g < 0, -1, g).astype(np.int8)  # a haploid call's ploidy fill reads as missing
            if keys is None:
                found += site_keys(reader, b)
                gts.append(g)
                phs.append(p)
                continue
            idx = np.array([want.get(k, -1) for k in site_keys(reader, b)], dtype=np.int64)
            hit = idx >= 0
            gt[idx[hit]], ph[idx[hit]], present[idx[hit]] = g[hit], p[hit], True
    finally:
        reader.close()
    if keys is None:
        gt = np.concatenate(gts) if gts else np.zeros((0, len(names), 2), np.int8)
        ph = np.concatenate(phs) if phs else np.zeros((0, len(names)), bool)
        return Calls(found, names, gt, ph, np.ones(len(found), bool))
    return Calls(list(keys), names, gt, ph, present)


def excluded_hets(truth: Calls, estimate: Calls) -> dict[str, np.ndarray]:
    """Per reason of :data:`EXCLUDED`, the (sites, samples) truth heterozygotes not scored;
    ``scored`` holds the rest. Both arguments are aligned to the same sites and samples."""
    t, e = truth.genotype, estimate.genotype
    het = (t >= 0).all(-1) & (t[..., 0] != t[..., 1])
    called = (e >= 0).all(-1)
    absent = het & ~estimate.present[:, None]
    missing = het & estimate.present[:, None] & ~called
    differs = het & called & (e[..., 0] == e[..., 1])
    truth_unphased = het & ~truth.phased & ~(absent | missing | differs)
    unphased = het & called & (e[..., 0] != e[..., 1]) & ~estimate.phased & truth.phased
    out = {"absent": absent, "missing": missing, "unphased": unphased, "genotype_differs": differs,
           "truth_unphased": truth_unphased}
    out["scored"] = het & ~np.logical_or.reduce([out[k] for k in EXCLUDED])
    return out


def genotype_changes(given: Calls, estimate: Calls) -> dict[str, int | float]:
    """Called input genotypes the estimate changed (unordered allele pair differs, now missing,
    or site dropped), the dropped ones among them, and missing input calls it filled."""
    gi, ge = given.genotype, estimate.genotype
    called = (gi >= 0).all(-1)
    est_called = (ge >= 0).all(-1)
    same = (np.sort(gi, -1) == np.sort(ge, -1)).all(-1) & est_called
    dropped = called & ~estimate.present[:, None]
    changed = called & ~same
    n = int(called.sum())
    return {"input_called": n, "changed": int(changed.sum()), "dropped": int(dropped.sum()),
            "filled": int((~called & est_called).sum()), "changed_share": float(changed.sum() / n) if n else np.nan}


def score_phasing(truth: str | Path, estimate: str | Path, *, given: str | Path | None = None,
                  groups: Mapping[str, str] | None = None) -> dict:
    """Switch errors, flips and genotype changes of ``estimate`` against ``truth``.

    ``given`` is the phaser's input VCF: its sites are the evaluated set (e.g. the array
    sites) and its samples the scored ones, and its calls are what must not change.
    Without it, every truth site and sample is evaluated. ``groups`` maps samples to a
    population; rows are pooled ("all") and per population.

    Returns ``{"rows": [...], "per_sample": {...}, "excluded": {...}, "genotypes": {...}}``
    (``genotypes`` only with ``given``).

    Raises
    ------
    SampleError : a scored sample is absent from the truth or the estimate.
    """
    inp = read_calls(given) if given is not None else None
    samples = inp.samples if inp is not None else _samples(truth)
    keys = inp.keys if inp is not None else None
    t = read_calls(truth, keys=keys, samples=samples)
    keys = t.keys
    e = read_calls(estimate, keys=keys, samples=samples)
    if inp is not None:
        t = _only_present(t)
    parts = excluded_hets(t, e)
    switches, flips, opp = phase_errors(t.genotype, e.genotype, scored=parts["scored"])
    per_sample = {"sample": samples, "switches": switches, "flips": flips, "opportunities": opp}
    labels = np.array([groups.get(s, "unlabelled") for s in samples]) if groups else None
    rows = [_row("all", switches, flips, opp, parts["scored"].sum(0))]
    if labels is not None:
        for g in sorted(set(labels.tolist())):
            m = labels == g
            rows.append(_row(g, switches[m], flips[m], opp[m], parts["scored"][:, m].sum(0)))
    out = {"rows": rows, "per_sample": per_sample, "excluded": {k: int(parts[k].sum()) for k in EXCLUDED}}
    if inp is not None:
        out["genotypes"] = genotype_changes(inp, e)
    return out


def _samples(path: str | Path) -> list[str]:
    reader = VcfReader(path)
    try:
        return list(reader.samples)
    finally:
        reader.close()


def _only_present(truth: Calls) -> Calls:
    """Truth sites outside the input's set become missing: they are not evaluated."""
    g = truth.genotype.copy()
    g[~truth.present] = -1
    return Calls(truth.keys, truth.samples, g, truth.phased, truth.present)


def _row(group: str, switches, flips, opp, scored) -> dict:
    n = int(opp.sum())
    s, f = int(switches.sum()), int(flips.sum())
    return {"group": group, "samples": int(len(opp)), "scored_hets": int(scored.sum()), "opportunities": n,
            "switches": s, "flips": f, "switches_outside_flips": s - 2 * f,
            "ser": s / n if n else float("nan"), "flip_rate": f / n if n else float("nan")}
