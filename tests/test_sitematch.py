"""Site matching of a user's VCF onto a model vocabulary: every fate, exact genotypes, clear errors."""

from pathlib import Path

import numpy as np
import pytest

from snpbag.data.tokens import MISSING
from snpbag.errors import InputError, SampleError, SiteMismatchError
from snpbag.inference.sitematch import ModelSites, classify_alleles, match_sites, read_targets

HEADER = """##fileformat=VCFv4.2
##contig=<ID={chrom},length=50818468>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{samples}
"""

# Model: 8 sites on chromosome "22" (no prefix).
MODEL = ModelSites(
    chrom=np.array(["22"] * 8, dtype=object),
    pos=np.array([100, 200, 300, 400, 500, 600, 700, 800]),
    ref=np.array(["A", "A", "A", "A", "C", "A", "G", "A"], dtype=object),
    alt=np.array(["G", "G", "G", "T", "T", "C", "C", "G"], dtype=object),
)


def write_vcf(path: Path, rows, *, chrom="chr22", samples=("S1", "S2"), header=HEADER) -> Path:
    text = header.format(chrom=chrom, samples="\t".join(samples))
    for r in rows:
        c, p, rid, ref, alt, *gts = r
        text += "\t".join([c, str(p), rid, ref, alt, ".", ".", ".", "GT", *gts]) + "\n"
    path.write_text(text)
    return path


# Every fate at once (input names chromosome "chr22"; the model says "22").
ROWS = [
    ("chr22", 100, "rs1", "A", "G", "0/1", "1/1"),  # exact
    ("chr22", 200, "rs2", "G", "A", "0/0", "0/1"),  # allele-swapped: model A/G
    ("chr22", 300, "rs3", "T", "C", "0/1", "./."),  # strand-flipped: complement of A/G
    ("chr22", 400, "rs4", "T", "A", "0/1", "0/0"),  # A/T model site, swapped: ambiguous, dropped
    ("chr22", 500, "rs5", "C", "A", "0/1", "0/0"),  # model C/T: allele mismatch
    ("chr22", 550, "rs6", "A", "G", "0/1", "0/0"),  # no model site here
    ("chr22", 600, "rs7", "T", "G", "1/1", "0/1"),  # strand-flipped: complement A/C = model A/C
    ("chr22", 650, "rs8", "A", "G,T", "0/1", "0/0"),  # multi-allelic: skipped and counted
    ("chr22", 700, "rs9", "G", "C", "0/1", "1/1"),  # G/C model site, exact: kept
    ("chr22", 750, "rs10", "A", "AT", "0/1", "0/0"),  # indel: counted as not a SNP
    ("chr22", 800, "rs12", "C", "T", "0/0", "0/1"),  # flipped and swapped: complement G/A, model A/G
    ("chr22", 900, "rs11", "A", "G", "0/1", "0/0"),  # beyond the model's last site
]


def test_classify_alleles_table():
    assert classify_alleles("A", "G", "A", "G") == (None, False, False)
    assert classify_alleles("G", "A", "A", "G") == (None, True, False)
    assert classify_alleles("T", "C", "A", "G") == (None, False, True)
    assert classify_alleles("C", "T", "A", "G") == (None, True, True)
    assert classify_alleles("a", "g", "A", "G") == (None, False, False)
    # strand-ambiguous model sites: exact only; a swap could be a flip
    assert classify_alleles("A", "T", "A", "T") == (None, False, False)
    assert classify_alleles("T", "A", "A", "T") == ("ambiguous", False, False)
    assert classify_alleles("G", "C", "C", "G") == ("ambiguous", False, False)
    assert classify_alleles("A", "C", "A", "G") == ("allele_mismatch", False, False)
    assert classify_alleles("A", "T", "A", "G") == ("allele_mismatch", False, False)


def test_match_sites_arrays_prefer_exact_at_shared_position():
    model = (["22", "22", "22"], [10, 10, 20], ["A", "A", "C"], ["C", "G", "T"])
    m = match_sites(model, ["chr22", "22", "22", "22", "1"], [10, 10, 20, 15, 10],
                    ["A", "T", "C", "C", "A"], ["G", "C", "A", "T", "G"])
    assert m.model_index.tolist() == [1, 1, -1, -1, -1]
    assert m.swap.tolist() == [False, False, False, False, False]
    assert m.flip.tolist() == [False, True, False, False, False]
    assert m.reason.tolist() == [None, None, "allele_mismatch", "not_in_model", "chrom_not_in_model"]


