"""The embeddings file written by ``snpbag embed`` and read by ``snpbag classify``: its
array names, formats, dtypes and identity check. No other module names these.

Three formats hold the same content:

``zarr`` (default), a Zarr v3 group chunked by samples so a classifier streams it::

    embedding      (sample, patch, dim) or, with --pool mean, (sample, dim)
    sample_id      (sample,)
    patch_chrom, patch_first_pos, patch_last_pos, patch_n_sites, patch_n_typed, patch_flagged   (patch,)
    attributes     FORMAT, VERSION, model identity, dtype, pool, patch, shape, min_typed

``npy``, a directory: ``embedding.npy``, ``samples.txt``, ``patches.tsv``, ``embeddings.json``
(the attributes). ``parquet`` (pyarrow), a tidy table that pandas, polars or DuckDB read as is,
one row group per batch of samples::

    sample          string                      (one row per sample and patch, sample-major)
    patch_chrom     string
    patch_first_pos, patch_last_pos, patch_n_sites, patch_n_typed   int64
    patch_flagged   bool
    embedding       fixed_size_list<dim>        the patch's vector (uint16 bf16 bits, float16 or float)
    schema metadata ``snpbag`` (the attributes, JSON) and ``patches`` (the patch table, TSV)

With ``--pool mean`` a row is a sample (columns ``sample`` and ``embedding``).

bf16 has no numpy dtype: it is stored as its raw 16 bits (uint16) and turned back into
float32 by :func:`Embeddings.matrix`. Files carry no time stamp or path, so the same input and
model give identical bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from snpbag.errors import InputError

FORMAT = "snpbag-embeddings"
VERSION = 1
FORMATS = ("zarr", "npy", "parquet")
DTYPES = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}
POOLS = ("none", "mean")
SAMPLE_CHUNK = 64  # samples per Zarr chunk: a classifier reads 64 genomes at a time

EMBEDDING = "embedding"
SAMPLE_ID = "sample_id"
SAMPLE = "sample"  # the parquet column of sample ids
PATCH_FIELDS = ("patch_chrom", "patch_first_pos", "patch_last_pos", "patch_n_sites", "patch_n_typed", "patch_flagged")
NPY_ARRAY, NPY_SAMPLES, NPY_PATCHES, NPY_ATTRS = "embedding.npy", "samples.txt", "patches.tsv", "embeddings.json"


def check_format(fmt: str) -> None:
    """InputError for an unknown format, or parquet without pyarrow."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError("--format parquet needs pyarrow, which is not installed; `pip install pyarrow`, "
                             "or use --format zarr or npy") from None


def storage_dtype(dtype: str) -> np.dtype:
    """The numpy dtype a --dtype is stored as (bf16: its raw bits)."""
    return np.dtype({"bf16": np.uint16, "f16": np.float16, "f32": np.float32}[dtype])


