"""Writing VCF text: the header every snpbag VCF starts with, phased records, a whole file.

Simulated cohorts (:mod:`snpbag.simulate.coalescent`) are written by :func:`write_vcf` from
:func:`phased_records`; imputed genotypes (:mod:`snpbag.inference.vcfout`) format their
own records and share :func:`header_text`. Both go through
:func:`snpbag.io.bgzf.write_vcf_bgzf`: BGZF with a tabix index, atomic, deterministic.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from snpbag.errors import InputError
from snpbag.io.bgzf import write_vcf_bgzf

FILEFORMAT = "##fileformat=VCFv4.2"
FIXED_COLUMNS = ("#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT")
#: Uncompressed bytes of genotype text per chunk of :func:`phased_records`.
CHUNK_BYTES = 8 << 20


def contig_line(name: str, length: int | None) -> str:
    """``##contig=<ID=name,length=n>``, or without the length where it is unknown (None or 0)."""
    return f"##contig=<ID={name},length={length}>" if length else f"##contig=<ID={name}>"


def header_text(samples: Sequence[str], *, contigs: Iterable[tuple[str, int | None]], head: Sequence[str] = (),
                tail: Sequence[str] = ()) -> str:
    """A VCFv4.2 header: fileformat, ``head``, one ``##contig`` line per contig, ``tail``, the #CHROM line.

    ``head`` and ``tail`` are meta lines (``##`` is added where a line lacks it): the
    source and command before the contigs; INFO, FORMAT and other lines after them.
    """
    lines = [FILEFORMAT, *(_meta(x) for x in head), *(contig_line(c, n) for c, n in contigs),
             *(_meta(x) for x in tail), "\t".join([*FIXED_COLUMNS, *samples])]
    return "\n".join(lines) + "\n"


def _meta(line: str) -> str:
    return line if line.startswith("##") else "##" + line


def phased_records(chrom: str, positions: np.ndarray, ref: np.ndarray, alt: np.ndarray, haplotypes: np.ndarray,
                   columns: np.ndarray | None = None) -> Iterator[bytes]:
    """VCF records (``GT`` only, phased ``a|b``) of biallelic sites, in chunks of about CHUNK_BYTES.

    ``haplotypes`` (sites, 2N) uint8 allele indices (sample i = columns 2i, 2i+1);
    ``columns`` selects the haplotype columns of the samples written. Built with numpy:
    each chunk of sites becomes a (sites, samples, 4) byte array ``[a, '|', b, '\\t']``,
    so the text costs one pass over the genotypes.
    """
    g = haplotypes if columns is None else None
    n_hap = haplotypes.shape[1] if columns is None else len(columns)
    n = n_hap // 2
    if n == 0:
        raise InputError("VCF with no samples requested")
    rows = max(1, CHUNK_BYTES // (4 * n))
    for s in range(0, len(positions), rows):
        e = min(s + rows, len(positions))
        block = (g[s:e] if g is not None else haplotypes[s:e][:, columns]).reshape(e - s, n, 2)
        text = np.empty((e - s, n, 4), dtype=np.uint8)
        text[:, :, 0] = block[:, :, 0] + 48
        text[:, :, 1] = 124  # '|'
        text[:, :, 2] = block[:, :, 1] + 48
        text[:, :, 3] = 9  # '\t'
        text[:, -1, 3] = 10  # '\n'
        parts: list[bytes] = []
        for i in range(e - s):
            j = s + i
            fixed = f"{chrom}\t{positions[j]}\t.\t{ref[j]}\t{alt[j]}\t.\tPASS\t.\tGT\t"
            parts.append(fixed.encode())
            parts.append(text[i].tobytes())
        yield b"".join(parts)


def write_vcf(path: str | Path, header: str, records: Iterable[str | bytes], *, overwrite: bool = False) -> Path:
    """Write ``header`` and ``records`` (sorted by contig, in header order, and position) as a
    bgzipped VCF with its tabix index (:func:`~snpbag.io.bgzf.write_vcf_bgzf`)."""
    return write_vcf_bgzf(itertools.chain([header], records), path, overwrite=overwrite)
