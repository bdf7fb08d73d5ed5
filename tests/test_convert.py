"""snpbag convert: what is kept and dropped, regions, sample subsets, chunking, atomicity, CLI."""

import json
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import requires_tool

from snpbag.cli import main
from snpbag.store import convert as convert_mod
from snpbag.store import schema
from snpbag.store.convert import convert, report_path
from snpbag.store.genotypes import open_store
from snpbag.errors import InputError

HEADER = [
    "##fileformat=VCFv4.2",
    "##contig=<ID=chr21,length=48129895>",
    "##contig=<ID=chr22,length=51304566>",
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
]


def write_vcf(path, samples, rows, header=HEADER):
    """rows: (chrom, pos, ref, alt, [gt, ...]) or full tab-separated strings."""
    lines = list(header)
    lines.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *samples]))
    for r in rows:
        if isinstance(r, str):
            lines.append(r)
        else:
            chrom, pos, ref, alt, gts = r
            lines.append("\t".join([chrom, str(pos), f"id{pos}", ref, alt, ".", "PASS", ".", "GT", *gts]))
    path.write_text("\n".join(lines) + "\n")
    return path


def bgzip_index(path):
    subprocess.run(["bgzip", "-f", str(path)], check=True)
    gz = path.with_name(path.name + ".gz")
    subprocess.run(["tabix", "-f", "-p", "vcf", str(gz)], check=True)
    return gz


MIXED = [
    ("chr21", 100, "A", "G", ["0|1", "1|1", "0|0"]),
    ("chr21", 150, "A", "G,T", ["0|1", "1|2", "0|0"]),  # multiallelic
    ("chr21", 200, "AT", "A", ["0|1", "0|0", "0|0"]),  # indel
    ("chr21", 250, "AC", "GT", ["0|1", "0|0", "0|0"]),  # mnp
    ("chr21", 300, "C", "<DEL>", ["0|1", "0|0", "0|0"]),  # symbolic
    ("chr21", 310, "C", "*", ["0|1", "0|0", "0|0"]),  # symbolic (spanning deletion)
    ("chr21", 320, "C", ".", ["0|0", "0|0", "0|0"]),  # no alt
    ("chr21", 400, "c", "t", ["0/1", "./.", "1/0"]),  # lower case SNP, unphased, missing
    ("chr22", 50, "G", "A", ["0|0", "0|0", "0|0"]),  # monomorphic: kept as variant, not in vocab
    ("chr22", 60, "G", "A", ["1", "0", "."]),  # haploid calls
]


def test_report_counts_and_kept_variants(tmp_path):
    vcf = write_vcf(tmp_path / "in.vcf", ["A", "B", "C"], MIXED)
    rep = convert(vcf, tmp_path / "s.zarr", min_maf=0.1, threads=1)
    assert rep["records_read"] == 10 and rep["variants"] == 4 and rep["samples"] == 3
    assert rep["dropped"] == {"multiallelic": 1, "indel": 1, "mnp": 1, "symbolic": 2, "no_alt": 1}
    assert rep["chromosomes"] == ["chr21", "chr22"]
    assert json.loads(report_path(tmp_path / "s.zarr").read_text()) == rep
    st = open_store(tmp_path / "s.zarr")
    assert st.attrs[schema.ATTR_REPORT] == rep
    np.testing.assert_array_equal(st.variant_position, [100, 400, 50, 60])
    np.testing.assert_array_equal(st.variant_contig, [0, 0, 1, 1])
    assert st.contig_ids == ("chr21", "chr22")
    np.testing.assert_array_equal(st.group["contig_length"][:], [48129895, 51304566])
    assert st.variant_allele.tolist() == [["A", "G"], ["c", "t"], ["G", "A"], ["G", "A"]]
    assert st.group["variant_id"][:].tolist() == ["id100", "id400", "id50", "id60"]
    gt = st.group["call_genotype"][:]
    np.testing.assert_array_equal(gt[1], [[0, 1], [-1, -1], [1, 0]])
    np.testing.assert_array_equal(gt[3], [[1, -2], [0, -2], [-1, -1]])  # haploid: VCF Zarr fill -2
    np.testing.assert_array_equal(st.group["call_genotype_mask"][:], gt < 0)
    np.testing.assert_array_equal(st.group["call_genotype_phased"][:2], [[1, 1, 1], [0, 0, 0]])
    # vocabulary: 100 (af 0.5), 400 (af 0.5), 60 (af 0.5); 50 is monomorphic
    np.testing.assert_array_equal(st.vocab.variant, [0, 1, 3])
    np.testing.assert_allclose(st.vocab.af, [0.5, 0.5, 0.5])
    # haploid fill comes back as missing in model reads
    np.testing.assert_array_equal(st.read_haplotypes(1, None)[:, 0], [[1, -1], [0, -1], [-1, -1]])


