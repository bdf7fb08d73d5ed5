"""``snpbag impute --ref``: imputation from a phased panel with no training step, against the
``--model DIR --copying-only`` path on the same panel; whole-genome (two-chromosome) input
in one command; the new refusals."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner

from snpbag.cli import main

from tiny_data import TINY_TRAIN


def cli(*args, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def records(path: Path) -> list[str]:
    """The VCF's records (the header names the command, the model or panel and the date)."""
    with gzip.open(path, "rt") as f:
        return [ln for ln in f if not ln.startswith("#")]


def outputs(out: Path) -> tuple[list[str], str, str]:
    """Records, info file and exclusion file of one imputation."""
    stem = out.name[: -len(".vcf.gz")]
    return records(out), (out.parent / f"{stem}.info.tsv").read_text(), (out.parent / f"{stem}.excluded.tsv").read_text()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("impute_ref")
    cli("simulate", d / "sim", "--samples-per-pop", 10, "--length", 100_000, "--split-targets", 4,
        "--array-fraction", 0.3, "--seed", 3)
    return d


def copying_model_dir(store: Path, tmp_path: Path) -> Path:
    """A haplotype-retrieval model directory trained briefly on ``store`` whose panel is then
    the whole store at --ref's settings (training keeps its training split only)."""
    from snpbag import modeldir
    from snpbag.inference.refpanel import REF_OPTIONS
    from snpbag.retrieval.haplotypes import HaplotypePanel
    from snpbag.store.genotypes import open_store

    run, model = tmp_path / "run", tmp_path / "model"
    cli("train", f"data.store={store}", f"paths.run_dir={run}", *TINY_TRAIN, "model.retrieval_k=3",
        "model.retrieval_span=16", "model.retrieval=haplotypes")
    cli("export", run, model)
    s = open_store(store)
    HaplotypePanel.from_store(s, np.arange(s.n_samples), **REF_OPTIONS).save(model / modeldir.panel_file("haplotypes"))
    return model


def test_ref_equals_the_model_path_with_the_copying_model_alone(cohort, tmp_path):
    """The same panel through --ref (a store, and the VCF it came from) and through a model
    directory with --copying-only gives the same imputed genotypes, byte for byte; `snpbag
    info` says the model directory holds the panel's haplotypes."""
    from snpbag import modeldir
    from snpbag.store.genotypes import open_store

    sim = cohort / "sim"
    store = tmp_path / "ref.zarr"
    cli("convert", sim / "reference.vcf.gz", store, "--tile-len", 96, "--min-maf", 0, "--threads", 1)
    model = copying_model_dir(store, tmp_path)
    s = open_store(store)
    assert f"contains genotypes  yes ({2 * s.n_samples:,} panel haplotypes in haplotypes.npz" in cli("info", model).output
    plain = tmp_path / "plain"  # the same directory without a retrieval input
    shutil.copytree(model, plain)
    (plain / modeldir.panel_file("haplotypes")).unlink()
    meta = json.loads((plain / modeldir.CONFIG_FILE).read_text())
    meta["model"]["retrieval_k"] = 0
    (plain / modeldir.CONFIG_FILE).write_text(json.dumps(meta))
    assert "contains genotypes  no: " in cli("info", plain).output

    targets = sim / "targets_array.vcf.gz"
    by_model, by_store, by_vcf = (tmp_path / f"{x}.vcf.gz" for x in ("model", "store", "vcf"))
    # the copying model's probabilities are used as they are: no temperature pass (it would raise here)
    with mock.patch("snpbag.inference.impute.fit_input_temperature", side_effect=AssertionError("temperature pass")):
        cli("impute", "--model", model, "--copying-only", "--input", targets, "--output", by_model, "--batch-size", 3)
        cli("impute", "--ref", store, "--input", targets, "--output", by_store, "--batch-size", 2)
    assert outputs(by_store) == outputs(by_model)
    for out in (by_model, by_store):
        with gzip.open(out, "rt") as f:
            assert not any(ln.startswith("##snpbag_temperature=") for ln in f if ln.startswith("##"))
    with mock.patch("snpbag.inference.impute.fit_input_temperature", return_value=0.9) as fit:  # the encoder's are fitted
        cli("impute", "--model", model, "--input", targets, "--output", tmp_path / "encoder.vcf.gz")
    fit.assert_called_once()
    with gzip.open(tmp_path / "encoder.vcf.gz", "rt") as f:
        assert "##snpbag_temperature=0.9000\n" in [ln for ln in f if ln.startswith("##")]
    assert len(records(by_model)) == s.vocab.n_sites and s.vocab.n_tiles > 2
    # a one-chromosome VCF panel is read into memory with the rules of a store converted from it,
    # and leaves no temporary store behind
    default = tmp_path / "default.zarr"
    cli("convert", sim / "reference.vcf.gz", default, "--min-maf", 0, "--threads", 1)
    cli("impute", "--ref", default, "--input", targets, "--output", by_store.with_name("default.vcf.gz"))
    before = sorted(Path(tempfile.gettempdir()).glob("snpbag-ref-*"))
    with mock.patch("snpbag.inference.refpanel.convert", side_effect=AssertionError("converted")):
        cli("impute", "--ref", sim / "reference.vcf.gz", "--input", targets, "--output", by_vcf)
    assert outputs(by_vcf) == outputs(by_store.with_name("default.vcf.gz"))
    assert sorted(Path(tempfile.gettempdir()).glob("snpbag-ref-*")) == before
    # the copying model imputes: untyped genotypes of the held-out targets are mostly recovered
    typed = {ln.split("\t")[1] for ln in records(targets)}
    truth = {ln.split("\t")[1]: ln.rstrip("\n").split("\t")[9:] for ln in records(sim / "targets.vcf.gz")
             if ln.split("\t")[1] not in typed}
    calls = {ln.split("\t")[1]: [f.split(":")[0] for f in ln.rstrip("\n").split("\t")[9:]] for ln in records(by_vcf)}
    dose = lambda g: sum(int(a) for a in re.split(r"[/|]", g))  # noqa: E731
    pairs = [(dose(t), dose(c)) for p, ts in truth.items() if p in calls for t, c in zip(ts, calls[p])]
    assert len(pairs) > 400 and np.mean([a == b for a, b in pairs]) > 0.9


