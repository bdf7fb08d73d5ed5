"""Bad input gives one-line SnpbagError messages naming the file and the fix.

Data layer (snpbag convert / VcfReader). Store-level errors (incompatible version,
incomplete store, corrupt chunk) are in tests/test_store.py; the CLI exit status 2
with no output left behind is in tests/test_convert.py.
"""

import gzip
import subprocess

import pytest
from conftest import requires_tool

from snpbag.store.convert import convert
from snpbag.errors import InputError, SampleError, SnpbagError

HEAD = ["##fileformat=VCFv4.2", "##contig=<ID=chr22,length=100000>", "##contig=<ID=chr21,length=100000>"]
GT = '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">'
COLS = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB"


def vcf_text(rows, *, gt_header=True, fmt="GT"):
    lines = [*HEAD, *([GT] if gt_header else []),
             '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">', COLS]
    for chrom, pos, ref, alt in rows:
        lines.append("\t".join([chrom, str(pos), ".", ref, alt, ".", ".", ".", fmt,
                                *(["0|1", "1|1"] if fmt == "GT" else ["7", "9"])]))
    return "\n".join(lines) + "\n"


def write(tmp_path, text, name="in.vcf"):
    p = tmp_path / name
    p.write_text(text)
    return p


def one_line(exc_info):
    msg = str(exc_info.value)
    assert "\n" not in msg
    assert isinstance(exc_info.value, SnpbagError)
    return msg


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.vcf: no such file") as e:
        convert(tmp_path / "nope.vcf", tmp_path / "o.zarr")
    one_line(e)


def test_not_a_vcf(tmp_path):
    p = write(tmp_path, "this is a README\nnot genotypes\n", "readme.vcf")
    with pytest.raises(InputError, match=r"readme\.vcf: not a VCF/BCF file .*give a \.vcf") as e:
        convert(p, tmp_path / "o.zarr")
    one_line(e)
    gz = tmp_path / "x.vcf.gz"
    gz.write_bytes(gzip.compress(b"col1\tcol2\n1\t2\n"))
    with pytest.raises(InputError, match=r"x\.vcf\.gz: not a VCF/BCF file"):
        convert(gz, tmp_path / "o.zarr")
    assert not (tmp_path / "o.zarr").exists()


def test_region_needs_bgzip_and_index(tmp_path):
    p = write(tmp_path, vcf_text([("chr22", 10, "A", "G")]))
    with pytest.raises(InputError, match=r"in\.vcf: --region needs a bgzip-compressed, indexed file; run `bgzip"):
        convert(p, tmp_path / "o.zarr", region="chr22:1-100")
    gz = tmp_path / "plain.vcf.gz"
    gz.write_bytes(gzip.compress(vcf_text([("chr22", 10, "A", "G")]).encode()))  # gzip, not bgzip
    with pytest.raises(InputError, match="needs a bgzip-compressed"):
        convert(gz, tmp_path / "o.zarr", region="chr22:1-100")


@requires_tool("bgzip")
def test_region_without_index(tmp_path):
    p = write(tmp_path, vcf_text([("chr22", 10, "A", "G")]))
    subprocess.run(["bgzip", str(p)], check=True)
    with pytest.raises(InputError, match=r"in\.vcf\.gz: --region needs an index; run `tabix -p vcf"):
        convert(tmp_path / "in.vcf.gz", tmp_path / "o.zarr", region="chr22:1-100")


@requires_tool("bgzip", "tabix")
def test_region_empty_and_absent_chromosome(tmp_path):
    p = write(tmp_path, vcf_text([("chr22", 10, "A", "G"), ("chr22", 20, "AT", "G")]))
    subprocess.run(["bgzip", str(p)], check=True)
    subprocess.run(["tabix", "-p", "vcf", str(tmp_path / "in.vcf.gz")], check=True)
    gz = tmp_path / "in.vcf.gz"
    with pytest.raises(InputError, match=r"chromosome 'chr7' of --region is not in the file \(has chr22, chr21\)"):
        convert(gz, tmp_path / "o.zarr", region="chr7:1-100")
    with pytest.raises(InputError, match=r"no biallelic SNPs in region chr22:15-30 \(1 records read\)"):
        convert(gz, tmp_path / "o.zarr", region="22:15-30")
    with pytest.raises(InputError, match="expected CHR:START-END"):
        convert(gz, tmp_path / "o.zarr", region="chr22:a-b")
    assert not (tmp_path / "o.zarr").exists()


