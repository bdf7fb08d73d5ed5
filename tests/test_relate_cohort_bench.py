"""tools/bench/relate_cohort.py without running anything: all-pairs truth and calls from the files
a simulation, `snpbag king` and `snpbag relate --min-kinship` write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from snpbag.eval.relate import UNRELATED
from conftest import bench_module

IDS = ["F1_P", "F1_M", "F1_A1", "F2_P"]


@pytest.fixture
def bench(monkeypatch):
    return bench_module(monkeypatch, "relate_cohort")


def _kin0(path: Path, rows) -> Path:
    path.write_text("#IID1\tIID2\tNSNP\tHETHET\tIBS0\tKINSHIP\n"
                    + "".join(f"{a}\t{b}\t100\t0.1\t0.01\t{k}\n" for a, b, k in rows))
    return path


def test_all_pairs_truth_and_calls(bench, tmp_path):
    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "pedigree_pairs.tsv").write_text(
        "id1\tid2\tdegree\trelationship\texpected_kinship\tibd_kinship\n"
        "F1_P\tF1_M\tNA\tunrelated\t0\t0.000000\n"
        "F1_P\tF1_A1\t1\tparent-offspring\t0.25\t0.250000\n"
        "F1_A1\tF1_M\t1\tparent-offspring\t0.25\t0.250000\n")
    # plink2's order: (i, j) with j < i
    kin0 = _kin0(tmp_path / "king.kin0", [("F1_M", "F1_P", -0.01), ("F1_A1", "F1_P", 0.26),
                                           ("F1_A1", "F1_M", 0.24), ("F2_P", "F1_P", 0.0),
                                           ("F2_P", "F1_M", 0.05), ("F2_P", "F1_A1", -0.02)])
    keys, kin = bench.read_kin0(kin0, IDS)
    assert list(keys) == sorted(keys) and len(keys) == 6
    assert kin[list(keys).index(bench.pair_keys(2, 0, 4))] == 0.26
    truth, realised = bench.cohort_truth(sim, IDS, keys)
    by_pair = {(int(k) // 4, int(k) % 4): (int(t), float(r)) for k, t, r in zip(keys, truth, realised)}
    assert by_pair[(2, 0)] == (1, 0.25) and by_pair[(2, 1)] == (1, 0.25)
    assert by_pair[(1, 0)] == (UNRELATED, 0.0) and by_pair[(3, 1)] == (UNRELATED, 0.0)  # across families
    rel = tmp_path / "x.rel"  # scored pairs only, ids in either order
    rel.write_text("#IID1\tIID2\tDEGREE\tKINSHIP\nF1_P\tF1_A1\t1\t0.26\nF2_P\tF1_M\t4\t0.05\n")
    called = bench.called_in_cohort(rel, IDS, keys)
    got = {(int(k) // 4, int(k) % 4): int(c) for k, c in zip(keys, called)}
    assert got == {(1, 0): UNRELATED, (2, 0): 1, (2, 1): UNRELATED, (3, 0): UNRELATED, (3, 1): 4,
                   (3, 2): UNRELATED}


def test_truth_pair_missing_from_the_table_is_refused(bench, tmp_path):
    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "pedigree_pairs.tsv").write_text("id1\tid2\tdegree\trelationship\texpected_kinship\tibd_kinship\n"
                                             "F1_P\tF2_P\tNA\tunrelated\t0\t0.0\n")
    keys, _ = bench.read_kin0(_kin0(tmp_path / "k.kin0", [("F1_M", "F1_P", 0.0)]), IDS)
    with pytest.raises(SystemExit, match="truth pairs missing from the kinship table"):
        bench.cohort_truth(sim, IDS, keys)


def test_runs_and_the_calls_a_prefilter_drops(bench):
    assert bench._run_args("segments:3") == ("segments 3 cM", ["--prefilter", "segments", "--seed-cm", "3"])
    assert bench._run_args("king:0.0442")[1] == ["--min-kinship", "0.0442"]
    with pytest.raises(SystemExit, match="use segments:S, king:X or none"):
        bench._run_args("ersa")
    truth = np.array([1, 5, 5, UNRELATED, UNRELATED])
    called = np.array([1, 6, UNRELATED, 7, UNRELATED])  # all pairs: a degree-5 pair missed, an unrelated one called 7
    kept = {"a": np.array([True, False, True, False, True]), "b": np.ones(5, bool)}
    rows = {r["degree"]: r for r in bench.calls_lost(called, truth, kept)}
    assert rows["1"] == {"degree": "1", "called_related": 1, "dropped_a": 0, "dropped_b": 0}
    assert rows["5"] == {"degree": "5", "called_related": 1, "dropped_a": 1, "dropped_b": 0}
    assert rows["UN"] == {"degree": "UN", "called_related": 1, "dropped_a": 1, "dropped_b": 0}


def test_a_given_model_simulates_only_the_cohort_with_its_demography(bench, tmp_path, monkeypatch):
    import argparse

    from snpbag.simulate import cohort

    made = []
    monkeypatch.setattr(cohort, "simulate", lambda d, **kw: (made.append((Path(d).name, kw)),
                                                             Path(d).mkdir(parents=True),
                                                             (Path(d) / "simulation.json").write_text("{}")))
    a = argparse.Namespace(sim=None, model=tmp_path / "model", reuse=False, workdir=tmp_path / "w", families=2,
                           train_families=6, seed=5, length=1000, max_degree=12, array_fraction=0.2,
                           demography="growth")
    sim, model, seconds = bench._simulated_inputs(a)
    assert (sim, model) == (tmp_path / "w" / "sim" / "cohort", tmp_path / "model")
    assert [(name, kw["pedigree"], kw["seed"], kw["demography"]) for name, kw in made] == [("cohort", 2, 6, "growth")]
    assert set(seconds) == {"simulate_cohort"}
