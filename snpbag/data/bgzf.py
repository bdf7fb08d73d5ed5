"""Bgzipped VCF text with a tabix index, written atomically and deterministically.

Every VCF snpbag writes (simulations, pedigrees, imputed genotypes) goes through
:func:`write_vcf_bgzf` so that bcftools, tabix, cyvcf2 and Beagle can open it with
region queries, a killed run leaves neither a ``.vcf.gz`` nor a ``.tbi`` under its
final name, and identical input gives byte-identical files (BGZF headers carry no
timestamp and the tabix index does not record the file name).

Compression and indexing use htslib through pysam, so no ``bgzip``/``tabix``
binary is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from snpbag.errors import InputError, ToolMissingError
from snpbag.fileio import atomic_output, atomic_outputs

log = logging.getLogger(__name__)

__all__ = ["index_path", "index_vcf", "write_bgzf", "write_vcf_bgzf"]


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
