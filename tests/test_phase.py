"""``snpbag phase`` and the phasing engine (snpbag.retrieval.phasing).

The data: founder mosaics (tests/tiny_data.py's scheme, a crude copying process), so a
sample's haplotypes are pieces of a few founders that the panel or the rest of the cohort
also carries. Phasing may reorder a genotype's two alleles and fill a missing call,
nothing else: that is checked on hypothesis-generated inputs; accuracy is checked as a
switch error against the simulated truth.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import requires_tool
from snpbag.errors import InputError, SampleError, SiteMismatchError
from snpbag.eval.metrics import phase_errors
from snpbag.inference.phase import phase
from snpbag.retrieval.phasing import PhaseOptions, phase_cohort, phase_with_panel


def switch_errors(truth: np.ndarray, est: np.ndarray) -> tuple[int, int]:
    """(switches, opportunities) of (n, L, 2) haplotypes, summed over samples
    (:func:`snpbag.eval.metrics.phase_errors`, which takes sites first)."""
    sw, _, opp = phase_errors(np.swapaxes(truth, 0, 1), np.swapaxes(est, 0, 1))
    return int(sw.sum()), int(opp.sum())


def mosaics(n_haps: int, n_sites: int, *, seed: int, n_founders: int = 8, switch_rate: float = 0.01) -> np.ndarray:
    """(n_haps, n_sites) alleles: mosaics of founder haplotypes with a little noise."""
    rng = np.random.default_rng(seed)
    founders = (rng.random((n_founders, n_sites)) < rng.uniform(0.1, 0.5, n_sites)).astype(np.int8)
    src = rng.integers(n_founders, size=n_haps)
    out = np.empty((n_haps, n_sites), np.int8)
    for j in range(n_sites):
        jump = rng.random(n_haps) < switch_rate
        src = np.where(jump, rng.integers(n_founders, size=n_haps), src)
        out[:, j] = founders[src, j]
    return np.where(rng.random(out.shape) < 0.002, 1 - out, out).astype(np.int8)


FAST = PhaseOptions(states=24, block=32, margin=16, iterations=6, model="pair")


def _panel(haps: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(haps.T)  # site-major (L, H)


def _unphase(g: np.ndarray) -> np.ndarray:
    return np.sort(g, axis=-1)


def test_exact_pair_of_panel_haplotypes_is_phased_without_switches():
    h = mosaics(60, 400, seed=1, n_founders=60, switch_rate=0.0)  # unrelated haplotypes: one exact answer
    panel = _panel(h)
    truth = np.stack([h[10], h[37]], -1)[None]  # (1, L, 2)
    res = phase_with_panel(panel, np.arange(400) * 1e-4, _unphase(truth), bounds=[(0, 400)], options=FAST)
    sw, pairs = switch_errors(truth, res.haplotypes)
    assert pairs > 50 and sw == 0
    het = truth[0, :, 0] != truth[0, :, 1]
    pp = res.pp[0, het]
    assert np.isnan(pp[0]) and (pp[1:] > 0.98).all() and np.median(pp[1:]) > 0.998
    assert np.isnan(res.pp[0, ~het]).all()


def naive_relative_phase(panel: np.ndarray, d: np.ndarray, rho: np.ndarray, eps: float) -> np.ndarray:
    """P(ALT at each heterozygote lies on the copy that carries the previous heterozygote's
    ALT | all genotypes) under the pair-copying model over all H panel haplotypes, with
    dense matrices: each copy moves by M = (1 - rho) I + rho/H, so the pair moves by
    Mᵀ P M. The slow reference of the phasing kernel's conditioned forward."""
    L, H = panel.shape
    E = [np.where(panel[s][:, None] + panel[s][None, :] == d[s], 1 - eps, eps / 2) for s in range(L)]
    M = [(1 - r) * np.eye(H) + r / H for r in rho]  # M[s]: from site s - 1 to s
    alpha, beta = np.empty((L, H, H)), np.ones((L, H, H))
    alpha[0] = E[0] / E[0].sum()
    for s in range(1, L):
        alpha[s] = E[s] * (M[s].T @ alpha[s - 1] @ M[s])
        alpha[s] /= alpha[s].sum()
    for s in range(L - 2, -1, -1):
        beta[s] = M[s + 1] @ (beta[s + 1] * E[s + 1]) @ M[s + 1].T
        beta[s] /= beta[s].sum()
    het = np.flatnonzero(d == 1)
    out = np.full(L, np.nan)
    for r, s in zip(het[:-1], het[1:]):
        gamma = alpha[r] * np.outer(panel[r] == 1, panel[r] == 0)  # r's ALT on copy 1
        for u in range(r + 1, s + 1):
            gamma = E[u] * (M[u].T @ gamma @ M[u])
            gamma /= gamma.sum()
        w = gamma * beta[s]
        same, opp = w[np.outer(panel[s] == 1, panel[s] == 0)].sum(), w[np.outer(panel[s] == 0, panel[s] == 1)].sum()
        out[s] = same / (same + opp)
    return out


