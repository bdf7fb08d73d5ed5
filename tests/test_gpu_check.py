"""tools/gpu_check.py: what can be computed without a GPU (arguments, FLOPs and MFU, the
report, failure and skip paths, the train check's config) here; the checks themselves in
the `gpu`-marked tests."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import requires_cuda

TOOL = Path(__file__).resolve().parents[1] / "tools" / "gpu_check.py"


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_check", None)


def test_arguments(gc, capsys):
    a = gc.parse_args([])
    assert (a.out, a.only, a.preset, a.tokens, a.steps) == (Path("gpu_check"), list(gc.CHECKS), ["base", "snpbag_paper"], 81_920, 200)
    assert gc.parse_args(["--only", "tests", "backends", "--steps", "40"]).only == ["tests", "backends"]
    for bad, message in ((["--steps", "15"], "--steps 15: must be an even number"),
                         (["--tokens", "0"], "--tokens 0: must be a positive"),
                         (["--only", "speed"], "invalid choice: 'speed'")):
        with pytest.raises(SystemExit):
            gc.parse_args(bad)
        assert message in capsys.readouterr().err


def test_flops_and_mfu(gc):
    from snpbag.config import preset
    from snpbag.model.flops import model_flops_per_token

    cfg = preset("base", n_sites=81_920)
    d, n, w = cfg.d_model, cfg.n_layers, cfg.window
    assert model_flops_per_token(cfg) == 6 * n * (4 * d * d + 2 * d * cfg.d_ff) + 12 * n * d * w
    assert gc.peak_flops("NVIDIA H100 80GB HBM3") == 989e12 and gc.peak_flops("NVIDIA T4") is None
    assert gc.mfu(1e5, 2e9, 1e15) == pytest.approx(0.2) and gc.mfu(1e5, 2e9, None) is None


def _results(gc):
    return [gc.CheckResult("backends", True, 3.0, {"rows": [{"backend": "flex", "max_abs_diff": 1.5e-4}]}),
            gc.CheckResult("train", False, 9.0, {"loss_first": 0.7}, "AssertionError: loss did not fall")]


def test_report_json_and_markdown(gc, tmp_path):
    js, md = gc.write_report(_results(gc), tmp_path / "out", {"gpu": "none", "commit": "abc"})
    data = json.loads(js.read_text())
    assert data["ok"] is False and [r["name"] for r in data["results"]] == ["backends", "train"]
    assert data["results"][1]["error"] == "AssertionError: loss did not fall"
    text = md.read_text()
    assert "| train | FAILED | 9 | AssertionError: loss did not fall |" in text
    assert "| flex | 0.00015 |" in text and "- loss_first: 0.7" in text


def test_a_raising_check_fails_and_the_others_still_run(gc, tmp_path):
    def boom(args):
        raise RuntimeError("CUDA error: an illegal memory access\nmore")

    results = gc.run_checks({"a": boom, "b": lambda args: {"x": 1.0}, "c": lambda args: {"ok": False}}, None)
    assert [(r.name, r.ok) for r in results] == [("a", False), ("b", True), ("c", False)]
    assert results[0].error == "RuntimeError: CUDA error: an illegal memory access"


def test_main_exits_nonzero_naming_the_failed_check(gc, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gc, "environment", lambda: {"gpu": "fake"})
    monkeypatch.setattr(gc, "CHECK_FUNCTIONS", {**gc.CHECK_FUNCTIONS, "backends": lambda a: {"ok": False},
                                                "tests": lambda a: {}})
    assert gc.main(["--out", str(tmp_path), "--only", "backends", "tests"]) == 1
    assert "gpu_check: FAILED: backends" in capsys.readouterr().err
    assert (tmp_path / "gpu_check.md").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the skip path is for machines without CUDA")
def test_without_cuda_it_skips_with_one_line(gc, tmp_path, capsys):
    assert gc.main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("gpu_check: skipped: no CUDA device")
    assert not (tmp_path / "gpu_check.json").exists()


def test_train_check_config_composes(gc, tmp_path):
    """The train check's overrides compose into a single-GPU bf16 run of the small preset."""
    from snpbag.train.run import compose_config, to_train_config

    cfg = to_train_config(compose_config(gc.train_overrides(tmp_path / "cohort.zarr", steps=200)))
    assert (cfg.model.name, cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.strategy) == (
        "small", "gpu", 1, "auto")
    assert cfg.trainer.precision == "bf16-mixed" and cfg.callbacks.checkpoint.every_n_steps == 100


@requires_cuda
def test_gpu_check_backends_on_cuda(gc, tmp_path):
    assert gc.main(["--out", str(tmp_path), "--only", "backends"]) == 0
    rows = json.loads((tmp_path / "gpu_check.json").read_text())["results"][0]["details"]["rows"]
    assert {r["backend"] for r in rows} >= {"flex", "local"}


@requires_cuda
@pytest.mark.slow
def test_gpu_check_everything_but_the_test_suite(gc, tmp_path):
    assert gc.main(["--out", str(tmp_path), "--only", "backends", "throughput", "train", "inference",
                    "--tokens", "8192", "--steps", "40"]) == 0
