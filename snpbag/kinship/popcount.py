"""Exact KING counts with bit-packed genotypes and popcounts (plink2's kernel), compiled by numba.

Each sample's genotypes become 64-bit bit-planes, one bit per variant: H (heterozygous),
A (homozygous ALT) and, where calls are missing, R (homozygous REF; without missing calls
R = ~(H | A)). For a pair (i, j) a loop over the words counts all of a variant chunk's
contributions at once:

    HETHET = pop(H_i & H_j)     IBS0 = pop(A_i & R_j | R_i & A_j)
    H·C'   = pop(H_i & C_j)     C·H' = pop(C_i & H_j)     NSNP = pop(C_i & C_j)   (C = H | A | R)

and the counts go into :class:`PopcountAccumulator`'s accumulators in their ``S·S'`` form
(``S·S' = homhom − 2·IBS0`` with ``homhom = NSNP − H·C' − C·H' + HETHET``; for complete
variants the per-sample terms are added at the end). The loop over words is vectorised
by LLVM (AVX-512 ``vpopcntq`` where the CPU has it) and unrolled over 2 × 2 pairs so each
loaded word serves two pairs. Tiles of pairs run in threads (the kernels release the GIL).
Compiled code is cached next to this module (``cache=True``): the first run on a machine
spends ~0.6 s of CPU compiling, later runs ~0.2 s loading it (docs/benchmarks.md).
:class:`PopcountAccumulator` is the counting strategy built on these kernels.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from snpbag.kinship.accumulator import Accumulator, Chunk

#: Words per sample and plane are padded to a multiple of this (one 512-bit vector).
WORD_ALIGN = 8
#: Tile side (its planes: 2 x 8 bytes per 64 variants and sample).
BAND = 256


@intrinsic
def _popcnt(typingctx, x):
    """llvm.ctpop.i64: one ``popcnt``, or ``vpopcntq`` lanes once the loop is vectorised."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(fn, args)

    return sig, codegen


