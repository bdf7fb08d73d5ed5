"""``snpbag king``: KING-robust kinship of all sample pairs, byte-identical to plink2's .kin0.

The pieces: :mod:`~snpbag.kinship.source` reads dosages of a VCF or store,
:mod:`~snpbag.kinship.counts` turns one pass over them into exact integer counts for a
range of rows (popcounts of :mod:`~snpbag.kinship.popcount` or GEMMs of
:mod:`~snpbag.kinship.gemm`, carrier-pair lists of :mod:`~snpbag.kinship.carriers`),
:mod:`~snpbag.kinship.estimators` divides them as
plink2 does, :mod:`~snpbag.kinship.kin0` prints them and :mod:`~snpbag.kinship.matrix`
stores the square matrix. This module splits the rows into *passes* whose counts fit
``max_memory`` (each pass streams the input once; it multiplies samples ``0..row_stop``
but reads all samples for the allele frequencies of ``--po-ibs0 auto``, so every pass
and part uses the same cut) and into *parts* (:func:`king_part`) that separate processes
or SLURM array tasks compute independently; the parts' .kin0 files concatenate to the
single-run file byte for byte.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from snpbag.errors import InputError
from snpbag.fileio import atomic_output, atomic_outputs
from snpbag.kinship import degrees, kin0, matrix as kmatrix
from snpbag.kinship.counts import PairCounts, pair_counts, use_popcount  # noqa: F401  (public here too)
from snpbag.kinship.estimators import ESTIMATORS, kinship  # noqa: F401  (public here too)
from snpbag.kinship.source import GenotypeSource, ScanStats  # noqa: F401  (public here too)
from snpbag.provenance import provenance

log = logging.getLogger(__name__)

#: Memory for one pass's pair counts; more rows than fit → more passes over the input.
MAX_MEMORY = 2 << 30
#: Bytes per (row, column) cell of a pass: int32 accumulators plus the derived counts.
PASS_BYTES_PER_PAIR = 56


def default_threads() -> int:
    """CPU cores this process may use (like plink2's default)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)



# --- splitting ----------------------------------------------------------------------------


def row_bounds(n_samples: int, part: int, n_parts: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of part ``part`` (1-based) of ``n_parts`` with ~equal pair counts.

    Raises
    ------
    InputError : part outside 1..n_parts.
    """
    _check_part(part, n_parts)

    def bound(k: int) -> int:
        if k == n_parts:
            return n_samples
        target = k * n_samples * (n_samples - 1) / n_parts  # r (r - 1) >= target
        r = math.isqrt(int(target)) + 1
        while r > 0 and (r - 1) * (r - 2) >= target:
            r -= 1
        while r * (r - 1) < target:
            r += 1
        return min(r, n_samples)

    return bound(part - 1), bound(part)


def _check_part(part: int, n_parts: int) -> None:
    if n_parts < 1 or not 1 <= part <= n_parts:
        raise InputError(f"part {part} of {n_parts} (--parallel K N): need 1 <= K <= N")


def _passes(r0: int, r1: int, max_memory: int) -> list[tuple[int, int]]:
    """Split rows so each pass's counts (~PASS_BYTES_PER_PAIR per cell) fit ``max_memory``."""
    out, a = [], r0
    while a < r1:
        b = a + 1
        while b < r1 and (b + 1 - a) * (b + 1) * PASS_BYTES_PER_PAIR <= max_memory:
            b += 1
        out.append((a, b))
        a = b
    return out


# --- the command --------------------------------------------------------------------------


@dataclass
class KingResult:
    """What a run wrote and read."""

    kin0: Path
    matrix: Path | None
    n_samples: int
    n_variants: int
    n_non_autosomal: int
    n_pairs: int
    n_written: int
    po_ibs0: float
    seconds: float


def king(input: str | Path, *, out: str | Path, estimator: str = "between", min_kinship: float | None = None,
         counts: bool = False, matrix: bool = False, block_size: int = 2048, device: str = "cpu",
         threads: int | None = None, po_ibs0: float | str = degrees.PO_IBS0, kernel: str = "auto") -> KingResult:
    """``snpbag king``: KING-robust kinship of all sample pairs → PREFIX.kin0 (+ PREFIX.king.zarr).

    The .kin0 columns up to KINSHIP are those of ``plink2 --make-king-table`` (``counts
    cols=+ibs1`` with ``counts=True``), with identical strings; an INFTYPE column
    (degrees.LABELS) follows. Both files appear atomically.

    Parameters
    ----------
    input : VCF/BCF (biallelic SNPs are used) or snpbag store; autosomes only.
    out : output prefix.
    estimator : ``between`` (plink2's default) or ``within`` (KING within-family).
    min_kinship : drop pairs with kinship below this (plink2 --king-table-filter; nan kept).
    counts : HETHET/IBS0 as counts plus HET1_HOM2/HET2_HOM1 count columns.
    matrix : also write the square float32 kinship matrix as Zarr.
    block_size : samples per side of a pair tile.
    device : ``cpu`` or ``cuda``.
    threads : CPU threads (default: every core this process may use, as plink2); the
        output does not depend on it.
    po_ibs0 : INFTYPE of first-degree pairs: ``PO`` if their IBS0 proportion is below
        this, else ``FS``. Default KING's 0.008; ``"auto"``: degrees.po_threshold of the
        cohort's expected unrelated IBS0 (for sequence data, whose IBS0 runs lower).
    kernel : ``auto``, ``popcount`` or ``gemm`` (:func:`~snpbag.kinship.counts.pair_counts`);
        the output does not depend on it.

    Returns
    -------
    KingResult

    Raises
    ------
    InputError : bad option, no autosomal SNPs, fewer than 2 samples, output exists.
    SampleError : duplicated sample ids.
    StoreFormatError : an invalid store.
    """
    return king_part(input, out=out, estimator=estimator, min_kinship=min_kinship, counts=counts, matrix=matrix,
                     block_size=block_size, device=device, threads=threads, po_ibs0=po_ibs0, kernel=kernel)


def king_part(input: str | Path, *, out: str | Path, part: int = 1, n_parts: int = 1, estimator: str = "between",
              min_kinship: float | None = None, counts: bool = False, matrix: bool = False, block_size: int = 2048,
              device: str = "cpu", max_memory: int = MAX_MEMORY, po_ibs0: float | str = degrees.PO_IBS0,
              threads: int | None = None, kernel: str = "auto") -> KingResult:
    """One of ``n_parts`` independent pieces of :func:`king` (a SLURM array task, a rank).

    Part k writes ``PREFIX.kin0.k`` (``PREFIX.kin0`` when ``n_parts == 1``); part 1 carries
    the header, and :func:`merge_parts` concatenates them into the single-run file.
    Parameters are those of :func:`king` plus ``part`` (1-based), ``n_parts``,
    ``max_memory`` (bytes of pair counts per pass; more rows → more passes, each
    re-reading the input). With ``po_ibs0="auto"`` the cut comes from all samples'
    allele frequencies, so every part uses the same value.

    Raises
    ------
    InputError : as :func:`king`; ``matrix`` with ``n_parts > 1``.
    """
    t0 = time.perf_counter()
    if estimator not in ESTIMATORS:
        raise InputError(f"--estimator {estimator!r}: choose one of {', '.join(ESTIMATORS)}")
    if block_size < 1:
        raise InputError(f"--block-size {block_size}: must be a positive number of samples (default 2048)")
    if min_kinship is not None and not math.isfinite(min_kinship):
        raise InputError(f"--min-kinship {min_kinship}: must be a finite number, e.g. 0.0442 for 3rd degree")
    if threads is not None and threads < 1:
        raise InputError(f"--threads {threads}: must be at least 1 (default: all available cores)")
    threads = default_threads() if threads is None else threads
    auto_cut = _check_po_ibs0(po_ibs0)
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device {device!r}: choose cpu or cuda")
    use_popcount(kernel, device)  # validates
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    _check_part(part, n_parts)
    if matrix and n_parts > 1:
        raise InputError("--matrix needs the whole run (n_parts=1); write the parts' .kin0 and merge them instead")
    out = str(out)
    kin0_path = Path(out + ".kin0") if n_parts == 1 else Path(f"{out}.kin0.{part}")
    zarr_path = Path(out + ".king.zarr") if matrix else None
    for p in (kin0_path, zarr_path):
        if p is not None and p.exists():
            raise InputError(f"{p}: output already exists; remove it or choose another --out")
    source = GenotypeSource(input, threads=threads)
    n = source.n_samples
    if n < 2:
        raise InputError(f"{input}: KING needs at least 2 samples, the input has {n}")
    r0, r1 = row_bounds(n, part, n_parts)
    passes = _passes(r0, r1, max_memory)
    log.info("king: %d samples, rows %d..%d in %d pass(es), block %d, %s, %d thread(s)", n, r0, r1, len(passes),
             block_size, device, threads)
    totals = {"variants": 0, "non_autosomal": 0, "pairs": 0, "written": 0}
    thr = float("nan") if auto_cut else float(po_ibs0)
    finals = [kin0_path] + ([zarr_path] if zarr_path else [])
    with atomic_outputs(*finals) as tmps:
        zarr_matrix = None
        if matrix:
            meta = provenance("king", {"input": str(input), "estimator": estimator})
            zarr_matrix = kmatrix.create_matrix(tmps[1], source.sample_ids,
                                             attrs={"estimator": estimator, "snpbag_provenance": meta})
        with open(tmps[0], "wb") as fh:
            if part == 1:
                fh.write(kin0.header(counts).encode())
            for a, b in passes:
                stats = ScanStats()
                pc = pair_counts(source, rows=(a, b), block_size=block_size, device=device, stats=stats,
                                 threads=threads, kernel=kernel)
                if stats.variants == 0:
                    raise InputError(f"{input}: no autosomal biallelic SNPs (skipped {stats.non_autosomal} "
                                     f"non-autosomal variants); KING uses chromosomes 1-22 only")
                totals["variants"], totals["non_autosomal"] = stats.variants, stats.non_autosomal
                if auto_cut:
                    thr = degrees.po_threshold(stats.expected_ibs0)
                npairs, nwritten = kin0.write_pairs(fh, pc, source.sample_ids, estimator=estimator, counts=counts,
                                               min_kinship=min_kinship, po_ibs0=thr, threads=threads)
                totals["pairs"] += npairs
                totals["written"] += nwritten
                if zarr_matrix is not None:
                    kmatrix.fill_matrix(zarr_matrix, pc, estimator)
                log.info("king: rows %d..%d done (%d variants; PO/FS IBS0 cut %.3g)", a, b, stats.variants, thr)
        if zarr_matrix is not None:
            zarr_matrix.attrs["n_variants"] = totals["variants"]
    if totals["non_autosomal"]:
        log.warning("king: excluded %d variants on non-autosomes", totals["non_autosomal"])
    return KingResult(kin0=kin0_path, matrix=zarr_path, n_samples=n, n_variants=totals["variants"],
                      n_non_autosomal=totals["non_autosomal"], n_pairs=totals["pairs"], n_written=totals["written"],
                      po_ibs0=thr, seconds=time.perf_counter() - t0)


def _check_po_ibs0(po_ibs0: float | str) -> bool:
    """Validate ``--po-ibs0``; True for ``auto`` (the cut is computed from the cohort)."""
    if isinstance(po_ibs0, str) and po_ibs0 == "auto":
        return True
    try:
        value = float(po_ibs0)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise InputError(f"--po-ibs0 {po_ibs0!r}: give an IBS0 proportion in [0, 1] (KING's default 0.008) "
                         "or 'auto' (a tenth of the cohort's expected unrelated IBS0)")
    return False


def merge_parts(out: str | Path, n_parts: int) -> Path:
    """Concatenate ``PREFIX.kin0.1 .. PREFIX.kin0.N`` (in numeric order) into ``PREFIX.kin0``.

    Raises
    ------
    InputError : a part is missing.
    """
    parts = [Path(f"{out}.kin0.{k}") for k in range(1, n_parts + 1)]
    missing = [str(p) for p in parts if not p.exists()]
    if missing:
        raise InputError(f"missing parts {', '.join(missing[:3])}; run king_part for them first")
    final = Path(f"{out}.kin0")
    with atomic_output(final) as tmp, open(tmp, "wb") as fh:
        for p in parts:
            with open(p, "rb") as src:
                while buf := src.read(1 << 24):
                    fh.write(buf)
    return final
