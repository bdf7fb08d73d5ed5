"""Bgzipped VCF text: written atomically and deterministically with a tabix index, read in parallel.

Every VCF snpbag writes (simulations, pedigrees, imputed genotypes) goes through
:func:`write_vcf_bgzf` so that bcftools, tabix, cyvcf2 and Beagle can open it with
region queries, a killed run leaves neither a ``.vcf.gz`` nor a ``.tbi`` under its
final name, and identical input gives byte-identical files (BGZF headers carry no
timestamp and the tabix index does not record the file name).

Compression and indexing use htslib through pysam, so no ``bgzip``/``tabix``
binary is needed. Reading (:func:`read_text`) inflates BGZF blocks itself: each block is
an independent gzip member of at most 64 KiB, so groups of blocks can be inflated by
several threads at once (the C call releases the GIL), and libdeflate inflates about 3x
faster than the ``gzip`` module, which also checks each CRC in a separate pass.
"""

from __future__ import annotations

import functools
import gzip
import logging
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from snpbag.errors import InputError, ToolMissingError
from snpbag.fileio import atomic_output, atomic_outputs
from snpbag.parallel import in_order

log = logging.getLogger(__name__)

__all__ = ["copy_contigs", "index_path", "index_vcf", "read_text", "write_bgzf", "write_vcf_bgzf"]


def _pysam():
    try:
        import pysam
        from pysam import libcbgzf
    except ImportError as e:  # pragma: no cover - pysam is a declared dependency
        raise ToolMissingError("pysam is not installed; run `pip install pysam` (needed to write .vcf.gz)") from e
    return pysam, libcbgzf


def index_path(path: str | Path) -> Path:
    """The tabix index that belongs to ``path`` (``x.vcf.gz`` → ``x.vcf.gz.tbi``)."""
    path = Path(path)
    return path.with_name(path.name + ".tbi")


def _write_chunks(chunks: Iterable[str | bytes], dest: Path) -> int:
    _, libcbgzf = _pysam()
    n = 0
    f = libcbgzf.BGZFile(str(dest), "wb")
    try:
        for chunk in chunks:
            data = chunk.encode() if isinstance(chunk, str) else chunk
            if data:
                f.write(data)
                n += len(data)
    finally:
        f.close()
    return n


def write_bgzf(chunks: Iterable[str | bytes], path: str | Path, *, overwrite: bool = False) -> Path:
    """Write text chunks as one BGZF file (no index), atomically.

    Parameters
    ----------
    chunks
        Pieces of the uncompressed text in order (``str`` is UTF-8 encoded). A chunk
        may hold any number of lines; the writer does not add newlines.
    path
        Final file name, conventionally ending in ``.gz``.
    overwrite
        Replace an existing ``path``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        nbytes = _write_chunks(chunks, tmp)
    log.debug("wrote %s (%d uncompressed bytes)", path, nbytes)
    return path


def index_vcf(path: str | Path, *, index: str | Path | None = None, overwrite: bool = False) -> Path:
    """Build the tabix (.tbi) index of a bgzipped, position-sorted VCF.

    Parameters
    ----------
    path
        A BGZF-compressed VCF sorted by contig and position.
    index
        Where to write the index (default ``path + ".tbi"``); written atomically.
    overwrite
        Replace an existing index.

    Returns
    -------
    Path
        The index path.

    Raises
    ------
    InputError
        ``path`` is missing, not BGZF, or not sortable by tabix.
    """
    path = Path(path)
    index = Path(index) if index is not None else index_path(path)
    with atomic_output(index, overwrite=overwrite) as tmp:
        _tabix(path, tmp)
    return index


def _tabix(vcf: Path, tbi: Path, *, name: Path | None = None) -> None:
    """Index ``vcf`` into ``tbi``; messages name ``name`` (the final path, not a temporary)."""
    pysam, _ = _pysam()
    name = name or vcf
    if not vcf.is_file():
        raise InputError(f"{name}: no such file; cannot build a tabix index")
    with open(vcf, "rb") as f:
        magic = f.read(4)
    if magic != b"\x1f\x8b\x08\x04":
        raise InputError(f"{name}: not BGZF-compressed; compress it with `bgzip` before indexing")
    try:
        pysam.tabix_index(str(vcf), preset="vcf", index=str(tbi), force=True)
    except (OSError, ValueError) as e:
        raise InputError(
            f"{name}: tabix could not index it (records unsorted or malformed); sort it with `bcftools sort`"
        ) from e


def write_vcf_bgzf(
    chunks: Iterable[str | bytes],
    path: str | Path,
    *,
    index: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write VCF text as ``path`` (BGZF) plus ``path.tbi``; both appear together or not at all.

    Parameters
    ----------
    chunks
        The VCF text in order: header lines first, then records sorted by contig
        (in ``##contig`` order) and position. Each chunk is ``str`` or ``bytes``
        and may hold many lines; generators are consumed lazily, so a caller can
        stream a VCF of any size.
    path
        Final ``.vcf.gz`` path.
    index
        Also write the tabix index ``path + ".tbi"``.
    overwrite
        Replace existing outputs.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        An output exists and ``overwrite`` is false, or tabix rejects the records
        (unsorted, malformed).
    ToolMissingError
        pysam is not installed.
    """
    path = Path(path)
    if not index:
        return write_bgzf(chunks, path, overwrite=overwrite)
    with atomic_outputs(path, index_path(path), overwrite=overwrite) as (tmp_vcf, tmp_tbi):
        nbytes = _write_chunks(chunks, tmp_vcf)
        _tabix(tmp_vcf, tmp_tbi, name=path)
    log.debug("wrote %s + .tbi (%d uncompressed bytes)", path, nbytes)
    return path



