"""tools/bench/scaling.py in smoke form: both designs, two step budgets, on a tiny complete
store; its results JSON has the baselines, a curve point per (design, size, budget), the
fits, and the PNG beside it. Its fitting helpers against hand-made points."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_data import tiny_store

BENCH = Path(__file__).resolve().parents[1] / "tools" / "bench"


@pytest.fixture(scope="module")
def scaling():
    sys.path.insert(0, str(BENCH))  # the tool imports its sibling _results
    spec = importlib.util.spec_from_file_location("bench_scaling", BENCH / "scaling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(BENCH))


def test_tiny_study_writes_its_json_and_png(scaling, tmp_path, monkeypatch, capsys):
    threads = torch.get_num_threads()
    store = tiny_store(tmp_path, n_samples=30, n_sites=160, tile_len=160, missing_rate=0.0)
    out = tmp_path / "scaling.json"
    monkeypatch.setattr(sys, "argv", [
        "scaling.py", "--store", str(store), "--sizes", "0.1M", "--steps", "2", "4", "--seq-len", "32",
        "--batch-size", "2", "--eval-genomes", "3", "--eval-sites", "64", "--states", "4", "--warmup", "1",
        "--json", str(out)])
    try:
        scaling.main()
    finally:
        torch.set_num_threads(threads)
    record = json.loads(out.read_text())
    assert record["command"] == "scaling" and record["info"]["eval_genomes"] == 3
    res = record["results"]
    assert [b["method"] for b in res["baselines"]] == ["allele-frequency baseline", "copying model alone"]
    assert [(c["arch"], c["size"], c["steps"]) for c in res["curves"]] == [
        ("snpbag", "0.1M", 2), ("snpbag", "0.1M", 4), ("paper", "0.1M", 2), ("paper", "0.1M", 4)]
    for c in res["curves"]:
        assert c["train_flops"] == c["flops_per_token"] * c["tokens"] > 0
        for scen in scaling.SCENARIOS:
            assert 0 <= c[f"{scen} concordance"] <= 1 and c[f"{scen} loss"] > 0
    # the binary design has no per-site table: fewer parameters at the same width
    assert res["curves"][2]["params"] < res["curves"][0]["params"]
    assert {(f["arch"], f["size"]) for f in res["fits"]} == {(a, s) for a in ("snpbag", "paper")
                                                            for s in ("0.1M", "frontier")}
    assert out.with_suffix(".png").stat().st_size > 1000
    assert "| method |" in capsys.readouterr().out


def test_power_fit_and_frontier(scaling):
    c = np.array([1e10, 1e11, 1e12])
    a, b = scaling.power_fit(c, 3.0 * c ** -0.2)
    assert a == pytest.approx(3.0) and b == pytest.approx(-0.2)
    assert scaling.power_fit(np.array([1e10, 1e10]), np.array([0.1, 0.2])) is None
    assert scaling.frontier([(3, 0.2), (1, 0.3), (2, 0.35), (4, 0.1)]) == [(1, 0.3), (3, 0.2), (4, 0.1)]
    curves = [{"arch": "x", "size": "s", "train_flops": f, **{f"{s} concordance": 1 - 0.5 * f ** -0.1
                                                           for s in scaling.SCENARIOS},
               **{f"{s} loss": 1.0 for s in scaling.SCENARIOS}} for f in (1e9, 1e10, 1e11)]
    rows = scaling.fits(curves, {"copying model": {s: 0.01 for s in scaling.SCENARIOS}}, 0.3)
    err = next(r for r in rows if r["size"] == "s" and r["scenario"] == "array20" and r["metric"] == "error")
    assert err["exponent"] == pytest.approx(-0.1)
    assert 10 ** err["log10 FLOPs to copying model"] == pytest.approx((0.01 / 0.5) ** (1 / -0.1), rel=1e-6)
    assert err["log10 H100-h to copying model (MFU 0.3, assumed)"] == pytest.approx(
        err["log10 FLOPs to copying model"] - np.log10(scaling.H100_BF16_PEAK * 0.3 * 3600))
    shallow = scaling.fits([dict(r, **{"array20 concordance": 1 - 0.5 * r["train_flops"] ** -1e-4}) for r in curves],
                           {"copying model": {"array20": 1e-3}}, 0.3)
    far = next(r for r in shallow if r["size"] == "s" and r["scenario"] == "array20" and r["metric"] == "error")
    assert far["log10 FLOPs to copying model"] > 1e4  # beyond any float, still reported
    flat = next(r for r in rows if r["metric"] == "loss" and r["size"] == "s")
    assert flat["exponent"] == pytest.approx(0.0, abs=1e-9) and "log10 FLOPs to copying model" not in flat


def test_fix_flags_reach_the_masking_and_the_head(scaling, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(sys, "argv", ["scaling.py", "--batch-size", "4", "--curriculum", "0.6",
                                      "--start-min-rate", "0.2", "--start-max-rate", "0.4", "--site-rank", "3"])
    a = scaling.parse()
    m = scaling.masking_config(a, 50)  # 30 of a run's 50 steps, 4 sequences each
    assert (m.curriculum_sequences, m.start_min_rate, m.start_max_rate) == (120, 0.2, 0.4)
    assert set(a.budgets) == set(scaling.SIZES) and all(b == sorted(b) for b in a.budgets.values())
    vocab = SimpleNamespace(n_sites=50, af=np.full(50, 0.3))
    _, model = scaling.make_model(a, "paper", "0.1M", vocab)
    assert model.head.options == {"site_rank": 3, "site_scale": a.site_scale}
    assert model.head.site_out.weight.shape == (50, 3 * 4)
    a.site_rank = 0
    assert not hasattr(scaling.make_model(a, "paper", "0.1M", vocab)[1].head, "site_out")
