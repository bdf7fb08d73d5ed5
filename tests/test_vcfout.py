"""The imputed VCF: one rule linking GT/DS/GP, INFO recomputable from FORMAT, peers can read it."""

import gc
import gzip
import subprocess
from unittest import mock

import numpy as np
import pytest
from conftest import requires_tool

from snpbag.errors import InputError
from snpbag.inference.sitematch import ModelSites, read_targets
from snpbag.inference.vcfout import (
    ImputedVcfWriter, OutputSites, dose_r2, info_path_for, parse_format, round_gp, write_imputed_vcf,
)

MODEL = ModelSites(
    chrom=np.array(["22"] * 6, dtype=object),
    pos=np.array([100, 200, 300, 400, 500, 600]),
    ref=np.array(["A", "A", "A", "C", "A", "G"], dtype=object),
    alt=np.array(["G", "G", "G", "T", "C", "T"], dtype=object),
)
SAMPLES = ("S1", "S2", "S3", "S4")
TARGET = """##fileformat=VCFv4.2
##contig=<ID=chr22,length=50818468>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\tS3\tS4
chr22\t100\trs1\tA\tG\t.\t.\t.\tGT\t0/1\t1/1\t0/0\t./.
chr22\t200\trs2\tG\tA\t.\t.\t.\tGT\t0/0\t0/1\t1/1\t0/1
chr22\t500\trs5\tT\tG\t.\t.\t.\tGT\t0/1\t0/0\t0/0\t0/0
"""


@pytest.fixture
def targets(tmp_path):
    (tmp_path / "t.vcf").write_text(TARGET)
    return read_targets(tmp_path / "t.vcf", MODEL)