def encode(x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values -> the stored array (bf16: round-to-nearest-even, kept as uint16 bits)."""
    if dtype == "bf16":
        import torch

        return torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    return np.asarray(x, dtype=storage_dtype(dtype))


def decode(x: np.ndarray, dtype: str) -> np.ndarray:
    """The stored array -> float32."""
    if dtype == "bf16":
        return (np.asarray(x, np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(x, dtype=np.float32)


@dataclass
class Patches:
    chrom: np.ndarray  # str (T,)
    first_pos: np.ndarray  # int64 (T,)
    last_pos: np.ndarray  # int64 (T,)
    n_sites: np.ndarray  # int64 (T,): model sites in the patch
    n_typed: np.ndarray  # int64 (T,): of those, sites the input types
    flagged: np.ndarray  # bool (T,): too few typed sites (n_typed < min_typed * n_sites)

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(zip(PATCH_FIELDS, (np.asarray(self.chrom, dtype=str), self.first_pos, self.last_pos, self.n_sites,
                                      self.n_typed, self.flagged)))

    def __len__(self) -> int:
        return int(self.first_pos.size)


@dataclass
class Embeddings:
    """An embeddings file opened for reading (arrays are read on demand)."""

    path: Path
    fmt: str
    samples: list[str]
    patches: Patches
    attrs: dict[str, Any] = field(default_factory=dict)
    _array: Any = None  # zarr array, numpy memmap or in-memory array

    @property
    def identity(self) -> dict[str, Any]:
        return dict(self.attrs.get("model") or {})

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._array.shape)

    def matrix(self, rows: slice | np.ndarray = slice(None), *, flat: bool = True) -> np.ndarray:
        """float32 embeddings of ``rows`` samples, (n, patches * dims) when ``flat``."""
        x = decode(np.asarray(self._array[rows]), self.attrs["dtype"])
        return x.reshape(x.shape[0], -1) if flat else x

    def patch_block(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        """float32 (len(rows), stop - start, dims) vectors of patches start:stop of ``rows`` samples
        (per-patch embeddings only), without reading the other patches' values into memory."""
        rows = np.asarray(rows, np.int64)
        x = self._array.oindex[rows, start:stop] if self.fmt == "zarr" else self._array[rows, start:stop]
        return decode(np.asarray(x), self.attrs["dtype"])

    def check_same_model(self, identity: dict[str, Any], *, what: str) -> None:
        """InputError unless these embeddings come from the model of ``identity``."""
        mine = self.identity
        for key in ("weights_sha256", "vocab_sha256"):
            if mine.get(key) != identity.get(key):
                raise InputError(f"{self.path}: embeddings from model {mine.get('name')!r} ({key} "
                                 f"{str(mine.get(key))[:12]}) cannot be mixed with {what} from model "
                                 f"{identity.get('name')!r} ({str(identity.get(key))[:12]}); embed both with one model")


def _tsv_patches(patches: Patches) -> str:
    lines = ["chrom\tfirst_pos\tlast_pos\tn_sites\tn_typed\tflagged"]
    for row in zip(*patches.arrays().values()):
        lines.append("\t".join(str(int(v)) if isinstance(v, (np.bool_, bool)) else str(v) for v in row))
    return "\n".join(lines) + "\n"


class EmbeddingWriter:
    """Writes an embeddings file batch by batch into ``tmp`` (the caller renames it)."""

    def __init__(self, tmp: Path, fmt: str, *, samples: list[str], patches: Patches, dims: int, dtype: str, pool: str,
                 attrs: dict[str, Any]) -> None:
        self.tmp, self.fmt, self.dtype = Path(tmp), fmt, dtype
        n = len(samples)
        self.shape = (n, dims) if pool == "mean" else (n, len(patches), dims)
        self.attrs = {"format": FORMAT, "version": VERSION, **attrs, "dtype": dtype, "pool": pool}
        self.samples, self.patches = samples, patches
        if fmt == "zarr":
            import zarr

            g = zarr.open_group(str(self.tmp), mode="w", zarr_format=3, attributes=self.attrs)
            dims_names = ("sample", "dim") if pool == "mean" else ("sample", "patch", "dim")
            chunks = (min(SAMPLE_CHUNK, max(n, 1)),) + tuple(max(s, 1) for s in self.shape[1:])
            self._out = g.create_array(EMBEDDING, shape=self.shape, dtype=storage_dtype(dtype), chunks=chunks,
                                       dimension_names=dims_names, fill_value=0)
            self._str(g, SAMPLE_ID, np.asarray(samples, dtype=str), ("sample",))
            for name, data in patches.arrays().items():
                if data.dtype.kind == "U":
                    self._str(g, name, data, ("patch",))
                else:
                    a = g.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(max(data.size, 1),),
                                       dimension_names=("patch",), fill_value=0)
                    if data.size:
                        a[...] = data
            self._group = g
        elif fmt == "npy":
            self.tmp.mkdir(parents=True)
            self._out = np.lib.format.open_memmap(self.tmp / NPY_ARRAY, mode="w+", dtype=storage_dtype(dtype),
                                                  shape=self.shape)
        else:
            import pyarrow.parquet as pq

            self._schema = _parquet_schema(dtype, dims, pooled=pool == "mean", attrs=self.attrs, patches=patches)
            self._out = pq.ParquetWriter(str(self.tmp), self._schema)

    @staticmethod
    def _str(group, name: str, data: np.ndarray, dims: tuple[str, ...]) -> None:
        a = group.create_array(name, shape=data.shape, dtype=str, chunks=(max(data.size, 1),),
                               dimension_names=dims, fill_value="")
        if data.size:
            a[...] = data

    def write(self, lo: int, hi: int, values: np.ndarray) -> None:
        """float32 values of samples lo:hi (parquet: batches in sample order)."""
        if self.fmt == "parquet":
            self._out.write_table(_parquet_rows(self._schema, self.samples[lo:hi], self.patches,
                                                encode(values, self.dtype)))
        else:
            self._out[lo:hi] = encode(values, self.dtype)

    def close(self) -> None:
        if self.fmt == "zarr":
            import warnings

            import zarr

            with warnings.catch_warnings():  # consolidated metadata is not in the v3 spec yet; zarr says so each time
                warnings.simplefilter("ignore")
                zarr.consolidate_metadata(str(self.tmp))
        elif self.fmt == "npy":
            self._out.flush()
            del self._out
            (self.tmp / NPY_SAMPLES).write_text("".join(f"{s}\n" for s in self.samples))
            (self.tmp / NPY_PATCHES).write_text(_tsv_patches(self.patches))
            (self.tmp / NPY_ATTRS).write_text(json.dumps(self.attrs, indent=2, sort_keys=True) + "\n")
        else:
            self._out.close()


def _parquet_schema(dtype: str, dims: int, *, pooled: bool, attrs: dict[str, Any], patches: Patches):
    import pyarrow as pa

    item = {"bf16": pa.uint16(), "f16": pa.float16(), "f32": pa.float32()}[dtype]
    fields = [pa.field(SAMPLE, pa.string())]
    if not pooled:
        fields += [pa.field(PATCH_FIELDS[0], pa.string()), *(pa.field(k, pa.int64()) for k in PATCH_FIELDS[1:5]),
                   pa.field(PATCH_FIELDS[5], pa.bool_())]
    fields.append(pa.field(EMBEDDING, pa.list_(item, dims)))
    return pa.schema(fields, metadata={"snpbag": json.dumps(attrs, sort_keys=True), "patches": _tsv_patches(patches)})


