"""tools/bench/phase_vs_peers.py without peers: the inputs it makes, the maps it writes in
each tool's format, the wiring from a phased VCF to SER in the JSON tables, and the
"not available" row when ``snpbag phase`` is missing."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from snpbag.io.genmap import read_genetic_map
from conftest import bench_module

SAMPLES = ["CEU_1", "CEU_2", "YRI_1"]


@pytest.fixture
def bench(monkeypatch):
    return bench_module(monkeypatch, "phase_vs_peers")


def _vcf(path: Path, haps: np.ndarray, positions, sep: str = "|") -> Path:
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=22,length=100000>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(SAMPLES)]
    lines += [f"22\t{p}\t.\tA\tG\t.\tPASS\t.\tGT\t" + "\t".join(f"{a}{sep}{b}" for a, b in site)
              for p, site in zip(positions, haps.tolist())]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return path


@pytest.fixture
def sim(tmp_path):
    """A fake simulation directory: 20 heterozygous sites per sample, 10 of them on the array."""
    d = tmp_path / "sim"
    d.mkdir()
    rng = np.random.default_rng(0)
    first = rng.integers(0, 2, (20, 3))
    haps = np.stack([first, 1 - first], -1)
    pos = list(range(1000, 21000, 1000))
    _vcf(d / "targets.vcf.gz", haps, pos)
    (d / "samples.tsv").write_text("sample\tpopulation\tcontinent\tsplit\n"
                                   + "".join(f"{s}\t{s[:3]}\t.\ttarget\n" for s in SAMPLES))
    (d / "array_sites.tsv").write_text("chrom\tpos\tref\talt\n" + "".join(f"22\t{p}\tA\tG\n" for p in pos[::2]))
    (d / "simulation.json").write_text(json.dumps({"chromosomes": {"22": {"length": 100000}}}))
    return d, haps, pos


def test_inputs_are_unphased_and_array_inputs_keep_array_sites(bench, sim, tmp_path):
    d, haps, pos = sim
    given = bench.prepare(bench.SETTINGS["c"], sim=d, wd=tmp_path / "wd")
    body = [ln.split("\t") for ln in gzip.open(given, "rt").read().splitlines() if not ln.startswith("#")]
    assert [int(r[1]) for r in body] == pos[::2]
    assert all(g in ("0/1",) for r in body for g in r[9:])  # heterozygotes, alleles sorted, unphased
    assert Path(f"{given}.tbi").exists() or Path(f"{given}.csi").exists()


def test_maps_carry_the_simulated_rate_in_every_format(bench, tmp_path):
    maps = bench.write_maps(tmp_path / "maps", chrom="22", length=1_000_000)
    gm = read_genetic_map(maps["plink"])
    assert gm.cm("22", np.array([500_001]))[0] == pytest.approx(0.6, rel=1e-5)  # 1.2 cM/Mb
    assert maps["shapeit4"].read_text().splitlines()[:2] == ["pos\tchr\tcM", "1\t22\t0.00000120"]
    eagle = maps["eagle"].read_text().splitlines()
    assert eagle[0].startswith("chr position") and eagle[-1] == "22 1000000 1.2 1.20000000"


def test_peer_commands_get_the_same_threads_map_and_panel(bench, tmp_path):
    maps = bench.write_maps(tmp_path, chrom="22", length=200_000)
    for tool in bench.PEERS:
        cmd, out = bench.peer_command(tool, given=Path("in.vcf.gz"), ref=Path("ref.vcf.gz"), maps=maps,
                                      out=tmp_path / tool, chrom="22", threads=3, seed=5, sequencing=True)
        text = " ".join(cmd)
        assert "3" in [c.split("=")[-1] for c in cmd] and str(maps["plink" if tool == "beagle" else tool]) in text
        assert "ref.vcf.gz" in text and out == tmp_path / f"{tool}.vcf.gz"
        cohort, _ = bench.peer_command(tool, given=Path("in.vcf.gz"), ref=None, maps=maps, out=tmp_path / tool,
                                       chrom="22", threads=3, seed=5, sequencing=False)
        assert "ref.vcf.gz" not in " ".join(cohort) and "--sequencing" not in cohort


def test_a_known_switch_reaches_the_json_tables(bench, sim, tmp_path, monkeypatch):
    d, haps, pos = sim
    given = bench.prepare(bench.SETTINGS["a"], sim=d, wd=tmp_path / "wd")
    est = haps.copy()
    est[10:, 0] = est[10:, 0, ::-1]  # sample CEU_1 switches once, between sites 10 and 11
    estimate = _vcf(tmp_path / "est.vcf.gz", est, pos)
    timing = {"wall_s": 1.5, "cpu_s": 2.5, "peak_mib": 10.0, "cmd": "x"}
    row = bench.scored("X", truth=d / "targets.vcf.gz", estimate=estimate, given=given,
                       groups=bench.populations(d), timing=timing)
    monkeypatch.setattr(bench, "snpbag_phase_available", lambda: False)
    res = bench.run_setting(bench.SETTINGS["a"], sim=d, wd=tmp_path / "wd", tools=["copying"], threads=1, seed=1,
                            model=None, maps={})
    res["tools"].insert(0, row)
    tabs = bench.tables([res])
    first, missing = tabs["phasing"]
    assert first["SER %"] == pytest.approx(100 / 57) and first["switches"] == 1 and first["flips"] == 0
    assert first["genotypes changed"] == 0 and first["wall s"] == 1.5 and first["CPU s"] == 2.5
    assert missing["status"].startswith("not available") and missing["tool"] == "snpbag (copying model)"
    assert tabs["per_population"][0]["SER % CEU"] == pytest.approx(100 / 38)
    assert tabs["per_population"][0]["SER % YRI"] == 0
    results = bench._results
    path = results.write(tmp_path / "r.json", command="phase_vs_peers", argv=[], results=tabs)
    text = bench.make_tables.render(bench.make_tables.load(path))
    assert "| a: full density, panel | X | 1.754 | 1 | 0 |" in text
