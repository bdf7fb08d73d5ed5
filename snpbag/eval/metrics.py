"""Imputation and phasing metrics (numpy), defined as Beagle, IMPUTE and GATK papers use them.

Conventions: genotypes are ALT dosages 0/1/2 with any negative value meaning missing;
arrays are (sites, samples) unless stated; ``dosage`` is the estimated ALT dose in
[0, 2]; ``mask`` (same shape, bool) restricts a metric to chosen entries (e.g. the
genotypes hidden from the model). Missing truth is always excluded. Metrics that are
undefined (no entries, zero variance) are NaN, never 0, so tables do not flatter.
"""

from __future__ import annotations

import numpy as np

from snpbag.eval import MAF_BINS

__all__ = [
    "accuracy_by_class", "af_baseline", "concordance_table", "dosage_r2", "genotype_concordance",
    "hwe_genotype_probs", "imputation_table", "maf_bin_index", "maf_bin_labels", "non_reference_discordance",
    "per_site_r2", "phase_errors", "r2_calibration", "r2_calibration_gap", "r2_calibration_table",
    "switch_error_rate", "switch_errors",
]


def _entries(truth, pred, mask):
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
    ok = truth >= 0
    if np.issubdtype(pred.dtype, np.floating):
        ok &= np.isfinite(pred)
    else:
        ok &= pred >= 0
    if mask is not None:
        ok &= np.asarray(mask, bool)
    return truth[ok], pred[ok]


def concordance_table(truth, called, *, mask=None) -> np.ndarray:
    """3x3 counts: rows true genotype 0/1/2, columns called genotype 0/1/2."""
    t, c = _entries(truth, called, mask)
    return np.bincount(t.astype(np.int64) * 3 + c.astype(np.int64), minlength=9)[:9].reshape(3, 3)


def genotype_concordance(truth, called, *, mask=None) -> float:
    """Fraction of called genotypes equal to the truth."""
    tab = concordance_table(truth, called, mask=mask)
    n = tab.sum()
    return float(np.trace(tab) / n) if n else float("nan")


def non_reference_discordance(truth, called, *, mask=None) -> float:
    """NRD: discordant genotypes / all genotypes, both leaving out pairs hom-REF in truth and call.

    GATK's GenotypeConcordance definition; unlike concordance it is not inflated by the
    many easy hom-REF calls at rare variants.
    """
    tab = concordance_table(truth, called, mask=mask)
    n = tab.sum() - tab[0, 0]
    return float((n - tab[1, 1] - tab[2, 2]) / n) if n else float("nan")


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2:
        return float("nan")
    x = x.astype(np.float64) - x.mean()
    y = y.astype(np.float64) - y.mean()
    sxx, syy = float(x @ x), float(y @ y)
    if sxx <= 0 or syy <= 0:
        return float("nan")
    return float((x @ y) ** 2 / (sxx * syy))


def dosage_r2(truth, dosage, *, mask=None) -> float:
    """Squared Pearson correlation of estimated dose and true genotype, pooled over all entries.

    Pooling the genotypes of many sites gives the "aggregate r²" of imputation papers
    (IMPUTE2, Beagle, minimac) when applied to the sites of one MAF bin.
    """
    t, d = _entries(truth, dosage, mask)
    return _r2(t, d)


def per_site_r2(truth, dosage, *, mask=None) -> np.ndarray:
    """r² per site (row); NaN where truth or dosage is constant or fewer than 2 entries."""
    truth = np.asarray(truth)
    dosage = np.asarray(dosage, dtype=np.float64)
    ok = (truth >= 0) & np.isfinite(dosage)
    if mask is not None:
        ok &= np.asarray(mask, bool)
    n = ok.sum(1)
    t = np.where(ok, truth, 0).astype(np.float64)
    d = np.where(ok, dosage, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mt = t.sum(1) / n
        md = d.sum(1) / n
        tc = np.where(ok, t - mt[:, None], 0.0)
        dc = np.where(ok, d - md[:, None], 0.0)
        sxy, sxx, syy = (tc * dc).sum(1), (tc * tc).sum(1), (dc * dc).sum(1)
        r2 = sxy * sxy / (sxx * syy)
    r2[(n < 2) | (sxx <= 1e-12) | (syy <= 1e-12)] = np.nan
    return r2


def accuracy_by_class(truth, called, *, mask=None) -> np.ndarray:
    """Accuracy within each true genotype class: array (3,) for 0/0, 0/1, 1/1 (NaN if class absent)."""
    tab = concordance_table(truth, called, mask=mask)
    n = tab.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.diag(tab) / n, np.nan)