def _parquet_rows(schema, samples: list[str], patches: Patches, stored: np.ndarray):
    """A table of ``schema`` for the stored vectors of ``samples``: (n, patch, dim) -> one row per sample x patch."""
    import pyarrow as pa

    n, dims = len(samples), stored.shape[-1]
    per = 1 if stored.ndim == 2 else stored.shape[1]
    cols = {SAMPLE: pa.array(np.repeat(np.asarray(samples, dtype=object), per), pa.string())}
    if stored.ndim == 3:
        cols.update({k: pa.array(np.tile(v, n), schema.field(k).type) for k, v in patches.arrays().items()})
    flat = np.ascontiguousarray(stored).reshape(-1)
    cols[EMBEDDING] = pa.FixedSizeListArray.from_arrays(pa.array(flat, schema.field(EMBEDDING).type.value_type), dims)
    return pa.table(cols, schema=schema)


def _patches_from(columns: dict[str, np.ndarray]) -> Patches:
    chrom = np.asarray(np.asarray(columns["patch_chrom"]).tolist(), dtype=str)  # zarr's variable-width strings
    return Patches(chrom, *(np.asarray(columns[k]) for k in PATCH_FIELDS[1:5]),
                   np.asarray(columns["patch_flagged"]).astype(bool))


def _patches_from_tsv(text: str) -> Patches:
    rows = [ln.split("\t") for ln in text.splitlines()[1:] if ln]
    cols = list(zip(*rows)) if rows else [()] * 6
    return Patches(np.asarray(cols[0], dtype=str), *(np.asarray(c, dtype=np.int64) for c in cols[1:5]),
                 np.asarray(cols[5], dtype=np.int64).astype(bool))


def embeddings_model(path: str | Path) -> dict[str, Any] | None:
    """The model identity recorded in an embeddings file (``{}`` when it names none or its format
    hides it, parquet without pyarrow), or None when ``path`` is not an embeddings file. Reads the
    metadata only, so a command taking genotypes can cheaply refuse embeddings given in their place."""
    p = Path(path)
    if p.is_dir():
        for meta, key in ((p / NPY_ATTRS, None), (p / "zarr.json", "attributes")):
            if meta.is_file():
                try:
                    attrs = json.loads(meta.read_text())
                except ValueError:
                    return None
                attrs = (attrs.get(key) or {}) if key else attrs
                return dict(attrs.get("model") or {}) if attrs.get("format") == FORMAT else None
        return None
    if p.is_file():
        with open(p, "rb") as fh:
            return {} if fh.read(4) == b"PAR1" else None
    return None


def read_embeddings(path: str | Path) -> Embeddings:
    """Open an embeddings file of any format.

    Raises
    ------
    InputError : no such file, or not an embeddings file of this version.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such embeddings file; write one with `snpbag embed`")
    if p.is_dir() and (p / NPY_ATTRS).is_file():
        attrs = json.loads((p / NPY_ATTRS).read_text())
        samples = (p / NPY_SAMPLES).read_text().splitlines()
        out = Embeddings(p, "npy", samples, _patches_from_tsv((p / NPY_PATCHES).read_text()), attrs,
                         np.load(p / NPY_ARRAY, mmap_mode="r"))
    elif p.is_dir() and (p / "zarr.json").is_file():
        import zarr

        g = zarr.open_group(str(p), mode="r")
        attrs = dict(g.attrs)
        if attrs.get("format") != FORMAT:
            raise InputError(f"{p}: a Zarr group but not snpbag embeddings; write them with `snpbag embed`")
        out = Embeddings(p, "zarr", [str(s) for s in g[SAMPLE_ID][...]],
                         _patches_from({k: g[k][...] for k in PATCH_FIELDS}), attrs, g[EMBEDDING])
    elif p.is_file() and p.read_bytes()[:4] == b"PAR1":
        import pyarrow.parquet as pq

        t = pq.read_table(str(p))
        meta = t.schema.metadata or {}
        attrs = json.loads(meta.get(b"snpbag", b"{}"))
        patches = _patches_from_tsv(meta.get(b"patches", b"").decode())
        per = 1 if attrs.get("pool") == "mean" else max(len(patches), 1)
        vectors = t.column(EMBEDDING).combine_chunks()
        flat = np.asarray(vectors.flatten()).reshape(t.num_rows // per, per, -1)
        samples = [str(s) for s in t.column(SAMPLE).to_pylist()[::per]]
        out = Embeddings(p, "parquet", samples, patches, attrs, flat[:, 0] if attrs.get("pool") == "mean" else flat)
    else:
        raise InputError(f"{p}: not an embeddings file (zarr, npy directory or parquet); write one with `snpbag embed`")
    if out.attrs.get("format") != FORMAT or out.attrs.get("version") != VERSION:
        raise InputError(f"{p}: embeddings format {out.attrs.get('format')!r} version {out.attrs.get('version')!r}, "
                         f"this snpbag reads {FORMAT!r} version {VERSION}; re-run `snpbag embed`")
    return out
