"""Reading a snpbag genotype store (docs/store-format.md).

``open_store`` validates the layout once; ``GenotypeStore`` then serves the two access
patterns snpbag needs: a few samples × a range of one tile's sites (training, imputation) and
all samples × consecutive variant blocks (KING-style cohort scans; :class:`ShardScan` reads
those straight from the shard files). A store pickles by
path, so DataLoader workers (fork or spawn) reopen it lazily in their own process.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from snpbag import STORE_FORMAT_VERSION
from snpbag.store import localzarr
from snpbag.store import schema
from snpbag.io.dosage import alt_dosage
from snpbag.store.vocab import SiteVocab
from snpbag.errors import SampleError, SnpbagError, StoreFormatError

if TYPE_CHECKING:
    import zarr

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tile:
    """One tile: vocabulary sites ``site_start:site_stop`` of chromosome ``chrom``."""

    index: int
    chrom: str
    site_start: int
    site_stop: int
    first_position: int
    last_position: int

    @property
    def length(self) -> int:
        return self.site_stop - self.site_start


def open_store(path: str | Path, *, storage_options: dict | None = None) -> GenotypeStore:
    """Open and validate a store written by ``snpbag convert``.

    Parameters
    ----------
    path : local directory or any fsspec URL (``s3://``, ``gs://``, ``http://``, ...).
    storage_options : passed to fsspec for URLs (credentials, anonymous access, ...).

    Returns
    -------
    GenotypeStore

    Raises
    ------
    StoreFormatError : not a snpbag store, written by another format version, incomplete
        (a conversion that did not finish), or missing/mis-dimensioned arrays.
    """
    store = GenotypeStore(path, storage_options=storage_options)
    store._validate()
    return store


class GenotypeStore:
    """A validated, read-only view of a snpbag store; see :func:`open_store`."""

    def __init__(self, path: str | Path, *, storage_options: dict | None = None):
        self.path = str(path)
        self.storage_options = storage_options
        self._group = None
        self._cache: dict = {}

    # --- opening / pickling ---------------------------------------------------------------
    def __getstate__(self) -> dict:
        return {"path": self.path, "storage_options": self.storage_options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], storage_options=state["storage_options"])

    def __repr__(self) -> str:
        return f"GenotypeStore({self.path!r}: {self.n_variants} variants x {self.n_samples} samples, " \
               f"{self.vocab.n_sites} sites in {self.n_tiles} tiles)"

    @property
    def group(self) -> zarr.Group:
        if self._group is None:
            import zarr

            if not _is_url(self.path) and not Path(self.path).exists():
                raise StoreFormatError(f"{self.path}: no such store; create it with `snpbag convert INPUT.vcf.gz {self.path}`")
            try:
                self._group = zarr.open_group(self.path, mode="r", storage_options=self.storage_options)
            except SnpbagError:
                raise
            except Exception as e:
                raise StoreFormatError(f"{self.path}: not a Zarr group ({type(e).__name__}: {e}); "
                                       "re-run `snpbag convert`") from e
        return self._group

    def _fix(self) -> str:
        return f"re-run `snpbag convert` to rewrite {self.path}"

    def _local(self) -> dict | None:
        """Consolidated metadata read without zarr (:mod:`~snpbag.store.localzarr`); None: use zarr."""
        if "local" not in self._cache:
            self._cache["local"] = None if _is_url(self.path) else localzarr.consolidated(self.path)
        return self._cache["local"]

    def _meta(self, name: str) -> dict | None:
        """An array's metadata from the consolidated metadata (None: not there, or no local metadata)."""
        local = self._local()
        return None if local is None else local["arrays"].get(name)

    def _validate(self) -> None:
        local = self._local()
        attrs = local["attributes"] if local is not None else dict(self.group.attrs)
        version = attrs.get(schema.ATTR_VERSION)
        if version is None:
            raise StoreFormatError(f"{self.path}: not a snpbag store (no {schema.ATTR_VERSION} attribute); "
                                   f"create it with `snpbag convert`")
        if version != STORE_FORMAT_VERSION:
            raise StoreFormatError(f"{self.path}: store format version {version}, this snpbag reads version "
                                   f"{STORE_FORMAT_VERSION}; {self._fix()}")
        if attrs.get(schema.ATTR_COMPLETE) is not True:
            raise StoreFormatError(f"{self.path}: incomplete store (conversion did not finish); {self._fix()}")
        for spec in schema.VARIABLES:
            if local is not None:
                meta = local["arrays"].get(spec.name)
                if meta is None:
                    if spec.required:
                        raise StoreFormatError(f"{self.path}: array {spec.name} is missing; {self._fix()}")
                    continue
                dims = tuple(meta.get("dimension_names") or ())
            else:
                try:
                    arr = self.group[spec.name]
                except KeyError:
                    if spec.required:
                        raise StoreFormatError(f"{self.path}: array {spec.name} is missing; {self._fix()}") from None
                    continue
                dims = tuple(arr.metadata.dimension_names or ())
            if dims != spec.dims:
                raise StoreFormatError(f"{self.path}: array {spec.name} has dimensions {dims}, expected "
                                       f"{spec.dims}; {self._fix()}")

    def _array(self, name: str):
        try:
            return self.group[name]
        except KeyError:
            raise StoreFormatError(f"{self.path}: array {name} is missing; {self._fix()}") from None

    def _read(self, name: str, selection=Ellipsis, *, orthogonal: bool = False) -> np.ndarray:
        """Read from an array, turning codec/IO failures into StoreFormatError."""
        arr = self._array(name)
        try:
            return arr.oindex[selection] if orthogonal else arr[selection]
        except SnpbagError:
            raise
        except (IndexError, TypeError):
            raise
        except Exception as e:
            raise StoreFormatError(f"{self.path}/{name}: corrupt or unreadable chunk ({type(e).__name__}: {e}); "
                                   f"{self._fix()}") from e

    def _shape(self, name: str) -> tuple[int, ...]:
        meta = self._meta(name)
        return tuple(int(s) for s in meta["shape"]) if meta is not None else tuple(self._array(name).shape)

    def _cached(self, name: str) -> np.ndarray:
        if name not in self._cache:
            a = self._read_local(name)
            self._cache[name] = a if a is not None else self._read_whole(name)
        return self._cache[name]

    def _read_local(self, name: str) -> np.ndarray | None:
        meta = self._meta(name)
        if meta is None:
            return None
        try:
            return localzarr.read_chunk(self.path, name, meta)
        except localzarr.CorruptChunk as e:
            raise StoreFormatError(f"{self.path}/{name}: corrupt or unreadable chunk (CorruptChunk: {e}); "
                                   f"{self._fix()}") from e

    def _read_whole(self, name: str) -> np.ndarray:
        a = np.asarray(self._read(name))
        return a.astype(object) if a.dtype.kind == "T" else a  # numpy StringDType from zarr's strings

    # --- metadata ---------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        local = self._local()
        return dict(local["attributes"]) if local is not None else dict(self.group.attrs)

    @property
    def sample_ids(self) -> np.ndarray:
        return np.array(self._cached("sample_id").tolist(), dtype=str)

    @property
    def n_samples(self) -> int:
        return self._shape("sample_id")[0]

    @property
    def n_variants(self) -> int:
        return self._shape("variant_position")[0]

    @property
    def contig_ids(self) -> tuple[str, ...]:
        """Chromosome (VCF contig) names as written in the input."""
        return tuple(str(c) for c in self._cached("contig_id").tolist())

    @property
    def variant_position(self) -> np.ndarray:
        return self._cached("variant_position")

    @property
    def variant_contig(self) -> np.ndarray:
        return self._cached("variant_contig")

    @property
    def variant_allele(self) -> np.ndarray:
        return self._cached("variant_allele")

    @property
    def variant_chunk(self) -> int:
        meta = self._meta("call_genotype")
        if meta is None:
            return int(self._array("call_genotype").chunks[0])
        shard = [c for c in meta["codecs"] if c.get("name") == "sharding_indexed"]
        grid = shard[0]["configuration"] if shard else meta["chunk_grid"]["configuration"]
        return int(grid["chunk_shape"][0])  # the read chunk (zarr's ``chunks``: inner chunks of a shard)

    @property
    def vocab(self) -> SiteVocab:
        """The site vocabulary (SiteVocab with ``variant`` = store rows of the sites)."""
        if "vocab" not in self._cache:
            v = self._cached("snpbag_site_variant").astype(np.int64)
            allele = self.variant_allele[v] if v.size else np.zeros((0, 2), dtype=object)
            attrs = self.attrs
            self._cache["vocab"] = SiteVocab(
                chrom_names=self.contig_ids, site_chrom=self.variant_contig[v].astype(np.int16),
                position=self.variant_position[v].astype(np.int64), ref=allele[:, 0].astype(object),
                alt=allele[:, 1].astype(object), af=self._cached("snpbag_site_af").astype(np.float32),
                tile_chrom=self._cached("snpbag_contig_chrom").astype(np.int16),
                tile_start=self._cached("snpbag_contig_start").astype(np.int64),
                tile_stop=self._cached("snpbag_contig_stop").astype(np.int64),
                tile_len=int(attrs[schema.ATTR_TILE_LEN]), min_maf=float(attrs[schema.ATTR_MIN_MAF]), variant=v,
            )
        return self._cache["vocab"]

    sites = vocab

    @property
    def n_tiles(self) -> int:
        """Number of tiles of the vocabulary (snpbag.store.vocab)."""
        return self._shape("snpbag_contig_start")[0]

    @property
    def tiles(self) -> list[Tile]:
        """The tiles in genome order."""
        voc = self.vocab
        return [
            Tile(i, voc.tile_chrom_name(i), int(voc.tile_start[i]), int(voc.tile_stop[i]),
                 int(voc.position[voc.tile_start[i]]), int(voc.position[voc.tile_stop[i] - 1]))
            for i in range(voc.n_tiles)
        ]

    def sample_index(self, ids) -> np.ndarray:
        """Row of each sample id. Raises SampleError naming ids absent from the store."""
        lookup = {s: i for i, s in enumerate(self.sample_ids.tolist())}
        ids = [str(s) for s in ids]
        absent = [s for s in ids if s not in lookup]
        if absent:
            raise SampleError(f"{self.path}: samples absent from the store: {', '.join(absent[:5])}"
                              f"{' ...' if len(absent) > 5 else ''}; check the sample ids")
        return np.array([lookup[s] for s in ids], dtype=np.int64)

    # --- genotypes --------------------------------------------------------------------------
    def _samples(self, samples) -> np.ndarray | slice:
        if samples is None:
            return slice(None)
        if isinstance(samples, slice):
            return samples
        idx = np.asarray(samples, dtype=np.int64).reshape(-1)
        n = self.n_samples
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise SampleError(f"{self.path}: sample index out of range 0..{n - 1}")
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and np.all(np.diff(idx) == 1):
            return slice(int(idx[0]), int(idx[-1]) + 1)
        return idx

    def read_sites(self, sites: np.ndarray, samples=None, *, by_site: bool = False) -> np.ndarray:
        """Genotypes of vocabulary sites ``sites`` (increasing indices) as (n_samples, L, 2) int8,
        or with ``by_site`` (L, n_samples, 2): the store's own layout, filled with no
        transpose (a reference panel's site-major rows, :mod:`snpbag.inference.refpanel`).

        Each genotype chunk overlapping the sites is read once; rows between vocabulary
        sites are decoded but discarded. −1 marks a missing allele (haploid fill too).
        """
        sites = np.asarray(sites, dtype=np.int64)
        n = self._n_selected(samples)
        out = np.empty((sites.size, n, 2) if by_site else (n, sites.size, 2), dtype=np.int8)
        self._gather("call_genotype", self.vocab.variant[sites], samples, out if by_site else out.swapaxes(0, 1))
        np.maximum(out, -1, out=out)
        return out

    def read_phased(self, sites: np.ndarray, samples=None, *, by_site: bool = False) -> np.ndarray | None:
        """Phasing flags (n_samples, L) bool of vocabulary sites ``sites`` (increasing), (L,
        n_samples) with ``by_site`` (:meth:`read_sites`), or None when the store has no
        ``call_genotype_phased`` array."""
        if self._meta("call_genotype_phased") is None and "call_genotype_phased" not in self.group:
            return None
        sites = np.asarray(sites, dtype=np.int64)
        n = self._n_selected(samples)
        out = np.empty((sites.size, n) if by_site else (n, sites.size), dtype=bool)
        self._gather("call_genotype_phased", self.vocab.variant[sites], samples, out if by_site else out.T)
        return out

    def _n_selected(self, samples) -> int:
        sel = self._samples(samples)
        return len(range(*sel.indices(self.n_samples))) if isinstance(sel, slice) else sel.size

    def _gather(self, name: str, variants: np.ndarray, samples, dest: np.ndarray) -> None:
        """dest (variants, samples, ...) = rows ``variants`` (increasing) of array ``name``.

        Each chunk overlapping the variants is read once; rows between them are decoded but
        discarded. ``dest`` may be a transposed view: the caller's layout is filled in place.
        """
        if variants.size == 0:
            return
        sel = self._samples(samples)
        span = int(variants[-1] - variants[0] + 1)
        if span * dest.shape[1] * 2 <= _ONE_READ_BYTES:
            # One zarr call: its chunks are fetched and decoded concurrently.
            block = self._read(name, (slice(int(variants[0]), int(variants[-1]) + 1), sel), orthogonal=True)
            dest[:] = block if span == variants.size else block[variants - variants[0]]  # a run: no gather copy
            return
        which = variants // self.variant_chunk
        bounds = np.flatnonzero(np.diff(which)) + 1
        for a, b in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [variants.size]])):
            v = variants[a:b]
            block = self._read(name, (slice(int(v[0]), int(v[-1]) + 1), sel), orthogonal=True)
            dest[a:b] = block if v[-1] - v[0] + 1 == v.size else block[v - v[0]]

    def read_haplotypes(self, tile: int, samples=None, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Alleles of vocabulary sites ``start:stop`` of tile ``tile``.

        Parameters
        ----------
        tile : tile index (0 .. n_tiles-1).
        samples : sample row indices (array), a slice, or None for all samples.
        start, stop : site offsets within the tile (Python slice semantics, no negatives).

        Returns
        -------
        int8 array (n_samples, L, 2): allele index 0/1, −1 missing.

        Raises
        ------
        StoreFormatError : a corrupt chunk (names the array and path).
        IndexError : tile or start/stop out of range.
        """
        sl = self.vocab.tile_sites(tile)
        length = sl.stop - sl.start
        stop = length if stop is None else stop
        if not 0 <= start <= stop <= length:
            raise IndexError(f"sites {start}:{stop} out of range for tile {tile} of length {length}")
        return self.read_sites(np.arange(sl.start + start, sl.start + stop), samples)

    def read_dosage(self, tile: int, samples=None, start: int = 0, stop: int | None = None) -> np.ndarray:
        """ALT allele count (n_samples, L) int8 of the same sites; −1 where any allele is missing."""
        h = self.read_haplotypes(tile, samples, start, stop)
        d = h.sum(axis=2, dtype=np.int8)
        d[(h < 0).any(axis=2)] = -1
        return d

    def iter_variant_blocks(self, samples=None, *, block: int | None = None, start: int = 0,
                            stop: int | None = None) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(variant slice, genotypes (v, n_samples, 2) int8)`` over all store variants.

        Blocks are aligned to the genotype chunking (``block`` defaults to one chunk), so
        every chunk is decoded once: the access pattern of whole-cohort scans (KING).
        Missing alleles are −1; −2 (haploid fill) is passed through as in VCF Zarr.
        """
        block = block or self.variant_chunk
        sel = self._samples(samples)
        stop = self.n_variants if stop is None else min(stop, self.n_variants)
        a = start
        while a < stop:
            b = min((a // block + 1) * block, stop)
            yield slice(a, b), self._read("call_genotype", (slice(a, b), sel), orthogonal=True)
            a = b

    def iter_dosage_blocks(self, n: int | None = None, *, block: int | None = None
                           ) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(variant slice, ALT dosages (v, n) int8)`` of the first ``n`` samples.

        The blocks of :meth:`iter_variant_blocks` as :func:`alt_dosage` (−1 missing, a
        haploid call counted as homozygous, as plink2 imports it). A local store in
        ``snpbag convert``'s layout is read shard by shard (:class:`ShardScan`), about twice
        as fast as through zarr; other layouts and remote stores go through zarr.
        """
        n = self.n_samples if n is None else n
        block = block or self.variant_chunk
        scan = ShardScan.open(self.path, self.n_variants, self.n_samples)
        if scan is not None:
            yield from scan.blocks(block, n)
            return
        for sl, gt in self.iter_variant_blocks(slice(0, n), block=block):
            yield sl, alt_dosage(gt)

    def dosage_block_jobs(self, n: int | None = None, *, block: int | None = None, reuse: bool = False
                          ) -> list[tuple[slice, Callable[[], list[np.ndarray]]]] | None:
        """The blocks of :meth:`iter_dosage_blocks` as independent jobs, one per outer variant chunk.

        Each ``(variant slice, job)``: ``job()`` returns the dosage blocks of that slice, in
        order, and may run in any thread (for decoding chunks in parallel). None where
        the store is not read by :class:`ShardScan` or ``block`` does not divide its
        variant chunk. ``reuse``: see :meth:`ShardScan.chunk_jobs`.
        """
        n = self.n_samples if n is None else n
        scan = ShardScan.open(self.path, self.n_variants, self.n_samples)
        return None if scan is None else scan.chunk_jobs(block or self.variant_chunk, n, reuse=reuse)


class ShardScan:
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
    def open(cls, path: str, n_variants: int, n_samples: int) -> ShardScan | None:
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

    def chunk_jobs(self, block: int, n: int, *, reuse: bool = False
                   ) -> list[tuple[slice, Callable[[], list[np.ndarray]]]] | None:
        """One job per outer variant chunk: (its variants, a function giving its dosage blocks (v, n)).

        The blocks are those of :meth:`blocks` (``block`` must divide the outer chunk;
        None otherwise). Jobs may run in any thread and order: each decodes into a
        buffer of its thread. With ``reuse`` the dosages, too, lie in a buffer of the
        thread, overwritten by its next job: for callers done with them before that (a
        fresh 25 MB array per chunk costs page faults, about a third of KING's system time).
        """
        if block < 1 or self.cv % block:
            return None
        local = threading.local()

        def job(k: int) -> list[np.ndarray]:
            if getattr(local, "buf", None) is None:
                local.buf = self._new_buffer()
                local.out = None
            if reuse and local.out is None:
                local.out = self._new_output()
            d = self._decode(k, local.buf, local.out if reuse else None)
            return [d[a:a + block, :n] for a in range(0, d.shape[0], block)]

        return [(slice(k * self.cv, min((k + 1) * self.cv, self.nv)), functools.partial(job, k))
                for k in range(-(-self.nv // self.cv))]

    def _new_buffer(self) -> np.ndarray:
        return np.empty((-(-self.ns // self.is_), self.iv, self.is_, 2), dtype=np.int8)

    def _new_output(self) -> np.ndarray:
        return np.empty((self.iv, -(-self.ns // self.is_) * self.is_), dtype=np.int8)

    def _chunk(self, k: int) -> np.ndarray:
        if self._cache is not None and self._cache[0] == k:
            return self._cache[1]
        if self._buf is None:  # reused: a fresh 50 MB array per chunk costs page faults
            self._buf = self._new_buffer()
        d = self._decode(k, self._buf)
        self._cache = (k, d)
        return d

    def _decode(self, k: int, buf: np.ndarray, d: np.ndarray | None = None) -> np.ndarray:
        """Dosages (rows, ns) of outer chunk ``k``, decoded through ``buf`` (:meth:`_new_buffer`) into ``d``.

        ``d``: a :meth:`_new_output` array to fill (default: a new one).
        """
        import google_crc32c
        import numcodecs.blosc

        rows = min(self.cv, self.nv - k * self.cv)
        per_shard = self.cs // self.is_
        n_inner = -(-self.ns // self.is_)
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
        d = self._new_output() if d is None else d
        if not _add_alleles(buf, d):  # a missing or haploid call: plink2's import rules, in numpy
            dt = d.reshape(self.iv, n_inner, self.is_).transpose(1, 0, 2)  # buf's (inner chunk, variant, sample) order
            dt[...] = alt_dosage(buf)
        return d[:rows, :self.ns]


def _add_alleles(buf: np.ndarray, out: np.ndarray) -> bool:
    """Dosages of complete diploid calls, transposed to variant-major (False: a negative allele, out unfinished)."""
    try:
        from snpbag.store.kernels import add_alleles
    except ImportError:  # pragma: no cover - numba is a dependency; numpy does the same
        if buf.min() < 0:
            return False
        nt, nv, ns, _ = buf.shape
        np.add(buf[..., 0], buf[..., 1], out=out.reshape(nv, nt, ns).transpose(1, 0, 2))
        return True
    return add_alleles(buf, out)


def _crc_ok(crc, data: bytes) -> bool:
    return crc.value(data[:-4]).to_bytes(4, "little") == data[-4:]


#: read_sites decodes a site range in one zarr call below this many int8 bytes, else chunk by chunk.
_ONE_READ_BYTES = 64 << 20


def _is_url(path: str) -> bool:
    return "://" in path
