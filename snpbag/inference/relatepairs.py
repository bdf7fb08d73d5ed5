"""Which pairs ``snpbag relate`` scores: a pairs file, all pairs, or a prefilter's candidates.

Every pair the caller scores costs its KING counts per patch and, with segments, the per-pair
detector over every site; a cohort of n samples has n(n−1)/2 pairs (4.5 M at 3,000). The
prefilters (``--prefilter``):

``segments``
    the pairs sharing a haplotype seed of at least ``--seed-cm`` cM (:mod:`snpbag.kinship.seeds`:
    one PBWT pass per chromosome over all haplotypes, hap-IBD's seed step), plus every pair whose
    exact KING-robust kinship (``snpbag king``) is at least ``--min-kinship`` (default KING's
    degree-3 cut 2^-4.5), so a close relative is never lost to a phase error. With ``--seed-cm`` at
    most the detector's own seed (:data:`snpbag.kinship.hapibd.MIN_SEED`, 2 cM) a dropped pair has no
    haplotype segment, so the caller would have called it unrelated: nothing is missed but at
    missing alleles (the scan leaves those sites out). A longer seed drops fewer unrelated pairs
    and misses the relatives whose segments of at least t cM all lack a discordance-free run that
    long (docs/relatedness.md, "Which pairs").
``king``
    the pairs whose KING kinship is at least ``--min-kinship``: it misses every relative below the
    cut, which is most of them from degree 4 on (KING's expectation at degree d is 2^-(d+1)).
``none``
    every pair.

``auto`` (the default) is ``king`` when ``--min-kinship`` is given alone, ``segments`` for a model
with segments on phased input, else ``none``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snpbag.errors import InputError
from snpbag.io.table import table_rows
from snpbag.kinship.degrees import KING_CUTOFFS
from snpbag.kinship.hapibd import MIN_SEED
from snpbag.kinship.king import king as king_table
from snpbag.kinship.seeds import seed_pairs
from snpbag.kinship.segments import Genome

log = logging.getLogger(__name__)

#: ``--prefilter`` choices.
PREFILTERS = ("auto", "segments", "king", "none")
#: ``--seed-cm`` default: the haplotype detector's own seed, so the prefilter drops no pair with a segment.
SEED_CM = MIN_SEED
#: KING's degree-3 cut: the segment prefilter keeps every pair at or above it.
KING_DEGREE3 = KING_CUTOFFS[-1]


def read_pairs(path: str | Path, ids: list[str]) -> np.ndarray:
    """Sample-index pairs of a pairs file: whitespace-separated, the first two columns (IID1 IID2 of a .kin0
    too); a header line starting with ``#`` or naming IID1 is skipped."""
    index = {s: k for k, s in enumerate(ids)}
    out, seen = [], set()
    for n, f in table_rows(path, flag="--pairs", headers=("IID1", "id1"), fields=2, need="two sample ids"):
        a, b = f[0], f[1]
        for s in (a, b):
            if s not in index:
                raise InputError(f"--pairs {path} line {n}: sample {s!r} is not in the input")
        if a == b:
            raise InputError(f"--pairs {path} line {n}: a sample paired with itself ({a})")
        key = (min(a, b), max(a, b))
        if key in seen:
            raise InputError(f"--pairs {path} line {n}: pair {a} {b} listed twice")
        seen.add(key)
        out.append((index[a], index[b]))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def all_pairs(n: int) -> np.ndarray:
    """(i, j) with j < i, in plink2's .kin0 order."""
    i, j = np.tril_indices(n, -1)
    order = np.lexsort((j, i))
    return np.stack([i[order], j[order]], axis=1)


