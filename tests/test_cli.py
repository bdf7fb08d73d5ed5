"""The CLI is thin: every command calls one library function with the parsed options
(checked with mock.patch(...).assert_called_once_with), and a SnpbagError becomes one
line on stderr with exit status 2."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from unittest import mock

import click
import pytest
from click.testing import CliRunner

from snpbag.cli import main
from snpbag.errors import CheckpointError, ConfigError, InputError


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _target(monkeypatch, module: str, func: str) -> str:
    """``module.func`` for mock.patch; a stub module stands in for one not written yet
    (snpbag.inference.impute, snpbag.demo), so the CLI wiring is still checked."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        stub = types.ModuleType(module)
        setattr(stub, func, lambda *a, **k: None)
        monkeypatch.setitem(sys.modules, module, stub)
        parent, _, child = module.rpartition(".")
        monkeypatch.setattr(importlib.import_module(parent), child, stub, raising=False)
    return f"{module}.{func}"


def _invoke(runner, args):
    result = runner.invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_simulate(runner, monkeypatch):
    with mock.patch(_target(monkeypatch, "snpbag.simulate.cohort", "simulate")) as f:
        _invoke(runner, ["simulate", "out", "--samples-per-pop", "5", "--length", "2000", "--chrom", "chr20",
                         "--seed", "3", "--array-fraction", "0.2", "--split-targets", "4", "--demography", "finescale"])
    f.assert_called_once_with("out", samples_per_pop=5, length=2000, chrom="chr20", seed=3, array_fraction=0.2,
                              split_targets=4, pedigree=None, chromosomes=None, demography="finescale",
                              max_degree=None, genotype_error=None, recombination="uniform", founder_map=None)
    with mock.patch(_target(monkeypatch, "snpbag.simulate.cohort", "simulate")) as f:
        _invoke(runner, ["simulate", "ped", "--pedigree", "3", "--chromosomes", "2", "--max-degree", "12",
                         "--genotype-error", "0.005", "--founder-map", "physical"])
    f.assert_called_once_with("ped", samples_per_pop=100, length=1_000_000, chrom="22", seed=1, array_fraction=None,
                              split_targets=None, pedigree=3, chromosomes=2, demography="ooa", max_degree=12,
                              genotype_error=0.005, recombination="uniform", founder_map="physical")


def test_convert(runner, monkeypatch):
    with mock.patch(_target(monkeypatch, "snpbag.store.convert", "convert")) as f:
        _invoke(runner, ["convert", "in.vcf.gz", "out.zarr", "--region", "22:1-1000", "--samples", "s.txt",
                         "--min-maf", "0.05", "--tile-len", "2048", "--threads", "2"])
    f.assert_called_once_with("in.vcf.gz", "out.zarr", region="22:1-1000", samples="s.txt", min_maf=0.05,
                              tile_len=2048, threads=2)
    with mock.patch(_target(monkeypatch, "snpbag.store.convert", "convert")) as f:
        _invoke(runner, ["convert", "in.bcf", "out.zarr"])
    f.assert_called_once_with("in.bcf", "out.zarr", region=None, samples=None, min_maf=0.01, tile_len=81920,
                              threads=None)
    with mock.patch(_target(monkeypatch, "snpbag.store.convert", "convert")) as f:
        result = runner.invoke(main, ["convert", "in.vcf.gz", "out.zarr", "--contig-len", "2048"])
    assert result.exit_code == 2 and "--contig-len was renamed --tile-len; use --tile-len" in result.output
    f.assert_not_called()