def many_rows(rng, n=300, n_samples=24, chroms=("chr21", "chr22")):
    rows = []
    for chrom in chroms:
        for pos in np.sort(rng.choice(np.arange(1, 100000), n, replace=False)):
            g = rng.random((n_samples, 2)) < rng.uniform(0, 0.5)
            rows.append((chrom, int(pos), "A", "C", [f"{int(a)}|{int(b)}" for a, b in g]))
    return rows


@pytest.mark.parametrize("threads", [1, 2])
def test_small_chunks_multi_block_equal(tmp_path, monkeypatch, threads):
    monkeypatch.setattr(schema, "VARIANT_CHUNK", 64)
    monkeypatch.setattr(schema, "SAMPLE_CHUNK", 4)
    monkeypatch.setattr(schema, "SAMPLE_SHARD", 8)
    rng = np.random.default_rng(0)
    samples = [f"s{i}" for i in range(24)]
    rows = many_rows(rng)
    vcf = write_vcf(tmp_path / "in.vcf", samples, rows)
    convert(vcf, tmp_path / "s.zarr", min_maf=0.0, tile_len=50, threads=threads)
    st = open_store(tmp_path / "s.zarr")
    assert st.group["call_genotype"].chunks == (64, 4, 2)
    assert st.group["call_genotype"].shards == (64, 8, 2)
    want = np.array([[[int(a) for a in gt.split("|")] for gt in r[4]] for r in rows], dtype=np.int8)
    np.testing.assert_array_equal(st.group["call_genotype"][:], want)
    voc = st.vocab
    assert voc.n_sites == 600 and voc.n_tiles == 12
    sel = np.array([23, 2, 9])
    from snpbag.store import genotypes as store_mod

    for one_read in (64 << 20, 0):  # one zarr call per site range, and chunk by chunk
        monkeypatch.setattr(store_mod, "_ONE_READ_BYTES", one_read)
        for c in (0, 5, 11):
            np.testing.assert_array_equal(st.read_haplotypes(c, sel),
                                          want[voc.variant[voc.tile_sites(c)]][:, sel].transpose(1, 0, 2))
    # a chunk per shard (the temporary --ref panel's): the same calls
    convert(vcf, tmp_path / "wide.zarr", min_maf=0.0, tile_len=50, threads=threads, sample_chunk=8)
    wide = open_store(tmp_path / "wide.zarr")
    assert wide.group["call_genotype"].chunks == (64, 8, 2)
    np.testing.assert_array_equal(wide.read_sites(np.arange(voc.n_sites), sel), st.read_sites(np.arange(voc.n_sites), sel))


@requires_tool("bgzip", "tabix")
def test_region_and_samples(tmp_path):
    rng = np.random.default_rng(1)
    samples = [f"s{i}" for i in range(24)]
    rows = many_rows(rng, n=50)
    gz = bgzip_index(write_vcf(tmp_path / "in.vcf", samples, rows))
    (tmp_path / "keep.txt").write_text("s7\n\n# comment\ns3\ns20\n")
    rep = convert(gz, tmp_path / "r.zarr", region="22:20000-60000", samples=tmp_path / "keep.txt", threads=1)
    st = open_store(tmp_path / "r.zarr")
    want_rows = [r for r in rows if r[0] == "chr22" and 20000 <= r[1] <= 60000]
    assert rep["variants"] == len(want_rows) and rep["samples"] == 3
    assert st.sample_ids.tolist() == ["s3", "s7", "s20"]  # input column order
    np.testing.assert_array_equal(st.variant_position, [r[1] for r in want_rows])
    gt = st.group["call_genotype"][:]
    np.testing.assert_array_equal(gt[:, 1], [[int(a) for a in r[4][7].split("|")] for r in want_rows])


