"""A local store's metadata and single-chunk arrays, read without zarr-python.

Importing zarr and opening a group through its asynchronous API costs about 0.25 s per
process on the 2-core VM (0.12 s import beyond numcodecs, ~0.15 s to open the group and
validate its arrays; docs/benchmarks.md, KING section) — a tenth of a whole ``snpbag king``
run on 3,000 samples, and what a user pays for every per-chromosome job. ``snpbag
convert`` writes consolidated metadata into the root ``zarr.json`` and keeps its
per-variant, per-sample and per-contig arrays in one chunk each, so one JSON read and a
codec call per array give everything but the genotypes (which
:class:`~snpbag.store.genotypes.ShardScan` reads shard by shard). This module reads exactly
that subset; for anything else (remote stores, several chunks, other codecs or data
types) it returns None and :class:`~snpbag.store.genotypes.GenotypeStore` goes through zarr.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

_NUMERIC = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32",
            "float64"}


class CorruptChunk(ValueError):
    """A chunk that exists but cannot be decoded (checksum, codec or size)."""


def consolidated(path: str | Path) -> dict | None:
    """``{"attributes": …, "arrays": {name: metadata}}`` of a local Zarr v3 group with inline
    consolidated metadata; None if there is no such file or it is not that (zarr decides then)."""
    try:
        meta = json.loads((Path(path) / "zarr.json").read_bytes())
        cons = meta["consolidated_metadata"]
        if meta.get("zarr_format") != 3 or meta.get("node_type") != "group" or cons.get("kind") != "inline":
            return None
        arrays = {k: v for k, v in cons["metadata"].items() if v.get("node_type") == "array" and "/" not in k}
        return {"attributes": dict(meta.get("attributes") or {}), "arrays": arrays}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def read_chunk(path: str | Path, name: str, meta: dict) -> np.ndarray | None:
    """The whole array ``name`` if it is one chunk with codecs this module knows, else None.

    Strings come back as an object array (as GenotypeStore keeps them).

    Raises
    ------
    CorruptChunk : the chunk file exists but fails its checksum or does not decode.
    """
    try:
        shape = tuple(int(s) for s in meta["shape"])
        dtype = meta["data_type"]
        chunk = tuple(int(s) for s in meta["chunk_grid"]["configuration"]["chunk_shape"])
        codecs = [(c["name"], c.get("configuration") or {}) for c in meta["codecs"]]
        key = meta["chunk_key_encoding"]
    except (KeyError, TypeError, ValueError):
        return None
    if (meta.get("storage_transformers") or meta["chunk_grid"].get("name") != "regular"
            or key.get("name") != "default" or (key.get("configuration") or {}).get("separator", "/") != "/"
            or (dtype not in _NUMERIC and dtype != "string") or len(chunk) != len(shape)
            or any(c < s for c, s in zip(chunk, shape))):
        return None
    if not codecs or codecs[0][0] not in ("bytes", "vlen-utf8") or (codecs[0][0] == "vlen-utf8") != (dtype == "string"):
        return None
    if codecs[0][0] == "bytes" and codecs[0][1].get("endian", "little") != "little":
        return None
    crc = bool(codecs) and codecs[-1][0] == "crc32c"
    middle = codecs[1:len(codecs) - crc]
    if len(middle) > 1 or any(c not in ("blosc", "zstd") for c, _ in middle):
        return None
    f = Path(path) / name / "c" / "/".join("0" * len(shape)) if shape else Path(path) / name / "c"
    if 0 in shape:
        return np.zeros(shape, dtype=object if dtype == "string" else dtype)
    try:
        raw = f.read_bytes()
    except FileNotFoundError:
        return _filled(shape, dtype, meta.get("fill_value"))
    try:
        if crc:
            import google_crc32c

            if google_crc32c.value(raw[:-4]).to_bytes(4, "little") != raw[-4:]:
                raise CorruptChunk("checksum mismatch")
            raw = raw[:-4]
        if middle:
            raw = _decompress(middle[0][0], raw)
        return _decode(raw, chunk, shape, dtype)
    except CorruptChunk:
        raise
    except Exception as e:  # codec errors of any kind: the chunk is damaged
        raise CorruptChunk(f"{type(e).__name__}: {e}") from e


def _decompress(codec: str, raw: bytes) -> bytes:
    if codec == "blosc":
        import numcodecs.blosc

        return numcodecs.blosc.decompress(raw)
    import numcodecs.zstd

    return bytes(numcodecs.zstd.Zstd().decode(raw))


def _decode(raw: bytes, chunk: tuple, shape: tuple, dtype: str) -> np.ndarray:
    n = int(np.prod(chunk))
    if dtype != "string":
        a = np.frombuffer(raw, dtype="<" + np.dtype(dtype).str[1:] if dtype != "bool" else bool)
        if a.size != n:
            raise CorruptChunk(f"{a.size} values for a chunk of {n}")
        a = a.reshape(chunk)
    else:
        (count,) = struct.unpack_from("<I", raw, 0)
        if count != n:
            raise CorruptChunk(f"{count} strings for a chunk of {n}")
        out, pos = [], 4
        for _ in range(count):
            (k,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + k > len(raw):
                raise CorruptChunk("string past the end of the chunk")
            out.append(raw[pos:pos + k].decode("utf-8"))
            pos += k
        a = np.empty(n, dtype=object)
        a[:] = out
        a = a.reshape(chunk)
    return np.array(a[tuple(slice(0, s) for s in shape)], copy=True)


def _filled(shape: tuple, dtype: str, fill) -> np.ndarray | None:
    if dtype == "string":
        return np.full(shape, "" if fill is None else str(fill), dtype=object)
    if fill is None or isinstance(fill, str):  # "NaN"/"Infinity" and friends: leave them to zarr
        return None
    return np.full(shape, fill, dtype=dtype)