def _header(path: Path) -> list[bytes]:
    """The ``##`` meta lines of a (b)gzipped VCF."""
    lines = []
    with gzip.open(path, "rb") as f:
        for line in f:
            if not line.startswith(b"##"):
                break
            lines.append(line)
    return lines


def copy_contigs(src: str | Path, dest: str | Path) -> bool:
    """Give ``dest`` the ``##contig`` lines of ``src`` when its header has none, so that
    htslib tools read it without "Contig '22' is not defined in the header" on every record.

    Beagle 5.4 writes its ``.vcf.gz`` without contig lines; ``src`` is the VCF it imputed.
    ``dest`` is rewritten (BGZF, with a tabix index) only when it lacks contigs.

    Returns
    -------
    bool
        Whether ``dest`` was rewritten.

    Raises
    ------
    InputError
        ``src`` has no ``##contig`` lines either, or ``dest`` cannot be indexed.
    """
    src, dest = Path(src), Path(dest)
    if any(line.startswith(b"##contig=") for line in _header(dest)):
        return False
    contigs = [line for line in _header(src) if line.startswith(b"##contig=")]
    if not contigs:
        raise InputError(f"{src}: no ##contig lines to copy into {dest}; add them with `bcftools reheader --fai`")

    def chunks() -> Iterator[bytes]:
        with gzip.open(dest, "rb") as f:
            for line in f:
                if line.startswith(b"#CHROM"):
                    yield b"".join(contigs) + line
                    break
                yield line
            while block := f.read(1 << 20):
                yield block

    write_vcf_bgzf(chunks(), dest, overwrite=True)
    return True


# --- reading ---------------------------------------------------------------------------------
_MAGIC = b"\x1f\x8b\x08\x04"
#: Uncompressed bytes per piece of :func:`read_text` (one job of the inflating threads).
PIECE = 4 << 20


def is_bgzf(head: bytes) -> bool:
    """Whether the first 14+ bytes of a file start a BGZF block (gzip with the 'BC' extra field)."""
    return len(head) >= 14 and head[:4] == _MAGIC and head[12:14] == b"BC"


@functools.lru_cache(maxsize=1)
def _libdeflate():
    """(alloc, free, gzip_decompress) of libdeflate through ctypes, or None.

    The ``deflate`` wheel links libdeflate into its extension and exports its C API; the
    C call inflates into a buffer we own (the Python API returns one bytes object per
    block, and joining those costs more than inflating them) and releases the GIL.
    """
    try:
        import ctypes

        from deflate import _deflate

        lib = ctypes.CDLL(_deflate.__file__)
        alloc, free, gunzip = (lib.libdeflate_alloc_decompressor, lib.libdeflate_free_decompressor,
                               lib.libdeflate_gzip_decompress)
    except (ImportError, OSError, AttributeError):  # pragma: no cover - deflate is a declared dependency
        return None
    alloc.restype, alloc.argtypes = ctypes.c_void_p, []
    free.restype, free.argtypes = None, [ctypes.c_void_p]
    gunzip.restype = ctypes.c_int
    gunzip.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                       ctypes.POINTER(ctypes.c_size_t)]
    return alloc, free, gunzip


def _gunzip_member():
    """A Python function inflating one gzip member (CRC and length checked), for when ctypes fails."""
    try:
        from isal.isal_zlib import decompress as isal_decompress
        return lambda data: isal_decompress(data, 31)
    except ImportError:
        return lambda data: zlib.decompress(data, 31)