def test_killed_conversion_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(schema, "VARIANT_CHUNK", 16)
    rows = many_rows(np.random.default_rng(2), n=40)
    vcf = write_vcf(tmp_path / "in.vcf", [f"s{i}" for i in range(24)], rows)
    calls = []

    def boom(arrays, block, start):
        calls.append(start)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return orig(arrays, block, start)

    orig = convert_mod._write_block
    monkeypatch.setattr(convert_mod, "_write_block", boom)
    with pytest.raises(KeyboardInterrupt):
        convert(vcf, tmp_path / "s.zarr", threads=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.vcf"]


def test_cli_error_exit_2_and_no_store(tmp_path, monkeypatch):
    monkeypatch.setattr(schema, "VARIANT_CHUNK", 16)
    rows = many_rows(np.random.default_rng(3), n=40, chroms=("chr21",))
    rows.append(("chr21", 5, "A", "C", ["0|0"] * 24))  # unsorted, after blocks were written
    vcf = write_vcf(tmp_path / "in.vcf", [f"s{i}" for i in range(24)], rows)
    res = CliRunner().invoke(main, ["convert", str(vcf), str(tmp_path / "out.zarr"), "--threads", "1"])
    assert res.exit_code == 2
    assert "snpbag: error:" in res.output and "unsorted positions (chr21:5 after" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.vcf"]


def test_options_validated(tmp_path):
    vcf = write_vcf(tmp_path / "in.vcf", ["A", "B", "C"], MIXED)
    with pytest.raises(InputError, match="--min-maf 0.7"):
        convert(vcf, tmp_path / "a.zarr", min_maf=0.7)
    with pytest.raises(InputError, match="--tile-len 0"):
        convert(vcf, tmp_path / "a.zarr", tile_len=0)
    with pytest.raises(InputError, match="sample_chunk 0: must be a positive number of samples"):
        convert(vcf, tmp_path / "a.zarr", sample_chunk=0)
    convert(vcf, tmp_path / "a.zarr")
    with pytest.raises(InputError, match="a.zarr: output already exists"):
        convert(vcf, tmp_path / "a.zarr")


@requires_tool("bgzip", "tabix")
@pytest.mark.parametrize("region", [None, "chr22:30000-90000"])
def test_parallel_regions_equal_sequential(tmp_path, monkeypatch, region):
    """Worker processes parsing genomic regions give the sequential reader's store."""
    from snpbag.io import vcf as vcf_mod

    monkeypatch.setattr(schema, "VARIANT_CHUNK", 64)
    rows = many_rows(np.random.default_rng(4), n=150)
    rows.insert(5, ("chr21", int(rows[4][1]) + 0, "AT", "A", ["0|1"] * 24))  # indel at a kept SNP's position
    gz = bgzip_index(write_vcf(tmp_path / "in.vcf", [f"s{i}" for i in range(24)], rows))
    monkeypatch.setattr(vcf_mod, "TEXT_READER", False)
    seq = convert(gz, tmp_path / "seq.zarr", region=region, threads=1)
    monkeypatch.setattr(vcf_mod, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(vcf_mod, "REGION_BYTES", 1)  # regions of ~64 variants: many regions, re-cut into chunks
    par = convert(gz, tmp_path / "par.zarr", region=region, threads=2)
    assert par["reader"] == "htslib, 2 processes (genomic windows)"
    assert seq["reader"] == "htslib, 1 process, 1 thread(s)"
    for k in ("records_read", "variants", "dropped", "vocab_sites"):
        assert par[k] == seq[k], k
    a, b = open_store(tmp_path / "seq.zarr").group, open_store(tmp_path / "par.zarr").group
    for name in ("call_genotype", "call_genotype_phased", "variant_position", "variant_contig", "variant_allele",
                 "snpbag_site_variant", "snpbag_contig_start"):
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)


@requires_tool("bcftools")
def test_bcf_input_and_fsspec_url(tmp_path):
    vcf = write_vcf(tmp_path / "in.vcf", ["A", "B", "C"], MIXED)
    bcf = tmp_path / "in.bcf"
    subprocess.run(["bcftools", "view", "-Ob", "-o", str(bcf), str(vcf)], check=True)
    a = convert(vcf, tmp_path / "v.zarr", threads=1)
    b = convert(bcf, tmp_path / "b.zarr", threads=1)
    assert {k: a[k] for k in ("variants", "dropped", "vocab_sites")} == {k: b[k] for k in ("variants", "dropped", "vocab_sites")}
    sa, sb = open_store(tmp_path / "v.zarr"), open_store(f"file://{tmp_path / 'b.zarr'}")
    np.testing.assert_array_equal(sa.group["call_genotype"][:], sb.group["call_genotype"][:])
    np.testing.assert_array_equal(sa.read_haplotypes(0, [2, 0]), sb.read_haplotypes(0, [2, 0]))


@requires_tool("bgzip")
@pytest.mark.parametrize("threads", [1, 2])
def test_text_reader_equals_htslib(tmp_path, monkeypatch, threads):
    """The GT-only text reader gives the htslib reader's store, with odd records mixed in."""
    from snpbag.io import vcf as vcf_mod

    monkeypatch.setattr(schema, "VARIANT_CHUNK", 64)
    rng = np.random.default_rng(5)
    samples = [f"s{i}" for i in range(24)]
    rows = many_rows(rng, n=120)
    odd = ["0", ".", "./.", ".|.", "1/0", "0|.", "1", "0/1", "1|1", "0|0", "1|0", "0/0"] * 2
    rows[7] = (rows[7][0], rows[7][1], "A", "C", odd)  # haploid and missing calls: slow path
    rows[8] = (rows[8][0], rows[8][1], "A", "C,T", ["0|2"] * 24)  # multiallelic: dropped
    text = write_vcf(tmp_path / "in.vcf", samples, rows).read_text()
    lines = text.splitlines()
    lines[-1] = lines[-1].replace("\tGT\t", "\tGT:DP\t", 1)
    lines[-1] = "\t".join(lines[-1].split("\t")[:9] + [f + ":7" for f in lines[-1].split("\t")[9:]])
    (tmp_path / "in.vcf").write_text("\n".join(lines) + "\n")
    subprocess.run(["bgzip", "-f", str(tmp_path / "in.vcf")], check=True)
    gz = tmp_path / "in.vcf.gz"
    (tmp_path / "keep.txt").write_text("s20\ns3\ns7\ns0\n")
    a = convert(gz, tmp_path / "text.zarr", samples=tmp_path / "keep.txt", threads=threads)
    monkeypatch.setattr(vcf_mod, "TEXT_READER", False)
    b = convert(gz, tmp_path / "hts.zarr", samples=tmp_path / "keep.txt", threads=threads)
    assert a["reader"] == f"text, 1 process, {threads} thread(s)"
    assert b["reader"] == f"htslib, 1 process, {threads} thread(s)"
    assert {k: a[k] for k in ("records_read", "variants", "dropped")} == {k: b[k] for k in ("records_read", "variants", "dropped")}
    ga, gb = open_store(tmp_path / "text.zarr").group, open_store(tmp_path / "hts.zarr").group
    for name in ("call_genotype", "call_genotype_phased", "variant_position", "variant_allele", "variant_id",
                 "sample_id", "snpbag_site_variant"):
        np.testing.assert_array_equal(ga[name][:], gb[name][:], err_msg=name)
