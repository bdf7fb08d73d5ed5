"""``snpbag phase --report DIR``: what was phased, what passed through, how sure the phaser
is and how fast it ran (docs/phasing.md).

The page and figures are :mod:`snpbag.eval.report`'s, as for ``snpbag impute --report``
(:mod:`snpbag.inference.report`): records phased or passed through unphased by reason, the
distribution of the phase confidence (FORMAT/PP) of phased heterozygotes, heterozygotes per
phased sample, samples/s and peak memory. All of it is what the command already holds, so
the report costs a few seconds of plotting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snpbag.eval.report import Page, bar_figure, histogram_figure
from snpbag.fileio import atomic_output
from snpbag.inference.report import PAGE, peak_memory_mib


@dataclass
class PhaseFacts:
    """What ``snpbag phase`` measured about itself, for the page."""

    command: str
    input: str
    reference: str
    n_samples: int
    n_kept: int  # already phased samples kept as given
    n_filled: int
    seconds: float
    report: str


def write_phase_report(directory: str | Path, *, facts: PhaseFacts, passed: dict[str, int], n_phased: int,
                       pp: np.ndarray, hets: np.ndarray) -> Path:
    """Write ``DIR/index.html`` (figures embedded; the PNGs stay beside it). Returns the page.

    passed : reason -> records written unphased (``PhasedWrite.passed``); n_phased : records
    phased; pp : phase confidence of the phased heterozygotes; hets : heterozygotes per
    phased sample.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    page = Page("snpbag phase report")
    page.facts = {
        "command": facts.command, "input": facts.input, "reference": facts.reference,
        "samples": f"{facts.n_samples:,} ({facts.n_kept:,} already phased, kept)", "summary": facts.report,
        "speed": f"{facts.n_samples / facts.seconds:.2f} samples/s ({facts.seconds:.1f} s)" if facts.seconds > 0 else "–",
        "peak memory": f"{peak_memory_mib():,.0f} MiB (resident, whole process)",
    }
    page.heading("Records")
    counts = {"phased": n_phased, **{f"passed: {k.replace('_', ' ')}": v for k, v in passed.items()}}
    page.figure(bar_figure(directory / "records.png", counts, xlabel="records"),
                "Records phased, and records written unchanged and unphased by reason.")
    page.table(list(counts) + ["missing calls filled"], [[*counts.values(), facts.n_filled]])
    page.heading("Phase confidence")
    pp = np.asarray(pp, float)
    pp = pp[np.isfinite(pp)]
    page.figure(histogram_figure(directory / "pp.png", pp, bins=np.linspace(0.5, 1.0, 26),
                                 xlabel="PP: P(phase relative to previous het is right)"),
                "Phase confidence (FORMAT/PP) of every phased heterozygote.")
    page.table(["heterozygotes", "PP ≥ 0.9", "PP ≥ 0.99", "mean PP"],
               [[pp.size, int((pp >= 0.9).sum()), int((pp >= 0.99).sum()), float(pp.mean()) if pp.size else np.nan]])
    page.heading("Samples")
    page.figure(histogram_figure(directory / "hets_per_sample.png", hets, bins=min(30, max(len(hets), 1)),
                                 xlabel="heterozygous phased sites per sample"),
                "Heterozygotes per phased sample (a sample far below the rest: low coverage or a wrong file).")
    with atomic_output(directory / PAGE, overwrite=True) as tmp:
        page.write(tmp)
    return directory / PAGE