def n_words(v: int) -> int:
    """Words per sample and plane for ``v`` variants (padded to WORD_ALIGN)."""
    return -(-v // (64 * WORD_ALIGN)) * WORD_ALIGN


def pack(d: np.ndarray, *, missing: bool, rows: np.ndarray | None = None, n: int | None = None
         ) -> tuple[np.ndarray, ...]:
    """Bit-planes (n, n_words(v)) uint64 of dosages ``d`` (v, n): (H, A), or (H, A, R) with ``missing``.

    ``rows`` (indices into ``d``) and ``n`` (leading columns) select without copying ``d``:
    a decoded chunk is packed where it lies, however strided.
    """
    rows = np.arange(d.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    n = d.shape[1] if n is None else n
    planes = tuple(np.zeros((n, n_words(rows.size)), dtype=np.uint64) for _ in range(3 if missing else 2))
    _pack(d, rows, *planes) if missing else _pack2(d, rows, *planes)
    return planes


@njit(cache=True, nogil=True)
def _pack2(d, rows, H, A):  # pragma: no cover - compiled
    v = rows.size
    n = H.shape[0]
    for w in range((v + 63) // 64):
        t0 = w * 64
        nt = min(64, v - t0)
        for s in range(n):
            h = np.uint64(0)
            a = np.uint64(0)
            for t in range(nt):
                x = d[rows[t0 + t], s]
                h |= np.uint64(x == 1) << np.uint64(t)
                a |= np.uint64(x == 2) << np.uint64(t)
            H[s, w] = h
            A[s, w] = a


@njit(cache=True, nogil=True)
def _pack(d, rows, H, A, R):  # pragma: no cover - compiled
    v = rows.size
    n = H.shape[0]
    for w in range((v + 63) // 64):
        t0 = w * 64
        nt = min(64, v - t0)
        for s in range(n):
            h = np.uint64(0)
            a = np.uint64(0)
            r = np.uint64(0)
            for t in range(nt):
                x = d[rows[t0 + t], s]
                h |= np.uint64(x == 1) << np.uint64(t)
                a |= np.uint64(x == 2) << np.uint64(t)
                r |= np.uint64(x == 0) << np.uint64(t)
            H[s, w] = h
            A[s, w] = a
            R[s, w] = r


@njit(cache=True, nogil=True)
def _complete_tile(H, A, hh, ss, r0, i0, i1, j0, j1):  # pragma: no cover - compiled
    """Pairs j < i, i0 <= i < i1, j0 <= j < j1 of complete variants: hh += HETHET, ss += HETHET − 2·IBS0."""
    K = H.shape[1]
    i = i0
    while i < i1:
        two = i + 1 < i1
        je = min(j1, i)
        j = j0
        while two and j + 2 <= je:  # 2 x 2 pairs: (i, j), (i, j+1), (i+1, j), (i+1, j+1)
            a00 = np.uint64(0)
            a01 = np.uint64(0)
            a10 = np.uint64(0)
            a11 = np.uint64(0)
            c00 = np.uint64(0)
            c01 = np.uint64(0)
            c10 = np.uint64(0)
            c11 = np.uint64(0)
            for k in range(K):
                h0 = H[i, k]
                x0 = A[i, k]
                h1 = H[i + 1, k]
                x1 = A[i + 1, k]
                g0 = H[j, k]
                u0 = A[j, k]
                g1 = H[j + 1, k]
                u1 = A[j + 1, k]
                q0 = ~(h0 | x0)  # hom REF
                q1 = ~(h1 | x1)
                w0 = ~(g0 | u0)
                w1 = ~(g1 | u1)
                a00 += _popcnt(h0 & g0)
                a01 += _popcnt(h0 & g1)
                a10 += _popcnt(h1 & g0)
                a11 += _popcnt(h1 & g1)
                c00 += _popcnt((x0 & w0) | (q0 & u0))
                c01 += _popcnt((x0 & w1) | (q0 & u1))
                c10 += _popcnt((x1 & w0) | (q1 & u0))
                c11 += _popcnt((x1 & w1) | (q1 & u1))
            ri = i - r0
            hh[ri, j] += np.int64(a00)
            hh[ri, j + 1] += np.int64(a01)
            hh[ri + 1, j] += np.int64(a10)
            hh[ri + 1, j + 1] += np.int64(a11)
            ss[ri, j] += np.int64(a00) - 2 * np.int64(c00)
            ss[ri, j + 1] += np.int64(a01) - 2 * np.int64(c01)
            ss[ri + 1, j] += np.int64(a10) - 2 * np.int64(c10)
            ss[ri + 1, j + 1] += np.int64(a11) - 2 * np.int64(c11)
            j += 2
        for ii in range(i, i + 2 if two else i + 1):  # the pairs left over, one at a time
            for jj in range(j, min(j1, ii)):
                a = np.uint64(0)
                c = np.uint64(0)
                for k in range(K):
                    h0 = H[ii, k]
                    x0 = A[ii, k]
                    g0 = H[jj, k]
                    u0 = A[jj, k]
                    a += _popcnt(h0 & g0)
                    c += _popcnt((x0 & ~(g0 | u0)) | (~(h0 | x0) & u0))
                hh[ii - r0, jj] += np.int64(a)
                ss[ii - r0, jj] += np.int64(a) - 2 * np.int64(c)
        i += 2 if two else 1


@njit(cache=True, nogil=True)
def _missing_tile(H, A, R, hh, hc, ch, cc, ss, r0, i0, i1, j0, j1):  # pragma: no cover - compiled
    """Pairs as :func:`_complete_tile`, variants with missing calls: HETHET, H·C', C·H', NSNP and S·S'."""
    K = H.shape[1]
    for i in range(i0, i1):
        je = min(j1, i)
        j = j0
        while j < je:
            two = j + 1 < je
            j2 = j + 1 if two else j
            a0 = np.uint64(0)
            b0 = np.uint64(0)
            e0 = np.uint64(0)
            n0 = np.uint64(0)
            z0 = np.uint64(0)
            a1 = np.uint64(0)
            b1 = np.uint64(0)
            e1 = np.uint64(0)
            n1 = np.uint64(0)
            z1 = np.uint64(0)
            for k in range(K):
                h = H[i, k]
                x = A[i, k]
                q = R[i, k]
                c = h | x | q
                g0 = H[j, k]
                u0 = A[j, k]
                w0 = R[j, k]
                d0 = g0 | u0 | w0
                g1 = H[j2, k]
                u1 = A[j2, k]
                w1 = R[j2, k]
                d1 = g1 | u1 | w1
                a0 += _popcnt(h & g0)
                b0 += _popcnt(h & d0)
                e0 += _popcnt(c & g0)
                n0 += _popcnt(c & d0)
                z0 += _popcnt((x & w0) | (q & u0))
                a1 += _popcnt(h & g1)
                b1 += _popcnt(h & d1)
                e1 += _popcnt(c & g1)
                n1 += _popcnt(c & d1)
                z1 += _popcnt((x & w1) | (q & u1))
            ri = i - r0
            hh[ri, j] += np.int64(a0)
            hc[ri, j] += np.int64(b0)
            ch[ri, j] += np.int64(e0)
            cc[ri, j] += np.int64(n0)
            ss[ri, j] += np.int64(n0) - np.int64(b0) - np.int64(e0) + np.int64(a0) - 2 * np.int64(z0)
            if two:
                hh[ri, j2] += np.int64(a1)
                hc[ri, j2] += np.int64(b1)
                ch[ri, j2] += np.int64(e1)
                cc[ri, j2] += np.int64(n1)
                ss[ri, j2] += np.int64(n1) - np.int64(b1) - np.int64(e1) + np.int64(a1) - 2 * np.int64(z1)
            j += 2


@njit(cache=True, nogil=True)
def ones(P):  # pragma: no cover - compiled
    """Set bits of each row of a bit-plane (n, words): e.g. heterozygous calls per sample."""
    n, K = P.shape
    out = np.zeros(n, dtype=np.int64)
    for s in range(n):
        c = np.uint64(0)
        for k in range(K):
            c += _popcnt(P[s, k])
        out[s] = np.int64(c)
    return out


@njit(cache=True, nogil=True)
def add_pairs(flat, hh, ss):  # pragma: no cover - compiled
    """+1 to ``hh`` and ``ss`` at each flat cell index: carrier pairs (:mod:`~snpbag.kinship.carriers`)."""
    h = hh.reshape(-1)
    s = ss.reshape(-1)
    for f in flat:
        h[f] += 1
        s[f] += 1


@njit(cache=True, nogil=True)
def finish(hh, ss, het_row, het_col, nsnp, ibs0, x, n_x, het, n_complete, m_hr, m_hc, m_ns, r0, b0,
           b1):  # pragma: no cover - compiled
    """Rows [b0, b1) of a pass: every count of :class:`~snpbag.kinship.counts.PairCounts` from the accumulators.

    One pass over the cells instead of numpy's dozen (:func:`~snpbag.kinship.counts.pair_counts`
    spells out the algebra). ``hh``/``ss``: HETHET and ``S·S'`` so far (popcount kernels and
    carrier pairs, :func:`add_pairs`); ``x``/``n_x``: minor-allele
    dosages and variant count of the complete variants, whose ``S·S' = X·X' − x_i − x_j +
    n``; ``het``/``n_complete``: per-sample het calls and count of complete variants;
    ``m_*``: H·C', C·H', C·C' of variants with missing calls (shape (0, 0) if none).
    Columns j >= i, which no pair uses, are set to 0. Each cell is read before it is
    written, so outputs may be the inputs they come from (``ibs0`` = ``ss``, ``het_row`` =
    ``m_hr``, …): a pass then needs no fresh 4-byte-per-pair arrays for them.
    """
    ncol = hh.shape[1]
    has_m = m_hr.shape[0] > 0
    for r in range(b0, b1):
        i = r0 + r
        hi = het[i]
        si = n_x - x[i]
        for j in range(min(i, ncol)):
            h = np.int64(hh[r, j])
            s = np.int64(ss[r, j]) + si - x[j]
            hr = hi - h  # het row / hom column: H·C' − HETHET
            hc = het[j] - h
            ns = np.int64(n_complete)
            if has_m:
                hr += m_hr[r, j]
                hc += m_hc[r, j]
                ns += m_ns[r, j]
            hh[r, j] = h
            het_row[r, j] = hr
            het_col[r, j] = hc
            nsnp[r, j] = ns
            ibs0[r, j] = (ns - hr - hc - h - s) // 2  # homhom − S·S', halved
        for j in range(min(i, ncol), ncol):
            hh[r, j] = 0
            het_row[r, j] = 0
            het_col[r, j] = 0
            nsnp[r, j] = 0
            ibs0[r, j] = 0


def tiles(r0: int, r1: int, band: int) -> list[tuple[int, int, int, int]]:
    """(i0, i1, j0, j1) tiles of ``band`` rows × at most ``band`` columns covering pairs j < i of rows [r0, r1)."""
    out = []
    for i0 in range(r0, r1, band):
        i1 = min(i0 + band, r1)
        out += [(i0, i1, j0, min(j0 + band, i1)) for j0 in range(0, i1 - 1, band)]
    return out


def count_complete(planes, hh: np.ndarray, ss: np.ndarray, *, r0: int, tiles: list, pool=None) -> None:
    """Add a complete chunk's HETHET to ``hh`` and ``HETHET − 2·IBS0`` to ``ss`` (int32, rows from r0)."""
    H, A = planes
    _run(_complete_tile, (H, A, hh, ss, r0), tiles, pool)


def count_missing(planes, hh, hc, ch, cc, ss, *, r0: int, tiles: list, pool=None) -> None:
    """Add a chunk with missing calls: HETHET, H·C', C·H', NSNP and S·S' (int32 arrays, rows from r0)."""
    H, A, R = planes
    _run(_missing_tile, (H, A, R, hh, hc, ch, cc, ss, r0), tiles, pool)


def _run(kernel, args, tiles, pool) -> None:
    if pool is None:
        for t in tiles:
            kernel(*args, *t)
        return
    for f in [pool.submit(kernel, *args, *t) for t in tiles]:
        f.result()


class PopcountAccumulator(Accumulator):
    """KING counts from bit-packed genotypes and popcounts, on the CPU (numba; no torch).

    Chunks are packed into bit-planes where they lie, in the reader threads; tiles of pairs
    run in ``pool`` (None: this thread). ``hh`` takes HETHET and ``ss`` the kernels'
    ``HETHET − 2·IBS0`` and carrier pairs' ``X·X'`` (the per-sample rest of ``S·S'`` is
    added at the end: complete variants count into ``x`` with their het calls); ``miss``
    takes H·C', C·H' and C·C' of the variants with missing calls. :meth:`finish` writes
    the counts over these arrays, so a pass needs no fresh 4-byte-per-pair arrays.
    """

    copies = True

    def __init__(self, *, rows: tuple[int, int], chunk: int, block_size: int, pool=None):
        super().__init__(rows=rows, chunk=chunk)
        self.tiles = tiles(self.r0, self.ncol, min(block_size, BAND))
        self.pool = pool
        self.hh = np.zeros((self.nrow, self.ncol), dtype=np.int32)
        self.ss = np.zeros((self.nrow, self.ncol), dtype=np.int32)
        self.miss: tuple[np.ndarray, ...] | None = None

    @property
    def cells(self) -> int:
        r0, r1 = self.r0, self.ncol
        return (r1 * (r1 - 1) - r0 * (r0 - 1)) // 2

    def prepare(self, g: np.ndarray, c: Chunk, *, dense: np.ndarray, complete: np.ndarray) -> None:
        idx = np.flatnonzero(dense)
        if idx.size:
            c.dense, c.n_dense = pack(g, missing=False, rows=idx, n=self.ncol), idx.size
            c.het = ones(c.dense[0])
        idx = np.flatnonzero(~complete)
        if idx.size:
            c.missing, c.n_missing = pack(g, missing=True, rows=idx, n=self.ncol), idx.size

    def accumulate(self, c: Chunk) -> None:
        if c.het is not None:  # packed: the per-sample terms are known now
            self.het += c.het
            self.x += c.het
            self.n_complete += c.n_dense
            self.n_x += c.n_dense
        super().accumulate(c)

    def _add_pairs(self, flat: np.ndarray) -> None:  # straight in: the tiles are not running
        add_pairs(flat, self.hh, self.ss)

    def _count_dense(self, parts: list) -> None:
        count_complete(_joined(parts), self.hh, self.ss, r0=self.r0, tiles=self.tiles, pool=self.pool)

    def _count_missing(self, parts: list) -> None:
        if self.miss is None:  # H·C', C·H', C·C'
            self.miss = tuple(np.zeros((self.nrow, self.ncol), dtype=np.int32) for _ in range(3))
        count_missing(_joined(parts), self.hh, *self.miss, self.ss, r0=self.r0, tiles=self.tiles, pool=self.pool)

    def collect(self) -> None:
        self._add_hom(self.ss)
        if self.miss is None:
            self.out = tuple(np.empty(self.hh.shape, dtype=np.int32) for _ in range(3))
        else:  # finish reads each cell before it writes it: the accumulators take the counts
            self.out = self.miss

    def finish(self, b0: int, b1: int) -> None:
        none = np.zeros((0, 0), dtype=np.int32)
        m = self.miss if self.miss is not None else (none, none, none)
        finish(self.hh, self.ss, *self.out, self.ss, self.x, self.n_x, self.het, self.n_complete, *m,
               self.r0, b0, b1)

    def counts(self) -> tuple[np.ndarray, ...]:
        out = (self.hh, self.ss, *self.out)
        self.hh = self.ss = self.miss = self.out = None
        return out


def _joined(parts: list) -> tuple[np.ndarray, ...]:
    """Chunks' planes side by side (their padding words count 0)."""
    return parts[0] if len(parts) == 1 else tuple(np.concatenate(p, axis=1) for p in zip(*parts))
