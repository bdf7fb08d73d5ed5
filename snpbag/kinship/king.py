"""KING-robust kinship for all sample pairs, as exact integer counts from matrix products.

For every pair the KING estimators need five counts over the variants called in both
samples: HETHET (both heterozygous), IBS0 (opposite homozygotes), the two "het in one,
hom in the other" counts and NSNP. With per-sample indicator vectors H (het), C
(called) and S (+1 hom-alt, −1 hom-ref, 0 otherwise) every count is an inner product:

    HETHET = H·H'   NSNP = C·C'   het-row/hom-col = H·C' − H·H'   hom-row/het-col = C·H' − H·H'
    IBS0 = (homhom − S·S') / 2,  homhom = C·C' − H·C' − C·H' + H·H'

so a tile of pairs costs two int8 matrix products per variant chunk (``H·H'`` and
``S·S'``) where every sample of the pass is called (C = 1 makes H·C' a per-sample het
count and C·C' the variant count), plus ``[H;C]·[H;C]'`` for variants with a missing
call. Products run as ``torch._int_mm`` and accumulate exactly in int32 (a float
fallback is exact too: fp32 sums of a ≤ 8192-variant chunk, fp64 on CUDA). The kinship
is then one double division of integers, as in plink2, so KINSHIP strings match plink2's.

Pairs (i, j), j < i, are produced in plink2's lower-triangular order. Rows are split
into *passes* whose counts fit ``max_memory`` (each pass streams the input once; it
multiplies samples ``0..row_stop`` but reads all samples for the allele frequencies of
the PO/FS cut, so every pass and part uses the same cut), and into *parts*
(:func:`king_part`) that separate processes or SLURM array tasks compute independently;
the parts' .kin0 files concatenate to the single-run file byte for byte.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snpbag.data.chrom import is_autosome
from snpbag.errors import InputError, SampleError
from snpbag.fileio import atomic_output, atomic_outputs
from snpbag.kinship import degrees, kin0
from snpbag.provenance import provenance

log = logging.getLogger(__name__)

ESTIMATORS = ("between", "within")
#: Memory for one pass's pair counts; more rows than fit → more passes over the input.
MAX_MEMORY = 2 << 30
#: Bytes per (row, column) cell of a pass: int32 accumulators plus the derived counts.
PASS_BYTES_PER_PAIR = 48
#: Bytes of genotypes + indicators held per variant chunk.
CHUNK_MEMORY = 256 << 20
#: Pairs formatted per write.
WRITE_PAIRS = 1 << 19
_MAX_COUNT = 2**31 - 1


# --- input --------------------------------------------------------------------------------


@dataclass
class ScanStats:
    """What a pass over the input used and skipped (filled by :meth:`GenotypeSource.dosages`)."""

    variants: int = 0
    non_autosomal: int = 0
    dropped: dict = field(default_factory=dict)
    ibs0_expected_sum: float = 0.0  # sum over variants of 2p²q², p from all samples' calls

    @property
    def expected_ibs0(self) -> float:
        """IBS0 proportion expected for an unrelated pair under Hardy–Weinberg."""
        return self.ibs0_expected_sum / self.variants if self.variants else float("nan")


class GenotypeSource:
    """Autosomal biallelic SNP dosages of a VCF/BCF or a snpbag store, in variant chunks.

    Parameters
    ----------
    path : ``.vcf``, ``.vcf.gz``, ``.bcf`` or a store directory written by ``snpbag convert``.

    Raises
    ------
    InputError : missing or unreadable input.
    StoreFormatError : a store that fails validation.
    SampleError : duplicated sample ids.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        p = Path(self.path)
        self.is_store = p.is_dir() or self.path.rstrip("/").endswith(".zarr") or "://" in self.path
        if self.is_store:
            from snpbag.data.store import open_store

            self._store = open_store(self.path)
            self.sample_ids = [str(s) for s in self._store.sample_ids.tolist()]
        else:
            from snpbag.data.vcf import VcfReader

            reader = VcfReader(self.path)
            self.sample_ids = list(reader.samples)
            reader.close()
        if len(set(self.sample_ids)) != len(self.sample_ids):
            seen, dup = set(), []
            for s in self.sample_ids:
                if s in seen:
                    dup.append(s)
                seen.add(s)
            raise SampleError(f"{self.path}: duplicated sample ids ({', '.join(dup[:5])}); "
                              "rename them (`bcftools reheader -s`) so every pair is identifiable")

    @property
    def n_samples(self) -> int:
        return len(self.sample_ids)

    def dosages(self, n: int, *, chunk: int, stats: ScanStats | None = None) -> Iterator[np.ndarray]:
        """Yield ALT dosages (v, n) int8 of the first ``n`` samples; −1 = missing.

        Half-calls (``0/.``) are missing; a haploid call on an autosome counts as
        homozygous, as plink2 imports it. Non-autosomal variants are skipped and counted.
        """
        stats = stats if stats is not None else ScanStats()
        if self.is_store:
            store = self._store
            contigs = store.contig_ids
            auto = np.array([is_autosome(c) for c in contigs], dtype=bool)
            vcontig = store.variant_contig
            for sl, gt in store.iter_variant_blocks(slice(0, n), block=chunk):
                keep = auto[vcontig[sl]]
                stats.non_autosomal += int((~keep).sum())
                if keep.any():
                    stats.variants += int(keep.sum())
                    yield _dosage(gt if keep.all() else gt[keep])
        else:
            from snpbag.data.vcf import VcfReader

            reader = VcfReader(self.path, samples=self.sample_ids[:n] if n < self.n_samples else None)
            try:
                auto: dict[int, bool] = {}
                for block in reader.blocks(chunk):
                    for c in np.unique(block.contig):
                        if int(c) not in auto:
                            auto[int(c)] = is_autosome(reader.contigs[int(c)])
                    keep = np.array([auto[int(c)] for c in block.contig], dtype=bool)
                    stats.non_autosomal += int((~keep).sum())
                    if keep.any():
                        stats.variants += int(keep.sum())
                        yield _dosage(block.genotype if keep.all() else block.genotype[keep])
                stats.dropped = dict(reader.counts.dropped)
            finally:
                reader.close()