def maf_bin_index(maf, bins=MAF_BINS) -> np.ndarray:
    """Bin of each MAF: i for bins[i] <= maf < bins[i+1] (the last bin includes its upper edge); -1 outside."""
    maf = np.asarray(maf, dtype=np.float64)
    edges = np.asarray(bins, dtype=np.float64)
    idx = np.searchsorted(edges, maf, side="right") - 1
    idx[maf == edges[-1]] = len(edges) - 2
    idx[(maf < edges[0]) | (maf > edges[-1]) | ~np.isfinite(maf)] = -1
    return idx


def maf_bin_labels(bins=MAF_BINS) -> list[str]:
    """``(0.01, 0.02, 0.05)`` → ``["1-2%", "2-5%"]``."""
    return [f"{100 * a:g}-{100 * b:g}%" for a, b in zip(bins[:-1], bins[1:])]


def _af_from_truth(truth) -> np.ndarray:
    truth = np.asarray(truth)
    ok = truth >= 0
    n = ok.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, truth, 0).sum(1) / (2.0 * n), np.nan)


def imputation_table(truth, dosage, *, called=None, maf=None, groups=None, bins=MAF_BINS, mask=None) -> list[dict]:
    """Concordance, NRD and dosage r² overall, per MAF bin, per sample group, and per group x bin.

    Parameters
    ----------
    truth : (sites, samples) true genotypes.
    dosage : (sites, samples) estimated ALT dose.
    called : best-guess genotypes; default ``rint(dosage)``.
    maf : per-site minor allele frequency used for binning (e.g. from the reference
        panel); default: MAF of ``truth`` over all samples.
    groups : per-sample labels (e.g. population); None for no per-group rows.
    mask : entries to evaluate.

    Returns
    -------
    Rows ``{"group", "maf_bin", "n_sites", "n_genotypes", "concordance", "nrd", "r2", "mean_site_r2"}``;
    ``group``/``maf_bin`` are ``"all"`` for the pooled rows. ``r2`` is the aggregate
    (pooled) r², ``mean_site_r2`` the mean of per-site r² over sites where it is defined.
    """
    truth = np.asarray(truth)
    dosage = np.asarray(dosage, dtype=np.float64)
    called = np.rint(np.clip(dosage, 0, 2)).astype(np.int64) if called is None else np.asarray(called)
    if maf is None:
        af = _af_from_truth(truth)
        maf = np.minimum(af, 1 - af)
    bin_of = maf_bin_index(maf, bins)
    labels = maf_bin_labels(bins)
    base = np.ones(truth.shape, bool) if mask is None else np.asarray(mask, bool)
    group_sets = [("all", np.ones(truth.shape[1], bool))]
    if groups is not None:
        groups = np.asarray(groups)
        group_sets += [(str(g), groups == g) for g in dict.fromkeys(groups.tolist())]
    rows = []
    for gname, gmask in group_sets:
        for bname, smask in [("all", np.ones(truth.shape[0], bool))] + [
            (lab, bin_of == i) for i, lab in enumerate(labels)
        ]:
            m = base & smask[:, None] & gmask[None, :]
            t, c = truth[smask][:, gmask], called[smask][:, gmask]
            mm = m[smask][:, gmask]
            site_r2 = per_site_r2(t, dosage[smask][:, gmask], mask=mm)
            rows.append(dict(
                group=gname, maf_bin=bname, n_sites=int(smask.sum()),
                n_genotypes=int((mm & (t >= 0)).sum()),
                concordance=genotype_concordance(t, c, mask=mm),
                nrd=non_reference_discordance(t, c, mask=mm),
                r2=dosage_r2(truth, dosage, mask=m),
                mean_site_r2=float(np.nanmean(site_r2)) if np.isfinite(site_r2).any() else float("nan"),
            ))
    return rows


