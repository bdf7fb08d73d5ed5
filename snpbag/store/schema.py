"""The store's variables: names, dimensions, dtypes and chunking, in one place.

convert.py creates arrays from these specs, store.py validates an opened store against
them and the tests compare an ``xarray.open_zarr`` view with them, so the layout in
docs/store-format.md has exactly one implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: VCF Zarr specification version whose names and dimensions the store follows.
VCF_ZARR_VERSION = "0.4"

#: Variants per genotype chunk (and per shard). A tile of 81,920 vocabulary sites read
#: for one sample touches ~10-15 such chunks; see docs/store-format.md.
VARIANT_CHUNK = 8192
#: Samples per genotype chunk: a one-sample read decompresses 16x more than it needs,
#: which is cheap (tens of µs per chunk) and keeps whole-cohort scans fast.
SAMPLE_CHUNK = 16
#: Samples per shard (zarr v3 sharding codec): one file holds VARIANT_CHUNK variants of
#: this many samples, so a 500,000-sample biobank writes ~250 files per variant chunk,
#: not ~31,000.
SAMPLE_SHARD = 2048
#: Convert keeps one block of VARIANT_CHUNK variants x all samples in memory; above this
#: many bytes of int8 genotypes the variant chunk is halved (down to MIN_VARIANT_CHUNK).
BLOCK_BYTES = 1 << 30
MIN_VARIANT_CHUNK = 512
#: Vocabulary sites per tile unless ``snpbag convert --tile-len`` says otherwise.
TILE_LEN = 81920

#: Attribute names on the root group.
ATTR_VERSION = "snpbag_format_version"
ATTR_COMPLETE = "snpbag_complete"
ATTR_MIN_MAF = "snpbag_min_maf"
ATTR_TILE_LEN = "snpbag_contig_len"  # sites per tile (the store keeps its contig names for tiles)
ATTR_PROVENANCE = "snpbag_provenance"
ATTR_REPORT = "snpbag_conversion"
ATTR_VCF_ZARR = "vcf_zarr_version"


@dataclass(frozen=True)
class VarSpec:
    """One array of the store: its dimensions, dtype kind and whether it is chunked like genotypes."""

    name: str
    dims: tuple[str, ...]
    dtype: str  # numpy dtype string, or "str" for variable-length UTF-8
    genotype_chunked: bool = False
    required: bool = True


VARIABLES: tuple[VarSpec, ...] = (
    VarSpec("call_genotype", ("variants", "samples", "ploidy"), "int8", genotype_chunked=True),
    VarSpec("call_genotype_mask", ("variants", "samples", "ploidy"), "bool", genotype_chunked=True),
    VarSpec("call_genotype_phased", ("variants", "samples"), "bool", genotype_chunked=True),
    VarSpec("variant_position", ("variants",), "int32"),
    VarSpec("variant_allele", ("variants", "alleles"), "str"),
    VarSpec("variant_id", ("variants",), "str"),
    VarSpec("variant_contig", ("variants",), "int16"),
    VarSpec("contig_id", ("contigs",), "str"),
    VarSpec("contig_length", ("contigs",), "int64", required=False),
    VarSpec("sample_id", ("samples",), "str"),
    VarSpec("snpbag_site_variant", ("sites",), "int64"),
    VarSpec("snpbag_site_af", ("sites",), "float32"),
    # the vocabulary's tiles (snpbag.store.vocab), under the format's contig names
    VarSpec("snpbag_contig_chrom", ("snpbag_contigs",), "int16"),
    VarSpec("snpbag_contig_start", ("snpbag_contigs",), "int64"),
    VarSpec("snpbag_contig_stop", ("snpbag_contigs",), "int64"),
)
SPECS = {v.name: v for v in VARIABLES}


def genotype_compressors() -> tuple:
    """Blosc zstd with bit shuffling: int8 alleles use 1-2 bits of each byte, so after
    bit shuffling the high bit planes are long zero runs (see docs/store-format.md).
    A CRC32C checksum per chunk turns silent corruption into a StoreFormatError."""
    import zarr.codecs as zc  # here: reading a store does not import zarr (snpbag.store.localzarr)

    return (zc.BloscCodec(cname="zstd", clevel=3, shuffle=zc.BloscShuffle.bitshuffle, typesize=1),
            zc.Crc32cCodec())


def flag_compressors() -> tuple:
    """Boolean arrays (mask, phased) are long runs of one value: plain zstd is enough and
    skips the bit-shuffle pass over as many bytes as the genotypes."""
    import zarr.codecs as zc

    return (zc.BloscCodec(cname="zstd", clevel=5, shuffle=zc.BloscShuffle.noshuffle, typesize=1),
            zc.Crc32cCodec())


def coordinate_compressor():
    import zarr.codecs as zc

    return zc.BloscCodec(cname="zstd", clevel=7, shuffle=zc.BloscShuffle.shuffle)


def variant_chunk_for(n_samples: int, *, requested: int = VARIANT_CHUNK) -> int:
    """Variants per chunk so one in-memory block stays under BLOCK_BYTES."""
    chunk = requested
    while chunk > MIN_VARIANT_CHUNK and chunk * max(n_samples, 1) * 2 > BLOCK_BYTES:
        chunk //= 2
    return chunk


def numpy_dtype(spec: VarSpec) -> np.dtype:
    return np.dtype(object) if spec.dtype == "str" else np.dtype(spec.dtype)