def resolve(prefilter: str, *, pairs, min_kinship: float | None, seed_cm: float, segments_model: bool,
            phased: bool) -> str:
    """The pair choice ``pairs``, ``king``, ``segments`` or ``none`` that ``--prefilter`` and its companions make.

    Raises
    ------
    InputError : an unknown choice or a contradictory combination (module text), ``segments`` for a model
        without segments or on unphased input, a seed length not above 0.
    """
    if prefilter not in PREFILTERS:
        raise InputError(f"--prefilter {prefilter!r}: choose one of {', '.join(PREFILTERS)}")
    if pairs is not None and min_kinship is not None:
        raise InputError("--pairs and --min-kinship both choose the pairs; give one")
    if pairs is not None and prefilter != "auto":
        raise InputError(f"--pairs and --prefilter {prefilter} both choose the pairs; give one")
    if not seed_cm > 0:
        raise InputError(f"--seed-cm {seed_cm}: give a seed length above 0 cM (default {SEED_CM:g})")
    if prefilter == "king" and min_kinship is None:
        raise InputError("--prefilter king: give the cut with --min-kinship X (KING's degree-3 cut is 0.0442)")
    if prefilter == "none" and min_kinship is not None:
        raise InputError("--prefilter none scores every pair; drop --min-kinship or choose --prefilter king")
    if prefilter == "segments" and not segments_model:
        raise InputError("--prefilter segments: this relate model has no segment caller (trained with --no-segments);"
                         " choose --prefilter king with --min-kinship X, or none")
    if prefilter == "segments" and not phased:
        raise InputError("--prefilter segments finds shared haplotype seeds: give phased input (`snpbag phase`) "
                         "and the hap detector, or choose --prefilter king with --min-kinship X, or none")
    if prefilter != "auto":
        return prefilter
    if pairs is not None:
        return "pairs"
    if min_kinship is not None:
        return "king"
    return "segments" if segments_model and phased else "none"


@dataclass
class Candidates:
    """The pairs a prefilter passes (plink2's .kin0 order) and what it did, for ``PREFIX.rel.log``."""

    pairs: np.ndarray  # int64 (n, 2), i > j
    description: str
    seconds: float


def _king_pairs(genotypes: Path, cut: float, tmpdir: Path, ids: list[str], threads: int | None) -> np.ndarray:
    king_table(genotypes, out=tmpdir / "candidates", min_kinship=cut, threads=threads)
    p = read_pairs(tmpdir / "candidates.kin0", ids)
    return np.stack([p.max(axis=1), p.min(axis=1)], axis=1) if len(p) else p


def candidates(how: str, genotypes: Path, ids: list[str], tmpdir: Path, *, min_kinship: float | None,
               seed_cm: float, genome: Genome | None, threads: int | None = None) -> Candidates:
    """The pairs of ``ids`` that the ``king`` or ``segments`` prefilter passes (``tmpdir``: its KING table).

    Raises
    ------
    InputError : the genome's samples differ from ``ids``.
    """
    t0 = time.perf_counter()
    n = len(ids)
    cut = KING_DEGREE3 if min_kinship is None else float(min_kinship)
    king = _king_pairs(genotypes, cut, tmpdir, ids, threads)
    if how == "king":
        return Candidates(king[np.lexsort((king[:, 1], king[:, 0]))] if len(king) else king,
                          f"KING kinship >= {cut:g}", time.perf_counter() - t0)
    if genome is None or genome.ids != ids:
        raise InputError(f"{genotypes}: the samples read for haplotype seeds differ from the genotypes'")
    seeds = seed_pairs(genome, min_cm=seed_cm)
    keys = np.union1d(seeds[:, 0] * n + seeds[:, 1], king[:, 0] * n + king[:, 1])
    out = np.stack([keys // n, keys % n], axis=1).astype(np.int64).reshape(-1, 2)
    log.info("prefilter: %d pairs with a seed >= %g cM, %d at KING >= %g, %d in all", len(seeds), seed_cm,
             len(king), cut, len(out))
    return Candidates(out, f"segments: a haplotype seed >= {seed_cm:g} cM ({len(seeds)} pairs) or KING kinship >= "
                      f"{cut:g} ({len(king)} pairs)", time.perf_counter() - t0)
