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
fallback is exact too: fp32 sums of a ≤ 8192-variant chunk, fp64 on CUDA). Complete
variants with few minor-allele carriers skip the GEMMs: coded by the minor allele (X =
0/1/2 copies, S = X − 1), ``H·H'`` and ``X·X'`` are non-zero only for carrier pairs,
which are listed and counted with ``np.bincount`` (plink2's rare-variant scan), and
``S·S' = X·X' − x_i − x_j + n``. The kinship is then one double division of integers,
as in plink2, so KINSHIP strings match plink2's.

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
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snpbag.data.chrom import is_autosome
from snpbag.errors import InputError, SampleError
from snpbag.fileio import atomic_output, atomic_outputs
from snpbag.kinship import degrees, kin0
from snpbag.kinship.kin0 import ESTIMATORS, kinship  # noqa: F401  (public here too)
from snpbag.provenance import provenance

log = logging.getLogger(__name__)

#: Memory for one pass's pair counts; more rows than fit → more passes over the input.
MAX_MEMORY = 2 << 30
#: Bytes per (row, column) cell of a pass: int32 accumulators plus the derived counts.
PASS_BYTES_PER_PAIR = 56
#: Bytes of genotypes + indicators held per variant chunk.
CHUNK_MEMORY = 256 << 20
_MAX_COUNT = 2**29 - 1  # S·S' accumulates X·X' <= 4 per variant in int32


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
            shards = _ShardReader.open(self.path, store.n_variants, self.n_samples)
            if shards is None:
                blocks = ((sl, _dosage(gt)) for sl, gt in store.iter_variant_blocks(slice(0, n), block=chunk))
            else:
                blocks = shards.blocks(chunk, n)
            for sl, d in blocks:
                keep = auto[vcontig[sl]]
                stats.non_autosomal += int((~keep).sum())
                if keep.any():
                    stats.variants += int(keep.sum())
                    yield d if keep.all() else d[keep]
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


class _ShardReader:
    """``call_genotype`` of a local snpbag store read shard by shard, straight to dosages.

    zarr's asynchronous pipeline spends about twice the Blosc decoding time on per-chunk
    overhead (one thread hand-off per 16-sample inner chunk); for a whole-cohort scan this
    reads the shard files of docs/store-format.md directly: shard index and inner chunks
    checked against their CRC32C, inner chunks Blosc-decoded into one buffer per variant
    chunk and turned into dosages at once. Any other layout, or a remote store, returns
    None from :meth:`open` and the caller reads through zarr.
    """

    def __init__(self, root: Path, shape, outer, inner):
        self.root, (self.nv, self.ns), (self.cv, self.cs), (self.iv, self.is_) = root, shape, outer, inner
        self._cache: tuple[int, np.ndarray] | None = None
        self._buf: np.ndarray | None = None

    @classmethod
    def open(cls, path: str, n_variants: int, n_samples: int) -> _ShardReader | None:
        import json

        root = Path(path) / "call_genotype"
        try:
            meta = json.loads((root / "zarr.json").read_text())
            cg = meta["chunk_grid"]["configuration"]["chunk_shape"]
            (shard,) = meta["codecs"]
            conf = shard["configuration"]
            inner = conf["chunk_shape"]
            ok = (meta["data_type"] == "int8" and meta["shape"] == [n_variants, n_samples, 2]
                  and meta["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "/"}}
                  and meta["fill_value"] == -1 and not meta.get("storage_transformers")
                  and shard["name"] == "sharding_indexed" and conf.get("index_location", "end") == "end"
                  and [c["name"] for c in conf["codecs"]] == ["bytes", "blosc", "crc32c"]
                  and conf["index_codecs"] == [{"name": "bytes", "configuration": {"endian": "little"}},
                                               {"name": "crc32c"}]
                  and cg[2] == inner[2] == 2 and inner[0] == cg[0] and cg[1] % inner[1] == 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not ok:
            return None
        return cls(root, (n_variants, n_samples), cg[:2], inner[:2])

    def blocks(self, block: int, n: int) -> Iterator[tuple[slice, np.ndarray]]:
        """(variant slice, dosages (v, n)) over blocks aligned to ``block``, as GenotypeStore.iter_variant_blocks."""
        a = 0
        while a < self.nv:
            b = min((a // block + 1) * block, self.nv)
            parts = []
            while a < b:  # a block may span outer chunks, an outer chunk several blocks
                k = a // self.cv
                d = self._chunk(k)
                e = min(b, (k + 1) * self.cv)
                parts.append(d[a - k * self.cv:e - k * self.cv, :n])
                a = e
            yield slice(b - sum(p.shape[0] for p in parts), b), (parts[0] if len(parts) == 1 else np.concatenate(parts))

    def _chunk(self, k: int) -> np.ndarray:
        if self._cache is not None and self._cache[0] == k:
            return self._cache[1]
        import google_crc32c
        import numcodecs.blosc

        from snpbag.errors import StoreFormatError

        rows = min(self.cv, self.nv - k * self.cv)
        per_shard = self.cs // self.is_
        n_inner = -(-self.ns // self.is_)
        if self._buf is None:  # reused: a fresh 50 MB array per chunk costs page faults
            self._buf = np.empty((n_inner, self.iv, self.is_, 2), dtype=np.int8)
        buf = self._buf
        for j in range(-(-self.ns // self.cs)):
            f = self.root / "c" / str(k) / str(j) / "0"
            raw = f.read_bytes() if f.exists() else None
            if raw is not None:
                index = raw[len(raw) - 16 * per_shard - 4:]
                if len(raw) < 16 * per_shard + 4 or not _crc_ok(google_crc32c, index):
                    raise StoreFormatError(f"{f}: corrupt shard index (checksum); re-run `snpbag convert`")
                offsets = np.frombuffer(index[:-4], dtype="<u8").reshape(per_shard, 2)
            for i in range(per_shard):
                t = j * per_shard + i
                if t >= n_inner:
                    break
                if raw is None or offsets[i, 0] == offsets[i, 1] == 2**64 - 1:
                    buf[t] = -1  # never written: the fill value
                    continue
                data = raw[int(offsets[i, 0]):int(offsets[i, 0] + offsets[i, 1])]
                if not _crc_ok(google_crc32c, data):
                    raise StoreFormatError(f"{f}: corrupt chunk (checksum); re-run `snpbag convert`")
                numcodecs.blosc.decompress(data[:-4], buf[t])
        edge = self.ns - (n_inner - 1) * self.is_
        buf[-1, :, edge:] = 0  # padding of the last inner chunk and past the last variant: not data
        buf[:, rows:] = 0
        d = np.empty((self.iv, n_inner * self.is_), dtype=np.int8)
        dt = d.reshape(self.iv, n_inner, self.is_).transpose(1, 0, 2)  # buf's (inner chunk, variant, sample) order
        if buf.min() >= 0:  # no missing or haploid call: dosage and transpose in one pass
            np.add(buf[..., 0], buf[..., 1], out=dt)
        else:
            dt[...] = _dosage(buf)
        d = d[:rows, :self.ns]
        self._cache = (k, d)
        return d


def _crc_ok(crc, data: bytes) -> bool:
    return crc.value(data[:-4]).to_bytes(4, "little") == data[-4:]


def _dosage(gt: np.ndarray) -> np.ndarray:
    """(v, n, 2) allele indices (−1 missing, −2 haploid fill) → (v, n) ALT dosage, −1 missing."""
    a0 = gt[..., 0]
    a1 = gt[..., 1]
    d = a0 + a1
    if not gt.size or gt.min() >= 0:  # no missing or haploid call: the common case, one pass
        return d
    haploid = a1 == -2
    if haploid.any():
        d[haploid] = 2 * a0[haploid]
    d[(a0 < 0) | (a1 == -1)] = -1
    return d


def _expected_ibs0_sum(g: np.ndarray, alt: np.ndarray | None = None) -> float:
    """Sum over variants of 2p²q² (p: ALT frequency among the called genotypes).

    ``alt``: the per-variant dosage sums of ``g`` when it has no missing call.
    """
    if alt is not None:
        called = np.full(g.shape[0], g.shape[1], dtype=np.int64)
    else:
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


#: Complete variants whose minor-allele carriers form at most this many pairs per this
#: many GEMM cells (pairs x variants, per thread) are counted from carrier-pair lists
#: instead (plink2's rare-variant scan); measured on a 2-core EPYC (docs/benchmarks.md).
SPARSE_PAIR_CELLS = 3500
#: Row-band height of the CPU GEMM tiles: diagonal tiles compute about band²/2 unused pairs.
CPU_BAND = 512
#: Carrier pairs buffered before they are counted (np.bincount over the pass's cells).
PAIR_BUFFER = 1 << 23


@dataclass
class _Sparse:
    """Pair lists of complete variants with few carriers of the minor allele (see :func:`_sparse`)."""

    flat: np.ndarray  # (i - r0) * ncol + j of the pairs j < i of heterozygous carriers: +1 to HETHET and X·X'
    hom_flat: np.ndarray  # pairs with a homozygous carrier: + hom_w (2 or 4) to X·X'
    hom_w: np.ndarray
    het: np.ndarray  # (ncol,) heterozygous calls per sample
    x: np.ndarray  # (ncol,) minor-allele dosage per sample
    n: int  # variants


@dataclass
class _Chunk:
    """One variant chunk, split by how its pairs are counted."""

    ibs0_sum: float
    dense: np.ndarray | None = None  # (v, ncol) dosages, every sample called
    dense_missing: np.ndarray | None = None  # (v, ncol) dosages with missing calls (−1)
    sparse: _Sparse | None = None


_TRIL: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _tril(k: int) -> tuple[np.ndarray, np.ndarray]:
    if k not in _TRIL:
        _TRIL[k] = np.tril_indices(k, -1)
    return _TRIL[k]


def _prepare(g: np.ndarray, *, r0: int, ncol: int, pair_limit: int) -> _Chunk:
    """Split a dosage chunk (v, n_all) into GEMM operands and carrier-pair lists (runs ahead in a thread).

    A variant called in every sample of the pass with at most ``pair_limit`` pairs of
    minor-allele carriers goes to the pair lists; the ALT/REF coding is flipped where ALT
    is the major allele (HETHET, IBS0 and S·S' do not change when both samples flip).
    """
    complete_all = not g.size or g.min() >= 0
    alt_all = g.sum(axis=1, dtype=np.int64) if complete_all else None
    out = _Chunk(ibs0_sum=_expected_ibs0_sum(g, alt_all))
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
        out.sparse = _sparse(gp[idx], flip[idx], r0=r0, ncol=ncol)
    dense = complete & ~sparse
    if dense.all():
        out.dense = np.ascontiguousarray(gp)
    elif dense.any():
        out.dense = gp[dense]
    if not complete.all():
        out.dense_missing = gp[~complete]
    return out


def _sparse(x: np.ndarray, flip: np.ndarray, *, r0: int, ncol: int) -> _Sparse:
    """Carrier-pair lists of complete variants ``x`` (v, ncol): every pair (i, j), j < i, i >= r0."""
    x = np.ascontiguousarray(x, dtype=np.int8)  # a fresh copy (fancy-indexed): modified in place
    if flip.any():
        x[flip] = 2 - x[flip]  # minor-allele dosage
    w8 = _round_up(ncol, 8)
    if w8 != ncol:
        x = np.pad(x, ((0, 0), (0, w8 - ncol)))
    words = x.view(np.uint64).reshape(-1)  # find carriers 8 samples at a time
    nzw = np.flatnonzero(words)
    octets = words[nzw].view(np.uint8).reshape(-1, 8)
    wi, bj = np.nonzero(octets)
    val = octets[wi, bj]
    row, col = np.divmod(nzw[wi] * 8 + bj, w8)  # sorted by variant, then sample
    het = np.bincount(col[val == 1], minlength=ncol)
    xsum = np.bincount(col, minlength=ncol) + np.bincount(col[val == 2], minlength=ncol)
    cnt = np.bincount(row, minlength=x.shape[0])
    ptr = np.zeros(cnt.size + 1, dtype=np.int64)
    np.cumsum(cnt, out=ptr[1:])
    flat, hom_flat, hom_w = [], [], []
    for k in np.unique(cnt):
        if k < 2:
            continue
        e = ptr[np.flatnonzero(cnt == k)][:, None] + np.arange(k)
        c, v = col[e], val[e]  # (variants, k) carriers in increasing sample order
        p, q = _tril(int(k))  # q < p: pairs (c[p], c[q]), c[q] < c[p]
        f = ((c - r0) * ncol)[:, p] + c[:, q]
        ok = (c >= r0)[:, p] if r0 else np.ones(f.shape, dtype=bool)
        hr = (v == 2).any(axis=1)
        if hr.any():  # variants with a homozygous carrier: X_i·X_j = 2 or 4 for its pairs
            vh = v[hr].astype(np.int64)
            w = vh[:, p] * vh[:, q]
            fh, okh = f[hr], ok[hr]
            flat.append(fh[(w == 1) & okh])
            hom_flat.append(fh[(w > 1) & okh])
            hom_w.append(w[(w > 1) & okh])
            f, ok = f[~hr], ok[~hr]
        flat.append(f[ok])
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64)  # noqa: E731
    return _Sparse(flat=cat(flat), hom_flat=cat(hom_flat), hom_w=cat(hom_w), het=het, x=xsum, n=x.shape[0])


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


def default_threads() -> int:
    """CPU cores this process may use (like plink2's default)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


def pair_counts(source: GenotypeSource, *, rows: tuple[int, int], block_size: int = 2048,
                device: str = "cpu", chunk: int | None = None, stats: ScanStats | None = None,
                threads: int = 1, sparse_limit: int | None = None) -> PairCounts:
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

    Returns
    -------
    PairCounts
    """
    importer = _import_torch_in_background() if threads > 1 else None
    r0, r1 = rows
    ncol, nrow = r1, r1 - r0
    n_all = source.n_samples
    if chunk is None:  # from the cohort size, so every pass and part sees the same chunks
        chunk = 1 << max(9, min(13, int(math.log2(max(CHUNK_MEMORY // (6 * n_all), 1)))))
    band = block_size if device == "cuda" else min(block_size, CPU_BAND)
    tiles = _tiles(r0, r1, band, block_size)
    if sparse_limit is None:  # the GEMM cost of one variant: 2 products over the tiles' cells
        cells = sum((i1 - i0) * (j1 - j0) for i0, i1, j0, j1 in tiles)
        sparse_limit = -1 if device == "cuda" else 2 * cells // SPARSE_PAIR_CELLS
    gpu = {}  # torch state, made on the first GEMM (torch imports meanwhile)
    het_complete = np.zeros(ncol, dtype=np.int64)  # per sample, over complete variants
    n_complete = 0
    # carrier pairs count into HETHET and X·X' (X = minor-allele dosage); at the end
    # S·S' = X·X' − x_i − x_j + n over those variants (S = X − 1)
    sp_y = None  # pairs of heterozygous carriers (+1 to HETHET and X·X')
    hom: list[tuple[np.ndarray, np.ndarray]] = []  # pairs with a homozygous carrier (X·X' only)
    x_sparse = np.zeros(ncol, dtype=np.int64)
    n_sparse = 0
    pairs, n_pairs = [], 0
    dense, dense_missing = [], []
    reading = threads > 1

    def torch_state():
        if not gpu:
            if importer is not None:
                importer.join()
            import torch

            dev = torch.device(device)
            gpu.update(torch=torch, dev=dev, int8=_int8_gemm_ok(dev),
                       hh=torch.zeros((nrow, ncol), dtype=torch.int32, device=dev),  # H·H' (complete variants)
                       ss=torch.zeros((nrow, ncol), dtype=torch.int32, device=dev),  # S·S' (all variants)
                       acc=None)  # [H;C]·[H;C]' of variants with a missing call
            gpu["prev_threads"] = torch.get_num_threads()
            torch.set_num_threads(max(threads - 1, 1) if reading else threads)  # leave the reader a core
        return gpu

    def flush_dense():
        nonlocal n_complete
        d = np.concatenate(dense) if len(dense) > 1 else dense[0]
        dense.clear()
        h = (d == 1).view(np.int8)
        het_complete[:] += h.sum(axis=0, dtype=np.int64)
        n_complete += d.shape[0]
        st = torch_state()
        torch, int8, acc_hh, acc_s = st["torch"], st["int8"], st["hh"], st["ss"]
        h = torch.from_numpy(h).to(st["dev"])
        s = torch.from_numpy(d - np.int8(1)).to(st["dev"])  # −1 hom REF, 0 het, +1 hom ALT
        for i0, i1, j0, j1 in tiles:
            acc_hh[i0 - r0:i1 - r0, j0:j1] += _matmul(h[:, i0:i1], h[:, j0:j1], int8=int8)
            acc_s[i0 - r0:i1 - r0, j0:j1] += _matmul(s[:, i0:i1], s[:, j0:j1], int8=int8)

    def flush_missing():
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
            p = _matmul(hc[:, 2 * i0:2 * i1], hc[:, 2 * j0:2 * j1], int8=int8)
            acc[i0 - r0:i1 - r0, :, j0:j1, :] += p.view(i1 - i0, 2, j1 - j0, 2)
            acc_s[i0 - r0:i1 - r0, j0:j1] += _matmul(s[:, i0:i1], s[:, j0:j1], int8=int8)

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
    try:
        chunks = (_prepare(g, r0=r0, ncol=ncol, pair_limit=sparse_limit)
                  for g in source.dosages(n_all, chunk=chunk, stats=stats))
        for c in _ahead(chunks, threads > 1):
            stats.ibs0_expected_sum += c.ibs0_sum  # all samples: the same in every pass and part
            if c.sparse is not None:  # pair indices were made against nrow x ncol cells
                sp = c.sparse
                het_complete += sp.het
                n_complete += sp.n
                x_sparse += sp.x
                n_sparse += sp.n
                if sp.flat.size:
                    pairs.append(sp.flat)
                    n_pairs += sp.flat.size
                if sp.hom_flat.size:
                    hom.append((sp.hom_flat, sp.hom_w))
                if n_pairs >= max(PAIR_BUFFER, nrow * ncol):
                    flush_pairs()
            if c.dense is not None:
                dense.append(c.dense)
                if sum(x.shape[0] for x in dense) >= chunk:
                    flush_dense()
            if c.dense_missing is not None:
                dense_missing.append(c.dense_missing)
                if sum(x.shape[0] for x in dense_missing) >= chunk:
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
        st = torch_state()
    finally:
        if gpu:
            gpu["torch"].set_num_threads(gpu["prev_threads"])
    if stats.variants > _MAX_COUNT:
        raise InputError(f"{source.path}: {stats.variants} variants overflow the int32 counts; "
                         "split the input by chromosome and sum the counts")
    hh = st["hh"].cpu().numpy()
    ss = st["ss"].cpu().numpy()
    acc = st["acc"]
    st.clear()
    if sp_y is not None:
        hh += sp_y
        ss += sp_y
        del sp_y
    if hom:  # few: add each distinct pair once
        f, w = (np.concatenate(x) for x in zip(*hom))
        u, inv = np.unique(f, return_inverse=True)
        ss.reshape(-1)[u] += np.bincount(inv, weights=w, minlength=u.size).astype(np.int32)
    if n_sparse:  # S·S' = X·X' − x_i − x_j + n over the carrier-pair variants
        ss -= x_sparse[r0:r1, None]
        ss -= x_sparse[None, :]
        ss += n_sparse
    het_row = np.empty(hh.shape, dtype=np.int32)
    het_row[...] = het_complete[r0:r1, None]  # row het, column called: H·C'
    het_col = np.empty(hh.shape, dtype=np.int32)
    het_col[...] = het_complete[None, :]
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
    ibs0 -= ss
    ibs0 //= 2
    return PairCounts(rows=(r0, r1), hethet=hh, ibs0=ibs0, het_row=het_row, het_col=het_col, nsnp=nsnp)


def _import_torch_in_background():
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
         counts: bool = False, matrix: bool = False, block_size: int = 2048, device: str = "cpu",
         threads: int | None = None, po_ibs0: float | str = degrees.PO_IBS0) -> KingResult:
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
                     block_size=block_size, device=device, threads=threads, po_ibs0=po_ibs0)


def king_part(input: str | Path, *, out: str | Path, part: int = 1, n_parts: int = 1, estimator: str = "between",
              min_kinship: float | None = None, counts: bool = False, matrix: bool = False, block_size: int = 2048,
              device: str = "cpu", max_memory: int = MAX_MEMORY, po_ibs0: float | str = degrees.PO_IBS0,
              threads: int | None = None) -> KingResult:
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
    log.info("king: %d samples, rows %d..%d in %d pass(es), block %d, %s, %d thread(s)", n, r0, r1, len(passes),
             block_size, device, threads)
    totals = {"variants": 0, "non_autosomal": 0, "pairs": 0, "written": 0}
    thr = float("nan") if auto_cut else float(po_ibs0)
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
                pc = pair_counts(source, rows=(a, b), block_size=block_size, device=device, stats=stats,
                                 threads=threads)
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
                    kin0.fill_matrix(zarr_matrix, pc, estimator)
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
