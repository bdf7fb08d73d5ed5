"""snpbag simulate and the bgzipped-VCF writer: determinism, layout, truth files, errors."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner
from cyvcf2 import VCF

from snpbag.cli import main
from snpbag.simulate import coalescent as co
from snpbag.simulate import cohort as sm
from snpbag.io.bgzf import index_vcf, write_vcf_bgzf
from snpbag.errors import InputError
from conftest import requires_tool

N_PER_POP = 12
LENGTH = 150_000


def read_vcf(path: Path) -> tuple[list[str], list[tuple], np.ndarray]:
    """samples, (chrom, pos, ref, alt) per record, (sites, samples, 2) alleles — via cyvcf2."""
    v = VCF(str(path))
    sites, gts = [], []
    for rec in v:
        assert len(rec.ALT) == 1 and rec.is_snp, rec
        sites.append((rec.CHROM, rec.POS, rec.REF, rec.ALT[0]))
        g = rec.genotype.array()
        assert (g[:, 2] == 1).all(), "every genotype must be phased"
        gts.append(g[:, :2])
    samples = list(v.samples)
    v.close()
    return samples, sites, np.array(gts, dtype=np.int8)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "cohort"
    sm.simulate(out, samples_per_pop=N_PER_POP, length=LENGTH, chrom="chr22", seed=11, array_fraction=0.1,
                split_targets=7)
    return out


# --- bgzf ------------------------------------------------------------------------------------

HEADER = (
    "##fileformat=VCFv4.2\n##contig=<ID=22,length=1000>\n"
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n"
)
RECORDS = [f"22\t{p}\t.\tA\tC\t.\tPASS\t.\tGT\t0|1\n" for p in (5, 10, 200, 900)]


def test_bgzf_round_trip_deterministic_and_indexed(tmp_path):
    a = write_vcf_bgzf([HEADER, *RECORDS], tmp_path / "a.vcf.gz")
    b = write_vcf_bgzf(iter([HEADER.encode(), "".join(RECORDS)]), tmp_path / "b.vcf.gz")
    assert gzip.decompress(a.read_bytes()).decode() == HEADER + "".join(RECORDS)
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a.vcf.gz.tbi").read_bytes() == (tmp_path / "b.vcf.gz.tbi").read_bytes()
    assert [r.POS for r in VCF(str(a))("22:8-300")] == [10, 200]  # region query needs the index
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.vcf.gz", "a.vcf.gz.tbi", "b.vcf.gz", "b.vcf.gz.tbi"]


def test_bgzf_errors_leave_nothing(tmp_path):
    with pytest.raises(InputError, match=r"c\.vcf\.gz: tabix could not index it .*bcftools sort"):
        write_vcf_bgzf([HEADER, RECORDS[2], RECORDS[0]], tmp_path / "c.vcf.gz")
    assert list(tmp_path.iterdir()) == []
    write_vcf_bgzf([HEADER], tmp_path / "d.vcf.gz", index=False)
    assert [p.name for p in tmp_path.iterdir()] == ["d.vcf.gz"]
    with pytest.raises(InputError, match="already exists"):
        write_vcf_bgzf([HEADER], tmp_path / "d.vcf.gz")
    index_vcf(tmp_path / "d.vcf.gz")
    assert (tmp_path / "d.vcf.gz.tbi").is_file()
    (tmp_path / "plain.vcf").write_text(HEADER)
    with pytest.raises(InputError, match=r"plain\.vcf: not BGZF-compressed; compress it with `bgzip`"):
        index_vcf(tmp_path / "plain.vcf")


@requires_tool("bgzip", "tabix")
def test_bgzf_readable_by_htslib_tools(tmp_path):
    path = write_vcf_bgzf([HEADER, *RECORDS], tmp_path / "a.vcf.gz")
    subprocess.run(["bgzip", "-t", str(path)], check=True)
    out = subprocess.run(["tabix", str(path), "22:1-100"], check=True, capture_output=True, text=True).stdout
    assert out == "".join(RECORDS[:2])


# --- VCF text ------------------------------------------------------------------------------


def test_vcf_records_match_naive_formatting():
    rng = np.random.default_rng(0)
    g = rng.integers(0, 2, size=(7, 10), dtype=np.uint8)
    haps = co.Haplotypes("chr1", 100, np.arange(1, 8) * 10, np.array(list("ACGTACG")), np.array(list("CATGCAT")), g)
    cols = np.array([2, 3, 8, 9])
    fast = b"".join(co.vcf_records(haps, cols)).decode()
    naive = "".join(
        f"chr1\t{10 * (i + 1)}\t.\t{'ACGTACG'[i]}\t{'CATGCAT'[i]}\t.\tPASS\t.\tGT\t"
        + "\t".join(f"{g[i, c]}|{g[i, c + 1]}" for c in (2, 8)) + "\n"
        for i in range(7)
    )
    assert fast == naive


def test_written_header_reads_back_in_every_container(tmp_path):
    """io.vcfwrite's header, read by io.header from plain text, BGZF and BCF: samples, contigs, FORMAT/INFO ids."""
    import pysam

    from snpbag.io.header import read_header
    from snpbag.io.vcfwrite import header_text, write_vcf

    def head(samples):
        return header_text(samples, contigs=[("chr1", 5000), ("chr2", None)], head=["source=t"],
                           tail=['##INFO=<ID=R2,Number=1,Type=Float,Description="r">',
                                 '##FORMAT=<ID=GT,Number=1,Type=String,Description="g">', "note=x"])

    lines = head(["s1", "s2", "s1"]).splitlines()
    assert lines[:4] == ["##fileformat=VCFv4.2", "##source=t", "##contig=<ID=chr1,length=5000>", "##contig=<ID=chr2>"]
    assert lines[-2:] == ["##note=x", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2\ts1"]
    (tmp_path / "a.vcf").write_text(head(["s1", "s2", "s1"]))
    gz = write_vcf(tmp_path / "a.vcf.gz", head(["s1", "s2", "s1"]), [])
    (tmp_path / "b.vcf").write_text(head(["s1", "s2"]))  # htslib refuses duplicated ids: BCF from a clean header
    with pysam.VariantFile(str(tmp_path / "b.vcf")) as src, pysam.VariantFile(str(tmp_path / "b.bcf"), "wb",
                                                                               header=src.header):
        pass
    for path, samples, dup in ((tmp_path / "a.vcf", ["s1", "s2", "s1"], ["s1"]), (gz, ["s1", "s2", "s1"], ["s1"]),
                               (tmp_path / "b.bcf", ["s1", "s2"], [])):
        h = read_header(path)
        assert h.samples == samples and h.duplicated_samples() == dup, path
        assert h.contigs == {"chr1": 5000, "chr2": None} and h.formats == ("GT",) and "R2" in h.infos, path
    assert read_header(tmp_path / "missing.vcf") is None


# --- the cohort ------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_vcf(tmp_path):
    kw = dict(samples_per_pop=4, length=60_000, seed=5)
    sm.simulate(tmp_path / "a", **kw)
    sm.simulate(tmp_path / "b", **kw)
    sm.simulate(tmp_path / "c", **{**kw, "seed": 6})
    for name in ("cohort.vcf.gz", "cohort.vcf.gz.tbi", "samples.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a/cohort.vcf.gz").read_bytes() != (tmp_path / "c/cohort.vcf.gz").read_bytes()


def test_samples_populations_and_vcf_layout(cohort):
    rows = [line.split("\t") for line in (cohort / "samples.tsv").read_text().splitlines()]
    assert rows[0] == ["sample", "population", "continent", "split"]
    rows = rows[1:]
    assert len(rows) == 3 * N_PER_POP
    assert {(r[1], r[2]) for r in rows} == {("YRI", "AFR"), ("CEU", "EUR"), ("CHB", "EAS")}
    assert rows[0][0] == "YRI_0001" and rows[-1][0] == f"CHB_{N_PER_POP:04d}"
    assert all(r[0].startswith(r[1] + "_") for r in rows)
    samples, sites, gts = read_vcf(cohort / "cohort.vcf.gz")
    assert samples == [r[0] for r in rows]
    assert {s[0] for s in sites} == {"chr22"}
    pos = [s[1] for s in sites]
    assert pos == sorted(set(pos)) and 1 <= pos[0] and pos[-1] <= LENGTH
    assert all(s[2] in "ACGT" and s[3] in "ACGT" and s[2] != s[3] for s in sites)
    ac = gts.sum(axis=(1, 2))
    assert ((ac > 0) & (ac < gts.shape[1] * 2)).all(), "every site is polymorphic"
    header = VCF(str(cohort / "cohort.vcf.gz")).raw_header
    assert f"##contig=<ID=chr22,length={LENGTH}>" in header and "##source=snpbag-" in header
    meta = json.loads((cohort / "simulation.json").read_text())
    assert meta["chromosomes"]["chr22"]["sites"] == len(sites)
    assert meta["demographic_model"] == "HomSap/OutOfAfrica_3G09" and meta["parameters"]["seed"] == 11
    assert "versions" in meta and "git_revision" in meta


def test_array_sites_fraction_and_maf(cohort):
    _, sites, gts = read_vcf(cohort / "cohort.vcf.gz")
    lines = (cohort / "array_sites.tsv").read_text().splitlines()
    assert lines[0] == "chrom\tpos\tref\talt"
    array = [tuple(x.split("\t")) for x in lines[1:]]
    maf = np.minimum(gts.mean(axis=(1, 2)), 1 - gts.mean(axis=(1, 2)))
    assert len(array) == round(0.1 * int((maf >= sm.VOCAB_MIN_MAF).sum()))  # a fraction of the MAF >= 1% sites
    index = {(c, str(p), r, a): i for i, (c, p, r, a) in enumerate(sites)}
    rows = [index[s] for s in array]  # every array site is a cohort site, with its alleles
    assert rows == sorted(set(rows))
    af = gts[rows].mean(axis=(1, 2))
    assert (np.minimum(af, 1 - af) >= sm.ARRAY_MIN_MAF).all()
    pos = np.array([int(s[1]) for s in array])
    assert pos.min() < LENGTH / 4 and pos.max() > 3 * LENGTH / 4


def test_select_array_sites_spreads_and_fills():
    # 30 common sites packed in the first tenth of the region: intervals are mostly empty,
    # so picks must come from the fill-up path and stay unique.
    g = np.zeros((40, 10), dtype=np.uint8)
    g[:30, :5] = 1  # MAF 0.5
    pos = np.concatenate([np.arange(1, 31), np.arange(500, 510) * 10])
    haps = co.Haplotypes("1", 10_000, pos, np.array(["A"] * 40), np.array(["C"] * 40), g)
    idx = sm.select_array_sites(haps, 12)
    assert len(idx) == 12 == len(set(idx)) and (idx < 30).all()
    with pytest.raises(InputError, match="asks for 31 array sites on 1 but only 30 have MAF >= 0.05"):
        sm.select_array_sites(haps, 31)


def test_split_targets_reference_and_array_truth(cohort):
    samples, sites, gts = read_vcf(cohort / "cohort.vcf.gz")
    ref_s, ref_sites, ref_g = read_vcf(cohort / "reference.vcf.gz")
    tgt_s, tgt_sites, tgt_g = read_vcf(cohort / "targets.vcf.gz")
    arr_s, arr_sites, arr_g = read_vcf(cohort / "targets_array.vcf.gz")
    assert len(tgt_s) == 7 and [s[:3] for s in tgt_s].count("YRI") == 3
    assert [s[:3] for s in tgt_s].count("CEU") == 2 and [s[:3] for s in tgt_s].count("CHB") == 2
    assert sorted(ref_s + tgt_s) == sorted(samples) and not set(ref_s) & set(tgt_s)
    assert ref_sites == sites == tgt_sites
    col = {s: i for i, s in enumerate(samples)}
    assert (tgt_g == gts[:, [col[s] for s in tgt_s]]).all()
    assert (ref_g == gts[:, [col[s] for s in ref_s]]).all()
    array = [tuple(x.split("\t")) for x in (cohort / "array_sites.tsv").read_text().splitlines()[1:]]
    assert arr_s == tgt_s and [(c, str(p), r, a) for c, p, r, a in arr_sites] == array
    rows = [sites.index((c, int(p), r, a)) for c, p, r, a in array]
    assert (arr_g == tgt_g[rows]).all()
    split = {line.split("\t")[0]: line.split("\t")[3] for line in (cohort / "samples.tsv").read_text().splitlines()[1:]}
    assert {s for s, v in split.items() if v == "target"} == set(tgt_s)


@requires_tool("bcftools")
def test_bcftools_reads_cohort(cohort):
    _, sites, _ = read_vcf(cohort / "cohort.vcf.gz")
    stats = subprocess.run(["bcftools", "stats", str(cohort / "cohort.vcf.gz")], check=True, capture_output=True,
                           text=True).stdout
    sn = {line.split("\t")[2]: int(line.split("\t")[3]) for line in stats.splitlines() if line.startswith("SN\t")}
    assert sn["number of records:"] == sn["number of SNPs:"] == len(sites)
    assert sn["number of multiallelic sites:"] == 0 and sn["number of samples:"] == 3 * N_PER_POP
    mid = sites[len(sites) // 2][1]
    region = subprocess.run(["bcftools", "view", "-H", "-r", f"chr22:{mid}-{mid}", str(cohort / "cohort.vcf.gz")],
                            check=True, capture_output=True, text=True).stdout
    assert region.split("\t")[1] == str(mid)


def test_multiple_chromosomes_named_like_chrom(tmp_path):
    r = sm.simulate(tmp_path / "k", samples_per_pop=3, length=30_000, chrom="chr7", chromosomes=3, seed=2)
    v = VCF(str(r.files["cohort"]))
    assert v.seqnames == ["chr1", "chr2", "chr3"]
    assert {rec.CHROM for rec in v} == {"chr1", "chr2", "chr3"}


def test_builtin_demography_matches_stdpopsim():
    stdp, source = co.demography()
    assert source.startswith("stdpopsim")
    a, b = stdp.debug(), co._ooa_3g09().debug()
    t = np.linspace(0, 12_000, 61)
    np.testing.assert_allclose(a.population_size_trajectory(t), b.population_size_trajectory(t))
    assert [e.start_time for e in a.epochs] == [e.start_time for e in b.epochs]
    for ea, eb in zip(a.epochs, b.epochs):
        np.testing.assert_allclose(ea.migration_matrix, eb.migration_matrix)
        assert [q.growth_rate for q in ea.populations] == [q.growth_rate for q in eb.populations]
    # where a lineage sampled in each population is at each time: covers the mass migrations
    steps = np.array([0, 500, 848, 849, 2000, 5600, 5601, 9000, 20000])
    np.testing.assert_allclose(a.lineage_probabilities(steps), b.lineage_probabilities(steps), atol=1e-12)


# --- errors and atomicity --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"array_fraction": 0.0}, r"--array-fraction 0.0: must be in \(0, 1\]"),
        ({"array_fraction": 1.5}, r"--array-fraction 1.5: must be in \(0, 1\]"),
        ({"array_fraction": 1.0}, r"--array-fraction asks for \d+ array sites on 22 but only \d+ have MAF >= 0.05"),
        ({"split_targets": 10}, r"--split-targets 10: must be between 1 and 9 \(leaving one reference sample"),
        ({"split_targets": 0}, r"--split-targets 0: must be between 1 and 9"),
        ({"samples_per_pop": 0}, r"--samples-per-pop 0: must be at least 1"),
        ({"chrom": "2 2"}, r"--chrom '2 2': not a valid contig name"),
        ({"pedigree": 2, "split_targets": 3}, r"--split-targets cannot be combined with --pedigree"),
        ({"recombination": "hot"}, r"--recombination hot: choose one of uniform, hotspots"),
        ({"pedigree": 2, "recombination": "hotspots"}, r"--recombination applies to cohorts; .*drop --recombination"),
        ({"pedigree": 2, "demography": "finescale"}, r"--demography finescale: --pedigree founders come from ooa or "
                                                     r"growth; choose one of them"),
    ],
)
def test_bad_options_raise_one_line_input_error(tmp_path, kwargs, message):
    with pytest.raises(InputError, match=message) as e:
        sm.simulate(tmp_path / "out", **{"samples_per_pop": 4, "length": 20_000, **kwargs})
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_outdir_rules_and_failure_leaves_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    sm.simulate(tmp_path / "empty", samples_per_pop=2, length=20_000)  # an empty directory is accepted
    assert (tmp_path / "empty/cohort.vcf.gz").is_file()
    with pytest.raises(InputError, match="empty: output already exists"):
        sm.simulate(tmp_path / "empty", samples_per_pop=2, length=20_000)
    with mock.patch.object(sm, "write_vcf", side_effect=RuntimeError("killed")), pytest.raises(RuntimeError):
        sm.simulate(tmp_path / "killed", samples_per_pop=2, length=20_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_cli_calls_library_and_reports_errors(tmp_path):
    runner = CliRunner()
    with mock.patch("snpbag.simulate.cohort.simulate") as run:
        res = runner.invoke(main, ["simulate", str(tmp_path / "o"), "--samples-per-pop", "5", "--chrom", "chr1",
                                   "--array-fraction", "0.02", "--split-targets", "3"])
    assert res.exit_code == 0, res.output
    run.assert_called_once_with(str(tmp_path / "o"), samples_per_pop=5, length=1_000_000, chrom="chr1", seed=1,
                                array_fraction=0.02, split_targets=3, pedigree=None, chromosomes=None,
                                demography="ooa", max_degree=None, genotype_error=None, recombination="uniform",
                                founder_map=None)
    res = runner.invoke(main, ["simulate", str(tmp_path / "o"), "--array-fraction", "2"])
    assert res.exit_code == 2
    assert res.output.strip() == "snpbag: error: --array-fraction 2.0: must be in (0, 1], e.g. 0.05"


def test_finescale_demography(tmp_path):
    """Three continents of four sub-populations: samples.tsv names each sample's labels, the
    VCF header names the model, and sub-populations of a continent are closer to each other
    than to another continent's (F_ST from tskit on the same demography)."""
    import msprime

    from snpbag.simulate import finescale
    from snpbag.simulate.cohort import simulate

    res = simulate(tmp_path / "fs", samples_per_pop=3, length=50_000, seed=4, demography="finescale")
    rows = [ln.split("\t") for ln in (tmp_path / "fs" / "samples.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 36 and {r[2] for r in rows} == set(finescale.CONTINENTS)
    assert {r[1] for r in rows} == {p for p, _ in finescale.POPULATIONS}
    assert all(r[0].startswith(r[1] + "_") and r[1].startswith(r[2]) for r in rows)
    assert res.n_samples == 36
    with gzip.open(tmp_path / "fs" / "cohort.vcf.gz", "rt") as f:
        assert any(f"model={finescale.NAME}" in ln for ln in f.read(5000).splitlines())
    d = finescale.demography()
    ts = msprime.sim_ancestry(samples={p: 10 for p, _ in finescale.POPULATIONS}, demography=d,
                              sequence_length=2e6, recombination_rate=1.2e-8, random_seed=1)
    ts = msprime.sim_mutations(ts, rate=1.29e-8, random_seed=2)
    s = [ts.samples(population=d[p].id) for p, _ in finescale.POPULATIONS]
    within, between = ts.Fst([s[0], s[1]]), ts.Fst([s[0], s[4]])
    assert within < 0.02 < between


def test_admixed_demography(tmp_path, monkeypatch):
    """The American admixture model: four populations in samples.tsv, the model named in the
    header; without stdpopsim a one-line error names the fix and nothing is written."""
    from snpbag.simulate.coalescent import ADMIXED_MODEL
    from snpbag.simulate.cohort import simulate

    simulate(tmp_path / "ad", samples_per_pop=2, length=50_000, seed=4, demography="admixed")
    rows = [ln.split("\t") for ln in (tmp_path / "ad" / "samples.tsv").read_text().splitlines()[1:]]
    assert [(r[1], r[2]) for r in rows[::2]] == [("AFR", "AFR"), ("EUR", "EUR"), ("ASIA", "EAS"), ("ADMIX", "AMR")]
    with gzip.open(tmp_path / "ad" / "cohort.vcf.gz", "rt") as f:
        assert any(f"model={ADMIXED_MODEL}" in ln for ln in f.read(5000).splitlines())
    monkeypatch.setitem(sys.modules, "stdpopsim", None)
    with pytest.raises(InputError, match=r"--demography admixed: needs stdpopsim's HomSap/AmericanAdmixture_4B18"):
        simulate(tmp_path / "no", samples_per_pop=2, length=50_000, seed=4, demography="admixed")
    assert not (tmp_path / "no").exists()


def test_hotspot_map_keeps_the_mean_rate_and_puts_its_share_in_hotspots():
    from snpbag.simulate import recmap

    length, rate = 1_000_000, 1.2e-8
    pos, r = recmap.hotspot_map(length, rate, rng=np.random.default_rng(0))
    assert pos[0] == 0 and pos[-1] == length and len(pos) == len(r) + 1 and (np.diff(pos) > 0).all()
    morgans = np.diff(pos) * r
    assert morgans.sum() == pytest.approx(rate * length)
    hot = r > r.min()
    assert (np.diff(pos)[hot] == recmap.HOTSPOT_WIDTH).all() and 5 <= hot.sum() <= 40
    assert morgans[hot].sum() / morgans.sum() == pytest.approx(recmap.HOTSPOT_SHARE)
    assert (r[hot] > 5 * r.min()).all()


def test_hotspots_are_simulated_and_their_map_written_for_the_tools(tmp_path):
    """--recombination hotspots hands msprime the map it writes as genetic_map.map (PLINK,
    read back by snpbag's reader: the same cM at every breakpoint); uniform runs write none."""
    import msprime

    from snpbag.io.genmap import read_genetic_map

    with mock.patch.object(msprime, "sim_ancestry", wraps=msprime.sim_ancestry) as anc:
        sm.simulate(tmp_path / "hot", samples_per_pop=2, length=200_000, seed=4, recombination="hotspots",
                    chromosomes=2)
    rate_maps = [c.kwargs["recombination_rate"] for c in anc.call_args_list]
    assert len(rate_maps) == 2 and all(isinstance(m, msprime.RateMap) for m in rate_maps)
    gmap = read_genetic_map(tmp_path / "hot" / "genetic_map.map")
    assert gmap.chromosomes == ["1", "2"]
    for chrom, m in zip(("1", "2"), rate_maps):
        bp = np.asarray(m.position)
        np.testing.assert_allclose(gmap.cm(chrom, bp + 1), np.asarray(m.get_cumulative_mass(bp)) * 100, atol=1e-6)
    assert "recombination" in json.loads((tmp_path / "hot" / "simulation.json").read_text())["parameters"]
    sm.simulate(tmp_path / "flat", samples_per_pop=2, length=20_000, seed=4)
    assert not (tmp_path / "flat" / "genetic_map.map").exists()


# --- the growth demography: explosive recent growth and an admixed population --------------------


def test_growth_demography_populations_and_admixture_proportions():
    """``growth``: AFR, EUR and the admixed AFAM, which takes ~80 % of its lineages from AFR and ~20 % from EUR
    at the pulse 12 generations ago (migrations recorded by msprime, weighted by span)."""
    import msprime

    dem, source, pops, name = co.model_of("growth")
    assert name == co.GROWTH_MODEL and source.startswith("stdpopsim")
    assert [p for p, _ in pops] == [p.name for p in dem.populations] == ["AFR", "EUR", "AFAM"]
    a = co.GROWTH_ADMIXTURE
    assert dem["AFAM"].initial_size == pytest.approx(a["initial_size"] * np.exp(a["growth_rate"] * a["time"]))
    ts = msprime.sim_ancestry(samples={"AFAM": 50}, demography=dem, sequence_length=1e8, recombination_rate=1e-8,
                              random_seed=5, end_time=a["time"] + 1, record_migrations=True)
    m = ts.tables.migrations
    span = (m.right - m.left)[m.source == dem["AFAM"].id]
    dest = m.dest[m.source == dem["AFAM"].id]
    share = {p: span[dest == dem[p].id].sum() / span.sum() for p in a["proportions"]}
    assert share["AFR"] + share["EUR"] == pytest.approx(1)
    assert share["AFR"] == pytest.approx(a["proportions"]["AFR"], abs=0.04)


def test_growth_founders_share_less_recent_ibd_than_ooa():
    """What ``growth`` is for: two haplotypes of one population share a recent (< 50 generations) common
    ancestor far less often than under 3G09's small recent sizes, so unrelated founders share less long IBD."""
    import msprime

    def recent_ibd(model: str, pop: str) -> float:
        dem = co.model_of(model)[0]
        ts = msprime.sim_ancestry(samples={pop: 20}, demography=dem, sequence_length=1e8, recombination_rate=1e-8,
                                  random_seed=3, end_time=50)
        return ts.ibd_segments(max_time=50).total_span

    for old, new in (("YRI", "AFR"), ("CEU", "EUR")):
        assert recent_ibd("growth", new) < recent_ibd("ooa", old) / 5


def test_growth_pedigree_founders(tmp_path):
    """``--pedigree`` with ``--demography growth``: families from AFR, EUR and AFAM in turn, the model named
    in the header and simulation.json; the same seed gives the same bytes, another seed other genotypes."""
    kw = dict(length=100_000, pedigree=3, chromosomes=2, max_degree=3, demography="growth", founder_map="physical")
    sm.simulate(tmp_path / "a", seed=7, **kw)
    sm.simulate(tmp_path / "b", seed=7, **kw)
    sm.simulate(tmp_path / "c", seed=8, **kw)
    rows = [ln.split("\t") for ln in (tmp_path / "a" / "samples.tsv").read_text().splitlines()[1:]]
    per_family = len(rows) // 3
    assert [(r[1], r[2]) for r in rows[::per_family]] == [("AFR", "AFR"), ("EUR", "EUR"), ("AFAM", "AFR")]
    meta = json.loads((tmp_path / "a" / "simulation.json").read_text())
    assert meta["demographic_model"] == co.GROWTH_MODEL and meta["parameters"]["demography"] == "growth"
    vcf = [(tmp_path / d / "pedigree.vcf.gz").read_bytes() for d in "abc"]
    assert vcf[0] == vcf[1] != vcf[2]
    with gzip.open(tmp_path / "a" / "pedigree.vcf.gz", "rt") as f:
        assert any(f"model={co.GROWTH_MODEL}" in ln for ln in f.read(5000).splitlines())