def test_relative_phase_equals_the_dense_copying_model():
    """The kernel's P(same) across gaps between heterozygotes, against the dense reference.
    The conditioned forward is not symmetric: a step reading row sums for both copies (the
    symmetric forward's shortcut) let the anchor's ALT pass to the other copy with
    probability rho per site instead of rho² and pulled P(same) towards 1/2."""
    rng = np.random.default_rng(3)
    H, L = 10, 60
    panel = (rng.random((L, H)) < 0.4).astype(np.int8)
    truth = np.stack([np.where(np.arange(L) < 30, panel[:, 0], panel[:, 3]), panel[:, 6]], -1)  # a mosaic and a copy
    d = truth.sum(1)
    cm = np.cumsum(rng.uniform(0, 2e-4, L))
    o = PhaseOptions(states=H, block=64, margin=64, rounds=1, selection="conflicts", model="pair")
    res = phase_with_panel(panel, cm, _unphase(truth)[None], bounds=[(0, L)], options=o)
    rho = np.r_[0.0, 1 - np.exp(-0.04 * o.ne * np.diff(cm) / H)]
    ref = naive_relative_phase(panel, d, rho, o.eps)
    het = np.flatnonzero(d == 1)[1:]
    assert het.size > 10 and np.abs(ref[het] - 0.5).max() > 0.3
    np.testing.assert_allclose(res.pp[0, het], np.maximum(ref[het], 1 - ref[het]), atol=2e-3)
    h = res.haplotypes[0]
    prev = np.flatnonzero(d == 1)[:-1]
    sure = np.abs(ref[het] - 0.5) > 0.05
    assert ((h[het, 0] == h[prev, 0]) == (ref[het] > 0.5))[sure].all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), n_sites=st.integers(1, 90), missing=st.floats(0, 0.5))
def test_only_phase_and_missing_calls_change(seed, n_sites, missing):
    rng = np.random.default_rng(seed)
    panel = _panel(mosaics(12, n_sites, seed=seed))
    g = rng.integers(0, 2, size=(3, n_sites, 2)).astype(np.int8)
    g[rng.random(g.shape[:2]) < missing] = -1
    res = phase_with_panel(panel, np.arange(n_sites) * 1e-3, g, bounds=[(0, n_sites)], options=FAST, threads=2)
    called = (g >= 0).all(-1)
    assert (np.sort(res.haplotypes, -1)[called] == np.sort(g, -1)[called]).all()  # typed: only reordered
    assert np.isin(res.haplotypes, [0, 1]).all()  # missing: filled
    assert (res.filled == ~called).all()
    hom = called & (g[..., 0] == g[..., 1])
    assert np.isnan(res.pp[hom]).all()


def test_cohort_only_phasing_reaches_a_low_switch_error():
    h = mosaics(2 * 80, 300, seed=3, switch_rate=0.005)
    truth = np.stack([h[0::2], h[1::2]], -1)  # (80, L, 2)
    cm = np.arange(300) * 1e-4
    errors = {}
    for it in (1, 10):
        opts = PhaseOptions(states=32, block=32, margin=16, iterations=it, model="pair")
        res = phase_cohort(_unphase(truth), cm, bounds=[(0, 300)], options=opts, seed=1, threads=2)
        assert (np.sort(res.haplotypes, -1) == _unphase(truth)).all()
        errors[it] = switch_errors(truth, res.haplotypes)
    sw, pairs = errors[10]
    assert sw / pairs < 0.03, errors
    assert sw < errors[1][0] / 4  # the iterations do the work


# --- the command ------------------------------------------------------------------------------


