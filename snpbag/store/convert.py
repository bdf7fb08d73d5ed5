"""``snpbag convert``: VCF/BCF → VCF-Zarr genotype store with a site vocabulary.

One streaming pass: cyvcf2 decodes blocks of biallelic SNPs (htslib threads decompress)
while a writer thread resizes and writes the previous block (Blosc releases the GIL, and
zarr compresses the block's chunks concurrently). Allele counts accumulate on the way,
so the vocabulary (MAF ≥ min_maf) and its tiles are computed at the end without a
second read. The store is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import zarr

from snpbag import STORE_FORMAT_VERSION
from snpbag.store import schema
from snpbag.io.gvcf import refuse_gvcf
from snpbag.io.records import DROP_REASONS, VariantBlock
from snpbag.io.vcf import VcfReader, cpu_count, parallel_blocks, read_sample_file, use_parallel
from snpbag.store.vocab import make_tiles, select_sites
from snpbag.errors import InputError
from snpbag.fileio import atomic_output
from snpbag.provenance import provenance

log = logging.getLogger(__name__)


def report_path(output: str | Path) -> Path:
    """Where the conversion report is written: ``OUTPUT.report.json`` beside the store."""
    output = Path(output)
    return output.with_name(output.name + ".report.json")


def convert(input: str | Path, output: str | Path, *, region: str | None = None, samples: str | Path | None = None,
            min_maf: float = 0.01, tile_len: int = schema.TILE_LEN, threads: int | None = None,
            sample_chunk: int | None = None) -> dict:
    """Convert a VCF/BCF into a snpbag genotype store (docs/store-format.md).

    Only biallelic SNPs become variants; multi-allelic sites, indels, MNPs, symbolic and
    ALT-less records are dropped and counted. Every chromosome in the input is kept.

    Parameters
    ----------
    input : VCF (plain or bgzipped) or BCF; sorted by position within chromosomes.
    output : path of the Zarr store to create (must not exist).
    region : ``CHR[:START-END]``, 1-based inclusive; needs an indexed bgzipped file.
    samples : file with one sample id per line; samples are stored in file order.
    min_maf : vocabulary threshold on the minor allele frequency among called alleles.
    tile_len : vocabulary sites per tile (the last one of a chromosome is shorter).
    threads : processes/threads to use (default: all cores). With ≥ 2 and an indexed
        bgzipped input ≥ 8 MiB, worker processes parse genomic regions in parallel
        (started with ``spawn``: call ``convert`` under ``if __name__ == "__main__":``
        in scripts); otherwise htslib decompression threads and a writer thread.
    sample_chunk : samples per genotype chunk (default ``schema.SAMPLE_CHUNK``,
        docs/store-format.md), which suits reads of a few samples; a store read whole, once
        (``snpbag impute --ref``'s temporary panel) takes a chunk per shard, since a codec
        call per chunk is most of the time of writing and reading 16-sample chunks.

    Returns
    -------
    The conversion report (also written to ``OUTPUT.report.json`` and stored in the
    ``snpbag_conversion`` group attribute): records read, variants kept, records dropped by
    reason, samples, vocabulary sites and tiles (``vocab_contigs``, ``contig_len``: the report
    is stored in the store's attributes under the format's names), bits per genotype, seconds.

    Raises
    ------
    InputError : unreadable/unsorted input, region problems, no biallelic SNPs (a gVCF is
        named as one), bad options, output already exists.
    SampleError : ``--samples`` ids absent from the input.
    """
    t0 = time.perf_counter()
    if not 0.0 <= min_maf <= 0.5:
        raise InputError(f"--min-maf {min_maf}: must be between 0 and 0.5")
    if tile_len < 1:
        raise InputError(f"--tile-len {tile_len}: must be a positive number of sites")
    if threads is not None and threads < 1:
        raise InputError(f"--threads {threads}: must be at least 1")
    if sample_chunk is not None and sample_chunk < 1:
        raise InputError(f"sample_chunk {sample_chunk}: must be a positive number of samples")
    output = Path(output)
    if output.exists():
        raise InputError(f"{output}: output already exists; remove it or choose another path")
    threads = threads or cpu_count()
    sample_ids = read_sample_file(samples) if samples is not None else None
    reader = VcfReader(input, region=region, samples=sample_ids, threads=threads)
    params = dict(input=str(input), region=region, samples=str(samples) if samples else None,
                  min_maf=min_maf, tile_len=tile_len, threads=threads, sample_chunk=sample_chunk)
    try:
        with atomic_output(output) as tmp, zarr.config.set({"threading.max_workers": threads}):
            report = _write(reader, tmp, min_maf=min_maf, tile_len=tile_len, threads=threads,
                            sample_chunk=sample_chunk, params=params, t0=t0)
    finally:
        reader.close()
    with atomic_output(report_path(output), overwrite=True) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    log.info("%s: %d variants x %d samples, %d vocabulary sites in %d tiles, %.2f bits/genotype, %.1f s",
             output, report["variants"], report["samples"], report["vocab_sites"], report["vocab_contigs"],
             report["bits_per_genotype"], report["seconds"])
    return report


def _write(reader: VcfReader, path: Path, *, min_maf: float, tile_len: int, threads: int, sample_chunk: int | None,
           params: dict, t0: float) -> dict:
    n = reader.n_samples
    vchunk = schema.variant_chunk_for(n, requested=schema.VARIANT_CHUNK)
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    gt_arrays = _create_genotype_arrays(group, n, vchunk, sample_chunk or schema.SAMPLE_CHUNK)

    coords: dict[str, list[np.ndarray]] = {k: [] for k in ("contig", "position", "allele", "id")}
    alt_counts, called_counts = [], []
    n_variants = 0
    pending: Future | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="snpbag-write") as pool:
        parallel = use_parallel(reader, threads)
        source = parallel_blocks(reader, vchunk, workers=threads) if parallel else reader.blocks(vchunk)
        for block in source:
            alt, called = allele_counts(block.genotype)
            alt_counts.append(alt)
            called_counts.append(called)
            for k in coords:
                coords[k].append(getattr(block, k))
            if pending is not None:
                pending.result()  # at most one block in flight: memory stays two blocks
            start, n_variants = n_variants, n_variants + len(block)
            if threads > 1:
                pending = pool.submit(_write_block, gt_arrays, block, start)
            else:
                _write_block(gt_arrays, block, start)
        if pending is not None:
            pending.result()

    counts = reader.counts
    refuse_empty(reader, n_variants)

    contig = np.concatenate(coords["contig"])
    position = np.concatenate(coords["position"])
    allele = np.concatenate(coords["allele"])
    ids = np.concatenate(coords["id"])
    af = allele_frequency(np.concatenate(alt_counts), np.concatenate(called_counts))

    _coord(group, "variant_position", position)
    _coord(group, "variant_allele", allele.astype(str))
    _coord(group, "variant_id", ids.astype(str))
    _coord(group, "variant_contig", contig.astype(np.int16))
    _coord(group, "contig_id", np.asarray(reader.contigs, dtype=str))
    lengths = reader.contig_lengths
    if reader.contigs and all(c in lengths for c in reader.contigs):
        _coord(group, "contig_length", np.array([lengths[c] for c in reader.contigs], dtype=np.int64))
    _coord(group, "sample_id", np.asarray(reader.samples, dtype=str))

    site_variant = select_sites(af, min_maf=min_maf)
    c_chrom, c_start, c_stop = make_tiles(contig[site_variant], tile_len=tile_len)
    _coord(group, "snpbag_site_variant", site_variant)
    _coord(group, "snpbag_site_af", af[site_variant].astype(np.float32))
    _coord(group, "snpbag_contig_chrom", c_chrom)
    _coord(group, "snpbag_contig_start", c_start)
    _coord(group, "snpbag_contig_stop", c_stop)
    if site_variant.size == 0:
        log.warning("%s: no site has MAF >= %g; the store has an empty vocabulary", reader.path, min_maf)

    gt_bytes = _dir_bytes(path / "call_genotype")
    report = {
        "input": str(reader.path),
        "records_read": counts.records,
        "variants": int(n_variants),
        "dropped": {k: counts.dropped[k] for k in DROP_REASONS},
        "samples": n,
        "chromosomes": sorted({reader.contigs[i] for i in np.unique(contig)}, key=reader.contigs.index),
        "vocab_sites": int(site_variant.size),
        "vocab_contigs": int(c_start.size),
        "min_maf": min_maf,
        "contig_len": tile_len,
        "variant_chunk": vchunk,
        # the report is stored in the store's attributes: its wording is part of the format
        "reader": (f"htslib, {threads} processes (genomic windows)" if parallel
                   else f"{reader.engine}, 1 process, {threads} thread(s)"),
        "call_genotype_bytes": int(gt_bytes),
        "store_bytes": int(_dir_bytes(path)),
        "bits_per_genotype": round(8.0 * gt_bytes / max(n_variants * n, 1), 4),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    group.attrs.update({
        schema.ATTR_VCF_ZARR: schema.VCF_ZARR_VERSION,
        schema.ATTR_VERSION: STORE_FORMAT_VERSION,
        schema.ATTR_MIN_MAF: float(min_maf),
        schema.ATTR_TILE_LEN: int(tile_len),
        schema.ATTR_PROVENANCE: provenance("snpbag convert", params),
        schema.ATTR_REPORT: report,
    })
    # Written last: a store without it was not finished (belt and braces with the rename).
    group.attrs[schema.ATTR_COMPLETE] = True
    _consolidate(path)
    return report


def allele_counts(genotype: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ALT alleles and called alleles per variant of a (v, n, 2) block: the vocabulary's
    frequencies accumulate from these, block by block."""
    return (genotype == 1).sum(axis=(1, 2), dtype=np.int64), (genotype >= 0).sum(axis=(1, 2), dtype=np.int64)


def allele_frequency(alt: np.ndarray, called: np.ndarray) -> np.ndarray:
    """ALT frequency per variant among called alleles, NaN where none is called (float64, for
    the vocabulary's MAF threshold)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(called > 0, alt / np.maximum(called, 1), np.nan)


def refuse_empty(reader: VcfReader, n_variants: int) -> None:
    """Raise InputError when the read found no biallelic SNP (naming a gVCF as one)."""
    if n_variants == 0:
        where = f"region {reader.region}" if reader.region else "the file"
        refuse_gvcf(reader.path)
        raise InputError(f"{reader.path}: no biallelic SNPs in {where} ({reader.counts.records} records read); "
                         "check --region and the input")


def _create_genotype_arrays(group, n: int, vchunk: int, sample_chunk: int) -> dict:
    schunk = min(sample_chunk, max(n, 1))
    sshard = min(-(-max(n, 1) // schunk) * schunk, -(-schema.SAMPLE_SHARD // schunk) * schunk)
    out = {}
    for name, fill, extra in (("call_genotype", -1, (2,)), ("call_genotype_mask", True, (2,)),
                              ("call_genotype_phased", False, ())):
        spec = schema.SPECS[name]
        out[name] = group.create_array(
            name, shape=(0, n, *extra), dtype=spec.dtype, chunks=(vchunk, schunk, *extra),
            shards=(vchunk, sshard, *extra),
            compressors=schema.genotype_compressors() if name == "call_genotype" else schema.flag_compressors(),
            fill_value=fill, dimension_names=spec.dims,
        )
    return out


def _write_block(arrays: dict, block: VariantBlock, start: int) -> None:
    stop = start + len(block)
    g = block.genotype
    for name, data in (("call_genotype", g), ("call_genotype_mask", g < 0), ("call_genotype_phased", block.phased)):
        arr = arrays[name]
        arr.resize((stop, *arr.shape[1:]))
        arr[start:stop] = data


def _coord(group, name: str, data: np.ndarray) -> None:
    spec = schema.SPECS[name]
    data = np.asarray(data)
    dtype = str if spec.dtype == "str" else spec.dtype
    chunks = tuple(max(s, 1) for s in data.shape)  # coordinate arrays: one chunk
    arr = group.create_array(name, shape=data.shape, dtype=dtype, chunks=chunks,
                             compressors=schema.coordinate_compressor() if spec.dtype != "str" else "auto",
                             dimension_names=spec.dims, fill_value="" if spec.dtype == "str" else 0)
    if data.size:
        arr[...] = data


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def _consolidate(path: Path) -> None:
    """Consolidated metadata lets xarray and remote (fsspec) readers open the store in one request."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))
