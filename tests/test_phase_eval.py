"""snpbag.eval.phase scores phased VCFs: switch errors over consecutive truth heterozygotes,
flips apart, excluded heterozygotes by reason, input genotypes changed. Hand-built haplotypes
with known switches and flips, a property over random switch patterns, and a check against a
naive scorer written here without snpbag."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snpbag.errors import SampleError
from snpbag.eval.metrics import phase_errors
from snpbag.eval.phase import genotype_changes, read_calls, score_phasing

HEADER = ("##fileformat=VCFv4.2\n##contig=<ID=22,length=1000000>\n"
          '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
          "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT")


def write_vcf(path: Path, samples: list[str], rows: list[list[str]], positions: list[int] | None = None) -> Path:
    """rows[site][sample] are GT strings; positions default to 100, 200, ..."""
    positions = positions or [100 * (i + 1) for i in range(len(rows))]
    lines = [HEADER + "\t" + "\t".join(samples)]
    lines += [f"22\t{p}\t.\tA\tG\t.\tPASS\t.\tGT\t" + "\t".join(r) for p, r in zip(positions, rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def gts(haps: np.ndarray, sep: str = "|") -> list[list[str]]:
    """(sites, samples, 2) alleles -> GT strings."""
    return [[f"{a}{sep}{b}" for a, b in site] for site in haps.tolist()]


# --- hand-built haplotypes with known switches and flips ---------------------------------------

def test_known_switches_and_flips(tmp_path):
    # sample A: 10 heterozygous sites; the estimate flips site 3 (one flip = 2 switches) and
    # switches for good before site 7 (one switch): 3 switches, 1 flip, 9 opportunities.
    # sample B: homozygous site 0, then 6 heterozygotes in phase, whole haplotypes swapped: no error.
    t = np.zeros((10, 2, 2), np.int8)
    t[:, 0] = [[0, 1], [1, 0], [0, 1], [0, 1], [1, 0], [1, 0], [0, 1], [0, 1], [1, 0], [0, 1]]
    t[:, 1] = [[1, 1], [0, 1], [1, 0], [0, 0], [0, 1], [1, 0], [0, 1], [1, 1], [0, 1], [0, 0]]
    e = t.copy()
    e[3, 0] = e[3, 0, ::-1]
    e[7:, 0] = e[7:, 0, ::-1]
    e[:, 1] = e[:, 1, ::-1]
    truth = write_vcf(tmp_path / "t.vcf", ["A", "B"], gts(t))
    est = write_vcf(tmp_path / "e.vcf", ["A", "B"], gts(e))
    out = score_phasing(truth, est, groups={"A": "P1", "B": "P2"})
    rows = {r["group"]: r for r in out["rows"]}
    assert (rows["P1"]["switches"], rows["P1"]["flips"]) == (3, 1)
    assert rows["P1"]["opportunities"] == 9 and rows["P1"]["switches_outside_flips"] == 1
    assert (rows["P2"]["switches"], rows["P2"]["opportunities"]) == (0, 5)
    assert rows["all"]["ser"] == pytest.approx(3 / 14) and rows["all"]["flips"] == 1
    assert out["per_sample"]["switches"].tolist() == [3, 0]
    assert out["excluded"] == dict.fromkeys(out["excluded"], 0)


def test_flip_runs_pair_greedily_from_the_left():
    # orientation same, flipped, same, flipped, flipped: switches between 0-1, 1-2, 2-3 -> one flip
    # (sites 1) and one switch; a flip at the last site is a lone switch (no right neighbour)
    t = np.array([[0, 1]] * 5, np.int8)[:, None, :]
    e = t.copy()
    e[[1, 3, 4], 0] = [1, 0]
    s, f, o = phase_errors(t, e)
    assert (s.tolist(), f.tolist(), o.tolist()) == ([3], [1], [4])
    e2 = t.copy()
    e2[4, 0] = [1, 0]
    assert [x.tolist() for x in phase_errors(t, e2)] == [[1], [0], [4]]


def test_missing_unphased_absent_and_changed_sites_are_skipped_and_counted(tmp_path):
    # one sample, 7 truth heterozygotes in phase 0|1; the estimate: site 2 missing, site 3
    # unphased, site 4 homozygous (a changed genotype), site 5 absent, site 6 flipped back
    # to 1|0 -> scored sites 0, 1, 6 with one switch
    truth = write_vcf(tmp_path / "t.vcf", ["A"], [["0|1"]] * 7)
    est_rows = [["0|1"], ["0|1"], [".|."], ["0/1"], ["1|1"], ["1|0"]]
    est = write_vcf(tmp_path / "e.vcf", ["A"], est_rows, positions=[100, 200, 300, 400, 500, 700])
    given = write_vcf(tmp_path / "g.vcf", ["A"], [["0/1"]] * 6 + [["./."]])
    out = score_phasing(truth, est, given=given)
    a = out["rows"][0]
    assert (a["scored_hets"], a["opportunities"], a["switches"], a["flips"]) == (3, 2, 1, 0)
    assert out["excluded"] == {"absent": 1, "missing": 1, "unphased": 1, "genotype_differs": 1, "truth_unphased": 0}
    # called input genotypes: 6 (site 7 missing in the input, filled in the estimate);
    # changed: site 3 made missing, site 5 made homozygous, site 6 dropped
    assert out["genotypes"] == {"input_called": 6, "changed": 3, "dropped": 1, "filled": 1, "changed_share": 0.5}


def test_input_sites_define_the_evaluated_set(tmp_path):
    # the phaser saw sites 1, 3, 5 only (an array): the truth's other heterozygotes are not scored
    truth = write_vcf(tmp_path / "t.vcf", ["A"], [["0|1"], ["1|0"], ["0|1"], ["0|1"], ["1|0"], ["0|1"]])
    given = write_vcf(tmp_path / "g.vcf", ["A"], [["0/1"]] * 3, positions=[100, 300, 500])
    est = write_vcf(tmp_path / "e.vcf", ["A"], [["0|1"], ["1|0"], ["1|0"]], positions=[100, 300, 500])
    out = score_phasing(truth, est, given=given)
    a = out["rows"][0]
    assert (a["scored_hets"], a["switches"], a["flips"]) == (3, 2, 1)
    assert out["excluded"]["absent"] == 0 and out["genotypes"]["changed"] == 0


def test_truth_unphased_and_samples_absent(tmp_path):
    truth = write_vcf(tmp_path / "t.vcf", ["A"], [["0|1"], ["0/1"], ["0|1"]])
    est = write_vcf(tmp_path / "e.vcf", ["A"], [["0|1"], ["0|1"], ["0|1"]])
    assert score_phasing(truth, est)["excluded"]["truth_unphased"] == 1
    other = write_vcf(tmp_path / "o.vcf", ["B"], [["0|1"]] * 3)
    with pytest.raises(SampleError, match=r"o.vcf: requested samples absent from the VCF: A"):
        score_phasing(truth, other)


def test_genotype_changes_ignore_allele_order(tmp_path):
    given = read_calls(write_vcf(tmp_path / "g.vcf", ["A", "B"], [["0/1", "1/1"], ["./.", "0/0"]]))
    est = read_calls(write_vcf(tmp_path / "e.vcf", ["A", "B"], [["1|0", "1|1"], ["0|0", "0|1"]]), keys=given.keys)
    assert genotype_changes(given, est) == {"input_called": 3, "changed": 1, "dropped": 0, "filled": 1,
                                            "changed_share": pytest.approx(1 / 3)}


# --- property: a random switch pattern applied to the truth is counted exactly ------------------

@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_switch_pattern_is_counted_exactly(data):
    n = data.draw(st.integers(2, 40), label="heterozygous sites")
    hom = data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="homozygous interleaved")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    first = rng.integers(0, 2, n)
    truth_het = np.stack([first, 1 - first], -1)
    # any switch pattern between consecutive heterozygotes: the estimate's orientation
    pattern = np.array(data.draw(st.lists(st.booleans(), min_size=n - 1, max_size=n - 1)), bool)
    orient = np.concatenate([[0], np.cumsum(pattern) % 2])
    est_het = np.where(orient[:, None] == 1, truth_het[:, ::-1], truth_het)
    # homozygous sites between them must not change anything
    t, e = [], []
    for i in range(n):
        t.append(truth_het[i]), e.append(est_het[i])
        if hom[i]:
            t.append([1, 1]), e.append([1, 1])
    t, e = np.array(t)[:, None, :], np.array(e)[:, None, :]
    s, f, o = phase_errors(t, e)
    assert s[0] == pattern.sum() and o[0] == n - 1
    assert f[0] == _greedy_flips(pattern.tolist()) and s[0] - 2 * f[0] >= 0


@settings(max_examples=60, deadline=None)
@given(st.integers(12, 60), st.data())
def test_isolated_flips_and_switches_are_told_apart(n, data):
    """Flips and switches placed at least two heterozygotes apart: counted exactly, each kind."""
    kinds = data.draw(st.lists(st.sampled_from(["none", "flip", "switch"]), min_size=n // 4, max_size=n // 4))
    orient, flips, switches = np.zeros(n, int), 0, 0
    for k, kind in enumerate(kinds):
        at = 4 * k + 1  # site of a flip, or the first site after a switch; neighbours untouched
        if kind == "flip":
            orient[at] ^= 1
            flips += 1
        elif kind == "switch":
            orient[at:] ^= 1
            switches += 1
    truth = np.tile([0, 1], (n, 1))
    est = np.where(orient[:, None] == 1, truth[:, ::-1], truth)
    s, f, o = phase_errors(truth[:, None], est[:, None])
    assert (f[0], s[0] - 2 * f[0], s[0]) == (flips, switches, 2 * flips + switches)


def _greedy_flips(pattern: list[bool]) -> int:
    i, flips = 0, 0
    while i < len(pattern) - 1:
        if pattern[i] and pattern[i + 1]:
            flips, i = flips + 1, i + 2
        else:
            i += 1
    return flips


# --- a naive scorer, written without snpbag, on random VCFs ---------------------------------------

def naive_score(truth_path: Path, est_path: Path) -> dict[str, tuple[int, int, int]]:
    """Per sample (switches, flips, opportunities): read both VCFs as text, walk the
    heterozygotes the truth phases and the estimate writes phased and heterozygous."""
    def parse(path):
        opener = gzip.open if str(path).endswith(".gz") else open
        samples, sites = [], {}
        with opener(path, "rt") as f:
            for line in f:
                if line.startswith("##"):
                    continue
                cols = line.rstrip("\n").split("\t")
                if line.startswith("#"):
                    samples = cols[9:]
                    continue
                sites[(cols[0], int(cols[1]), cols[3], cols[4])] = dict(zip(samples, cols[9:]))
        return samples, sites

    samples, truth = parse(truth_path)
    _, est = parse(est_path)
    out = {}
    for s in samples:
        orient = []
        for key in sorted(truth, key=lambda k: k[1]):
            tg = truth[key][s]
            if "|" not in tg or tg[0] == tg[2] or "." in tg:
                continue
            eg = est.get(key, {}).get(s, "./.")
            if "|" not in eg or "." in eg or eg[0] == eg[2]:
                continue
            orient.append(tg[0] == eg[0])
        switches, flips, i = 0, 0, 1
        while i < len(orient):
            if orient[i] != orient[i - 1]:
                if i + 1 < len(orient) and orient[i + 1] != orient[i]:
                    switches, flips, i = switches + 2, flips + 1, i + 2
                    continue
                switches += 1
            i += 1
        out[s] = (switches, flips, max(len(orient) - 1, 0))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_a_naive_scorer(tmp_path, seed):
    rng = random.Random(seed)
    samples = [f"S{i}" for i in range(6)]
    truth_rows, est_rows, est_pos = [], [], []
    for site in range(80):
        t_row, e_row = [], []
        for _ in samples:
            a, b = rng.randint(0, 1), rng.randint(0, 1)
            t_row.append(f"{a}|{b}" if rng.random() > 0.05 else f"{a}/{b}")
            r = rng.random()
            e_row.append(".|." if r < 0.05 else f"{a}/{b}" if r < 0.1 else f"{a}|{a}" if r < 0.13
                         else f"{b}|{a}" if r < 0.3 else f"{a}|{b}")
        truth_rows.append(t_row)
        if rng.random() > 0.05:  # some sites absent from the estimate
            est_rows.append(e_row), est_pos.append(100 * (site + 1))
    truth = write_vcf(tmp_path / "t.vcf", samples, truth_rows)
    est = write_vcf(tmp_path / "e.vcf", samples, est_rows, positions=est_pos)
    ours = score_phasing(truth, est)["per_sample"]
    naive = naive_score(truth, est)
    assert [naive[s] for s in samples] == list(zip(ours["switches"].tolist(), ours["flips"].tolist(),
                                                   ours["opportunities"].tolist()))
    assert sum(v[0] for v in naive.values()) > 0  # the random estimate does make errors