def model_gp(n_samples=4, n_sites=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.dirichlet([0.6, 0.4, 0.3], size=(n_samples, n_sites))  # (N, R, 3), model orientation


def read_records(path):
    """Parse our VCF text: header list and per-record dicts of raw strings."""
    header, recs = [], []
    with gzip.open(path, "rt") as f:
        for line in f:
            if line.startswith("#"):
                header.append(line.rstrip("\n"))
                continue
            c = line.rstrip("\n").split("\t")
            info = dict(kv.split("=") if "=" in kv else (kv, True) for kv in c[7].split(";"))
            keys = c[8].split(":")
            calls = [dict(zip(keys, s.split(":"))) for s in c[9:]]
            recs.append(dict(chrom=c[0], pos=int(c[1]), id=c[2], ref=c[3], alt=c[4], info=info, calls=calls))
    return header, recs


def milli(s: str) -> int:
    """'0.503' -> 503 exactly (no float rounding)."""
    whole, frac = s.split(".")
    return int(whole) * 1000 + int(frac)


# --- pure functions --------------------------------------------------------------------


def test_parse_format():
    assert parse_format("GT,DS,GP") == ("GT", "DS", "GP")
    assert parse_format("gp, ds") == ("GT", "GP", "DS")
    assert parse_format("DS,GT,HDS") == ("GT", "DS", "HDS")
    with pytest.raises(InputError, match="--format GT,PL: unknown field"):
        parse_format("GT,PL")


def test_info_path_for(tmp_path):
    assert info_path_for(tmp_path / "x.vcf.gz") == tmp_path / "x.info.tsv"
    assert info_path_for("a/b.vcf.bgz").name == "b.info.tsv"


def hamilton_reference(row):
    """Largest-remainder rounding of one row to thousandths, in plain Python."""
    x = [v / sum(row) * 1000 for v in row]
    q = [int(v // 1) for v in x]
    order = sorted(range(3), key=lambda i: -(x[i] - q[i]))  # stable: lower index first on ties
    for i in order[: 1000 - sum(q)]:
        q[i] += 1
    return q


def test_round_gp_matches_reference():
    rng = np.random.default_rng(5)
    p = np.concatenate([rng.dirichlet(a, size=3000) for a in ([1, 1, 1], [0.05, 0.05, 0.05], [5, 1, 0.01])])
    p = np.concatenate([p, [[1 / 3, 1 / 3, 1 / 3], [0.0005, 0.0005, 0.999], [0.2004, 0.4004, 0.3992]]])
    assert round_gp(p).tolist() == [hamilton_reference(row) for row in p.tolist()]
    assert round_gp(p.reshape(3, -1, 3)).reshape(-1, 3).tolist() == round_gp(p).tolist()


def round_gp_vectorised(gp):
    """round_gp's arithmetic in numpy over whole arrays (its form before the compiled rows)."""
    p = np.clip(np.asarray(gp, dtype=np.float64), 0.0, None)
    x = (p * (1000 / p.sum(-1, keepdims=True))).reshape(-1, 3)
    q = np.floor(x)
    rem = x - q
    q = q.astype(np.int32)
    short = 1000 - q.sum(-1)
    one = np.flatnonzero(short == 1)
    q[one, np.argmax(rem[one], axis=-1)] += 1
    two = np.flatnonzero(short >= 2)
    q[two] += 1
    q[two, 2 - np.argmin(rem[two][:, ::-1], axis=-1)] -= 1
    return q.reshape(p.shape)


def test_round_gp_equals_its_vectorised_arithmetic_bit_for_bit():
    """The model's float32 probabilities, sharp and flat rows, exact ties and a zero column."""
    rng = np.random.default_rng(9)
    p = np.concatenate([rng.dirichlet(a, size=100_000) for a in ([1, 1, 1], [0.05, 0.05, 0.05], [5, 1, 0.01])])
    p = np.concatenate([p, [[1, 1, 1], [1, 1, 0], [0, 1, 1], [2, 0, 2], [0, 0, 1], [0.5, 0.5, 0]]]).astype(np.float32)
    got = round_gp(p.reshape(2, -1, 3))
    assert got.shape == (2, p.shape[0] // 2, 3) and got.dtype == np.int32
    np.testing.assert_array_equal(got.reshape(-1, 3), round_gp_vectorised(p))
    # two units to hand out, the smallest remainders tied (exact in binary, the sum 1000): the lower genotype gets it
    assert round_gp([[100.625, 100.625, 798.75], [100.75, 100.625, 798.625]]).tolist() == [[101, 100, 799],
                                                                                            [101, 101, 798]]
    with pytest.raises(ValueError, match="sum to 0"):
        round_gp([[0.2, 0.3, 0.5], [0.0, -1e-7, 0.0]])
    with pytest.raises(ValueError, match="finite and non-negative"):
        round_gp([[0.0, 0.0, 0.0], [0.5, -0.1, 0.6]])  # every value is checked before any sum


def test_round_gp_sums_to_one_and_moves_less_than_a_unit():
    p = np.random.default_rng(1).dirichlet([0.3, 0.3, 0.3], size=20000)
    q = round_gp(p)
    assert (q.sum(-1) == 1000).all()
    assert np.abs(q / 1000 - p).max() < 1e-3
    assert round_gp([1 / 3, 1 / 3, 1 / 3]).tolist() == [334, 333, 333]
    assert round_gp([[0.0005, 0.4995, 0.5], [2, 0, 2]]).tolist() == [[1, 499, 500], [500, 0, 500]]
    with pytest.raises(ValueError, match="finite and non-negative"):
        round_gp([0.5, np.nan, 0.5])


def beagle_dose_r2_reference(gp_site):
    """Beagle's R2Estimator.doseR2, one genotype at a time (slow reference)."""
    n = s = ss = se = 0.0
    for p0, p1, p2 in gp_site:
        d = p1 + 2 * p2
        n += 1
        s += d
        ss += d * d
        se += p1 + 4 * p2
    num, den = max(ss - s * s / n, 0.0), se - s * s / n
    return 0.0 if den < 1e-8 else num / den


def test_dose_r2_matches_beagle_reference():
    gp = np.random.default_rng(2).dirichlet([0.5, 0.5, 0.5], size=(7, 30))  # (sites, samples, 3)
    expect = [beagle_dose_r2_reference(site) for site in gp]
    np.testing.assert_allclose(dose_r2(gp), expect, rtol=1e-12)
    certain = np.eye(3)[[0, 1, 2, 1]][None]
    assert dose_r2(certain).tolist() == [1.0]  # certain calls of a polymorphic site
    assert dose_r2(np.tile([1.0, 0, 0], (1, 5, 1))).tolist() == [0.0]  # monomorphic
    hwe = np.tile([0.49, 0.42, 0.09], (1, 5, 1))  # every sample at the prior: no information
    assert dose_r2(hwe)[0] == pytest.approx(0.0, abs=1e-12)


# --- writing ---------------------------------------------------------------------------


def test_fields_follow_one_rule(tmp_path, targets):
    sites = OutputSites.from_targets(targets, MODEL)
    gp = model_gp()
    out = tmp_path / "imp.vcf.gz"
    summary = write_imputed_vcf(out, sites, targets.samples, gp, command="snpbag impute --test")
    assert summary.n_written == 6 and summary.n_typed == 3
    assert (tmp_path / "imp.vcf.gz.tbi").exists() and (tmp_path / "imp.info.tsv").exists()
    header, recs = read_records(out)
    assert "##snpbag_command=snpbag impute --test" in header
    assert "##contig=<ID=chr22,length=50818468>" in header
    assert any(h.startswith("##source=snpbag") for h in header)
    for tag in ("AF", "R2", "IMP", "TYPED"):
        assert any(h.startswith(f"##INFO=<ID={tag},") for h in header)
    for tag in ("GT", "DS", "GP"):
        assert any(h.startswith(f"##FORMAT=<ID={tag},") for h in header)
    assert [r["chrom"] for r in recs] == ["chr22"] * 6
    assert [r["pos"] for r in recs] == [100, 200, 300, 400, 500, 600]
    all_gp = []
    for r in recs:
        site_gp, ds_sum = [], 0
        for c in r["calls"]:
            g = [milli(x) for x in c["GP"].split(",")]
            assert sum(g) == 1000  # printed GP sum to exactly 1
            assert milli(c["DS"]) == g[1] + 2 * g[2]  # DS from the printed GP
            assert c["GT"] == ["0/0", "0/1", "1/1"][int(np.argmax(g))]
            site_gp.append(np.array(g) / 1000)
            ds_sum += milli(c["DS"])
        all_gp.append(site_gp)
        assert float(r["info"]["AF"]) == pytest.approx(ds_sum / (2000 * 4), abs=6e-6)
        assert ("TYPED" in r["info"]) == (r["pos"] in (100, 200, 500))
        assert ("IMP" in r["info"]) == (r["pos"] not in (100, 200, 500))
    r2 = dose_r2(np.array(all_gp))
    assert [float(r["info"]["R2"]) for r in recs] == pytest.approx(np.round(r2, 3).tolist(), abs=1e-9)


def test_typed_sites_keep_input_calls_in_input_orientation(tmp_path, targets):
    sites = OutputSites.from_targets(targets, MODEL)
    gp = model_gp()
    _, recs = read_records(write_imputed_vcf(tmp_path / "a.vcf.gz", sites, targets.samples, gp).path)
    r100, r200, r500 = recs[0], recs[1], recs[4]
    assert (r200["ref"], r200["alt"], r200["id"]) == ("G", "A", "rs2")  # the user's swapped orientation
    assert (r500["ref"], r500["alt"]) == ("T", "G")  # the user's strand
    assert [c["GT"] for c in r200["calls"]] == ["0/0", "0/1", "1/1", "0/1"]
    assert [c["GP"] for c in r200["calls"]] == ["1.000,0.000,0.000", "0.000,1.000,0.000",
                                               "0.000,0.000,1.000", "0.000,1.000,0.000"]
    assert [c["GT"] for c in r100["calls"][:3]] == ["0/1", "1/1", "0/0"]
    # S4 is missing at rs1: imputed from the model
    q = round_gp(gp[3, 0])
    assert r100["calls"][3]["GP"] == ",".join(f"{v / 1000:.3f}" for v in q)


def test_swapped_site_same_dosage_after_reorientation(tmp_path, targets):
    gp = model_gp()
    out = {}
    for orient in ("input", "model"):
        sites = OutputSites.from_targets(targets, MODEL, orientation=orient)
        path = tmp_path / f"{orient}.vcf.gz"
        write_imputed_vcf(path, sites, targets.samples, gp, replace_typed=True)
        out[orient] = read_records(path)[1]
    swapped_in, swapped_model = out["input"][1], out["model"][1]
    assert (swapped_in["ref"], swapped_model["ref"]) == ("G", "A")
    for ci, cm in zip(swapped_in["calls"], swapped_model["calls"]):
        assert milli(ci["DS"]) == 2000 - milli(cm["DS"])
        assert ci["GP"].split(",") == cm["GP"].split(",")[::-1]
    assert swapped_in["info"]["R2"] == swapped_model["info"]["R2"]
    for i in (0, 2, 3, 4, 5):  # other sites are printed identically
        assert out["input"][i]["calls"] == out["model"][i]["calls"]


def test_batches_equal_one_shot_and_min_r2(tmp_path, targets):
    sites = OutputSites.from_targets(targets, MODEL)
    gp = model_gp(seed=3)
    write_imputed_vcf(tmp_path / "one.vcf.gz", sites, targets.samples, gp)
    with ImputedVcfWriter(tmp_path / "many.vcf.gz", sites, targets.samples) as w:
        w.chunk_sites = 2
        for s0 in (0, 2):
            w.add(gp[s0:s0 + 2, :4], samples=slice(s0, s0 + 2), sites=slice(0, 4))
            w.add(gp[s0:s0 + 2, 4:], samples=np.arange(s0, s0 + 2), sites=np.array([4, 5]))
    assert read_records(tmp_path / "one.vcf.gz")[1] == read_records(tmp_path / "many.vcf.gz")[1]

    _, recs = read_records(tmp_path / "one.vcf.gz")
    r2 = {r["pos"]: float(r["info"]["R2"]) for r in recs}
    cut = sorted(r2[p] for p in (300, 400, 600))[1]
    summary = write_imputed_vcf(tmp_path / "f.vcf.gz", sites, targets.samples, gp, min_r2=cut)
    kept = [r["pos"] for r in read_records(tmp_path / "f.vcf.gz")[1]]
    expect = [p for p in (100, 200, 300, 400, 500, 600) if p in (100, 200, 500) or r2[p] >= cut]
    assert kept == expect and summary.n_filtered == 6 - len(expect)
    info = (tmp_path / "f.info.tsv").read_text().splitlines()
    assert info[0] == "#chrom\tpos\tid\tref\talt\taf\tmaf\tr2\ttype\tin_vcf\ter2"
    rows = [line.split("\t") for line in info[1:]]
    assert [int(r[1]) for r in rows] == [100, 200, 300, 400, 500, 600]
    assert [int(r[1]) for r in rows if r[9] == "1"] == expect
    assert [r[8] for r in rows] == ["TYPED", "TYPED", "IMP", "IMP", "TYPED", "IMP"]
    for r in rows:
        assert float(r[6]) == pytest.approx(min(float(r[5]), 1 - float(r[5])), abs=1e-5)


def _dose_probs(dose):
    """Probabilities (..., 3) whose dose P1 + 2·P2 is ``dose`` (P1 = 0)."""
    d = np.asarray(dose, dtype=np.float64) / 2
    return np.stack([1 - d, np.zeros_like(d), d], -1)


def test_er2_is_r2_of_typed_calls_and_leave_one_out_doses(tmp_path, targets):
    """Typed calls (printed orientation): pos 100 → 1, 2, 0, missing; pos 200 (swapped) →
    0, 1, 2, 1; pos 500 (strand-flipped) → 1, 0, 0, 0."""
    sites = OutputSites.from_targets(targets, MODEL)
    held = np.full((4, 6), np.nan)  # (samples, rows) leave-one-out doses, model orientation
    held[:, 0] = [0.5, 2.0, 0.0, 1.7]  # the missing call's dose is not counted
    held[:, 1] = [2.0, 1.0, 0.5, 1.0]  # printed: 0, 1, 1.5, 1
    held[:, 4] = [1.0, 0.0, 0.0, 0.0]
    with ImputedVcfWriter(tmp_path / "e.vcf.gz", sites, targets.samples) as w:
        for cols in (slice(0, 3), slice(3, 4)):  # sums accumulate over sample batches
            w.add(model_gp()[cols], samples=cols, held_out=_dose_probs(held[cols]))
        summary = w.close()
    # best guesses (argmax, ties to the lower genotype): 0 2 0 | 0 2 2 2 (swapped back) | 0 0 0 0
    assert summary.loo_concordance == pytest.approx(7 / 11)
    rows = [line.split("\t") for line in (tmp_path / "e.info.tsv").read_text().splitlines()[1:]]
    er2 = {int(r[1]): r[10] for r in rows}
    r100 = np.corrcoef([0.5, 2.0, 0.0], [1, 2, 0])[0, 1] ** 2
    r200 = np.corrcoef([0.0, 1.0, 1.5, 1.0], [0, 1, 2, 1])[0, 1] ** 2
    assert er2 == {100: f"{r100:.3f}", 200: f"{r200:.3f}", 300: ".", 400: ".", 500: "1.000", 600: "."}
    assert (r100, r200) == (pytest.approx(12 / 13), pytest.approx(18 / 19))  # by hand
    # without leave-one-out doses (a model without the copying input) the column is empty
    assert write_imputed_vcf(tmp_path / "n.vcf.gz", sites, targets.samples, model_gp()).loo_concordance is None
    assert {r.split("\t")[10] for r in (tmp_path / "n.info.tsv").read_text().splitlines()[1:]} == {"."}
    with pytest.raises(ValueError, match="leave-one-out probabilities were given for some batches only"):
        with ImputedVcfWriter(tmp_path / "p.vcf.gz", sites, targets.samples) as w:
            w.add(model_gp()[:2], samples=slice(0, 2), held_out=_dose_probs(held[:2]))
            w.add(model_gp()[2:], samples=slice(2, 4))


def test_hds_gives_phased_gt(tmp_path, targets):
    sites = OutputSites.from_targets(targets, MODEL)
    gp = model_gp()
    hds = np.random.default_rng(4).uniform(size=(4, 6, 2))
    write_imputed_vcf(tmp_path / "h.vcf.gz", sites, targets.samples, gp, hds=hds, fmt="GT,DS,HDS,GP")
    header, recs = read_records(tmp_path / "h.vcf.gz")
    assert any(h.startswith("##FORMAT=<ID=HDS,") for h in header)
    r = recs[2]  # imputed site, model orientation
    for s, c in enumerate(r["calls"]):
        h = [milli(x) for x in c["HDS"].split(",")]
        assert h == np.rint(hds[s, 2] * 1000).astype(int).tolist()
        assert c["GT"] == f"{int(h[0] > 500)}|{int(h[1] > 500)}"
    # typed site: kept calls are certain (HDS = alleles); an unphased input het is ordered by the model's HDS
    swapped = recs[1]
    assert [c["GT"] for c in swapped["calls"]] == ["0|0", "0|1" if hds[1, 1, 0] > hds[1, 1, 1] else "1|0",
                                                   "1|1", "0|1" if hds[3, 1, 0] > hds[3, 1, 1] else "1|0"]
    for c in swapped["calls"]:
        assert c["HDS"] == f"{c['GT'][0]}.000,{c['GT'][2]}.000"
    assert recs[0]["calls"][3]["HDS"] == ",".join(f"{v:.3f}" for v in np.rint(hds[3, 0] * 1000) / 1000)
    # model results at a swapped site are turned round: HDS -> 1 - HDS
    write_imputed_vcf(tmp_path / "r.vcf.gz", sites, targets.samples, gp, hds=hds, fmt="HDS", replace_typed=True)
    swapped = read_records(tmp_path / "r.vcf.gz")[1][1]
    for s, c in enumerate(swapped["calls"]):
        assert [milli(x) for x in c["HDS"].split(",")] == np.rint((1 - hds[s, 1]) * 1000).astype(int).tolist()
    with pytest.raises(InputError, match="--format HDS: this model gives no haplotype dosages"):
        write_imputed_vcf(tmp_path / "x.vcf.gz", sites, targets.samples, gp, fmt="GT,HDS")
    assert not list(tmp_path.glob("x.*")) and not list(tmp_path.glob(".x.*"))


def test_atomic_when_failing_midway(tmp_path, targets):
    sites = OutputSites.from_targets(targets, MODEL)
    w = ImputedVcfWriter(tmp_path / "z.vcf.gz", sites, targets.samples)
    w.chunk_sites = 2
    w.add(model_gp())
    real = ImputedVcfWriter._chunk
    calls = []

    def flaky(self, a, b):
        calls.append(a)
        if len(calls) == 2:
            raise RuntimeError("killed midway")
        return real(self, a, b)

    with mock.patch.object(ImputedVcfWriter, "_chunk", flaky), pytest.raises(RuntimeError, match="killed midway"):
        w.close()
    assert calls == [0, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.vcf"]  # no output, index, info or buffer


def test_exception_in_context_and_incomplete_batches_leave_nothing(tmp_path, targets):
    sites = OutputSites.from_targets(targets, MODEL)
    with pytest.raises(KeyError), ImputedVcfWriter(tmp_path / "y.vcf.gz", sites, targets.samples) as w:
        w.add(model_gp()[:2], samples=slice(0, 2))
        raise KeyError("model crashed")
    with pytest.raises(ValueError, match="did not get exactly 4 samples"):
        with ImputedVcfWriter(tmp_path / "y.vcf.gz", sites, targets.samples) as w:
            w.add(model_gp()[:2], samples=slice(0, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.vcf"]
    w = ImputedVcfWriter(tmp_path / "y.vcf.gz", sites, targets.samples)  # forgotten: never closed
    assert len(list(tmp_path.glob(".y.vcf.gz.buf-*"))) == 1
    del w
    gc.collect()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.vcf"]


def test_refuses_existing_outputs_and_bad_options(tmp_path, targets):
    sites = OutputSites.from_targets(targets, MODEL)
    (tmp_path / "e.info.tsv").write_text("x")
    with pytest.raises(InputError, match=r"e\.info\.tsv: output already exists"):
        ImputedVcfWriter(tmp_path / "e.vcf.gz", sites, targets.samples)
    with pytest.raises(InputError, match="must end in .vcf.gz"):
        ImputedVcfWriter(tmp_path / "e.vcf", sites, targets.samples)
    with pytest.raises(InputError, match="--min-r2 1.5: must be between 0 and 1"):
        ImputedVcfWriter(tmp_path / "f.vcf.gz", sites, targets.samples, min_r2=1.5)


# --- peers -----------------------------------------------------------------------------


@requires_tool("bcftools")
def test_bcftools_reads_it(tmp_path, targets):
    sites = OutputSites.from_targets(targets, MODEL)
    out = tmp_path / "b.vcf.gz"
    write_imputed_vcf(out, sites, targets.samples, model_gp(), min_r2=None)
    view = subprocess.run(["bcftools", "view", "-H", str(out)], capture_output=True, text=True)
    assert view.returncode == 0, view.stderr
    assert len(view.stdout.splitlines()) == 6
    q = subprocess.run(["bcftools", "query", "-f", "%POS\t%INFO/R2\t%INFO/AF\n", str(out)],
                       capture_output=True, text=True, check=True).stdout.splitlines()
    _, recs = read_records(out)
    assert [line.split("\t")[0] for line in q] == [str(r["pos"]) for r in recs]
    assert [float(line.split("\t")[1]) for line in q] == [float(r["info"]["R2"]) for r in recs]
    region = subprocess.run(["bcftools", "view", "-H", "-r", "chr22:150-450", str(out)],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert [int(line.split("\t")[1]) for line in region] == [200, 300, 400]  # the tabix index works
    imp = subprocess.run(["bcftools", "view", "-H", "-i", "INFO/IMP=1", str(out)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert [int(line.split("\t")[1]) for line in imp] == [300, 400, 600]


@requires_tool("plink2")
def test_plink2_reads_ds(tmp_path, targets):
    sites = OutputSites.from_targets(targets, MODEL)
    out = tmp_path / "p.vcf.gz"
    write_imputed_vcf(out, sites, targets.samples, model_gp())
    prefix = str(tmp_path / "pl")
    for args in (["--vcf", str(out), "dosage=DS", "--make-pgen"], ["--pfile", prefix, "--export", "A-transpose"]):
        r = subprocess.run(["plink2", *args, "--out", prefix, "--threads", "1", "--memory", "1000"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    lines = (tmp_path / "pl.traw").read_text().splitlines()
    head = lines[0].split("\t")
    _, recs = read_records(out)
    for line, rec in zip(lines[1:], recs):
        f = dict(zip(head, line.split("\t")))
        vals = np.array([float(line.split("\t")[6 + s]) for s in range(4)])
        alt_ds = vals if f["COUNTED"] == rec["alt"] else 2 - vals
        expect = np.array([milli(c["DS"]) / 1000 for c in rec["calls"]])
        np.testing.assert_allclose(alt_ds, expect, atol=1e-3)


@pytest.mark.peers
@requires_tool("beagle", "java")
def test_r2_formula_agrees_with_beagle_dr2(tmp_path):
    """Beagle 5.4's DR2 vs our dose_r2 on Beagle's own printed GP (2 decimals, so not exact)."""
    import msprime

    ts = msprime.sim_ancestry(samples=120, sequence_length=300_000, recombination_rate=1e-8,
                              population_size=10_000, random_seed=3)
    ts = msprime.sim_mutations(ts, rate=2e-8, random_seed=3, model=msprime.BinaryMutationModel())
    g = ts.genotype_matrix()
    pos = np.array([int(s.position) + 1 for s in ts.sites()])
    keep = np.r_[True, np.diff(pos) > 0] & (g.mean(1) > 0.01) & (g.mean(1) < 0.99)
    g, pos = g[keep], pos[keep]

    def write(path, hap, rows, names, sep):
        lines = ["##fileformat=VCFv4.2", "##contig=<ID=22>",
                 '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
                 "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *names])]
        for h, p in zip(hap[rows], pos[rows]):
            calls = [f"{h[2 * i]}{sep}{h[2 * i + 1]}" for i in range(len(names))]
            lines.append("\t".join(["22", str(p), f"v{p}", "A", "G", ".", "PASS", ".", "GT", *calls]))
        path.write_text("\n".join(lines) + "\n")

    write(tmp_path / "ref.vcf", g[:, :200], np.ones(len(pos), bool), [f"R{i}" for i in range(100)], "|")
    write(tmp_path / "tgt.vcf", g[:, 200:], np.arange(len(pos)) % 6 == 0, [f"T{i}" for i in range(20)], "/")
    r = subprocess.run(["beagle", f"ref={tmp_path / 'ref.vcf'}", f"gt={tmp_path / 'tgt.vcf'}",
                        f"out={tmp_path / 'out'}", "gp=true", "nthreads=1", "seed=1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    dr2, gps = [], []
    with gzip.open(tmp_path / "out.vcf.gz", "rt") as f:
        for line in f:
            c = line.rstrip("\n").split("\t")
            if line.startswith("#") or "IMP" not in c[7].split(";"):
                continue
            dr2.append(float(c[7].split("DR2=")[1].split(";")[0]))
            gps.append([[float(x) for x in s.split(":")[2].split(",")] for s in c[9:]])
    diff = np.abs(dose_r2(np.array(gps)) - np.array(dr2))
    assert len(dr2) > 300
    assert np.median(diff) < 0.01 and np.quantile(diff, 0.95) < 0.03
