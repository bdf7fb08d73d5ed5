"""A gVCF given to `snpbag convert` is named as one, with the way to make a VCF of it."""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner
from conftest import requires_tool

from snpbag.cli import main
from snpbag.errors import InputError
from snpbag.io.bgzf import write_bgzf
from snpbag.io.gvcf import gvcf_evidence
from snpbag.store.convert import convert, report_path

BASES = "ACGTTGCA" * 250  # the reference sequence of contig 22 (2,000 bp)
HEADER = (
    "##fileformat=VCFv4.2\n"
    "##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">\n"
    "##FORMAT=<ID=GQ,Number=1,Type=Integer,Description=\"Genotype quality\">\n"
    "##INFO=<ID=END,Number=1,Type=Integer,Description=\"Stop position of the interval\">\n"
    "##contig=<ID=22,length=2000>\n"
)
COLUMNS = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tNA1\n"
GATK_META = (
    "##ALT=<ID=NON_REF,Description=\"Represents any possible alternative allele at this location\">\n"
    "##GVCFBlock0-20=minGQ=0(inclusive),maxGQ=20(exclusive)\n"
)


def gvcf_text(symbol: str = "<NON_REF>", *, meta: str = GATK_META, blocks: int = 10) -> str:
    """Reference blocks of 99 bp, each followed by a heterozygous SNP that also carries ``symbol``."""
    lines, pos = [], 1
    for _ in range(blocks):
        lines.append(f"22\t{pos}\t.\t{BASES[pos - 1]}\t{symbol}\t.\t.\tEND={pos + 98}\tGT:GQ\t0/0:40")
        snp = pos + 99
        ref = BASES[snp - 1]
        alt = "A" if ref != "A" else "C"
        lines.append(f"22\t{snp}\t.\t{ref}\t{alt},{symbol}\t50\t.\t.\tGT:GQ\t0/1:50")
        pos = snp + 1
    return HEADER + meta + COLUMNS + "\n".join(lines) + "\n"


@pytest.fixture
def gatk_gvcf(tmp_path):
    path = tmp_path / "sample.g.vcf"
    path.write_text(gvcf_text())
    return path


def test_convert_names_a_gatk_gvcf_and_its_fix(gatk_gvcf, tmp_path):
    out = tmp_path / "out.zarr"
    with pytest.raises(InputError, match=r"sample\.g\.vcf: a gVCF \(ALT <NON_REF> on 20 of the first 20 records\)"
                                         r".*GATK GenotypeGVCFs.*bcftools view --trim-alt-alleles .*sample\.g\.vcf"):
        convert(gatk_gvcf, out, threads=1)
    assert not out.exists() and not report_path(out).exists()


def test_convert_names_a_bcftools_gvcf_bgzipped(tmp_path):
    path = write_bgzf([gvcf_text("<*>", meta="")], tmp_path / "sample.g.vcf.gz")
    with pytest.raises(InputError, match=r"sample\.g\.vcf\.gz: a gVCF \(ALT <\*> on 20 of the first 20 records\)"):
        convert(path, tmp_path / "out.zarr", threads=1)


def test_cli_refuses_a_gvcf_in_one_line_and_leaves_no_store(gatk_gvcf, tmp_path):
    out = tmp_path / "out.zarr"
    result = CliRunner().invoke(main, ["convert", str(gatk_gvcf), str(out), "--threads", "1"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"snpbag: error: {gatk_gvcf}: a gVCF (") and result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample.g.vcf"]


def test_evidence_from_the_header_or_most_records_only(tmp_path):
    # GATK's ##GVCFBlock lines alone mark it (a region of variant records only)
    only_header = tmp_path / "header.vcf"
    only_header.write_text(HEADER + GATK_META + COLUMNS + "22\t100\t.\tA\tC\t50\t.\t.\tGT:GQ\t0/1:50\n")
    assert gvcf_evidence(only_header) == "##GVCFBlock header lines"
    # a VCF with one stray <*> record among SNPs is not a gVCF
    vcf = tmp_path / "plain.vcf"
    vcf.write_text(HEADER + COLUMNS + "22\t100\t.\tA\t<*>\t.\t.\t.\tGT:GQ\t0/0:40\n"
                   + "".join(f"22\t{p}\t.\tA\tC\t50\t.\t.\tGT:GQ\t0/1:50\n" for p in (200, 300)))
    assert gvcf_evidence(vcf) is None
    assert gvcf_evidence(tmp_path / "sample.g.vcf", records=5) is None  # no such file: not judged here


def test_other_inputs_without_snps_keep_the_general_message(tmp_path):
    indels = tmp_path / "indels.vcf"
    indels.write_text(HEADER + COLUMNS + "22\t100\t.\tA\tAC\t50\t.\t.\tGT:GQ\t0/1:50\n")
    with pytest.raises(InputError, match=r"indels\.vcf: no biallelic SNPs in the file \(1 records read\); "
                                         r"check --region and the input"):
        convert(indels, tmp_path / "out.zarr", threads=1)


@requires_tool("bcftools")
def test_the_named_one_sample_fix_converts(gatk_gvcf, tmp_path):
    fixed = tmp_path / "fixed.vcf.gz"
    subprocess.run(["bcftools", "view", "--trim-alt-alleles", str(gatk_gvcf), "-Oz", "-o", str(fixed)],
                   check=True, capture_output=True)
    report = convert(fixed, tmp_path / "fixed.zarr", threads=1, min_maf=0.0)
    assert report["variants"] == 10