def r2_calibration(estimated, true, *, bins=None) -> list[dict]:
    """How well an estimated per-site R2 (INFO/R2) predicts the true per-site r².

    Sites are binned by estimated R2 (default edges 0, 0.1, ..., 1; the last bin
    includes 1); each row gives the bin, the number of sites with a defined true r² and
    the mean estimated and mean true r² of those sites.
    """
    est = np.asarray(estimated, dtype=np.float64)
    tru = np.asarray(true, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, 11) if bins is None else np.asarray(bins, dtype=np.float64)
    idx = maf_bin_index(est, edges)
    ok = np.isfinite(tru) & np.isfinite(est)
    rows = []
    for i in range(len(edges) - 1):
        s = (idx == i) & ok
        rows.append(dict(lo=float(edges[i]), hi=float(edges[i + 1]), n_sites=int(s.sum()),
                         mean_estimated=float(est[s].mean()) if s.any() else float("nan"),
                         mean_true=float(tru[s].mean()) if s.any() else float("nan")))
    return rows


def r2_calibration_table(truth, dosage, estimated, *, mask=None, bins=None) -> list[dict]:
    """The R2 calibration table of imputed sites: per decile of estimated R2 (bins of
    :func:`r2_calibration`), the number of sites, their mean estimated R2 and their mean
    true dosage r² (:func:`per_site_r2` of ``dosage`` against ``truth``, sites where it is
    undefined left out).

    Parameters
    ----------
    truth : (sites, samples) true genotypes.
    dosage : (sites, samples) estimated ALT dose (the DS the estimate describes).
    estimated : (sites,) the estimated R2 (INFO/R2, INFO/DR2).
    mask : entries to evaluate.
    """
    return r2_calibration(estimated, per_site_r2(truth, dosage, mask=mask), bins=bins)


def r2_calibration_gap(rows, *, min_sites: int = 1) -> float:
    """The largest |mean estimated − mean true| over calibration rows with at least
    ``min_sites`` sites (NaN if none): an estimate is calibrated to 0.05 when this is ≤ 0.05."""
    gaps = [abs(r["mean_estimated"] - r["mean_true"]) for r in rows if r["n_sites"] >= min_sites]
    return float(max(gaps)) if gaps else float("nan")


def calibrated_r2_calibration(gp, estimated, *, draws: int = 100, seed: int = 0, bins=None) -> list[dict]:
    """The R2 calibration table that genotype probabilities ``gp`` would show if they were
    exactly right: each draw takes every sample's true genotype from its own probabilities
    (independently), scores the dose ``P1 + 2·P2`` against it (:func:`r2_calibration_table`)
    and the rows average over ``draws`` (``n_sites``: the mean count, rounded).

    Why: the per-site r² of a few hundred samples at a site with a few carriers is biased
    upwards from the population r² that an estimate such as Beagle's DR2 targets, so a
    perfectly calibrated model shows under-confident middle deciles; comparing a table
    with this one separates that estimator bias from miscalibrated probabilities.

    Parameters
    ----------
    gp : (sites, samples, 3) genotype probabilities (rows are renormalised).
    estimated : (sites,) the estimated R2 reported for them.
    """
    p = np.asarray(gp, dtype=np.float64)
    p = p / p.sum(-1, keepdims=True)
    dose = p[..., 1] + 2 * p[..., 2]
    cum = np.cumsum(p, -1)[..., :2]
    rng = np.random.default_rng(seed)
    tables = []
    for _ in range(draws):
        truth = (rng.random(dose.shape)[..., None] > cum).sum(-1)
        tables.append(r2_calibration_table(truth, dose, estimated, bins=bins))
    rows = []
    for i, r in enumerate(tables[0]):
        n = np.array([t[i]["n_sites"] for t in tables], dtype=np.float64)
        true = np.array([t[i]["mean_true"] for t in tables])
        rows.append(dict(lo=r["lo"], hi=r["hi"], n_sites=int(round(n.mean())),
                         mean_estimated=float(np.nanmean([t[i]["mean_estimated"] for t in tables]))
                         if n.any() else float("nan"),
                         mean_true=float(np.average(true[n > 0], weights=n[n > 0])) if n.any() else float("nan")))
    return rows


