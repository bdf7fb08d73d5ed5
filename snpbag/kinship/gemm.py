"""KING counts from exact integer GEMMs: torch's int8 matrix product, or an exact float one.

``matmul(a, b)`` is ``a.T @ b`` of variant-major indicator matrices (entries 0/±1) as
int32: ``torch._int_mm`` (int8 × int8 → int32; AVX-512-VNNI / AMX on CPU, tensor cores on
CUDA) where it runs, else float32 on CPU (exact: a chunk has < 2^24 variants) or float64
on CUDA (where float32 may silently run as TF32). torch is imported lazily: it costs
about a second, which :func:`import_torch_in_background` overlaps with reading.

:class:`GemmAccumulator` is the counting strategy built on them: a tile of pairs costs
two products per variant chunk (``H·H'`` and ``S·S'``) where every sample of the pass is
called (C = 1 makes H·C' a per-sample het count and C·C' the variant count), plus
``[H;C]·[H;C]'`` for variants with a missing call.
"""

from __future__ import annotations

import logging

import numpy as np

from snpbag.kinship.accumulator import PAIR_BUFFER, Accumulator, Chunk

log = logging.getLogger(__name__)

#: Row-band height of the CPU GEMM tiles: diagonal tiles compute about band²/2 unused pairs.
CPU_BAND = 512


def int8_gemm_ok(device) -> bool:
    """Whether torch._int_mm runs, exactly, on ``device`` (it is a private, backend-dependent op)."""
    import torch

    try:
        a = torch.ones((16, 24), dtype=torch.int8, device=device)
        return int(matmul(a, a, int8=True)[0, 0]) == 16
    except Exception:  # pragma: no cover - no int8 GEMM on this backend/build
        log.info("king: torch._int_mm unavailable on %s; using exact float matmul", device)
        return False


def matmul(a, b, *, int8: bool):
    """Exact ``a.T @ b`` of variant-major int8 indicators ``a`` (v, m), ``b`` (v, n), as int32."""
    import torch

    if int8:
        if a.is_cuda:
            a_op, b_op, m, n = cublaslt_operands(a, b)
            return torch._int_mm(a_op, b_op)[:m, :n]
        return torch._int_mm(a.T, b)
    # Sums of 0/±1 products are integers: exact in fp32 while a chunk has < 2^24 variants
    # (CPU) and in fp64 always (CUDA, where fp32 may silently run as TF32).
    dtype = torch.float64 if a.is_cuda else torch.float32
    return torch.round(a.to(dtype).T @ b.to(dtype)).to(torch.int32)


def cublaslt_operands(a, b):
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



def import_torch_in_background():
    """Start importing torch (over a second) in a thread while the first chunks are read.

    The import runs Python code for a second; with the default 5 ms GIL switch interval
    the reader, which takes the GIL back after every Blosc call, would wait up to 5 ms
    each time, so the interval is shortened while the import runs.
    """
    import sys
    import threading

    def run():
        if "torch" in sys.modules:
            return
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, 2e-4))
        try:
            import torch  # noqa: F401
        finally:
            sys.setswitchinterval(interval)

    t = threading.Thread(target=run, name="king-import", daemon=True)
    t.start()
    return t



def tiles(r0: int, r1: int, band: int, width: int) -> list[tuple[int, int, int, int]]:
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


