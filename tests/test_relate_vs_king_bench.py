"""tools/bench/relate_vs_king.py's error settings on reused simulations: genotype errors applied to a VCF afresh."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from snpbag.io.bgzf import index_vcf, write_bgzf
from conftest import bench_module



@pytest.fixture
def bench(monkeypatch):
    return bench_module(monkeypatch, "relate_vs_king")


def _sim(tmp_path: Path, sites: int = 5000, samples: int = 12) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(3)
    h = rng.integers(0, 2, (sites, samples, 2))
    head = ("##fileformat=VCFv4.2\n##contig=<ID=1,length=1000000>\n"
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"S{k}" for k in range(samples)) + "\n")
    body = "".join(f"1\t{10 * (v + 1)}\t.\tA\tC\t.\tPASS\t.\tGT\t" + "\t".join(f"{a}|{b}" for a, b in h[v]) + "\n"
                   for v in range(sites))
    sim = tmp_path / "sim"
    sim.mkdir()
    index_vcf(write_bgzf([head, body], sim / "pedigree_array.vcf.gz"))
    (sim / "samples.tsv").write_text("sample\tpopulation\n")
    return sim, h


def _calls(path: Path) -> tuple[list[str], np.ndarray]:
    lines = gzip.open(path, "rt").read().splitlines()
    body = [x.split("\t") for x in lines if not x.startswith("#")]
    return [x for x in lines if x.startswith("#")] + [" ".join(b[:9]) for b in body], \
        np.array([[[int(c[0]), int(c[2])] for c in b[9:]] for b in body])


def test_noisy_copy_changes_genotypes_at_the_rate_and_nothing_else(bench, tmp_path):
    sim, h = _sim(tmp_path)
    out = bench._noisy_copy(sim, tmp_path / "noisy", ["pedigree_array.vcf.gz"], 0.05, seed=1)
    assert (out / "samples.tsv").resolve() == (sim / "samples.tsv").resolve()
    assert (out / "pedigree_array.vcf.gz.tbi").exists() and not (out / "pedigree_array.vcf.gz").is_symlink()
    fixed_a, a = _calls(sim / "pedigree_array.vcf.gz")
    fixed_b, b = _calls(out / "pedigree_array.vcf.gz")
    assert fixed_a == fixed_b and np.array_equal(a, h)  # header, sites, alleles: unchanged
    changed = (a.sum(2) != b.sum(2))
    assert 0.04 < changed.mean() < 0.06  # every error changes the genotype, not only its phase
    assert np.array_equal(a[~changed], b[~changed])  # calls without an error keep their phase too
    same = bench._noisy_copy(sim, tmp_path / "clean", ["pedigree_array.vcf.gz"], 0.0, seed=1)
    assert np.array_equal(_calls(same / "pedigree_array.vcf.gz")[1], a)


def test_noisy_copy_refuses_unphased_calls(bench, tmp_path):
    sim, _ = _sim(tmp_path, sites=3, samples=2)
    text = gzip.open(sim / "pedigree_array.vcf.gz", "rt").read().replace("|", "/")
    (sim / "pedigree_array.vcf.gz").unlink()
    write_bgzf([text], sim / "pedigree_array.vcf.gz")
    with pytest.raises(ValueError, match="not phased biallelic calls"):
        bench._noisy_copy(sim, tmp_path / "noisy", ["pedigree_array.vcf.gz"], 0.05, seed=1)


def test_sampled_cohorts_score_own_calls_and_the_relatives_bounds(bench):
    """The whole family kept: true calls to degree 7 bounded by the relatives name every degree 8-12 pair; own
    calls name none; half the family kept (fixed draws): fewer pairs, and the parents left out leave some
    degree-8 pairs unbounded."""
    import itertools
    import math

    from snpbag.eval.relate import UNRELATED
    from snpbag.simulate import pedigree as ped

    members = ped.build_families(1, populations=["X"], rng=np.random.default_rng(0), max_degree=12)
    phi = ped.expected_kinship_matrix(members)
    pairs = np.array(list(itertools.combinations(range(len(members)), 2)))
    truth = np.array([round(-math.log2(phi[i, j])) - 1 if phi[i, j] > 0 else UNRELATED for i, j in pairs])
    po = np.array([members[j].father == members[i].id or members[j].mother == members[i].id for i, j in pairs])
    assert po.sum() == 2 * sum(m.father is not None for m in members)  # parents listed before children
    own = {"PAIR_DEGREE": np.where(truth <= 7, truth, UNRELATED), "PO": po}
    rows = {r["degree"]: r for r in bench._sampled(truth, own, pairs, [1.0, 0.5], 2, 12, 0)}
    for d in ("8", "9", "10", "11", "12"):
        assert rows[d]["own_within1_1"] == 0 and rows[d]["relatives_within1_1"] == 1
        assert rows[d].get("pairs_0.5", 0) < rows[d]["pairs_1"]
    assert 0 < rows["8"]["relatives_within1_0.5"] < 1 and rows["8"]["own_within1_0.5"] == 0  # some parents left out
    assert rows["UN"]["own_within1_1"] == rows["UN"]["relatives_within1_1"] == 1
