"""Contig lines in the headers of VCFs the demo and the benchmark leave behind: Beagle writes
none, and htslib then warns "Contig '22' is not defined in the header" while reading it."""

from __future__ import annotations

import gzip
import shutil
import subprocess

import pytest
from conftest import requires_tool

from snpbag.errors import InputError
from snpbag.io.bgzf import copy_contigs, write_bgzf, write_vcf_bgzf

COLUMNS = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n"
GT = '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
RECORDS = "".join(f"22\t{p}\t.\tA\tC\t.\tPASS\t.\tGT\t0|1\n" for p in (5, 10, 200, 900))
# what Beagle 5.4 writes: no ##contig lines, not indexed
BEAGLE_LIKE = '##fileformat=VCFv4.2\n##source="beagle.22Jul22.46e.jar"\n' + GT + COLUMNS + RECORDS
TARGETS = "##fileformat=VCFv4.2\n##contig=<ID=22,length=1000>\n" + GT + COLUMNS + RECORDS


def _bcftools_stderr(path) -> str:
    return subprocess.run(["bcftools", "view", str(path)], capture_output=True, text=True, check=True).stderr


def test_copy_contigs_gives_beagle_output_contig_lines_with_lengths(tmp_path):
    src = write_vcf_bgzf([TARGETS], tmp_path / "targets.vcf.gz")
    dest = write_bgzf([BEAGLE_LIKE], tmp_path / "beagle.vcf.gz")
    if shutil.which("bcftools"):
        assert "Contig '22' is not defined in the header" in _bcftools_stderr(dest)
    assert copy_contigs(src, dest) is True
    text = gzip.decompress(dest.read_bytes()).decode()
    header = [line for line in text.splitlines() if line.startswith("##")]
    assert "##contig=<ID=22,length=1000>" in header
    assert text.replace("##contig=<ID=22,length=1000>\n", "") == BEAGLE_LIKE  # nothing else changed
    assert (tmp_path / "beagle.vcf.gz.tbi").is_file()
    before = dest.read_bytes()
    assert copy_contigs(src, dest) is False  # already has contigs: left alone
    assert dest.read_bytes() == before


@requires_tool("bcftools")
def test_bcftools_reads_the_fixed_file_silently(tmp_path):
    src = write_vcf_bgzf([TARGETS], tmp_path / "targets.vcf.gz")
    dest = write_bgzf([BEAGLE_LIKE], tmp_path / "beagle.vcf.gz")
    copy_contigs(src, dest)
    assert _bcftools_stderr(dest) == ""
    region = subprocess.run(["bcftools", "view", "-H", "-r", "22:8-300", str(dest)],
                            capture_output=True, text=True, check=True)
    assert [line.split("\t")[1] for line in region.stdout.splitlines()] == ["10", "200"]
    assert region.stderr == ""


def test_copy_contigs_needs_contigs_in_its_source(tmp_path):
    src = write_bgzf([BEAGLE_LIKE], tmp_path / "targets.vcf.gz")
    dest = write_bgzf([BEAGLE_LIKE], tmp_path / "beagle.vcf.gz")
    with pytest.raises(InputError, match=r"targets\.vcf\.gz: no ##contig lines to copy into .*beagle\.vcf\.gz"):
        copy_contigs(src, dest)
    assert gzip.decompress(dest.read_bytes()).decode() == BEAGLE_LIKE