def test_king(runner, monkeypatch):
    with mock.patch(_target(monkeypatch, "snpbag.kinship.king", "king_part")) as f:
        _invoke(runner, ["king", "cohort.zarr", "--out", "pre", "--estimator", "within", "--min-kinship", "0.0442",
                         "--counts", "--matrix", "--block-size", "512", "--device", "cuda", "--threads", "3",
                         "--po-ibs0", "auto", "--kernel", "gemm"])
    f.assert_called_once_with("cohort.zarr", out="pre", part=1, n_parts=1, estimator="within", min_kinship=0.0442,
                              counts=True, matrix=True, block_size=512, device="cuda", threads=3, po_ibs0="auto",
                              kernel="gemm")
    with mock.patch(_target(monkeypatch, "snpbag.kinship.king", "king_part")) as f:
        _invoke(runner, ["king", "in.vcf.gz", "--out", "pre"])
    f.assert_called_once_with("in.vcf.gz", out="pre", part=1, n_parts=1, estimator="between", min_kinship=None,
                              counts=False, matrix=False, block_size=2048, device="cpu", threads=None, po_ibs0=0.008,
                              kernel="auto")
    with mock.patch(_target(monkeypatch, "snpbag.kinship.king", "king_part")) as f:
        _invoke(runner, ["king", "in.vcf.gz", "--out", "pre", "--po-ibs0", "0.002", "--parallel", "2", "5"])
    assert f.call_args.kwargs["po_ibs0"] == 0.002
    assert (f.call_args.kwargs["part"], f.call_args.kwargs["n_parts"]) == (2, 5)
    result = runner.invoke(main, ["king", "in.vcf.gz", "--out", "pre", "--po-ibs0", "often"])
    assert result.exit_code == 2 and "neither a number nor 'auto'" in result.output


def test_train_passes_overrides_verbatim(runner, monkeypatch):
    with mock.patch(_target(monkeypatch, "snpbag.train.run", "train")) as f:
        _invoke(runner, ["train", "experiment=pretrain_demo", "trainer.max_steps=200", "model=tiny",
                         "+task.head.options.x=1", "resume=true"])
    f.assert_called_once_with(["experiment=pretrain_demo", "trainer.max_steps=200", "model=tiny",
                               "+task.head.options.x=1", "resume=true"])
    with mock.patch(_target(monkeypatch, "snpbag.train.run", "train")) as f:
        _invoke(runner, ["train"])
    f.assert_called_once_with([])


def test_export(runner, monkeypatch):
    with mock.patch(_target(monkeypatch, "snpbag.train.export", "export")) as f:
        _invoke(runner, ["export", "runs/pretrain_demo", "models/demo"])
    f.assert_called_once_with("runs/pretrain_demo", "models/demo")


def test_info_prints_the_description(runner, monkeypatch):
    with mock.patch(_target(monkeypatch, "snpbag.api", "info"), return_value="Model\npreset tiny\n") as f:
        result = _invoke(runner, ["info", "models/demo"])
    f.assert_called_once_with("models/demo")
    assert result.output == "Model\npreset tiny\n\n"


def test_impute(runner, monkeypatch):
    summary = types.SimpleNamespace(site_report="sites: 10 typed", write_report="wrote o.vcf.gz", n_samples=4,
                                    seconds=2.0, samples_per_second=2.0)
    with mock.patch(_target(monkeypatch, "snpbag.inference.impute", "impute"), return_value=summary) as f:
        result = _invoke(runner, ["impute", "--model", "m", "--input", "a.vcf.gz", "--output", "o.vcf.gz",
                                  "--samples", "s.txt", "--region", "22", "--batch-size", "4", "--device", "cuda",
                                  "--min-r2", "0.3", "--format", "GT,DS", "--replace-typed", "--report", "rep"])
    f.assert_called_once_with(model="m", ref=None, input="a.vcf.gz", output="o.vcf.gz", genetic_map=None,
                              state_selection=None, copying_only=False, split_chrom=False, samples="s.txt", region="22",
                              batch_size=4, device="cuda", min_r2=0.3, fmt="GT,DS", replace_typed=True,
                              report_dir="rep")
    assert result.output == "sites: 10 typed\nwrote o.vcf.gz\n4 samples in 2.0 s (2.00 samples/s)\n"
    with mock.patch(_target(monkeypatch, "snpbag.inference.impute", "impute"), return_value=summary) as f:
        _invoke(runner, ["impute", "--model", "m", "--input", "a.vcf.gz", "--output", "o.vcf.gz"])
    f.assert_called_once_with(model="m", ref=None, input="a.vcf.gz", output="o.vcf.gz", genetic_map=None,
                              state_selection=None, copying_only=False, split_chrom=False, samples=None, region=None,
                              batch_size=16, device="cpu", min_r2=None, fmt="GT,DS,GP", replace_typed=False,
                              report_dir=None)
    with mock.patch(_target(monkeypatch, "snpbag.inference.impute", "impute"), return_value=summary) as f:
        _invoke(runner, ["impute", "--ref", "p.vcf.gz", "--map", "g.map", "--input", "a.vcf.gz",
                         "--output", "o.vcf.gz", "--split-chrom", "--state-selection", "composite"])
    f.assert_called_once_with(model=None, ref="p.vcf.gz", input="a.vcf.gz", output="o.vcf.gz", genetic_map="g.map",
                              state_selection="composite", copying_only=False, split_chrom=True, samples=None, region=None,
                              batch_size=16, device="cpu", min_r2=None, fmt="GT,DS,GP", replace_typed=False,
                              report_dir=None)