def test_read_targets_every_fate(tmp_path):
    vcf = write_vcf(tmp_path / "t.vcf", ROWS)
    t = read_targets(vcf, MODEL)
    r = t.report
    assert (r.matched, r.allele_swapped, r.strand_flipped) == (6, 2, 3)
    assert (r.ambiguous, r.allele_mismatch, r.not_in_model, r.outside_model_region) == (1, 1, 1, 1)
    assert (r.multiallelic, r.not_snp, r.considered, r.records) == (1, 1, 9, 12)
    assert r.n_model_sites == 8
    assert t.samples == ["S1", "S2"]
    assert t.site_index.tolist() == list(range(8))
    assert t.typed_rows.tolist() == [0, 1, 2, 5, 6, 7]
    assert t.swapped.tolist() == [False, True, False, False, False, True]
    assert t.flipped.tolist() == [False, False, True, True, False, True]
    assert t.input_ref.tolist() == ["A", "G", "T", "T", "G", "C"]
    assert t.input_id.tolist() == ["rs1", "rs2", "rs3", "rs7", "rs9", "rs12"]
    assert t.chrom_names == {"22": "chr22"}
    g = t.genotypes
    assert g.shape == (8, 2, 2) and g.dtype == np.int8
    assert g[0].tolist() == [[0, 1], [1, 1]]
    assert g[1].tolist() == [[1, 1], [1, 0]]  # swapped back to model orientation
    assert g[2].tolist() == [[0, 1], [-1, -1]]
    assert (g[[3, 4]] == -1).all()  # ambiguous and mismatched sites are untyped
    assert g[5].tolist() == [[1, 1], [0, 1]]
    assert g[7].tolist() == [[1, 1], [1, 0]]
    assert t.tokens().tolist() == [[1, 2, 1, MISSING, MISSING, 2, 1, 2],
                                   [2, 1, MISSING, MISSING, MISSING, 1, 2, 1]]
    assert t.block(1, 3, samples=[1]).tolist() == [[[1, 0]], [[-1, -1]]]
    line = r.line()
    assert "6 of 9 input SNPs" in line and "2 allele-swapped, 3 strand-flipped" in line
    assert "1 strand-ambiguous" in line and "1 multi-allelic" in line and "6/8 model sites typed" in line

    tsv = r.write_tsv(tmp_path / "excluded.tsv")
    assert tsv.read_text().splitlines() == [
        "#chrom\tpos\tref\talt\treason",
        "chr22\t400\tT\tA\tambiguous",
        "chr22\t500\tC\tA\tallele_mismatch",
        "chr22\t550\tA\tG\tnot_in_model",
        "chr22\t900\tA\tG\toutside_model_region",
    ]


def test_model_as_site_vocab(tmp_path):
    from snpbag.store.vocab import SiteVocab

    vocab = SiteVocab(chrom_names=("chr22",), site_chrom=np.zeros(8, np.int16), position=MODEL.pos,
                      ref=MODEL.ref, alt=MODEL.alt, af=np.full(8, 0.3, np.float32),
                      tile_chrom=np.zeros(1, np.int16), tile_start=np.array([0]), tile_stop=np.array([8]),
                      tile_len=8, min_maf=0.01)
    vcf = write_vcf(tmp_path / "t.vcf", [("22", *r[1:]) for r in ROWS], chrom="22")
    t = read_targets(vcf, vocab)
    assert t.report.matched == 6 and t.chrom_names == {"22": "22"}


def test_samples_subset_and_file(tmp_path):
    vcf = write_vcf(tmp_path / "t.vcf", ROWS, samples=("S1", "S2"))
    t = read_targets(vcf, MODEL, samples=["S2"])
    assert t.samples == ["S2"] and t.genotypes[0].tolist() == [[1, 1]]
    f = tmp_path / "ids.txt"
    f.write_text("S2\n")
    assert read_targets(vcf, MODEL, samples=f).samples == ["S2"]
    with pytest.raises(SampleError, match="absent from the VCF: S9"):
        read_targets(vcf, MODEL, samples=["S9"])


def test_region_restricts_model_rows(tmp_path):
    import pysam

    vcf = write_vcf(tmp_path / "t.vcf", ROWS)
    gz = pysam.tabix_index(str(vcf), preset="vcf", force=True)
    t = read_targets(gz, MODEL, region="22:150-650")
    assert t.site_index.tolist() == [1, 2, 3, 4, 5]
    assert t.rows_for(0, 4) == slice(0, 3) and t.rows_for(6, 8) == slice(5, 5)
    assert t.report.matched == 3 and t.report.records == 7
    with pytest.raises(SiteMismatchError, match="no sites in --region"):
        read_targets(gz, MODEL, region="22:1000000-2000000")