def _dosage(gt: np.ndarray) -> np.ndarray:
    """(v, n, 2) allele indices (−1 missing, −2 haploid fill) → (v, n) ALT dosage, −1 missing."""
    a0 = gt[..., 0]
    a1 = gt[..., 1]
    d = a0 + a1
    haploid = a1 == -2
    if haploid.any():
        d[haploid] = 2 * a0[haploid]
    d[(a0 < 0) | (a1 == -1)] = -1
    return d


def _expected_ibs0_sum(g: np.ndarray) -> float:
    """Sum over variants of 2p²q² (p: ALT frequency among the called genotypes)."""
    called = (g >= 0).sum(axis=1)
    alt = np.where(g > 0, g, 0).sum(axis=1, dtype=np.int64)
    ok = called > 0
    p = alt[ok] / (2.0 * called[ok])
    return float(np.sum(2.0 * p * p * (1.0 - p) * (1.0 - p)))


# --- counting -----------------------------------------------------------------------------


@dataclass
class PairCounts:
    """Counts for pairs (i, j), ``rows[0] <= i < rows[1]``, ``j < i`` (entry [i - rows[0], j]).

    ``het_row``: sample i heterozygous and j homozygous; ``het_col``: the reverse.
    Entries with j >= i are partially filled and meaningless.
    """

    rows: tuple[int, int]
    hethet: np.ndarray
    ibs0: np.ndarray
    het_row: np.ndarray
    het_col: np.ndarray
    nsnp: np.ndarray


