"""Round trip on random small VCFs: the store holds exactly what cyvcf2 reads, site for site.

The reference side uses cyvcf2's list API (``Variant.genotypes``) and a naive SNP test,
independent of the converter's ``genotype.array()`` path and its ``classify``.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path
from unittest import mock

import cyvcf2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snpbag.store import schema
from snpbag.io import vcf as vcf_mod
from snpbag.store.convert import convert
from snpbag.store.genotypes import open_store

BASES = "ACGT"
CHROMS = ["chr1", "2", "chrX", "chr22", "MT"]


@st.composite
def vcfs(draw):
    n_samples = draw(st.integers(1, 5))
    chroms = draw(st.lists(st.sampled_from(CHROMS), min_size=1, max_size=3, unique=True))
    rows = []
    for chrom in chroms:
        positions = sorted(draw(st.sets(st.integers(1, 500), min_size=1, max_size=12)))
        for pos in positions:
            ref = draw(st.sampled_from(BASES))
            kind = draw(st.sampled_from(["snp", "snp", "snp", "multi", "indel", "symbolic", "none", "lower"]))
            other = [b for b in BASES if b != ref]
            if kind in ("snp", "lower"):
                alt, n_alleles = draw(st.sampled_from(other)), 2
                if kind == "lower":
                    ref, alt = ref.lower(), alt.lower()
            elif kind == "multi":
                alt, n_alleles = ",".join(other[:2]), 3
            elif kind == "indel":
                ref, alt, n_alleles = ref + draw(st.sampled_from(BASES)), draw(st.sampled_from(BASES)), 2
            elif kind == "symbolic":
                alt, n_alleles = "<DEL>", 2
            else:
                alt, n_alleles = ".", 1
            gts = []
            for _ in range(n_samples):
                allele = st.one_of(st.just("."), st.integers(0, n_alleles - 1).map(str))
                if draw(st.integers(0, 9)) == 0:  # haploid call
                    gts.append(draw(allele))
                else:
                    gts.append(draw(allele) + draw(st.sampled_from("|/")) + draw(allele))
            rows.append(f"{chrom}\t{pos}\t.\t{ref}\t{alt}\t.\t.\t.\tGT\t" + "\t".join(gts))
    header = ["##fileformat=VCFv4.2", *[f"##contig=<ID={c}>" for c in chroms],
              '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"S{i}" for i in range(n_samples))]
    return "\n".join(header + rows) + "\n"


def reference(path):
    """Naive reading of the biallelic SNPs with cyvcf2's list API."""
    chrom, pos, gts, phased = [], [], [], []
    for rec in cyvcf2.VCF(str(path)):
        if len(rec.ALT) != 1 or len(rec.REF) != 1 or len(rec.ALT[0]) != 1:
            continue
        if rec.REF.upper() not in BASES or rec.ALT[0].upper() not in BASES:
            continue
        row, ph = [], []
        for g in rec.genotypes:
            alleles, p = g[:-1], g[-1]
            if len(alleles) == 1:  # haploid: VCF Zarr fill -2; phased by convention
                alleles, p = [alleles[0], -2 if alleles[0] >= 0 else -1], True
            row.append(alleles)
            ph.append(p)
        chrom.append(rec.CHROM)
        pos.append(rec.POS)
        gts.append(row)
        phased.append(ph)
    return chrom, pos, np.array(gts, dtype=np.int8), np.array(phased, dtype=bool)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=vcfs(), bgzip=st.booleans(), min_maf=st.sampled_from([0.0, 0.1, 0.3]), tile_len=st.integers(1, 5),
       engine=st.sampled_from(["text", "htslib"]))
def test_round_trip(text, bgzip, min_maf, tile_len, engine):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        vcf = d / "in.vcf"
        vcf.write_text(text)
        if bgzip and shutil.which("bgzip"):
            subprocess.run(["bgzip", str(vcf)], check=True)
            vcf = d / "in.vcf.gz"
        chrom, pos, gts, phased = reference(vcf)
        if not pos:
            return  # covered by test_bad_input (no biallelic SNPs)
        with mock.patch.object(vcf_mod, "TEXT_READER", engine == "text"):
            rep = convert(vcf, d / "s.zarr", min_maf=min_maf, tile_len=tile_len, threads=1)
        assert rep["reader"].startswith(engine)
        st_ = open_store(d / "s.zarr")
        assert rep["variants"] == len(pos)
        assert rep["records_read"] == rep["variants"] + sum(rep["dropped"].values())
        np.testing.assert_array_equal(st_.variant_position, pos)
        assert [st_.contig_ids[i] for i in st_.variant_contig] == chrom
        np.testing.assert_array_equal(st_.group["call_genotype"][:], gts)
        np.testing.assert_array_equal(st_.group["call_genotype_phased"][:], phased)
        # vocabulary: naive MAF filter and tiling per chromosome
        h = np.where(gts == -2, -1, gts)
        called = (h >= 0).sum((1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            af = (h == 1).sum((1, 2)) / called
            keep = np.flatnonzero(np.minimum(af, 1 - af) >= min_maf)
        voc = st_.vocab
        np.testing.assert_array_equal(voc.variant, keep)
        if keep.size:
            got = np.concatenate([st_.read_haplotypes(c) for c in range(voc.n_tiles)], axis=1)
            np.testing.assert_array_equal(got, h[keep].transpose(1, 0, 2))
        for c in range(voc.n_tiles):
            s = voc.tile_sites(c)
            assert 1 <= s.stop - s.start <= tile_len
            assert len({chrom[v] for v in voc.variant[s]}) == 1
        assert st_.attrs[schema.ATTR_COMPLETE] is True