def test_no_gt_field(tmp_path):
    p = write(tmp_path, vcf_text([("chr22", 10, "A", "G")], gt_header=False, fmt="DP"))
    with pytest.raises(InputError, match=r"in\.vcf: no GT FORMAT field"):
        convert(p, tmp_path / "o.zarr")


def test_record_without_gt(tmp_path):
    p = write(tmp_path, vcf_text([("chr22", 10, "A", "G")], fmt="DP"))
    with pytest.raises(InputError, match=r"record chr22:10 has no GT"):
        convert(p, tmp_path / "o.zarr")


def test_unsorted_positions(tmp_path):
    p = write(tmp_path, vcf_text([("chr22", 30, "A", "G"), ("chr22", 10, "A", "G")]))
    with pytest.raises(InputError, match=r"unsorted positions \(chr22:10 after chr22:30\); sort with `bcftools sort`"):
        convert(p, tmp_path / "o.zarr")


def test_chromosome_not_contiguous(tmp_path):
    p = write(tmp_path, vcf_text([("chr22", 10, "A", "G"), ("chr21", 10, "A", "G"), ("chr22", 40, "A", "G")]))
    with pytest.raises(InputError, match=r"records of chr22 are not contiguous .*bcftools sort"):
        convert(p, tmp_path / "o.zarr")


def test_duplicate_positions(tmp_path):
    # a multi-allelic site split by `bcftools norm -m-`; an indel at the same position is fine
    p = write(tmp_path, vcf_text([("chr22", 10, "A", "G"), ("chr22", 10, "AT", "A"), ("chr22", 10, "A", "T")]))
    with pytest.raises(InputError, match=r"two biallelic SNPs at chr22:10 .*bcftools norm -m\+any"):
        convert(p, tmp_path / "o.zarr")
    ok = write(tmp_path, vcf_text([("chr22", 10, "A", "G"), ("chr22", 10, "AT", "A")]), "ok.vcf")
    assert convert(ok, tmp_path / "ok.zarr")["variants"] == 1


def test_absent_samples(tmp_path):
    p = write(tmp_path, vcf_text([("chr22", 10, "A", "G")]))
    (tmp_path / "s.txt").write_text("A\nNA12878\nHG00096\n")
    with pytest.raises(SampleError, match=r"requested samples absent from the VCF: NA12878, HG00096; fix the --samples"):
        convert(p, tmp_path / "o.zarr", samples=tmp_path / "s.txt")
    (tmp_path / "d.txt").write_text("A\nA\n")
    with pytest.raises(SampleError, match="duplicated sample ids A"):
        convert(p, tmp_path / "o.zarr", samples=tmp_path / "d.txt")
    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(SampleError, match="no sample ids in file"):
        convert(p, tmp_path / "o.zarr", samples=tmp_path / "e.txt")
    assert not (tmp_path / "o.zarr").exists()


def test_no_biallelic_snps(tmp_path):
    p = write(tmp_path, vcf_text([("chr22", 10, "AT", "G"), ("chr22", 20, "A", "G,C")]))
    with pytest.raises(InputError, match=r"no biallelic SNPs in the file \(2 records read\)"):
        convert(p, tmp_path / "o.zarr")
    assert not (tmp_path / "o.zarr").exists()


def test_no_samples(tmp_path):
    text = "\n".join([*HEAD, GT, COLS.rsplit("\tFORMAT", 1)[0], "chr22\t10\t.\tA\tG\t.\t.\t."]) + "\n"
    p = write(tmp_path, text)
    with pytest.raises(InputError, match="no sample columns"):
        convert(p, tmp_path / "o.zarr")