def _write_vcf(path: Path, samples, rows, *, contig="22") -> Path:
    """rows: (pos, ref, alt, format, [sample fields])."""
    lines = ["##fileformat=VCFv4.2", f"##contig=<ID={contig},length=51304566>",
             '##INFO=<ID=AC,Number=A,Type=Integer,Description="ALT count">',
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples)]
    for pos, ref, alt, fmt, fields in rows:
        lines.append(f"{contig}\t{pos}\trs{pos}\t{ref}\t{alt}\t50\tPASS\tAC=1\t{fmt}\t" + "\t".join(fields))
    text = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        subprocess.run(["bgzip", "-c"], input=text.encode(), stdout=open(path, "wb"), check=True) \
            if shutil.which("bgzip") else path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _cohort(tmp_path: Path, *, n_panel=40, n_target=8, n_sites=250, seed=5):
    """A phased panel VCF, an unphased target VCF (with DP, missing calls, a multi-allelic
    record and an indel) and the targets' true haplotypes."""
    h = mosaics(2 * (n_panel + n_target), n_sites, seed=seed)
    pos = 1000 + 200 * np.arange(n_sites)  # 1 cM/Mb: a switch probability near the mosaics' 1 %
    alleles = [("A", "G"), ("C", "T"), ("G", "A"), ("T", "C")]
    rng = np.random.default_rng(seed)
    panel_rows, target_rows = [], []
    truth = np.stack([h[2 * n_panel::2], h[2 * n_panel + 1::2]], -1)  # (n_target, L, 2)
    miss = rng.random((n_target, n_sites)) < 0.02
    for j in range(n_sites):
        ref, alt = alleles[j % 4]
        panel_rows.append((pos[j], ref, alt, "GT", [f"{h[2 * i, j]}|{h[2 * i + 1, j]}" for i in range(n_panel)]))
        t = truth[:, j]
        fields = ["./.:3" if miss[i, j] else f"{min(t[i])}/{max(t[i])}:{10 + i}" for i in range(n_target)]
        target_rows.append((pos[j], ref, alt, "GT:DP", fields))
        if j == 20:
            target_rows.append((pos[j] + 5, "A", "C,G", "GT:DP", ["1/2:7"] * n_target))
        if j == 40:
            target_rows.append((pos[j] + 5, "AT", "A", "GT:DP", ["0/1:7"] * n_target))
    ids = [f"T{i}" for i in range(n_target)]
    ref = _write_vcf(tmp_path / "panel.vcf", [f"P{i}" for i in range(n_panel)], panel_rows)
    tgt = _write_vcf(tmp_path / "targets.vcf", ids, target_rows)
    return ref, tgt, truth, miss, ids


