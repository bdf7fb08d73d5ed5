"""Exact KING pair counts of a row range, in one streaming pass over the genotypes.

For every pair the KING estimators need five counts over the variants called in both
samples: HETHET (both heterozygous), IBS0 (opposite homozygotes), the two "het in one,
hom in the other" counts and NSNP. With per-sample indicator vectors H (het), C
(called) and S (+1 hom-alt, −1 hom-ref, 0 otherwise) every count is an inner product:

    HETHET = H·H'   NSNP = C·C'   het-row/hom-col = H·C' − H·H'   hom-row/het-col = C·H' − H·H'
    IBS0 = (homhom − S·S') / 2,  homhom = C·C' − H·C' − C·H' + H·H'

On CPU these come from bit-packed genotypes, all counts of a pair in one loop of
popcounts (:mod:`snpbag.kinship.popcount`, numba; about 3.5x the int8 GEMMs' speed
and no torch import). Otherwise (``kernel="gemm"``, CUDA, or no numba) a tile of pairs
costs two int8 matrix products per variant chunk (``H·H'`` and ``S·S'``,
:mod:`snpbag.kinship.gemm`) where every sample of the pass is called (C = 1 makes H·C' a
per-sample het count and C·C' the variant count), plus ``[H;C]·[H;C]'`` for variants
with a missing call. Complete variants with few minor-allele carriers skip both kernels
(:mod:`snpbag.kinship.carriers`). Pairs (i, j), j < i, of rows ``[r0, r1)`` are computed
in tiles below the diagonal (:func:`_tiles`, :func:`~snpbag.kinship.popcount.tiles`).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np

from snpbag.errors import InputError
from snpbag.kinship import gemm
from snpbag.kinship.carriers import CarrierPairs, carrier_pairs
from snpbag.kinship.source import GenotypeSource, ScanStats, expected_ibs0_sum

log = logging.getLogger(__name__)

#: Bytes of genotypes + indicators held per variant chunk.
CHUNK_MEMORY = 256 << 20
_MAX_COUNT = 2**29 - 1  # S·S' accumulates X·X' <= 4 per variant in int32
#: Complete variants whose minor-allele carriers form at most this many pairs per this
#: many GEMM cells (pairs x variants, per thread) are counted from carrier-pair lists
#: instead (plink2's rare-variant scan); measured on a 2-core EPYC (docs/benchmarks.md).
SPARSE_PAIR_CELLS = 3500
#: Row-band height of the CPU GEMM tiles: diagonal tiles compute about band²/2 unused pairs.
CPU_BAND = 512
#: Tile side of the popcount kernel (its planes: 2 x 8 bytes per 64 variants and sample).
POPCOUNT_BAND = 256
#: As SPARSE_PAIR_CELLS, for the popcount kernel: pairs of the pass per carrier pair
#: (flat between 7,000 and 14,000 on the same machine, 3,000 samples).
POPCOUNT_PAIR_CELLS = 10000
KERNELS = ("auto", "popcount", "gemm")
#: Carrier pairs buffered before they are counted (np.bincount over the pass's cells).
PAIR_BUFFER = 1 << 23


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



@dataclass
class _Chunk:
    """One variant chunk, split by how its pairs are counted."""

    ibs0_sum: float
    # variants every sample of the pass called: (v, ncol) dosages for the GEMMs, or for the
    # popcount kernel their bit-planes (H, A), packed where they lay in the decoded chunk
    dense: np.ndarray | tuple[np.ndarray, ...] | None = None
    n_dense: int = 0
    het: np.ndarray | None = None  # packed only: heterozygous calls per sample among them
    # variants with a missing call: dosages (−1 missing) or bit-planes (H, A, R)
    dense_missing: np.ndarray | tuple[np.ndarray, ...] | None = None
    n_dense_missing: int = 0
    sparse: CarrierPairs | None = None


_TRIL: dict[int, tuple[np.ndarray, np.ndarray]] = {}



def _prepare(g: np.ndarray, *, r0: int, ncol: int, pair_limit: int, pop: bool = False) -> _Chunk:
    """Split a dosage chunk (v, n_all) into kernel operands and carrier-pair lists (runs ahead in a thread).

    A variant called in every sample of the pass with at most ``pair_limit`` pairs of
    minor-allele carriers goes to the pair lists; the ALT/REF coding is flipped where ALT
    is the major allele (HETHET, IBS0 and S·S' do not change when both samples flip).
    With ``pop`` the other variants are bit-packed straight from ``g`` (no dense copies),
    here, so that with threads the packing runs in the pool too.
    """
    if g.size:
        sums, low = _row_sums(g)
        complete_all = low >= 0
        alt_all = sums if complete_all else None
    else:
        complete_all, alt_all = True, np.zeros(g.shape[0], dtype=np.int64)
    out = _Chunk(ibs0_sum=expected_ibs0_sum(g, alt_all))
    gp = g[:, :ncol] if ncol < g.shape[1] else g
    complete = np.ones(g.shape[0], dtype=bool) if complete_all else gp.min(axis=1) >= 0
    sparse = np.zeros(g.shape[0], dtype=bool)
    flip = None
    if pair_limit >= 0:
        alt = alt_all if alt_all is not None and gp is g else gp.sum(axis=1, dtype=np.int64)
        k = np.minimum(alt, 2 * ncol - alt)  # minor-allele count >= its carriers
        npairs = k * (k - 1) // 2
        sparse = complete & (npairs <= pair_limit)
        flip = alt > ncol
        if npairs[sparse].sum() > PAIR_BUFFER:  # bound the chunk's pair lists: the rarest variants first
            idx = np.flatnonzero(sparse)
            order = np.argsort(npairs[idx], kind="stable")
            sparse[idx[order[np.cumsum(npairs[idx][order]) > PAIR_BUFFER]]] = False
    if sparse.any():
        idx = np.flatnonzero(sparse)
        out.sparse = carrier_pairs(g, idx, flip[idx], r0=r0, ncol=ncol)
    dense = complete & ~sparse
    if pop:
        from snpbag.kinship import popcount

        idx = np.flatnonzero(dense)
        if idx.size:
            out.dense, out.n_dense = popcount.pack(g, missing=False, rows=idx, n=ncol), idx.size
            out.het = popcount.ones(out.dense[0])
        idx = np.flatnonzero(~complete)
        if idx.size:
            out.dense_missing = popcount.pack(g, missing=True, rows=idx, n=ncol)
            out.n_dense_missing = idx.size
        return out
    if dense.all():
        out.dense = np.ascontiguousarray(gp)
    elif dense.any():
        out.dense = gp[dense]
    if not complete.all():
        out.dense_missing = gp[~complete]
    out.n_dense = 0 if out.dense is None else out.dense.shape[0]
    out.n_dense_missing = 0 if out.dense_missing is None else out.dense_missing.shape[0]
    return out



def _prepare_all(job, **kw) -> list[_Chunk]:
    """:func:`_prepare` of each dosage chunk a source job (GenotypeSource.dosage_jobs) returns."""
    return [_prepare(g, **kw) for g in job()]


def _jobs(source, n: int, chunk: int, stats: ScanStats, reuse: bool):
    """GenotypeSource.dosage_jobs, or jobs returning the chunks of any object with a ``dosages`` method."""
    if hasattr(source, "dosage_jobs"):
        return source.dosage_jobs(n, chunk=chunk, stats=stats, reuse=reuse)
    return (functools.partial(list, (g,)) for g in source.dosages(n, chunk=chunk, stats=stats))


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


def _tiles(r0: int, r1: int, band: int, width: int) -> list[tuple[int, int, int, int]]:
    """(i0, i1, j0, j1) tiles covering pairs j < i, r0 <= i < r1, at most ``width`` columns wide.

    Row bands of ``band`` rows: columns left of the band in ``width`` pieces, the band's own
    (diagonal) square in sub-bands of ``band // 4`` rows, so the unused pairs j >= i
    computed there stay about n·band/8.
    """
    out = []
    sub = max(band // 4, 1)
    for i0 in range(r0, r1, band):
        i1 = min(i0 + band, r1)
        out += [(i0, i1, j0, min(j0 + width, i0)) for j0 in range(0, i0, width)]
        for s0 in range(i0, i1, sub):
            s1 = min(s0 + sub, i1)
            out += [(s0, s1, j0, min(j0 + width, s1)) for j0 in range(i0, s1, width)]
    return out



def pair_counts(source: GenotypeSource, *, rows: tuple[int, int], block_size: int = 2048,
                device: str = "cpu", chunk: int | None = None, stats: ScanStats | None = None,
                threads: int = 1, sparse_limit: int | None = None, kernel: str = "auto") -> PairCounts:
    """Exact KING counts of every pair in ``rows`` (one streaming pass over the input).

    Parameters
    ----------
    source : the genotypes.
    rows : ``(start, stop)``: pairs (i, j) with ``start <= i < stop`` and ``j < i``.
    block_size : samples per tile side (on CPU, row bands of at most CPU_BAND rows).
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
    importer = gemm.import_torch_in_background() if threads > 1 and not pop else None
    r0, r1 = rows
    ncol, nrow = r1, r1 - r0
    n_all = source.n_samples
    if chunk is None:  # from the cohort size, so every pass and part sees the same chunks
        chunk = 1 << max(9, min(13, int(math.log2(max(CHUNK_MEMORY // (6 * n_all), 1)))))
    if pop:
        from snpbag.kinship import popcount

        tiles = popcount.tiles(r0, r1, min(block_size, POPCOUNT_BAND))
        cells = (r1 * (r1 - 1) - r0 * (r0 - 1)) // 2
        pair_cells = POPCOUNT_PAIR_CELLS
    else:
        band = block_size if device == "cuda" else min(block_size, CPU_BAND)
        tiles = _tiles(r0, r1, band, block_size)
        cells = 2 * sum((i1 - i0) * (j1 - j0) for i0, i1, j0, j1 in tiles)  # 2 products per variant
        pair_cells = SPARSE_PAIR_CELLS
    if sparse_limit is None:  # a variant's cost in the kernel, in carrier pairs
        sparse_limit = -1 if device == "cuda" else int(cells // pair_cells)
    gpu = {}  # torch state, made on the first GEMM (torch imports meanwhile)
    cpu = {}  # numpy accumulators and thread pool of the popcount kernel
    het_complete = np.zeros(ncol, dtype=np.int64)  # per sample, over complete variants
    n_complete = 0
    # carrier pairs count into HETHET and X·X' (X = minor-allele dosage); at the end
    # S·S' = X·X' − x_i − x_j + n over those variants (S = X − 1)
    sp_y = None  # GEMMs: pairs of heterozygous carriers (+1 to HETHET and X·X'); popcount adds them in place
    hom: list[tuple[np.ndarray, np.ndarray]] = []  # pairs with a homozygous carrier (X·X' only)
    x_sparse = np.zeros(ncol, dtype=np.int64)
    n_sparse = 0
    pairs, n_pairs = [], 0
    dense, dense_missing = [], []  # the chunks' dosages, or with the popcount kernel their planes
    n_dense = n_missing = 0  # variants buffered in each
    reading = threads > 1

    def torch_state():
        if not gpu:
            if importer is not None:
                importer.join()
            import torch

            dev = torch.device(device)
            gpu.update(torch=torch, dev=dev, int8=gemm.int8_gemm_ok(dev),
                       hh=torch.zeros((nrow, ncol), dtype=torch.int32, device=dev),  # H·H' (complete variants)
                       ss=torch.zeros((nrow, ncol), dtype=torch.int32, device=dev),  # S·S' (all variants)
                       acc=None)  # [H;C]·[H;C]' of variants with a missing call
            gpu["prev_threads"] = torch.get_num_threads()
            torch.set_num_threads(max(threads - 1, 1) if reading else threads)  # leave the reader a core
        return gpu

    def cpu_state():
        if not cpu:
            cpu.update(hh=np.zeros((nrow, ncol), dtype=np.int32), ss=np.zeros((nrow, ncol), dtype=np.int32),
                       miss=None, pool=None)
            if threads > 1:
                cpu["pool"] = _pool(threads, "king-popcount")
        return cpu

    def planes_of(parts: list) -> tuple[np.ndarray, ...]:  # chunks' planes side by side (padding words count 0)
        planes = parts[0] if len(parts) == 1 else tuple(np.concatenate(p, axis=1) for p in zip(*parts))
        parts.clear()
        return planes

    def flush_dense():
        nonlocal n_complete, n_dense
        n_dense = 0
        if pop:  # adds HETHET − 2·IBS0 to ss; the rest of S·S' (n − het_i − het_j) comes at the end
            st = cpu_state()
            popcount.count_complete(planes_of(dense), st["hh"], st["ss"], r0=r0, tiles=tiles, pool=st["pool"])
            return
        d = np.concatenate(dense) if len(dense) > 1 else dense[0]
        dense.clear()
        n_complete += d.shape[0]
        h = (d == 1).view(np.int8)
        het_complete[:] += h.sum(axis=0, dtype=np.int64)
        st = torch_state()
        torch, int8, acc_hh, acc_s = st["torch"], st["int8"], st["hh"], st["ss"]
        h = torch.from_numpy(h).to(st["dev"])
        s = torch.from_numpy(d - np.int8(1)).to(st["dev"])  # −1 hom REF, 0 het, +1 hom ALT
        for i0, i1, j0, j1 in tiles:
            acc_hh[i0 - r0:i1 - r0, j0:j1] += gemm.matmul(h[:, i0:i1], h[:, j0:j1], int8=int8)
            acc_s[i0 - r0:i1 - r0, j0:j1] += gemm.matmul(s[:, i0:i1], s[:, j0:j1], int8=int8)

    def flush_missing():
        nonlocal n_missing
        n_missing = 0
        if pop:
            st = cpu_state()
            if st["miss"] is None:  # H·C', C·H', C·C'
                st["miss"] = tuple(np.zeros((nrow, ncol), dtype=np.int32) for _ in range(3))
            popcount.count_missing(planes_of(dense_missing), st["hh"], *st["miss"], st["ss"], r0=r0,
                                   tiles=tiles, pool=st["pool"])
            return
        d = np.concatenate(dense_missing) if len(dense_missing) > 1 else dense_missing[0]
        dense_missing.clear()
        st = torch_state()
        torch, int8, acc_s = st["torch"], st["int8"], st["ss"]
        s = torch.from_numpy(np.where(d < 0, np.int8(0), d - np.int8(1))).to(st["dev"])
        gm = torch.from_numpy(d).to(st["dev"])
        hc = torch.stack((gm == 1, gm >= 0), dim=2).to(torch.int8).reshape(d.shape[0], 2 * ncol)  # H0,C0,H1,..
        if st["acc"] is None:
            st["acc"] = torch.zeros((nrow, 2, ncol, 2), dtype=torch.int32, device=st["dev"])
        acc = st["acc"]
        for i0, i1, j0, j1 in tiles:
            p = gemm.matmul(hc[:, 2 * i0:2 * i1], hc[:, 2 * j0:2 * j1], int8=int8)
            acc[i0 - r0:i1 - r0, :, j0:j1, :] += p.view(i1 - i0, 2, j1 - j0, 2)
            acc_s[i0 - r0:i1 - r0, j0:j1] += gemm.matmul(s[:, i0:i1], s[:, j0:j1], int8=int8)

    def flush_pairs():
        nonlocal sp_y, n_pairs
        f = np.concatenate(pairs) if len(pairs) > 1 else pairs[0]
        pairs.clear()
        n_pairs = 0
        y = np.bincount(f, minlength=nrow * ncol).reshape(nrow, ncol)
        if sp_y is None:
            sp_y = y.astype(np.int32)
        else:
            np.add(sp_y, y, out=sp_y, casting="unsafe")

    stats = stats if stats is not None else ScanStats()
    ahead = None
    try:
        if threads > 1:  # chunks decoded and prepared by a pool (the popcount kernel's too), in order;
            # the popcount _prepare copies what it keeps (bit-planes, carrier pairs), so a thread's
            # decoded chunks may reuse one buffer
            prep = cpu_state()["pool"] if pop else _pool(threads, "king-prepare")
            if not pop:
                cpu["prep"] = prep
            chunks = _in_order((functools.partial(_prepare_all, job, r0=r0, ncol=ncol, pair_limit=sparse_limit,
                                                  pop=pop)
                                for job in _jobs(source, n_all, chunk, stats, reuse=pop)), prep, threads)
        else:
            chunks = (_prepare(g, r0=r0, ncol=ncol, pair_limit=sparse_limit, pop=pop)
                      for g in source.dosages(n_all, chunk=chunk, stats=stats))
        ahead = _ahead(chunks, threads > 1)
        for c in ahead:
            stats.ibs0_expected_sum += c.ibs0_sum  # all samples: the same in every pass and part
            if c.sparse is not None:  # pair indices were made against nrow x ncol cells
                sp = c.sparse
                het_complete += sp.het
                n_complete += sp.n
                x_sparse += sp.x
                n_sparse += sp.n
                if sp.flat.size and pop:  # straight into HETHET and S·S' (the kernels' tiles are not running)
                    st = cpu_state()
                    popcount.add_pairs(sp.flat, st["hh"], st["ss"])
                elif sp.flat.size:
                    pairs.append(sp.flat)
                    n_pairs += sp.flat.size
                if sp.hom_flat.size:
                    hom.append((sp.hom_flat, sp.hom_w))
                if n_pairs >= max(PAIR_BUFFER, nrow * ncol):
                    flush_pairs()
            if c.het is not None:  # packed: the per-sample terms are known now (GEMMs: at the flush)
                het_complete += c.het
                x_sparse += c.het
                n_complete += c.n_dense
                n_sparse += c.n_dense
            if c.dense is not None:
                dense.append(c.dense)
                n_dense += c.n_dense
                if n_dense >= chunk:
                    flush_dense()
            if c.dense_missing is not None:
                dense_missing.append(c.dense_missing)
                n_missing += c.n_dense_missing
                if n_missing >= chunk:
                    flush_missing()
        reading = False
        if gpu:
            gpu["torch"].set_num_threads(threads)
        if dense:
            flush_dense()
        if dense_missing:
            flush_missing()
        if pairs:
            flush_pairs()
        st = cpu_state() if pop else torch_state()
    finally:
        if ahead is not None:
            ahead.close()  # stops the reader thread before the pools go
        if gpu:
            gpu["torch"].set_num_threads(gpu["prev_threads"])
        for k in ("pool", "prep"):
            if cpu.get(k) is not None:
                cpu[k].shutdown(cancel_futures=True)
    if stats.variants > _MAX_COUNT:
        raise InputError(f"{source.path}: {stats.variants} variants overflow the int32 counts; "
                         "split the input by chromosome and sum the counts")
    if pop:
        hh, ss, miss, acc = st["hh"], st["ss"], st["miss"], None
    else:
        hh, ss, miss, acc = st["hh"].cpu().numpy(), st["ss"].cpu().numpy(), None, st["acc"]
    st.clear()
    if hom:  # few: add each distinct pair once
        f, w = (np.concatenate(x) for x in zip(*hom))
        u, inv = np.unique(f, return_inverse=True)
        ss.reshape(-1)[u] += np.bincount(inv, weights=w, minlength=u.size).astype(np.int32)
    a = acc.cpu().numpy() if acc is not None else None
    del acc
    if pop:  # finish writes each cell after reading it: the accumulators take the counts (no fresh pages)
        ibs0 = ss
        het_row, het_col, nsnp = miss if miss is not None else (np.empty(hh.shape, dtype=np.int32) for _ in range(3))
    else:
        het_row, het_col, nsnp, ibs0 = (np.empty(hh.shape, dtype=np.int32) for _ in range(4))

    def finish_compiled(b0: int, b1: int) -> None:  # as finish, in one compiled pass
        none = np.zeros((0, 0), dtype=np.int32)
        m = miss if miss is not None else (none, none, none)
        popcount.finish(hh, ss, het_row, het_col, nsnp, ibs0, x_sparse, n_sparse, het_complete, n_complete, *m,
                        r0, b0, b1)

    def finish(b0: int, b1: int) -> None:  # rows [b0, b1) of the pass: every count from the accumulators
        h, s, hr, hc, ns, ib = (x[b0:b1] for x in (hh, ss, het_row, het_col, nsnp, ibs0))
        if sp_y is not None:
            h += sp_y[b0:b1]
            s += sp_y[b0:b1]
        if n_sparse:  # S·S' = X·X' − x_i − x_j + n over the carrier-pair (and popcount complete) variants
            s -= x_sparse[r0 + b0:r0 + b1, None]
            s -= x_sparse[None, :]
            s += n_sparse
        hr[...] = het_complete[r0 + b0:r0 + b1, None]  # row het, column called: H·C'
        hc[...] = het_complete[None, :]
        ns[...] = n_complete
        if a is not None:
            h += a[b0:b1, 0, :, 0]
            hr += a[b0:b1, 0, :, 1]
            hc += a[b0:b1, 1, :, 0]
            ns += a[b0:b1, 1, :, 1]
        if miss is not None:  # the popcount kernel added HETHET to hh already
            hr += miss[0][b0:b1]
            hc += miss[1][b0:b1]
            ns += miss[2][b0:b1]
        hr -= h  # now het row / hom column
        hc -= h
        np.subtract(ns, hr, out=ib)  # homhom = NSNP − A − B − HETHET; IBS0 = (homhom − S·S') / 2
        ib -= hc
        ib -= h
        ib -= s
        ib //= 2

    bands = _bands(nrow, threads)
    fin = finish_compiled if pop else finish
    if len(bands) > 1:  # numpy and the compiled loop release the GIL: row bands in parallel
        with _pool(threads, "king-finish") as ex:
            for f in [ex.submit(fin, *b) for b in bands]:
                f.result()
    else:
        fin(0, nrow)
    sp_y = a = miss = None  # noqa: F841  (free the accumulators before returning)
    return PairCounts(rows=(r0, r1), hethet=hh, ibs0=ibs0, het_row=het_row, het_col=het_col, nsnp=nsnp)

