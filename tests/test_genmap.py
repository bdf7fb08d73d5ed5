"""snpbag.io.genmap: genetic maps (PLINK .map, HapMap) for the augmentation and the haplotype retrieval."""

from __future__ import annotations

import numpy as np
import pytest

from snpbag.io.genmap import GeneticMap, genetic_positions, read_genetic_map
from snpbag.errors import ConfigError, InputError


def _write(path, text: str):
    path.write_text(text)
    return path


def test_genetic_map_formats_and_extrapolation(tmp_path):
    (tmp_path / "hm.txt").write_text(
        "Chromosome\tPosition(bp)\tRate(cM/Mb)\tMap(cM)\nchr1\t1000000\t2.0\t1.0\nchr1\t2000000\t0\t3.0\n")
    m = read_genetic_map(tmp_path / "hm.txt")
    assert np.allclose(m.cm("1", [1_000_000, 1_500_000, 2_000_000]), [1.0, 2.0, 3.0])
    assert np.allclose(m.cm("1", [0, 3_000_000]), [-1.0, 5.0])  # mean rate 2 cM/Mb beyond the ends
    with pytest.raises(InputError, match="no genetic map for chromosome 2"):
        m.cm("2", [1])
    (tmp_path / "bad.map").write_text("1\t.\t0\n")
    with pytest.raises(InputError, match="bad.map:1: expected 4 columns"):
        read_genetic_map(tmp_path / "bad.map")
    with pytest.raises(InputError, match="decreasing"):
        GeneticMap({"1": (np.array([1, 2]), np.array([2.0, 1.0]))})
    assert np.allclose(genetic_positions(np.array([2_000_000]), rate=1.5), [3.0])


def test_plink_map_interpolates_and_matches_chromosome_names(tmp_path):
    m = read_genetic_map(_write(tmp_path / "g.map", "# comment\n22 rs1 1.0 1000\n22 . 3.0 2000\n22 . 3.0 4000\n"))
    cm = m.cm("chr22", np.array([1000, 1500, 2000, 3000, 4000, 0, 7000]))
    # outside the map: its mean rate (2 cM over 3,000 bp)
    np.testing.assert_allclose(cm, [1.0, 2.0, 3.0, 3.0, 3.0, 1.0 - 2 / 3, 3.0 + 2.0])
    with pytest.raises(InputError, match=r"nope.map: cannot read genetic map .*model.genetic_map"):
        read_genetic_map(tmp_path / "nope.map")


def _phased_store(tmp_path, chrom: str = "22"):
    from snpbag.store.convert import convert
    from snpbag.store.genotypes import open_store

    rng = np.random.default_rng(0)
    n, L = 6, 40
    h = rng.integers(0, 2, (n, L, 2))
    lines = ["##fileformat=VCFv4.2", f"##contig=<ID={chrom},length=100000>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"s{i}" for i in range(n))]
    rows = [f"{chrom}\t{1000 * (j + 1)}\t.\tA\tG\t.\tPASS\t.\tGT\t" + "\t".join(f"{a}|{b}" for a, b in h[:, j])
            for j in range(L)]
    (tmp_path / "p.vcf").write_text("\n".join(lines + rows) + "\n")
    convert(str(tmp_path / "p.vcf"), str(tmp_path / "p.zarr"), min_maf=0.0, tile_len=16, threads=1)
    return open_store(tmp_path / "p.zarr"), n


def test_panel_from_store_takes_the_maps_positions(tmp_path):
    """A map gives the panel its cM positions (the store's "22" matched to the map's "chr22");
    a 1 cM/Mb map gives exactly the default panel's votes."""
    from snpbag.retrieval.haplotypes import HaplotypePanel

    st, n = _phased_store(tmp_path)
    pos = st.vocab.position.astype(np.float64)
    assert st.vocab.n_tiles > 1  # positions are mapped tile by tile
    steep = _write(tmp_path / "steep.map", "chr22 . 0 0\nchr22 . 20 100000\n")  # 200 cM/Mb
    panel = HaplotypePanel.from_store(st, np.arange(n), genetic_map=steep)
    np.testing.assert_allclose(panel.cm, pos * 2e-4)
    flat = _write(tmp_path / "flat.map", "22 . 0 0\n22 . 0.1 100000\n")
    default = HaplotypePanel.from_store(st, np.arange(n), states=4, block=8, margin=8)
    mapped = HaplotypePanel.from_store(st, np.arange(n), genetic_map=flat, states=4, block=8, margin=8)
    np.testing.assert_allclose(mapped.cm, default.cm, rtol=1e-12)
    g = default.haplotypes[0].sum(axis=1).astype(np.int8)
    g[::3] = -1
    sites = np.arange(g.size)
    np.testing.assert_allclose(mapped.votes(g, sites), default.votes(g, sites), rtol=1e-6)
    with pytest.raises(InputError, match="no genetic map for chromosome 22"):
        HaplotypePanel.from_store(st, np.arange(n), genetic_map=_write(tmp_path / "x.map", "21 . 0 0\n"))


def test_config_and_retrieval_options():
    from snpbag.config import preset
    from snpbag.retrieval import kinds as retrieval

    cfg = preset("tiny", retrieval_k=8, retrieval="haplotypes", genetic_map="g.map")
    assert retrieval.options(cfg) == {"kind": "haplotypes", "k": 8, "span": 128, "genetic_map": "g.map"}
    assert "genetic_map" not in retrieval.options(preset("tiny", retrieval_k=8, retrieval="haplotypes"))
    for bad in ({"retrieval_k": 8}, {"retrieval": "haplotypes"}):
        with pytest.raises(ConfigError, match="model.genetic_map='g.map' is read by the haplotype retrieval only"):
            preset("tiny", genetic_map="g.map", **bad)