def test_half_calls_become_missing_and_phased_input(tmp_path):
    rows = [("22", 100, ".", "A", "G", "0|1", "1|."), ("22", 200, ".", "A", "G", "1|0", "0|0")]
    t = read_targets(write_vcf(tmp_path / "p.vcf", rows, chrom="22"), MODEL)
    assert t.phased
    assert t.genotypes[0].tolist() == [[0, 1], [-1, -1]]
    assert t.genotypes[1].tolist() == [[1, 0], [0, 0]]


# --- errors ---------------------------------------------------------------------------


def test_chromosome_not_in_model(tmp_path):
    rows = [("chr1", 100 * i, ".", "A", "G", "0/1", "0/0") for i in range(1, 5)]
    vcf = write_vcf(tmp_path / "c.vcf", rows, chrom="chr1")
    with pytest.raises(SiteMismatchError, match=r"c\.vcf: chromosome\(s\) chr1 but the model covers 22; "
                                                r"wrong build or wrong chromosome\?"):
        read_targets(vcf, MODEL)


def test_too_small_overlap(tmp_path):
    # positions shifted as by a different build: only 2 of 8 land on model sites
    rows = [("chr22", p, ".", "A", "G", "0/1", "0/0") for p in (100, 200, 250, 350, 450, 550, 650, 750)]
    vcf = write_vcf(tmp_path / "b.vcf", rows)
    with pytest.raises(SiteMismatchError, match=r"only 2 of 8 input SNPs \(25\.0%\) match.*wrong build"):
        read_targets(vcf, MODEL)
    assert read_targets(vcf, MODEL, min_overlap=0.2).report.matched == 2


def test_nothing_inside_model_region(tmp_path):
    vcf = write_vcf(tmp_path / "o.vcf", [("chr22", 5000, ".", "A", "G", "0/1", "0/0")])
    with pytest.raises(SiteMismatchError, match="none of its SNPs lie inside the model's region"):
        read_targets(vcf, MODEL)


@pytest.mark.parametrize("compress", [False, True])
def test_duplicate_sample_ids(tmp_path, compress):
    vcf = write_vcf(tmp_path / "d.vcf", [r[:5] + ("0/1", "0/0", "1/1") for r in ROWS[:3]],
                    samples=("S1", "S2", "S1"))
    if compress:
        import pysam

        vcf = Path(pysam.tabix_index(str(vcf), preset="vcf", force=True))
    with pytest.raises(SampleError, match=r"duplicated sample ids in the header \(S1\)"):
        read_targets(vcf, MODEL)


def test_requested_samples_duplicated(tmp_path):
    vcf = write_vcf(tmp_path / "t.vcf", ROWS)
    with pytest.raises(SampleError, match="more than once"):
        read_targets(vcf, MODEL, samples=["S1", "S1"])


def test_missing_gt(tmp_path):
    header = HEADER.replace('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
                            '##FORMAT=<ID=DS,Number=1,Type=Float,Description="Dosage">')
    text = header.format(chrom="22", samples="S1") + "22\t100\t.\tA\tG\t.\t.\t.\tDS\t0.5\n"
    (tmp_path / "n.vcf").write_text(text)
    with pytest.raises(InputError, match="no GT FORMAT field"):
        read_targets(tmp_path / "n.vcf", MODEL)


def test_phased_unphased_mixture(tmp_path):
    rows = [("22", 100, ".", "A", "G", "0|1", "0|0"), ("22", 200, ".", "A", "G", "0/1", "1|1")]
    vcf = write_vcf(tmp_path / "m.vcf", rows, chrom="22")
    with pytest.raises(InputError, match=r"mixes phased and unphased heterozygous genotypes \(22:100 sample S1 is "
                                         r"phased, 22:200 sample S1 is not\); unphase all with `bcftools \+setGT"):
        read_targets(vcf, MODEL)


def test_homozygous_separator_is_not_a_mixture(tmp_path):
    rows = [("22", 100, ".", "A", "G", "0|1", "0/0"), ("22", 200, ".", "A", "G", "1/1", "1|0")]
    t = read_targets(write_vcf(tmp_path / "h.vcf", rows, chrom="22"), MODEL)
    assert t.phased


def test_unsorted_input(tmp_path):
    rows = [ROWS[1], ROWS[0]]
    with pytest.raises(InputError, match="unsorted positions.*bcftools sort"):
        read_targets(write_vcf(tmp_path / "u.vcf", rows), MODEL)


def test_haploid_calls_rejected(tmp_path):
    rows = [("22", 100, ".", "A", "G", "1", "0/1")]
    with pytest.raises(InputError, match="haploid genotype at 22:100"):
        read_targets(write_vcf(tmp_path / "x.vcf", rows, chrom="22"), MODEL)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_targets(tmp_path / "absent.vcf.gz", MODEL)