def _rewrite_panel(src: Path, dst: Path, fn) -> Path:
    with gzip.open(src, "rt") as f:
        lines = f.read().splitlines()
    out, k = [], 0
    for ln in lines:
        if not ln.startswith("#"):
            k += 1
            ln = fn(ln, k)
        out.append(ln)
    dst.write_text("\n".join(out) + "\n")
    return dst


BAD = {
    "both": (lambda c, d: ("--model", d, "--ref", c / "sim/reference.vcf.gz"), r"give --model DIR .* or --ref PANEL"),
    "neither": (lambda c, d: (), r"give --model DIR .* or --ref PANEL"),
    "no_panel": (lambda c, d: ("--ref", d / "nope.vcf.gz"), r"--ref .*nope\.vcf\.gz: no such file"),
    "unphased": (lambda c, d: ("--ref", _rewrite_panel(c / "sim/reference.vcf.gz", d / "unphased.vcf",
                                                      lambda ln, k: ln.replace("|", "/"))),
                 r"--ref .*unphased\.vcf: [\d,]+ unphased heterozygous calls on chromosome 22; .*phase it first"),
    "missing": (lambda c, d: ("--ref", _rewrite_panel(c / "sim/reference.vcf.gz", d / "missing.vcf",
                                                     lambda ln, k: ln.replace("\t0|0", "\t.|.", 1) if k == 5 else ln)),
                r"--ref .*missing\.vcf: 1 missing calls on chromosome 22; .*fill and phase it first"),
    "map_with_model": (lambda c, d: ("--model", d, "--map", d / "g.map"), r"--map applies to --ref"),
    "copying_with_ref": (lambda c, d: ("--ref", c / "sim/reference.vcf.gz", "--copying-only"),
                         r"--copying-only applies to --model"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_ref_input_fails_with_one_line_and_no_output(case, cohort, tmp_path):
    args, message = BAD[case]
    out = tmp_path / "out"
    out.mkdir()
    result = cli("impute", *args(cohort, tmp_path), "--input", cohort / "sim/targets_array.vcf.gz",
                 "--output", out / "imputed.vcf.gz", ok=False)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith("snpbag: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert list(out.iterdir()) == []


def test_whole_genome_input_one_command_one_or_split_outputs(tmp_path):
    """Two chromosomes in the panel and the input: one command imputes both, chromosome by
    chromosome (--ref reads one chromosome's haplotypes at a time), into one VCF or one per
    chromosome (--split-chrom) with the same records; the model path on the same panel agrees."""
    from test_whole_genome import two_chromosome_vcf

    vcf = two_chromosome_vcf(tmp_path, n_samples=24, n_sites=300, missing_rate=0.0)
    lines = vcf.read_text().splitlines()
    targets = tmp_path / "targets.vcf"  # every 5th site of the last three samples
    body = [ln for ln in lines if not ln.startswith("#")]
    targets.write_text("\n".join([ln if ln.startswith("##") else "\t".join(ln.split("\t")[:9] + ln.split("\t")[-3:])
                                  for ln in lines if ln.startswith("#")] +
                                 ["\t".join(ln.split("\t")[:9] + ln.split("\t")[-3:]) for ln in body[::5]]) + "\n")
    store = tmp_path / "genome.zarr"
    cli("convert", vcf, store, "--min-maf", 0, "--tile-len", 128, "--threads", 1)
    one, split = tmp_path / "one" / "imp.vcf.gz", tmp_path / "split" / "imp.vcf.gz"
    cli("impute", "--ref", store, "--input", targets, "--output", one, "--batch-size", 2)
    cli("impute", "--ref", store, "--input", targets, "--output", split, "--split-chrom")
    recs = records(one)
    assert [r.split("\t", 1)[0] for r in recs] == ["21"] * 300 + ["22"] * 300
    parts = [split.with_name(f"imp.{c}.vcf.gz") for c in ("21", "22")]
    assert sorted(p.name for p in split.parent.iterdir() if p.name.endswith(".vcf.gz")) == [p.name for p in parts]
    assert records(parts[0]) + records(parts[1]) == recs
    info = [p.with_name(p.name.replace(".vcf.gz", ".info.tsv")).read_text().splitlines() for p in parts]
    assert info[0] + info[1][1:] == (one.parent / "imp.info.tsv").read_text().splitlines()
    model = copying_model_dir(store, tmp_path)  # the whole genome's panel in one piece
    by_model = tmp_path / "model.vcf.gz"
    cli("impute", "--model", model, "--copying-only", "--input", targets, "--output", by_model)
    assert records(by_model) == recs


def test_phased_selection_writes_phased_calls_and_haplotype_dosages(cohort, tmp_path):
    """--state-selection phased (phase, then the haploid HMM): every GT phased, HDS on
    request and DS = HDS1 + HDS2 to rounding, the typed calls kept (their alleles ordered by
    the phase), ER2 in the info file; the other selections refuse HDS."""
    sim = cohort / "sim"
    targets = sim / "targets_array.vcf.gz"
    out = tmp_path / "phased.vcf.gz"
    cli("impute", "--ref", sim / "reference.vcf.gz", "--input", targets, "--output", out,
        "--state-selection", "phased", "--format", "GT,DS,HDS")
    typed = {ln.split("\t")[1]: [f.split(":")[0] for f in ln.rstrip("\n").split("\t")[9:]] for ln in records(targets)}
    n_typed = 0
    for ln in records(out):
        cols = ln.rstrip("\n").split("\t")
        assert cols[8] == "GT:DS:HDS"
        for field, i in zip(cols[9:], range(10**6)):
            gt, ds, hds = field.split(":")
            assert gt[1] == "|"
            h1, h2 = (float(x) for x in hds.split(","))
            assert abs(float(ds) - h1 - h2) < 0.0025 and (gt[0] == "1") == (h1 > 0.5) and (gt[2] == "1") == (h2 > 0.5)
            if cols[1] in typed:  # the input's (unphased) call, in some order
                assert sorted(gt[::2]) == sorted(typed[cols[1]][i][::2])
                n_typed += 1
    assert n_typed > 100
    info = (tmp_path / "phased.info.tsv").read_text().splitlines()
    assert any(ln.split("\t")[8] == "TYPED" and ln.split("\t")[10] != "." for ln in info[1:])
    result = cli("impute", "--ref", sim / "reference.vcf.gz", "--input", targets, "--output", tmp_path / "c.vcf.gz",
                 "--state-selection", "conflicts", "--format", "GT,HDS", ok=False)
    assert result.exit_code == 2 and "--format HDS: this model gives no haplotype dosages" in result.stderr


def test_ref_options_give_the_haploid_settings_to_phased_alone(monkeypatch):
    """--ref's haploid HMM settings (Ne, ε) go with the phased selection; the pair HMM's
    selections keep the panel's defaults."""
    from snpbag.inference import refpanel
    from snpbag.retrieval.haplotypes import HaplotypePanel

    monkeypatch.setattr(refpanel, "HAPLOID_HMM", {"ne": 2e5, "eps": 1e-4})
    ref_options = refpanel.ref_options
    assert ref_options("phased")["ne"] == 2e5 and refpanel.REF_OPTIONS["ne"] == 8e4  # the default: phased
    for selection in ("conflicts", "composite"):
        opts = ref_options(selection)
        assert "ne" not in opts and "eps" not in opts and opts["selection"] == selection
    h = np.zeros((2, 3, 2), np.int8)
    panel = HaplotypePanel(h, np.arange(3) * 0.01, **ref_options("phased"))
    assert (panel.ne, panel.eps) == (2e5, 1e-4)


def test_one_chromosome_panel_vcf_read_in_memory_as_its_store(tmp_path, monkeypatch):
    """A one-chromosome panel VCF read into memory gives the vocabulary, the calls at its sites
    and the unphased heterozygotes per site that `snpbag convert --min-maf 0` and a read of the
    store give (dropped records, a site called nowhere, haploid calls, missing calls, several
    tiles); the per-block counting kernel equals its numpy definition."""
    from test_convert import MIXED, write_vcf

    from snpbag.inference.refpanel import PanelInMemory, read_panel
    from snpbag.store import schema
    from snpbag.store.convert import allele_counts, convert
    from snpbag.store.genotypes import open_store
    from snpbag.store.kernels import panel_counts

    rows = [("chr22", pos + (1000 if chrom == "chr22" else 0), ref, alt, gts) for chrom, pos, ref, alt, gts in MIXED]
    rows += [("chr22", 2000, "A", "C", ["./.", ".|.", "./."]),  # nothing called: not a site
             ("chr22", 2100, "T", "G", ["1|0", "0|1", "1/0"])]
    vcf = write_vcf(tmp_path / "panel.vcf", ["a", "b", "c"], rows)
    monkeypatch.setattr(schema, "TILE_LEN", 2)
    panel = read_panel(vcf, threads=1)
    assert isinstance(panel, PanelInMemory)
    convert(vcf, tmp_path / "panel.zarr", min_maf=0.0, tile_len=2, threads=1)
    store = open_store(tmp_path / "panel.zarr")
    voc = store.vocab
    assert panel.vocab == voc and voc.n_sites == 5 and voc.n_tiles == 3  # the monomorphic site is one
    assert panel.vocab.chrom_names == voc.chrom_names and (panel.vocab.min_maf, panel.vocab.tile_len) == (0.0, 2)
    sites = np.arange(voc.n_sites)
    calls = store.read_sites(sites, None, by_site=True)
    np.testing.assert_array_equal(panel.genotype, calls)
    assert not panel.genotype.flags.writeable
    het = (calls[:, :, 0] != calls[:, :, 1]) & ~store.read_phased(sites, None, by_site=True)
    np.testing.assert_array_equal(panel.unphased, het.sum(1))
    assert panel.unphased.tolist() == [0, 2, 0, 0, 1]  # 0/1 and 1/0 at 400 (its missing call is none)
    assert panel.sample_ids.tolist() == store.sample_ids.tolist() and panel.n_samples == 3

    rng = np.random.default_rng(0)
    g = rng.integers(-2, 2, size=(7, 40, 2)).astype(np.int8)
    phased = rng.random((7, 40)) < 0.5
    got = np.zeros((3, 7), dtype=np.int64)
    clipped = np.maximum(g, -1)
    panel_counts(g, phased, got[0], got[1], got[2])
    np.testing.assert_array_equal(g, clipped)
    np.testing.assert_array_equal(got[:2], allele_counts(clipped))
    np.testing.assert_array_equal(got[2], ((clipped[:, :, 0] != clipped[:, :, 1]) & ~phased).sum(1))


@pytest.mark.parametrize("indexed", [False, True])
def test_several_chromosomes_in_a_panel_vcf_go_through_a_temporary_store(indexed, tmp_path):
    """A panel VCF of two chromosomes is not held in memory (known from a .tbi before reading,
    else at the second chromosome's first record): --ref converts it to a temporary store and
    imputes as from that store."""
    from test_convert import bgzip_index
    from test_whole_genome import two_chromosome_vcf

    from snpbag.inference import refpanel

    if indexed and not (shutil.which("bgzip") and shutil.which("tabix")):
        pytest.skip("needs bgzip and tabix")
    vcf = two_chromosome_vcf(tmp_path, n_samples=12, n_sites=120, missing_rate=0.0)
    lines = vcf.read_text().splitlines()
    targets = tmp_path / "targets.vcf"  # every 4th site of the last two samples
    targets.write_text("\n".join("\t".join(ln.split("\t")[:9] + ln.split("\t")[-2:]) if not ln.startswith("##") else ln
                                 for i, ln in enumerate(lines) if ln.startswith("#") or i % 4 == 0) + "\n")
    if indexed:
        vcf = bgzip_index(vcf)
        with mock.patch.object(refpanel, "VcfReader", side_effect=AssertionError("read in memory")):
            assert refpanel.read_panel(vcf) is None
    else:
        assert refpanel.read_panel(vcf, threads=1) is None
    store = tmp_path / "genome.zarr"
    cli("convert", vcf, store, "--min-maf", 0, "--threads", 1)
    by_vcf, by_store = tmp_path / "vcf.vcf.gz", tmp_path / "store.vcf.gz"
    cli("impute", "--ref", vcf, "--input", targets, "--output", by_vcf)
    cli("impute", "--ref", store, "--input", targets, "--output", by_store)
    assert outputs(by_vcf) == outputs(by_store)
    assert {r.split("\t", 1)[0] for r in records(by_vcf)} == {"21", "22"}