class GemmAccumulator(Accumulator):
    """KING counts from int8 GEMMs over tiles of pairs, on the CPU or CUDA (torch).

    ``hh`` (H·H', complete variants) and ``ss`` (S·S', all variants) are torch int32
    tensors made on the first product, so torch imports while the first chunks are read;
    ``[H;C]·[H;C]'`` of the variants with a missing call goes to ``acc``. Heterozygous
    carrier pairs are counted with np.bincount on the host (``pairs``) and added at the end.
    With ``threads`` > 1 torch gets one thread less while the reader runs.
    """

    def __init__(self, *, rows: tuple[int, int], chunk: int, block_size: int, device: str, threads: int):
        super().__init__(rows=rows, chunk=chunk)
        band = block_size if device == "cuda" else min(block_size, CPU_BAND)
        self.tiles = tiles(self.r0, self.ncol, band, block_size)
        self.device, self.threads, self.reading = device, threads, threads > 1
        self._importer = import_torch_in_background() if threads > 1 else None
        self._t: dict = {}  # torch state
        self._pairs: list[np.ndarray] = []
        self._n_pairs = 0
        self.pairs = None  # int32 (nrow, ncol): heterozygous carrier pairs (+1 to HETHET and X·X')

    @property
    def cells(self) -> int:
        return 2 * sum((i1 - i0) * (j1 - j0) for i0, i1, j0, j1 in self.tiles)  # 2 products per variant

    def prepare(self, g: np.ndarray, c: Chunk, *, dense: np.ndarray, complete: np.ndarray) -> None:
        gp = g[:, :self.ncol] if self.ncol < g.shape[1] else g
        if dense.all():
            c.dense = np.ascontiguousarray(gp)
        elif dense.any():
            c.dense = gp[dense]
        if not complete.all():
            c.missing = gp[~complete]
        c.n_dense = 0 if c.dense is None else c.dense.shape[0]
        c.n_missing = 0 if c.missing is None else c.missing.shape[0]

    def _torch(self) -> dict:
        if not self._t:
            if self._importer is not None:
                self._importer.join()
            import torch

            dev = torch.device(self.device)
            cells = (self.nrow, self.ncol)
            self._t.update(torch=torch, dev=dev, int8=int8_gemm_ok(dev), prev_threads=torch.get_num_threads(),
                           hh=torch.zeros(cells, dtype=torch.int32, device=dev),
                           ss=torch.zeros(cells, dtype=torch.int32, device=dev), acc=None)
            torch.set_num_threads(max(self.threads - 1, 1) if self.reading else self.threads)  # leave the reader a core
        return self._t

    def _add_pairs(self, flat: np.ndarray) -> None:
        self._pairs.append(flat)
        self._n_pairs += flat.size
        if self._n_pairs >= max(PAIR_BUFFER, self.nrow * self.ncol):
            self._flush_pairs()

    def _flush_pairs(self) -> None:
        f = np.concatenate(self._pairs) if len(self._pairs) > 1 else self._pairs[0]
        self._pairs, self._n_pairs = [], 0
        y = np.bincount(f, minlength=self.nrow * self.ncol).reshape(self.nrow, self.ncol)
        if self.pairs is None:
            self.pairs = y.astype(np.int32)
        else:
            np.add(self.pairs, y, out=self.pairs, casting="unsafe")

    def _count_dense(self, parts: list) -> None:
        d = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self.n_complete += d.shape[0]
        h = (d == 1).view(np.int8)
        self.het += h.sum(axis=0, dtype=np.int64)
        t = self._torch()
        torch, int8, acc_hh, acc_s, r0 = t["torch"], t["int8"], t["hh"], t["ss"], self.r0
        h = torch.from_numpy(h).to(t["dev"])
        s = torch.from_numpy(d - np.int8(1)).to(t["dev"])  # −1 hom REF, 0 het, +1 hom ALT
        for i0, i1, j0, j1 in self.tiles:
            acc_hh[i0 - r0:i1 - r0, j0:j1] += matmul(h[:, i0:i1], h[:, j0:j1], int8=int8)
            acc_s[i0 - r0:i1 - r0, j0:j1] += matmul(s[:, i0:i1], s[:, j0:j1], int8=int8)

    def _count_missing(self, parts: list) -> None:
        d = np.concatenate(parts) if len(parts) > 1 else parts[0]
        t = self._torch()
        torch, int8, acc_s, r0, ncol = t["torch"], t["int8"], t["ss"], self.r0, self.ncol
        s = torch.from_numpy(np.where(d < 0, np.int8(0), d - np.int8(1))).to(t["dev"])
        gm = torch.from_numpy(d).to(t["dev"])
        hc = torch.stack((gm == 1, gm >= 0), dim=2).to(torch.int8).reshape(d.shape[0], 2 * ncol)  # H0,C0,H1,..
        if t["acc"] is None:
            t["acc"] = torch.zeros((self.nrow, 2, ncol, 2), dtype=torch.int32, device=t["dev"])
        acc = t["acc"]
        for i0, i1, j0, j1 in self.tiles:
            p = matmul(hc[:, 2 * i0:2 * i1], hc[:, 2 * j0:2 * j1], int8=int8)
            acc[i0 - r0:i1 - r0, :, j0:j1, :] += p.view(i1 - i0, 2, j1 - j0, 2)
            acc_s[i0 - r0:i1 - r0, j0:j1] += matmul(s[:, i0:i1], s[:, j0:j1], int8=int8)

    def flush(self) -> None:
        self.reading = False
        if self._t:
            self._t["torch"].set_num_threads(self.threads)
        super().flush()
        if self._pairs:
            self._flush_pairs()
        self._torch()  # the accumulators exist, even for an input without kernel variants

    def close(self) -> None:
        if self._t:
            self._t["torch"].set_num_threads(self._t["prev_threads"])

    def collect(self) -> None:
        t = self._t
        self.hh, self.ss = t["hh"].cpu().numpy(), t["ss"].cpu().numpy()
        self.both = None if t["acc"] is None else t["acc"].cpu().numpy()  # [H;C]·[H;C]' as (nrow, 2, ncol, 2)
        t.clear()
        self._add_hom(self.ss)
        self.het_row, self.het_col, self.nsnp, self.ibs0 = (np.empty(self.hh.shape, dtype=np.int32)
                                                            for _ in range(4))

    def finish(self, b0: int, b1: int) -> None:
        r0 = self.r0
        h, s, hr, hc, ns, ib = (x[b0:b1] for x in (self.hh, self.ss, self.het_row, self.het_col, self.nsnp,
                                                   self.ibs0))
        if self.pairs is not None:
            h += self.pairs[b0:b1]
            s += self.pairs[b0:b1]
        if self.n_x:  # S·S' = X·X' − x_i − x_j + n over the carrier-pair variants
            s -= self.x[r0 + b0:r0 + b1, None]
            s -= self.x[None, :]
            s += self.n_x
        hr[...] = self.het[r0 + b0:r0 + b1, None]  # row het, column called: H·C'
        hc[...] = self.het[None, :]
        ns[...] = self.n_complete
        if self.both is not None:
            a = self.both
            h += a[b0:b1, 0, :, 0]
            hr += a[b0:b1, 0, :, 1]
            hc += a[b0:b1, 1, :, 0]
            ns += a[b0:b1, 1, :, 1]
        hr -= h  # now het row / hom column
        hc -= h
        np.subtract(ns, hr, out=ib)  # homhom = NSNP − A − B − HETHET; IBS0 = (homhom − S·S') / 2
        ib -= hc
        ib -= h
        ib -= s
        ib //= 2

    def counts(self) -> tuple[np.ndarray, ...]:
        out = self.hh, self.ibs0, self.het_row, self.het_col, self.nsnp
        self.hh = self.ss = self.het_row = self.het_col = self.nsnp = self.ibs0 = self.pairs = self.both = None
        return out