def _int8_gemm_ok(device) -> bool:
    """Whether torch._int_mm runs, exactly, on ``device`` (it is a private, backend-dependent op)."""
    import torch

    try:
        a = torch.ones((16, 24), dtype=torch.int8, device=device)
        return int(_matmul(a, a, int8=True)[0, 0]) == 16
    except Exception:  # pragma: no cover - no int8 GEMM on this backend/build
        log.info("king: torch._int_mm unavailable on %s; using exact float matmul", device)
        return False


def _matmul(a, b, *, int8: bool):
    """Exact ``a.T @ b`` of variant-major int8 indicators ``a`` (v, m), ``b`` (v, n), as int32."""
    import torch

    if int8:
        if a.is_cuda:
            a_op, b_op, m, n = _cublaslt_operands(a, b)
            return torch._int_mm(a_op, b_op)[:m, :n]
        return torch._int_mm(a.T, b)
    # Sums of 0/±1 products are integers: exact in fp32 while a chunk has < 2^24 variants
    # (CPU) and in fp64 always (CUDA, where fp32 may silently run as TF32).
    dtype = torch.float64 if a.is_cuda else torch.float32
    return torch.round(a.to(dtype).T @ b.to(dtype)).to(torch.int32)


def _cublaslt_operands(a, b):
    """Zero-padded ``a.T`` row-major (m', k') and ``b`` column-major (k', n') for CUDA's int8 GEMM.

    torch._int_mm on CUDA needs m > 16 and k, n multiples of 8; zero rows/columns add
    nothing to the products. Returns the operands and the unpadded (m, n).
    """
    import torch

    k, m = a.shape
    n = b.shape[1]
    mp, np_, kp = max(_round_up(m, 8), 24), _round_up(n, 8), _round_up(k, 8)
    a_op = torch.nn.functional.pad(a, (0, mp - m, 0, kp - k)).T.contiguous()
    b_op = torch.nn.functional.pad(b, (0, np_ - n, 0, kp - k)).T.contiguous().T
    return a_op, b_op, m, n


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def pair_counts(source: GenotypeSource, *, rows: tuple[int, int], block_size: int = 2048,
                device: str = "cpu", chunk: int | None = None, stats: ScanStats | None = None) -> PairCounts:
    """Exact KING counts of every pair in ``rows`` (one streaming pass over the input).

    Parameters
    ----------
    source : the genotypes.
    rows : ``(start, stop)``: pairs (i, j) with ``start <= i < stop`` and ``j < i``.
    block_size : samples per tile side; tiles are ``block_size x block_size`` pair blocks.
    device : ``cpu`` or ``cuda``.
    chunk : variants per matrix product (default: what CHUNK_MEMORY allows).
    stats : filled with the number of variants used and skipped.

    Returns
    -------
    PairCounts
    """
    import torch

    r0, r1 = rows
    ncol, nrow = r1, r1 - r0
    n_all = source.n_samples
    if chunk is None:  # from the cohort size, so every pass and part sees the same chunks
        chunk = 1 << max(9, min(13, int(math.log2(max(CHUNK_MEMORY // (6 * n_all), 1)))))
    dev = torch.device(device)
    int8 = _int8_gemm_ok(dev)
    tiles = [(i0, min(i0 + block_size, r1), j0, min(j0 + block_size, min(i0 + block_size, r1)))
             for i0 in range(r0, r1, block_size) for j0 in range(0, min(i0 + block_size, r1), block_size)]
    # Variants called in every sample of the pass need only H·H' and S·S' (C is all ones:
    # H·C' is a per-sample het count, C·C' the variant count); the rest need [H;C]·[H;C]'.
    acc_hh = torch.zeros((nrow, ncol), dtype=torch.int32, device=dev)  # H·H' (complete variants)
    acc_s = torch.zeros((nrow, ncol), dtype=torch.int32, device=dev)  # S·S' (all variants)
    acc = None  # [H;C]·[H;C]' of variants with a missing call, allocated on first use
    het_complete = torch.zeros(ncol, dtype=torch.int32, device=dev)
    n_complete = 0
    stats = stats if stats is not None else ScanStats()
    for g in source.dosages(n_all, chunk=chunk, stats=stats):
        stats.ibs0_expected_sum += _expected_ibs0_sum(g)  # all samples: the same in every pass and part
        gt = torch.from_numpy(g[:, :ncol]).to(dev)  # (v, ncol): GEMMs take the variant-major layout as is
        s = (gt == 2).to(torch.int8) - (gt == 0).to(torch.int8)
        missing = (gt < 0).any(dim=1)
        if not bool(missing.all()):
            h = (gt[~missing] == 1).to(torch.int8)
            het_complete += h.sum(dim=0, dtype=torch.int32)
            n_complete += h.shape[0]
            for i0, i1, j0, j1 in tiles:
                acc_hh[i0 - r0:i1 - r0, j0:j1] += _matmul(h[:, i0:i1], h[:, j0:j1], int8=int8)
        if bool(missing.any()):
            gm = gt[missing]
            hc = torch.stack((gm == 1, gm >= 0), dim=2).to(torch.int8).reshape(gm.shape[0], 2 * ncol)  # H0,C0,H1,..
            if acc is None:
                acc = torch.zeros((nrow, 2, ncol, 2), dtype=torch.int32, device=dev)
            for i0, i1, j0, j1 in tiles:
                p = _matmul(hc[:, 2 * i0:2 * i1], hc[:, 2 * j0:2 * j1], int8=int8)
                acc[i0 - r0:i1 - r0, :, j0:j1, :] += p.view(i1 - i0, 2, j1 - j0, 2)
        for i0, i1, j0, j1 in tiles:
            acc_s[i0 - r0:i1 - r0, j0:j1] += _matmul(s[:, i0:i1], s[:, j0:j1], int8=int8)
    if stats.variants > _MAX_COUNT:
        raise InputError(f"{source.path}: {stats.variants} variants overflow the int32 counts; "
                         "split the input by chromosome and sum the counts")
    hh = acc_hh.cpu().numpy()
    del acc_hh
    hc_row = het_complete.cpu().numpy()[r0:r1, None]  # row sample's hets at complete variants
    hc_col = het_complete.cpu().numpy()[None, :]
    het_row = np.broadcast_to(hc_row, hh.shape).copy()  # row het, column called: H·C'
    het_col = np.broadcast_to(hc_col, hh.shape).copy()
    nsnp = np.full(hh.shape, n_complete, dtype=np.int32)
    if acc is not None:
        a = acc.cpu().numpy()
        hh += a[:, 0, :, 0]
        het_row += a[:, 0, :, 1]
        het_col += a[:, 1, :, 0]
        nsnp += a[:, 1, :, 1]
        del a, acc
    het_row -= hh  # now het row / hom column
    het_col -= hh
    ibs0 = nsnp - het_row  # homhom = NSNP − A − B − HETHET; IBS0 = (homhom − S·S') / 2
    ibs0 -= het_col
    ibs0 -= hh
    ibs0 -= acc_s.cpu().numpy()
    ibs0 //= 2
    return PairCounts(rows=(r0, r1), hethet=hh, ibs0=ibs0, het_row=het_row, het_col=het_col, nsnp=nsnp)


def kinship(hethet, ibs0, het_row, het_col, *, estimator: str = "between") -> np.ndarray:
    """KING-robust kinship from integer counts, computed exactly as plink2 does.

    between: ½ − (4·IBS0 + A + B) / (4·(HETHET + min(A, B)))   (plink2 --make-king-table)
    within:  (HETHET − 2·IBS0) / (2·HETHET + A + B)            (KING within-family; vcftools --relatedness2)

    with A, B the two het/hom counts. Integer numerator and denominator, one double
    division: a pair without usable heterozygous sites gives ``nan`` (0/0) or ``-inf``,
    as plink2 prints them.

    Parameters
    ----------
    hethet, ibs0, het_row, het_col : integer count arrays of equal shape.
    estimator : ``between`` or ``within``.

    Returns
    -------
    float64 array.

    Raises
    ------
    InputError : unknown estimator.
    """
    hh = np.asarray(hethet, dtype=np.int64)
    i0 = np.asarray(ibs0, dtype=np.int64)
    a = np.asarray(het_row, dtype=np.int64)
    b = np.asarray(het_col, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if estimator == "between":
            return 0.5 - (4 * i0 + a + b).astype(np.float64) / (4 * (hh + np.minimum(a, b))).astype(np.float64)
        if estimator == "within":
            return (hh - 2 * i0).astype(np.float64) / (2 * hh + a + b).astype(np.float64)
    raise InputError(f"--estimator {estimator!r}: choose one of {', '.join(ESTIMATORS)}")


# --- splitting ----------------------------------------------------------------------------


def row_bounds(n_samples: int, part: int, n_parts: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of part ``part`` (1-based) of ``n_parts`` with ~equal pair counts.

    Raises
    ------
    InputError : part outside 1..n_parts.
    """
    if n_parts < 1 or not 1 <= part <= n_parts:
        raise InputError(f"part {part} of {n_parts}: need 1 <= part <= n_parts")

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
         counts: bool = False, matrix: bool = False, block_size: int = 2048, device: str = "cpu") -> KingResult:
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
                     block_size=block_size, device=device)


def king_part(input: str | Path, *, out: str | Path, part: int = 1, n_parts: int = 1, estimator: str = "between",
              min_kinship: float | None = None, counts: bool = False, matrix: bool = False, block_size: int = 2048,
              device: str = "cpu", max_memory: int = MAX_MEMORY, po_ibs0: float | None = None) -> KingResult:
    """One of ``n_parts`` independent pieces of :func:`king` (a SLURM array task, a rank).

    Part k writes ``PREFIX.kin0.k`` (``PREFIX.kin0`` when ``n_parts == 1``); part 1 carries
    the header, and :func:`merge_parts` concatenates them into the single-run file.
    Parameters are those of :func:`king` plus ``part`` (1-based), ``n_parts``,
    ``max_memory`` (bytes of pair counts per pass; more rows → more passes, each
    re-reading the input) and ``po_ibs0`` (the INFTYPE parent–offspring/full-sibling
    IBS0 cut; default: degrees.po_threshold of the cohort's expected unrelated IBS0).

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
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device {device!r}: choose cpu or cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    if matrix and n_parts > 1:
        raise InputError("--matrix needs the whole run (n_parts=1); write the parts' .kin0 and merge them instead")
    out = str(out)
    kin0_path = Path(out + ".kin0") if n_parts == 1 else Path(f"{out}.kin0.{part}")
    zarr_path = Path(out + ".king.zarr") if matrix else None
    for p in (kin0_path, zarr_path):
        if p is not None and p.exists():
            raise InputError(f"{p}: output already exists; remove it or choose another --out")
    source = GenotypeSource(input)
    n = source.n_samples
    if n < 2:
        raise InputError(f"{input}: KING needs at least 2 samples, the input has {n}")
    r0, r1 = row_bounds(n, part, n_parts)
    passes = _passes(r0, r1, max_memory)
    log.info("king: %d samples, rows %d..%d in %d pass(es), block %d, %s", n, r0, r1, len(passes), block_size, device)
    totals = {"variants": 0, "non_autosomal": 0, "pairs": 0, "written": 0}
    thr = po_ibs0 if po_ibs0 is not None else float("nan")
    finals = [kin0_path] + ([zarr_path] if zarr_path else [])
    with atomic_outputs(*finals) as tmps:
        zarr_matrix = None
        if matrix:
            meta = provenance("king", {"input": str(input), "estimator": estimator})
            zarr_matrix = kin0.create_matrix(tmps[1], source.sample_ids,
                                             attrs={"estimator": estimator, "snpbag_provenance": meta})
        with open(tmps[0], "wb") as fh:
            if part == 1:
                fh.write(kin0.header(counts).encode())
            for a, b in passes:
                stats = ScanStats()
                pc = pair_counts(source, rows=(a, b), block_size=block_size, device=device, stats=stats)
                if stats.variants == 0:
                    raise InputError(f"{input}: no autosomal biallelic SNPs (skipped {stats.non_autosomal} "
                                     f"non-autosomal variants); KING uses chromosomes 1-22 only")
                totals["variants"], totals["non_autosomal"] = stats.variants, stats.non_autosomal
                thr = degrees.po_threshold(stats.expected_ibs0) if po_ibs0 is None else po_ibs0
                npairs, nwritten = _write_rows(fh, pc, source.sample_ids, estimator=estimator, counts=counts,
                                               min_kinship=min_kinship, po_ibs0=thr)
                totals["pairs"] += npairs
                totals["written"] += nwritten
                if zarr_matrix is not None:
                    _fill_matrix(zarr_matrix, pc, estimator)
                log.info("king: rows %d..%d done (%d variants; PO/FS IBS0 cut %.3g)", a, b, stats.variants, thr)
        if zarr_matrix is not None:
            zarr_matrix.attrs["n_variants"] = totals["variants"]
    if totals["non_autosomal"]:
        log.warning("king: excluded %d variants on non-autosomes", totals["non_autosomal"])
    return KingResult(kin0=kin0_path, matrix=zarr_path, n_samples=n, n_variants=totals["variants"],
                      n_non_autosomal=totals["non_autosomal"], n_pairs=totals["pairs"], n_written=totals["written"],
                      po_ibs0=thr, seconds=time.perf_counter() - t0)


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


# --- writing ------------------------------------------------------------------------------


def _write_rows(fh, pc: PairCounts, ids: list[str], *, estimator: str, counts: bool,
                min_kinship: float | None, po_ibs0: float) -> tuple[int, int]:
    """Append the pass's pairs to the .kin0 in plink2's order; (pairs seen, pairs written)."""
    r0, r1 = pc.rows
    npairs = nwritten = 0
    i0 = r0
    while i0 < r1:
        i1 = i0 + 1
        while i1 < r1 and (i1 * (i1 + 1) - i0 * (i0 - 1)) // 2 <= WRITE_PAIRS:
            i1 += 1
        ii, jj = kin0.lower_pairs(i0, i1)
        i0 = i1
        li = ii - r0
        hh, ib, ns = pc.hethet[li, jj], pc.ibs0[li, jj], pc.nsnp[li, jj]
        # plink2's HET1_HOM2 is IID2 het / IID1 hom (its kernel numbers the smaller index 1)
        h1, h2 = pc.het_col[li, jj], pc.het_row[li, jj]
        kin = kinship(hh, ib, h2, h1, estimator=estimator)
        npairs += ii.size
        if min_kinship is not None:
            keep = ~(kin < min_kinship)  # plink2 keeps nan
            ii, jj, hh, ib, h1, h2, ns, kin = (x[keep] for x in (ii, jj, hh, ib, h1, h2, ns, kin))
        if ii.size:
            fh.write(kin0.format_rows(ids, ii, jj, nsnp=ns, hethet=hh, ibs0=ib, het1_hom2=h1, het2_hom1=h2,
                                      kinship=kin, counts=counts, po_ibs0=po_ibs0))
            nwritten += ii.size
    return npairs, nwritten


def _fill_matrix(k, pc: PairCounts, estimator: str) -> None:
    """Write the pass's rows and, by symmetry, its columns of the square matrix."""
    r0, r1 = pc.rows
    block = kinship(pc.hethet, pc.ibs0, pc.het_row, pc.het_col, estimator=estimator).astype(np.float32)
    block[np.arange(r1)[None, :] >= np.arange(r0, r1)[:, None]] = 0.0  # keep j < i
    sq = block[:, r0:r1]
    sq[...] = sq + sq.T  # the band's upper part mirrors its lower part
    np.fill_diagonal(sq, 0.5)
    k[r0:r1, :r1] = block
    if r0 > 0:
        k[:r0, r0:r1] = block[:, :r0].T
