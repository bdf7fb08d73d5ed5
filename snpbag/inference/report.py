"""``--report DIR``: the page a user of ``snpbag impute`` looks at first (docs/imputation.md).

It shows what happened to the input and how good the result is likely to be: the input's
allele frequencies against the model's (swapped, flipped and excluded sites highlighted),
the exclusions by reason (:mod:`snpbag.inference.sitematch`), the typed sites' leave-one-out
concordance and empirical R2 (ER2), the estimated R2 of imputed sites by MAF bin, and
speed and memory. Everything comes from what the command already has — the matched
input, the model's site list, the info file — so a report costs a few seconds of
plotting. The page and figures are :mod:`snpbag.eval.report`'s, shared with other commands.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snpbag.eval.report import Page, af_figure, bar_figure, by_maf_figure
from snpbag.fileio import atomic_output
from snpbag.inference.vcfout import INFO_COLUMNS
from snpbag.io.chrom import chrom_key

#: File names inside the report directory.
PAGE = "index.html"


@dataclass
class RunFacts:
    """What the command measured about itself, for the page."""

    command: str
    model: str
    n_samples: int
    seconds: float
    site_report: str
    write_report: str
    loo_concordance: float | None = None


def peak_memory_mib() -> float:
    """This process's peak resident memory so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_info(path: str | Path) -> dict[str, np.ndarray]:
    """The info file's columns (:data:`~snpbag.inference.vcfout.INFO_COLUMNS`); ``.`` is NaN."""
    rows = [line.rstrip("\n").split("\t") for line in Path(path).read_text().splitlines()[1:]]
    cols = dict(zip(INFO_COLUMNS, zip(*rows))) if rows else {c: () for c in INFO_COLUMNS}
    out = {c: np.asarray(cols[c], dtype=object) for c in ("chrom", "id", "ref", "alt", "type")}
    out["pos"] = np.asarray(cols["pos"], dtype=np.int64)
    for c in ("af", "maf", "r2", "er2"):
        out[c] = np.array([np.nan if v == "." else float(v) for v in cols[c]], dtype=np.float64)
    return out


def _af_points(targets, vocab) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input AF, model AF, class) for matched typed sites and for excluded input SNPs that
    sit at a model position (strand-ambiguous, allele-mismatched), both as ALT frequencies
    of their own files' alleles."""
    site = targets.site_index[targets.typed_rows]
    c = targets.calls  # (T, N, 2), model orientation
    ok = c >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        in_af = np.where(ok, c, 0).sum((1, 2)) / ok.sum((1, 2))
    model_af = np.asarray(vocab.af, dtype=np.float64)[site]
    kind = np.where(targets.swapped, "swapped", np.where(targets.flipped, "flipped", "matched")).astype(object)
    rep = targets.report
    where = {}
    for i, (ch, p) in enumerate(zip(vocab_chrom_keys(vocab), np.asarray(vocab.position).tolist())):
        where.setdefault((ch, p), i)
    ex_in, ex_model = [], []
    for (name, pos, _, _, _), af in zip(rep.exclusions, rep.excluded_af):
        i = where.get((chrom_key(name), int(pos)))
        if i is not None and np.isfinite(af):
            ex_in.append(af)
            ex_model.append(float(vocab.af[i]))
    return (np.concatenate([in_af, ex_in]), np.concatenate([model_af, ex_model]),
            np.concatenate([kind, np.full(len(ex_in), "excluded", dtype=object)]))


def vocab_chrom_keys(vocab) -> list[str]:
    """The chromosome key (:func:`~snpbag.io.chrom.chrom_key`) of every vocabulary site."""
    out = []
    for t in range(vocab.n_tiles):
        sl = vocab.tile_sites(t)
        out += [chrom_key(vocab.tile_chrom_name(t))] * (sl.stop - sl.start)
    return out


def write_impute_report(directory: str | Path, *, targets, vocab, info_path: str | Path, facts: RunFacts) -> Path:
    """Write ``DIR/index.html`` (figures embedded; the PNGs stay beside it). Returns the page."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rep = targets.report
    info = read_info(info_path)
    imp, typed = info["type"] == "IMP", info["type"] == "TYPED"
    page = Page("snpbag impute report")
    page.facts = {
        "command": facts.command, "model": facts.model, "input": rep.path, "samples": f"{facts.n_samples:,}",
        "sites written": facts.write_report, "site matching": facts.site_report,
        "speed": f"{facts.n_samples / facts.seconds:.2f} samples/s ({facts.seconds:.1f} s)" if facts.seconds > 0 else "–",
        "peak memory": f"{peak_memory_mib():,.0f} MiB (resident, whole process)",
    }

    page.heading("Input sites against the model")
    in_af, model_af, kind = _af_points(targets, vocab)
    page.figure(af_figure(directory / "allele_frequencies.png", in_af, model_af, kind, reference="model"),
                "ALT allele frequency of every input SNP against the model's (the panel it was trained on), "
                "in the model's orientation for matched sites; excluded SNPs at a model position in their own.")
    reasons = {"strand-ambiguous": rep.ambiguous, "allele mismatch": rep.allele_mismatch,
               "not in model": rep.not_in_model,
               "outside model region": rep.outside_model_region + sum(rep.other_chroms.values()),
               "multi-allelic": rep.multiallelic, "not a SNP": rep.not_snp + rep.no_alt}
    page.figure(bar_figure(directory / "exclusions.png", reasons, xlabel="input records excluded"),
                "Input records not used, by reason (the .excluded.tsv lists the SNPs).")
    page.table(["matched", "allele-swapped", "strand-flipped", "excluded", "model sites typed"],
               [[rep.matched, rep.allele_swapped, rep.strand_flipped, sum(reasons.values()),
                 f"{100 * rep.coverage:.1f} %"]])

    page.heading("Typed sites, leave-one-out")
    if np.isfinite(info["er2"][typed]).any():
        conc = "–" if facts.loo_concordance is None else f"{facts.loo_concordance:.4f}"
        page.text(f"Each typed call hidden in turn and predicted from the others by the copying model: "
                  f"concordance {conc} over all typed genotypes; median ER2 "
                  f"{np.nanmedian(info['er2'][typed]):.3f} (r² of the calls and their leave-one-out doses).")
        page.figure(by_maf_figure(directory / "er2_by_maf.png", info["maf"][typed], {"ER2": info["er2"][typed]},
                                  ylabel="ER2 (typed sites)"), "Empirical R2 of typed sites by MAF bin.")
    else:
        page.text("No leave-one-out doses: this model has no haplotype-copying input (ER2 needs it).")

    page.heading("Imputed sites")
    page.figure(by_maf_figure(directory / "r2_by_maf.png", info["maf"][imp], {"R2": info["r2"][imp]},
                              ylabel="estimated R2 (INFO/R2)"),
                "Estimated R2 of imputed sites by MAF bin (MAF of the imputed doses).")
    r2 = info["r2"][imp]
    page.table(["R2 ≥ 0.3", "R2 ≥ 0.8", "imputed sites"],
               [[int((r2 >= 0.3).sum()), int((r2 >= 0.8).sum()), int(imp.sum())]])
    with atomic_output(directory / PAGE, overwrite=True) as tmp:
        page.write(tmp)
    return directory / PAGE