def _groups(path: Path, piece: int) -> Iterator[tuple[list, int]]:
    """Whole BGZF blocks of ``path`` as (source bytes, offset, size, inflated size), grouped to
    about ``piece`` inflated bytes: (blocks, inflated bytes of the group)."""
    with open(path, "rb") as f:
        data, at, base = b"", 0, 0  # base: file offset of data[0]
        group: list = []
        size = 0
        while True:
            avail = len(data) - at
            if avail >= 18:
                if data[at:at + 4] != _MAGIC or data[at + 12:at + 14] != b"BC":
                    raise InputError(f"{path}: no BGZF block at byte {base + at}; check the file with `bgzip -t`")
                bsize = struct.unpack_from("<H", data, at + 16)[0] + 1
                if avail >= bsize:
                    isize = struct.unpack_from("<I", data, at + bsize - 4)[0]
                    group.append((data, at, bsize, isize))
                    size += isize
                    at += bsize
                    if size >= piece:
                        yield group, size
                        group, size = [], 0
                    continue
            more = f.read(1 << 20)
            if not more:
                break
            base += at
            data, at = data[at:] + more, 0
        if len(data) - at:
            raise InputError(f"{path}: truncated BGZF file ({len(data) - at} bytes after the last whole block); "
                             "check the file with `bgzip -t`")
        if size:
            yield group, size


def _inflate(path: Path, group: list, out: np.ndarray) -> np.ndarray:
    """One group of blocks inflated into ``out`` (uint8, their inflated size)."""
    lib = _libdeflate()
    o = 0
    if lib is not None:
        import ctypes

        alloc, free, gunzip = lib
        got = ctypes.c_size_t()
        ref = ctypes.byref(got)
        dec = alloc()
        if not dec:  # pragma: no cover - out of memory
            raise MemoryError("libdeflate_alloc_decompressor")
        base = out.ctypes.data
        try:
            src_obj, src = None, 0
            for data, at, bsize, isize in group:
                if data is not src_obj:
                    src_obj, src = data, np.frombuffer(data, dtype=np.uint8).ctypes.data
                if gunzip(dec, src + at, bsize, base + o, isize, ref) != 0 or got.value != isize:
                    raise InputError(f"{path}: cannot decompress a BGZF block (corrupt data or CRC mismatch); "
                                     "check the file with `bgzip -t`")
                o += isize
        finally:
            free(dec)
        return out
    gunzip = _gunzip_member()
    try:
        for data, at, bsize, isize in group:
            x = gunzip(memoryview(data)[at:at + bsize])
            if len(x) != isize:
                raise zlib.error(f"inflated {len(x)} bytes, the block says {isize}")
            out[o:o + isize] = np.frombuffer(x, dtype=np.uint8)
            o += isize
    except zlib.error as e:
        raise InputError(f"{path}: cannot decompress ({e}); check the file with `bgzip -t`") from e
    except Exception as e:  # isal's error class
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: cannot decompress ({e}); check the file with `bgzip -t`") from e
    return out


def read_text(path: str | Path, *, threads: int = 1, piece: int | None = None) -> Iterator[np.ndarray]:
    """The uncompressed bytes of a plain, gzip or BGZF file, as uint8 arrays of about ``piece`` bytes.

    Pieces (default :data:`PIECE` bytes) split the text anywhere (not at line ends). A BGZF file is inflated block by
    block, by ``threads`` threads when more than one (pieces still come in order, at most
    ``2 * threads`` ahead); other gzip files by one stream in this thread.

    Raises
    ------
    InputError : a corrupt or truncated compressed file.
    """
    path = Path(path)
    piece = piece or PIECE
    with open(path, "rb") as f:
        head = f.read(18)
    if head[:2] != b"\x1f\x8b":
        with open(path, "rb") as f:
            while chunk := f.read(piece):
                yield np.frombuffer(chunk, dtype=np.uint8)
        return
    if not is_bgzf(head):
        import gzip

        try:
            with gzip.open(path, "rb") as f:
                while chunk := f.read(piece):
                    yield np.frombuffer(chunk, dtype=np.uint8)
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(f"{path}: cannot decompress ({e}); check the file with `gzip -t`") from e
        return
    if threads <= 1:
        for group, size in _groups(path, piece):
            yield _inflate(path, group, np.empty(size, dtype=np.uint8))
        return
    # each piece's buffer allocated here, not in the pool threads: one malloc arena serves every piece
    jobs = ((group, np.empty(size, dtype=np.uint8)) for group, size in _groups(path, piece))
    yield from in_order(lambda job: _inflate(path, *job), jobs, threads=threads, depth=2 * threads,
                        name="snpbag-inflate")