def test_phase(runner, monkeypatch):
    summary = types.SimpleNamespace(report="phased 10 of 12 biallelic SNPs", n_samples=4, seconds=2.0,
                                    samples_per_second=2.0)
    with mock.patch(_target(monkeypatch, "snpbag.inference.phase", "phase"), return_value=summary) as f:
        result = _invoke(runner, ["phase", "--input", "u.vcf.gz", "--output", "p.vcf.gz", "--ref", "r.vcf.gz",
                                  "--map", "g.map", "--samples", "s.txt", "--region", "22", "--threads", "3",
                                  "--seed", "7", "--rephase", "--phasing-model", "pair", "--state-selection", "conflicts",
                                  "--report", "rep", "--batch-size", "50"])
    f.assert_called_once_with(input="u.vcf.gz", output="p.vcf.gz", ref="r.vcf.gz", model=None, copying_only=False,
                              genetic_map="g.map",
                              samples="s.txt", region="22", threads=3, device="cpu", seed=7, rephase=True,
                              phasing_model="pair", state_selection="conflicts", report_dir="rep", sample_batch=50)
    assert result.output == "phased 10 of 12 biallelic SNPs\n4 samples in 2.0 s (2.00 samples/s)\n"
    with mock.patch(_target(monkeypatch, "snpbag.inference.phase", "phase"), return_value=summary) as f:
        _invoke(runner, ["phase", "--input", "u.vcf.gz", "--output", "p.vcf.gz", "--model", "m", "--copying-only"])
    f.assert_called_once_with(input="u.vcf.gz", output="p.vcf.gz", ref=None, model="m", copying_only=True,
                              genetic_map=None,
                              samples=None, region=None, threads=None, device="cpu", seed=0, rephase=False,
                              phasing_model=None, state_selection=None, report_dir=None, sample_batch=2000)


def test_demo(runner, monkeypatch):
    with mock.patch(_target(monkeypatch, "snpbag.demo", "demo")) as f:
        _invoke(runner, ["demo", "--out", "d"])
    f.assert_called_once_with(Path("d"), echo=click.echo)
    with mock.patch(_target(monkeypatch, "snpbag.demo", "demo")) as f:
        _invoke(runner, ["demo"])
    f.assert_called_once_with(Path("demo_out"), echo=click.echo)


@pytest.mark.parametrize("args, module, func, error", [
    (["convert", "x.vcf", "y.zarr"], "snpbag.store.convert", "convert", InputError("x.vcf: not sorted; sort it")),
    (["train", "data.bach_size=1"], "snpbag.train.run", "train", ConfigError("configs: Key 'bach_size' not in 'DataConfig'")),
    (["export", "r", "m"], "snpbag.train.export", "export", CheckpointError("r: no checkpoints")),
    (["info", "m"], "snpbag.api", "info", CheckpointError("m: not a model directory")),
])
def test_errors_are_one_line_with_exit_2(runner, monkeypatch, args, module, func, error):
    with mock.patch(_target(monkeypatch, module, func), side_effect=error):
        result = runner.invoke(main, args)
    assert result.exit_code == 2
    assert result.stderr == f"snpbag: error: {error}\n"
    assert result.stdout == ""