def hwe_genotype_probs(af) -> np.ndarray:
    """Hardy-Weinberg genotype probabilities (..., 3) for ALT allele frequencies ``af``."""
    p = np.asarray(af, dtype=np.float64)
    return np.stack([(1 - p) ** 2, 2 * p * (1 - p), p * p], axis=-1)


def af_baseline(af, n_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The allele-frequency-only predictor every imputation method must beat.

    Returns ``(called, dosage)``: the most probable genotype under Hardy-Weinberg
    (0 below af = 1/3, 1 up to 2/3, else 2; exact ties go to the lower genotype) and the expected
    dose ``2 * af``. With ``n_samples`` both are broadcast to (sites, n_samples).
    """
    af = np.asarray(af, dtype=np.float64)
    called = np.argmax(hwe_genotype_probs(af), axis=-1)
    dosage = 2.0 * af
    if n_samples is not None:
        called = np.repeat(called[:, None], n_samples, axis=1)
        dosage = np.repeat(dosage[:, None], n_samples, axis=1)
    return called, dosage


def phase_errors(truth_haps, est_haps, *, scored=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample switches, flips and opportunities between true and estimated haplotypes.

    ``truth_haps`` and ``est_haps`` are (sites, samples, 2) alleles 0/1 (negative:
    missing), sites in genome order. Scored are the sites heterozygous in both (and not
    missing), further restricted by ``scored`` (sites, samples) bool when given; at each
    the estimate is "same" or "flipped" relative to the truth, and a switch is a change of
    that state between consecutive scored sites. Opportunities are (scored sites - 1),
    floored at 0 (the SHAPEIT/Beagle switch error rate is switches / opportunities).

    A flip is one scored site out of phase with both neighbours: two consecutive switches.
    Switches are paired into flips greedily from the left (a run of three switches is one
    flip and one switch), so ``switches - 2 * flips`` are the switches outside flips.
    """
    t = np.asarray(truth_haps)
    e = np.asarray(est_haps)
    if t.shape != e.shape or t.ndim != 3 or t.shape[2] != 2:
        raise ValueError(f"haplotypes must both be (sites, samples, 2); got {t.shape} and {e.shape}")
    het = ((t >= 0).all(-1) & (e >= 0).all(-1) & (t[..., 0] != t[..., 1]) & (e[..., 0] != e[..., 1]))
    if scored is not None:
        het &= np.asarray(scored, dtype=bool)
    switches, flips, opp = (np.zeros(t.shape[1], np.int64) for _ in range(3))
    for s in range(t.shape[1]):
        k = np.flatnonzero(het[:, s])
        if k.size < 2:
            continue
        same = t[k, s, 0] == e[k, s, 0]
        at = np.flatnonzero(same[1:] != same[:-1])  # switch j lies between scored sites j and j + 1
        switches[s], opp[s] = at.size, k.size - 1
        i = 0
        while i < at.size - 1:
            if at[i + 1] == at[i] + 1:
                flips[s] += 1
                i += 2
            else:
                i += 1
    return switches, flips, opp


def switch_errors(truth_haps, est_haps) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample switch errors and opportunities (flips count as two switches); see
    :func:`phase_errors`."""
    switches, _, opp = phase_errors(truth_haps, est_haps)
    return switches, opp


def switch_error_rate(truth_haps, est_haps) -> float:
    """Total switch errors / total opportunities over all samples (NaN if none)."""
    err, opp = switch_errors(truth_haps, est_haps)
    total = int(opp.sum())
    return float(err.sum() / total) if total else float("nan")
