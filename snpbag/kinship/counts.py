"""Exact KING pair counts of a row range, in one streaming pass over the genotypes.

For every pair the KING estimators need five counts over the variants called in both
samples: HETHET (both heterozygous), IBS0 (opposite homozygotes), the two "het in one,
hom in the other" counts and NSNP. With per-sample indicator vectors H (het), C
(called) and S (+1 hom-alt, −1 hom-ref, 0 otherwise) every count is an inner product:

    HETHET = H·H'   NSNP = C·C'   het-row/hom-col = H·C' − H·H'   hom-row/het-col = C·H' − H·H'
    IBS0 = (homhom − S·S') / 2,  homhom = C·C' − H·C' − C·H' + H·H'

A pass streams the genotypes once. Each variant chunk is split three ways: complete
variants with few minor-allele carriers become carrier-pair lists
(:mod:`snpbag.kinship.carriers`); the others — complete, or with a missing call — go to a
kernel, one of two strategies behind one interface (:mod:`snpbag.kinship.accumulator`):
bit-packed genotypes and popcounts (:mod:`snpbag.kinship.popcount`, numba; about 3.5x
the GEMMs' speed on CPU and no torch import) or int8 matrix products over tiles of pairs
(:mod:`snpbag.kinship.gemm`; ``kernel="gemm"``, CUDA, or no numba). :func:`pair_counts`
is the driver: it sizes chunks and the carrier-pair limit, runs reading and preparing
ahead in threads, feeds the accumulator in order and finishes the counts in row bands.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np

from snpbag.errors import InputError
from snpbag.kinship.accumulator import PAIR_BUFFER, Accumulator, Chunk
from snpbag.kinship.carriers import carrier_pairs
from snpbag.kinship.gemm import GemmAccumulator
from snpbag.kinship.popcount import PopcountAccumulator
from snpbag.kinship.source import GenotypeSource, ScanStats, expected_ibs0_sum

log = logging.getLogger(__name__)

#: Bytes of genotypes + indicators held per variant chunk.
CHUNK_MEMORY = 256 << 20
_MAX_COUNT = 2**29 - 1  # S·S' accumulates X·X' <= 4 per variant in int32
#: Complete variants whose minor-allele carriers form at most this many pairs per this
#: many GEMM cells (pairs x variants, per thread) are counted from carrier-pair lists
#: instead (plink2's rare-variant scan); measured on a 2-core EPYC (docs/benchmarks.md).
SPARSE_PAIR_CELLS = 3500
#: As SPARSE_PAIR_CELLS, for the popcount kernel: pairs of the pass per carrier pair
#: (flat between 7,000 and 14,000 on the same machine, 3,000 samples).
POPCOUNT_PAIR_CELLS = 10000
KERNELS = ("auto", "popcount", "gemm")


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


def _prepare(g: np.ndarray, *, acc: Accumulator, pair_limit: int) -> Chunk:
    """Split a dosage chunk (v, n_all) into carrier-pair lists and ``acc``'s operands (runs ahead in a thread).

    A variant called in every sample of the pass with at most ``pair_limit`` pairs of
    minor-allele carriers goes to the pair lists; the ALT/REF coding is flipped where ALT
    is the major allele (HETHET, IBS0 and S·S' do not change when both samples flip).
    """
    r0, ncol = acc.r0, acc.ncol
    if g.size:
        sums, low = _row_sums(g)
        complete_all = low >= 0
        alt_all = sums if complete_all else None
    else:
        complete_all, alt_all = True, np.zeros(g.shape[0], dtype=np.int64)
    out = Chunk(ibs0_sum=expected_ibs0_sum(g, alt_all))
    gp = g[:, :ncol] if ncol < g.shape[1] else g
    complete = np.ones(g.shape[0], dtype=bool) if complete_all else gp.min(axis=1) >= 0
    sparse = np.zeros(g.shape[0], dtype=bool)
    if pair_limit >= 0:
        alt = alt_all if alt_all is not None and gp is g else gp.sum(axis=1, dtype=np.int64)
        k = np.minimum(alt, 2 * ncol - alt)  # minor-allele count >= its carriers
        npairs = k * (k - 1) // 2
        sparse = complete & (npairs <= pair_limit)
        if npairs[sparse].sum() > PAIR_BUFFER:  # bound the chunk's pair lists: the rarest variants first
            idx = np.flatnonzero(sparse)
            order = np.argsort(npairs[idx], kind="stable")
            sparse[idx[order[np.cumsum(npairs[idx][order]) > PAIR_BUFFER]]] = False
        if sparse.any():
            idx = np.flatnonzero(sparse)
            out.sparse = carrier_pairs(g, idx, alt[idx] > ncol, r0=r0, ncol=ncol)
    acc.prepare(g, out, dense=complete & ~sparse, complete=complete)
    return out


def _prepare_all(job, prepare) -> list[Chunk]:
    """``prepare`` of each dosage chunk a source job (GenotypeSource.dosage_jobs) returns."""
    return [prepare(g) for g in job()]


def _prepared(source, prepare, *, chunk: int, stats: ScanStats, pool, depth: int, reuse: bool):
    """Prepared chunks in genome order: decoded and prepared in ``pool`` (``depth`` jobs at once), or here.

    ``reuse``: the preparation copies what it keeps, so a thread's decoded chunks may share a buffer.
    """
    n = source.n_samples
    if pool is None:
        return (prepare(g) for g in source.dosages(n, chunk=chunk, stats=stats))
    if hasattr(source, "dosage_jobs"):
        jobs = source.dosage_jobs(n, chunk=chunk, stats=stats, reuse=reuse)
    else:  # any object with a ``dosages`` method
        jobs = (functools.partial(list, (g,)) for g in source.dosages(n, chunk=chunk, stats=stats))
    return _in_order((functools.partial(_prepare_all, job, prepare) for job in jobs), pool, depth)


def _bands(nrow: int, threads: int) -> list[tuple[int, int]]:
    """Row bands [b0, b1) for finishing a pass's counts in ``threads`` threads (4 per thread)."""
    if threads <= 1 or nrow < 64:
        return [(0, nrow)]
    k = min(4 * threads, nrow)
    edges = [nrow * i // k for i in range(k + 1)]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def _pool(threads: int, name: str):
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(threads, thread_name_prefix=name)


def _in_order(jobs, pool, depth: int):
    """Run ``jobs`` (functions returning lists) in ``pool``, up to ``depth`` at a time; yield their items in order.

    Jobs of a store decode and prepare whole variant chunks, so ``depth`` chunks are read
    at once; the kernel's tiles queue in the same pool behind them.
    """
    from collections import deque

    pending: deque = deque()
    try:
        for job in jobs:
            pending.append(pool.submit(job))
            while len(pending) > depth:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()


def _row_sums(g: np.ndarray) -> tuple[np.ndarray, int]:
    """(row sums, minimum) of an int8 dosage chunk: one compiled pass, or numpy's two."""
    try:
        from snpbag.store.kernels import row_sums
    except ImportError:  # pragma: no cover - numba is a dependency
        return g.sum(axis=1, dtype=np.int64), int(g.min())
    return row_sums(g)


def _ahead(items, enabled: bool, depth: int = 4):
    """Iterate ``items``, computed up to ``depth`` items ahead in a background thread.

    Prepared chunks are small (the dense rows and carrier-pair lists), so the reader can
    run ahead while the GEMMs of earlier chunks hold the other cores.
    """
    if not enabled:
        yield from items
        return
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def run():
        try:
            for item in items:
                if not put(item):
                    return
            put(end)
        except BaseException as e:  # re-raised in the consumer
            put(e)

    t = threading.Thread(target=run, name="king-read", daemon=True)
    t.start()
    try:
        while (item := q.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join()


def use_popcount(kernel: str, device: str) -> bool:
    """Whether ``kernel`` on ``device`` means the popcount kernel (see :func:`pair_counts`)."""
    if kernel not in KERNELS:
        raise InputError(f"--kernel {kernel!r}: choose one of {', '.join(KERNELS)}")
    if kernel == "popcount" and device != "cpu":
        raise InputError(f"--kernel popcount runs on the CPU only; use --kernel gemm (or auto) with --device {device}")
    if kernel != "auto" or device != "cpu":
        return kernel == "popcount"
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def pair_counts(source: GenotypeSource, *, rows: tuple[int, int], block_size: int = 2048,
                device: str = "cpu", chunk: int | None = None, stats: ScanStats | None = None,
                threads: int = 1, sparse_limit: int | None = None, kernel: str = "auto") -> PairCounts:
    """Exact KING counts of every pair in ``rows`` (one streaming pass over the input).

    Parameters
    ----------
    source : the genotypes.
    rows : ``(start, stop)``: pairs (i, j) with ``start <= i < stop`` and ``j < i``.
    block_size : samples per tile side (GEMMs on CPU: row bands of at most
        :data:`~snpbag.kinship.gemm.CPU_BAND` rows; popcounts: at most
        :data:`~snpbag.kinship.popcount.BAND`).
    device : ``cpu`` or ``cuda``.
    chunk : variants per read (default: what CHUNK_MEMORY allows).
    stats : filled with the number of variants used and skipped.
    threads : CPU threads: torch's for the GEMMs; above 1 the next chunk is read and
        prepared in a background thread.
    sparse_limit : complete variants with at most this many minor-allele carrier pairs
        are counted from pair lists (−1: none; default: a cost model on CPU, none on CUDA).
    kernel : how the other variants are counted: ``popcount`` (bit-packed genotypes,
        :mod:`~snpbag.kinship.popcount`, CPU only), ``gemm`` (int8 matrix products,
        :mod:`~snpbag.kinship.gemm`) or ``auto`` (popcount on CPU where numba is
        installed, else gemm). The counts do not depend on it.

    Returns
    -------
    PairCounts

    Raises
    ------
    InputError : unknown kernel, or popcount on CUDA.
    """
    pop = use_popcount(kernel, device)
    r0, r1 = rows
    if chunk is None:  # from the cohort size, so every pass and part sees the same chunks
        chunk = 1 << max(9, min(13, int(math.log2(max(CHUNK_MEMORY // (6 * source.n_samples), 1)))))
    pool = _pool(threads, "king") if threads > 1 else None  # reads, prepares (and runs popcount tiles)
    if pop:
        acc: Accumulator = PopcountAccumulator(rows=rows, chunk=chunk, block_size=block_size, pool=pool)
    else:
        acc = GemmAccumulator(rows=rows, chunk=chunk, block_size=block_size, device=device, threads=threads)
    if sparse_limit is None:  # a variant's cost in the kernel, in carrier pairs
        sparse_limit = -1 if device == "cuda" else int(acc.cells // (POPCOUNT_PAIR_CELLS if pop else SPARSE_PAIR_CELLS))
    stats = stats if stats is not None else ScanStats()
    prepare = functools.partial(_prepare, acc=acc, pair_limit=sparse_limit)
    ahead = None
    try:
        ahead = _ahead(_prepared(source, prepare, chunk=chunk, stats=stats, pool=pool, depth=threads,
                                 reuse=acc.copies),
                       threads > 1)
        for c in ahead:
            stats.ibs0_expected_sum += c.ibs0_sum  # all samples: the same in every pass and part
            acc.accumulate(c)
        acc.flush()
    finally:
        if ahead is not None:
            ahead.close()  # stops the reader thread before the pool goes
        acc.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if stats.variants > _MAX_COUNT:
        raise InputError(f"{source.path}: {stats.variants} variants overflow the int32 counts; "
                         "split the input by chromosome and sum the counts")
    acc.collect()
    bands = _bands(acc.nrow, threads)
    if len(bands) > 1:  # numpy and the compiled loop release the GIL: row bands in parallel
        with _pool(threads, "king-finish") as ex:
            for f in [ex.submit(acc.finish, *b) for b in bands]:
                f.result()
    else:
        acc.finish(0, acc.nrow)
    return PairCounts((r0, r1), *acc.counts())