def test_real_errors_reach_the_user(runner, tmp_path):
    """Unmocked: library errors from the real functions come out as one line, exit 2."""
    result = runner.invoke(main, ["train", "data.bach_size=3"])
    assert result.exit_code == 2
    assert result.stderr.startswith("snpbag: error: ") and result.stderr.count("\n") == 1
    assert "Key 'bach_size' not in 'DataConfig'" in result.stderr
    result = runner.invoke(main, ["info", str(tmp_path)])
    assert result.exit_code == 2 and "not a model directory" in result.stderr
    result = runner.invoke(main, ["export", str(tmp_path / "none"), str(tmp_path / "m")])
    assert result.exit_code == 2 and "no such checkpoint file or run directory" in result.stderr


def test_relate(runner, monkeypatch):
    with mock.patch(_target(monkeypatch, "snpbag.inference.relate", "relate")) as f:
        _invoke(runner, ["relate", "--model", "m", "--input", "c.vcf.gz", "--out", "p", "--max-degree", "3",
                         "--min-kinship", "0.02", "--device", "cpu"])
    f.assert_called_once_with(model="m", input="c.vcf.gz", out="p", pairs=None, min_kinship=0.02, max_degree=3,
                              threads=None, device="cpu", embeddings=None, genetic_map=None, populations=None,
                              segments="auto", prefilter="auto", seed_cm=2.0, relatives=True)
    with mock.patch(_target(monkeypatch, "snpbag.inference.relate", "relate")) as f:
        _invoke(runner, ["relate", "--model", "m", "--input", "c.vcf.gz", "--out", "p", "--genetic-map", "g.map",
                         "--populations", "s.tsv", "--detector", "ibs0", "--prefilter", "segments", "--seed-cm", "3",
                         "--no-relatives"])
    assert f.call_args.kwargs["relatives"] is False
    assert f.call_args.kwargs["genetic_map"] == "g.map" and f.call_args.kwargs["populations"] == "s.tsv"
    assert f.call_args.kwargs["segments"] == "ibs0"
    assert f.call_args.kwargs["prefilter"] == "segments" and f.call_args.kwargs["seed_cm"] == 3.0
    with mock.patch(_target(monkeypatch, "snpbag.inference.relate", "relate")) as f:
        _invoke(runner, ["relate", "--model", "m", "--input", "c.vcf.gz", "--embeddings", "e.zarr", "--out", "p"])
    assert f.call_args.kwargs["embeddings"] == "e.zarr" and f.call_args.kwargs["input"] == "c.vcf.gz"
    with mock.patch(_target(monkeypatch, "snpbag.inference.relate", "train")) as f:
        _invoke(runner, ["relate", "train", "--pedigree", "a", "--pedigree", "b", "--out", "m", "--max-degree", "9"])
    assert f.call_args.kwargs["pedigree"] == ["a", "b"] and f.call_args.kwargs["max_degree"] == 9
    assert f.call_args.kwargs["patch_sites"] == 256 and f.call_args.kwargs["fit"].epochs == 40
    assert f.call_args.kwargs["options"] == {"inputs": "counts"} and f.call_args.kwargs["embeddings"] is None
    assert f.call_args.kwargs["segments"] is True and f.call_args.kwargs["specificity"] == 0.995
    with mock.patch(_target(monkeypatch, "snpbag.inference.relate", "train")) as f:
        _invoke(runner, ["relate", "train", "--pedigree", "a", "--out", "m", "--no-segments", "--specificity", "0.99"])
    assert f.call_args.kwargs["segments"] is False and f.call_args.kwargs["specificity"] == 0.99
    with mock.patch(_target(monkeypatch, "snpbag.inference.relate", "train")) as f:
        _invoke(runner, ["relate", "train", "--pedigree", "a", "--out", "m", "--inputs", "both", "--embeddings", "e"])
    assert f.call_args.kwargs["options"] == {"inputs": "both"} and f.call_args.kwargs["embeddings"] == "e"
    r = runner.invoke(main, ["relate", "--model", "m"])
    assert r.exit_code != 0 and "needs --model, --input and --out" in r.output