def _records(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt") as f:
        return [line.rstrip("\n").split("\t") for line in f if not line.startswith("##")]


def _haplotypes(recs, n_target) -> np.ndarray:
    """(n, L, 2) from the biallelic SNP records of a phased output."""
    rows = [r for r in recs[1:] if "," not in r[4] and len(r[3]) == len(r[4]) == 1]
    return np.array([[[int(f[0]), int(f[2])] for f in r[9:9 + n_target]] for r in rows]).transpose(1, 0, 2)


def test_phase_command_with_a_panel(tmp_path):
    ref, tgt, truth, miss, ids = _cohort(tmp_path)
    out = tmp_path / "phased.vcf.gz"
    s = phase(input=tgt, output=out, ref=ref, options=FAST, progress=False)
    assert (tmp_path / "phased.vcf.gz.tbi").exists()
    recs, inp = _records(out), [line.split("\t") for line in tgt.read_text().splitlines() if not line.startswith("##")]
    assert recs[0] == inp[0] and len(recs) == len(inp)  # every sample and record, in input order
    assert s.n_records == len(inp) - 1 and "1 multiallelic, 1 indel" in s.report
    for r, i in zip(recs[1:], inp[1:]):
        assert r[:8] == i[:8]
        if r[8] == "GT:DP":  # passed through: byte for byte
            assert r == i
            continue
        assert r[8] == "GT:PP:IMP:DP"
        for f, g in zip(r[9:], i[9:]):
            gt, pp, imp, dp = f.split(":")
            assert "|" in gt and dp == g.split(":")[1]
            if imp == "0":
                assert sorted(gt.split("|")) == sorted(g.split(":")[0].split("/"))
            else:
                assert g.startswith("./.")
    est = _haplotypes(recs, len(ids))
    assert (np.sort(est, -1)[~miss] == np.sort(truth, -1)[~miss]).all()
    sw, pairs = switch_errors(np.where(miss[..., None], 0, truth), np.where(miss[..., None], 0, est))
    assert sw / pairs < 0.03, (sw, pairs)
    assert s.n_filled == int(miss.sum())
    assert (est[miss].sum(-1) == truth[miss].sum(-1)).mean() > 0.8, est[miss].sum(-1) - truth[miss].sum(-1)


def test_phasing_in_sample_batches_writes_the_same_output(tmp_path):
    """With a panel, samples are read and phased a batch at a time (results on disk until the writer):
    the VCF, the summary and the report's PP do not depend on the batch size, and nothing is left
    behind; a requested sample missing from a later batch stops the run with no output."""
    ref, tgt, *_ = _cohort(tmp_path, n_target=8, n_sites=120)
    sel = tmp_path / "samples.txt"
    sel.write_text("\n".join(["T6", "T1", "T2", "T7", "T0", "T3", "T5"]) + "\n")
    runs = {}
    for name, batch in (("whole", 100), ("batched", 3)):
        out = tmp_path / name / "p.vcf.gz"
        out.parent.mkdir()
        s = phase(input=tgt, output=out, ref=ref, options=FAST, progress=False, samples=sel, sample_batch=batch,
                  report_dir=tmp_path / name / "report")
        runs[name] = (_records(out), s.n_filled, s.n_kept_samples, s.n_records, sorted(p.name for p in out.parent.iterdir()))
    assert runs["batched"] == runs["whole"]
    assert runs["whole"][0][0][9:] == ["T0", "T1", "T2", "T3", "T5", "T6", "T7"]  # in the input's order
    sel.write_text("T0\nT1\nT2\nT3\nNOPE\n")
    with pytest.raises(SampleError, match="NOPE"):
        phase(input=tgt, output=tmp_path / "x.vcf.gz", ref=ref, options=FAST, progress=False, samples=sel,
              sample_batch=2)
    assert not list(tmp_path.glob("x.vcf.gz*")) and not list(tmp_path.glob(".snpbag-phase-*"))
    with pytest.raises(InputError, match="--batch-size 0: must be at least 1"):
        phase(input=tgt, output=tmp_path / "x.vcf.gz", ref=ref, sample_batch=0)


@requires_tool("bcftools")
def test_output_opens_in_bcftools(tmp_path):
    ref, tgt, *_ = _cohort(tmp_path, n_sites=80)
    out = tmp_path / "p.vcf.gz"
    phase(input=tgt, output=out, ref=ref, options=FAST, progress=False)
    q = subprocess.run(["bcftools", "query", "-f", "[%GT:%PP:%IMP ]\n", "-r", "22:1000-9000", str(out)],
                       capture_output=True, text=True, check=True).stdout
    assert q.count("\n") > 10 and "|" in q


def test_cohort_only_command_is_deterministic_by_seed_and_threads(tmp_path):
    _, tgt, truth, miss, ids = _cohort(tmp_path, n_panel=0, n_target=40, n_sites=150)
    runs = {}
    for name, seed, threads in (("a", 1, 1), ("b", 1, 2), ("c", 2, 1)):
        phase(input=tgt, output=tmp_path / f"{name}.vcf.gz", seed=seed, threads=threads, options=FAST, progress=False)
        runs[name] = _records(tmp_path / f"{name}.vcf.gz")[1:]
    assert runs["a"] == runs["b"]  # the thread count does not change the output
    assert runs["a"] != runs["c"]  # the seed does (the random start)
    est = _haplotypes([None, *runs["a"]], len(ids))
    sw, pairs = switch_errors(np.where(miss[..., None], 0, truth), np.where(miss[..., None], 0, est))
    assert sw / pairs < 0.1, (sw, pairs)


def test_phased_input_is_kept_unless_rephase(tmp_path):
    ref, _, truth, _, ids = _cohort(tmp_path, n_sites=60)
    rows = [(1000 + 200 * j, "A", "G", "GT", [f"{truth[i, j, 1]}|{truth[i, j, 0]}" for i in range(len(ids))])
            for j in range(truth.shape[1])]
    tgt = _write_vcf(tmp_path / "phased_in.vcf", ids, rows)
    ref2 = _write_vcf(tmp_path / "ref2.vcf", [f"P{i}" for i in range(2)],
                      [(r[0], "A", "G", "GT", ["0|1", "1|0"]) for r in rows])
    phase(input=tgt, output=tmp_path / "kept.vcf.gz", ref=ref2, options=FAST, progress=False)
    kept = _records(tmp_path / "kept.vcf.gz")
    assert [f.split(":")[0] for r in kept[1:] for f in r[9:]] == [f for r in rows for f in r[4]]
    s = phase(input=tgt, output=tmp_path / "re.vcf.gz", ref=ref, options=FAST, progress=False, rephase=True,
              samples=None)
    assert s.n_kept_samples == 0


def _bad(tmp_path, rows, samples=("A", "B")) -> Path:
    return _write_vcf(tmp_path / "bad.vcf", list(samples), rows)


@pytest.mark.parametrize("case, error, match", [
    ("haploid", InputError, r"bad.vcf: haploid call at 22:100 .*drop chrX/Y/MT"),
    ("mixed", InputError, r"bad.vcf: mixed ploidy: haploid call at 22:100 .*code calls as diploid"),
    ("unsorted", InputError, r"bad.vcf: unsorted positions .*bcftools sort"),
    ("duplicate", SampleError, r"bad.vcf: duplicated sample ids in the header \(A\).*bcftools reheader"),
    ("no_overlap", SiteMismatchError, r"none of its 2 SNPs is in the panel .*genome build"),
])
def test_bad_input_is_one_line_and_leaves_no_output(tmp_path, case, error, match):
    rows = {"haploid": [(100, "A", "G", "GT", ["0", "1"]), (200, "A", "G", "GT", ["0", "1"])],
            "mixed": [(100, "A", "G", "GT", ["0/1", "1"]), (200, "A", "G", "GT", ["0/1", "1/1"])],
            "unsorted": [(200, "A", "G", "GT", ["0/1", "1/1"]), (100, "A", "G", "GT", ["0/1", "1/1"])],
            "duplicate": [(100, "A", "G", "GT", ["0/1", "1/1"])],
            "no_overlap": [(100, "A", "G", "GT", ["0/1", "1/1"]), (200, "C", "T", "GT", ["0/1", "0/0"])]}[case]
    bad = _bad(tmp_path, rows, samples=("A", "A") if case == "duplicate" else ("A", "B"))
    ref = _write_vcf(tmp_path / "ref.vcf", ["P0", "P1"], [(5000, "A", "G", "GT", ["0|1", "1|0"])])
    out = tmp_path / "o.vcf.gz"
    with pytest.raises(error, match=match):
        phase(input=bad, output=out, ref=ref if case == "no_overlap" else None, options=FAST, progress=False)
    assert list(tmp_path.glob("o.vcf.gz*")) == [] and not list(tmp_path.glob(".o.vcf.gz*"))


def test_an_unphased_panel_is_refused(tmp_path):
    ref, tgt, *_ = _cohort(tmp_path, n_sites=30)
    unphased = tmp_path / "unphased_panel.vcf"
    unphased.write_text(ref.read_text().replace("|", "/"))
    with pytest.raises(InputError, match=r"--ref .*unphased_panel.vcf: the panel is not phased .*Beagle, SHAPEIT"):
        phase(input=tgt, output=tmp_path / "o.vcf.gz", ref=unphased, options=FAST, progress=False)


@requires_tool("minimac4", "bgzip", "tabix")
def test_minimac4_takes_the_output_as_phased_input(tmp_path):
    """The step after phasing on an imputation server: minimac4 reads our haplotypes as its
    phased target. The unphased input with missing calls is what it cannot take (it aborts
    on the NaN dosages of the missing calls), so the check discriminates."""
    ref, tgt, truth, miss, ids = _cohort(tmp_path, n_sites=120)
    assert miss.any()
    out = tmp_path / "p.vcf.gz"
    phase(input=tgt, output=out, ref=ref, options=FAST, progress=False)
    subprocess.run(["bgzip", "-f", str(ref)], check=True)
    msav = tmp_path / "ref.msav"
    with open(msav, "wb") as f:
        subprocess.run(["minimac4", "--compress-reference", f"{ref}.gz"], stdout=f, stderr=subprocess.DEVNULL, check=True)

    def minimac(target: Path, name: str) -> subprocess.CompletedProcess:
        return subprocess.run(["minimac4", str(msav), str(target), "-O", "vcf.gz", "-o", str(tmp_path / f"{name}.vcf.gz"),
                               "-e", str(tmp_path / f"{name}.emp.vcf.gz")], capture_output=True, text=True)

    unphased = tmp_path / "t.vcf.gz"
    with open(unphased, "wb") as f:
        subprocess.run(["bgzip", "-c", str(tgt)], stdout=f, check=True)
    subprocess.run(["tabix", "-p", "vcf", str(unphased)], check=True)
    assert minimac(unphased, "u").returncode != 0
    run = minimac(out, "imp")
    assert run.returncode == 0, run.stderr[-500:]
    ours = {r[1]: [f.split(":")[0] for f in r[9:]] for r in _records(out)[1:] if r[8].startswith("GT:PP")}
    theirs = {r[1]: [f.split(":")[0] for f in r[9:]] for r in _records(tmp_path / "imp.emp.vcf.gz")[1:]}
    assert len(theirs) == len(ours) == 120 and theirs == ours  # our phase, read as given
    imputed = _records(tmp_path / "imp.vcf.gz")
    assert imputed[0][9:] == ids and len(imputed) == 121
