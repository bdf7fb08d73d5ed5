"""Masking (snpbag.data.masking): rates, missing genotypes, array patterns, determinism."""

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from snpbag.config import MaskingConfig
from snpbag.data.masking import (
    Masker,
    apply_mask,
    array_site_mask,
    genotype_tokens,
    random_mask,
    read_array_sites,
    unmasked,
)
from snpbag.data.tokens import IGNORE_INDEX, MASK, MISSING
from snpbag.store.vocab import SiteVocab
from snpbag.errors import ConfigError, InputError, SiteMismatchError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _vocab() -> SiteVocab:
    """Two chromosomes, named as in a 'chr'-prefixed VCF; two sites share position 300."""
    chrom = np.array([0, 0, 0, 0, 1, 1, 1], dtype=np.int16)
    pos = np.array([100, 200, 300, 300, 50, 60, 70])
    ref = np.array(["A", "C", "G", "G", "T", "A", "C"], dtype=object)
    alt = np.array(["G", "T", "A", "C", "C", "G", "A"], dtype=object)
    return SiteVocab(chrom_names=("chr1", "chr2"), site_chrom=chrom, position=pos, ref=ref, alt=alt,
                     af=np.full(7, 0.3, np.float32), tile_chrom=np.array([0, 1], np.int16),
                     tile_start=np.array([0, 4]), tile_stop=np.array([4, 7]), tile_len=4, min_maf=0.0)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- tokens ---------------------------------------------------------------------------------


def test_genotype_tokens_exact():
    h = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [-1, 0], [1, -1], [-1, -1]], dtype=np.int8)
    assert genotype_tokens(h).tolist() == [0, 1, 1, 2, MISSING, MISSING, MISSING]
    assert genotype_tokens(h).dtype == np.int8
    assert genotype_tokens(h.reshape(1, 7, 2)).shape == (1, 7)


# --- random masking ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [7, 10, 33, 100, 1000, 81920])
def test_random_mask_rate_within_bounds(n):
    rng = np.random.default_rng(n)
    lo, hi = 0.85, 0.99
    for _ in range(50):
        m = random_mask(n, rng, min_rate=lo, max_rate=hi)
        assert m.dtype == bool and m.shape == (n,)
        rate = m.mean()
        if np.ceil(lo * n) <= np.floor(hi * n):  # an integer count exists within the bounds
            assert lo - 1e-12 <= rate <= hi + 1e-12, (n, rate)


def test_random_mask_rates_cover_the_interval():
    rng = np.random.default_rng(0)
    rates = np.array([random_mask(10_000, rng).mean() for _ in range(400)])
    assert rates.min() >= 0.85 and rates.max() <= 0.99
    assert rates.min() < 0.86 and rates.max() > 0.98  # uniform, not a fixed rate
    assert abs(rates.mean() - 0.92) < 0.01


def test_random_mask_custom_bounds_and_degenerate():
    rng = np.random.default_rng(1)
    assert random_mask(200, rng, min_rate=0.5, max_rate=0.5).sum() == 100
    assert random_mask(50, rng, min_rate=1.0, max_rate=1.0).all()
    assert not random_mask(50, rng, min_rate=0.0, max_rate=0.0).any()
    assert random_mask(0, rng).shape == (0,)
    with pytest.raises(ConfigError, match="min_rate <= max_rate"):
        random_mask(10, rng, min_rate=0.9, max_rate=0.8)


def test_random_mask_deterministic_by_seed():
    a = random_mask(5000, np.random.default_rng(42))
    b = random_mask(5000, np.random.default_rng(42))
    c = random_mask(5000, np.random.default_rng(43))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


# --- apply_mask: missing genotypes are never targets -----------------------------------------------


def test_apply_mask_exact():
    truth = np.array([0, 1, 2, MISSING, 2, MISSING, 0], dtype=np.int8)
    masked = np.array([1, 1, 0, 1, 0, 0, 1], dtype=bool)
    g, t = apply_mask(truth, masked)
    assert g.tolist() == [MASK, MASK, 2, MISSING, 2, MISSING, MASK]
    assert t.tolist() == [0, 1, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 0]


def test_missing_never_a_target_random_sequences():
    rng = np.random.default_rng(7)
    masker = Masker(MaskingConfig())
    for _ in range(200):
        n = int(rng.integers(1, 300))
        truth = rng.integers(0, 3, n).astype(np.int8)
        truth[rng.random(n) < rng.uniform(0, 0.5)] = MISSING
        g, t = masker(truth, np.arange(n), rng)
        missing = truth == MISSING
        assert np.all(t[missing] == IGNORE_INDEX)
        assert np.all(g[missing] == MISSING)
        carries = t != IGNORE_INDEX
        assert np.all(g[carries] == MASK) and np.array_equal(t[carries], truth[carries])
        # every masked, called site is a target; visible sites are the truth
        assert np.array_equal(carries, (g == MASK))
        vis = ~(g == MASK) & ~missing
        assert np.array_equal(g[vis], truth[vis])


def test_unmasked_is_the_truth_without_targets():
    truth = np.array([0, 2, MISSING, 1], dtype=np.int8)
    g, t = unmasked(truth)
    assert g.tolist() == truth.tolist() and np.all(t == IGNORE_INDEX)


# --- array patterns ----------------------------------------------------------------------------------


def test_array_site_mask_matching_rules(tmp_path):
    tsv = _write(tmp_path / "array.tsv", "\n".join([
        "chrom\tpos\tref\talt",
        "1\t100\tA\tG",  # '1' matches 'chr1'
        "chr1\t200\tT\tC",  # alleles listed the other way round: matches
        "chr1\t300\tG\tC",  # the second of two sites at 300
        "chr1\t999\tA\tG",  # not in the vocabulary
        "2\t60\tA\tT",  # position present, alleles differ: no match
        "chr2\t70\tc\ta\textra\tcolumns",  # lower case and extra columns accepted
        "# a comment",
        "",
    ]))
    on = array_site_mask(tsv, _vocab())
    assert on.tolist() == [True, True, False, True, False, False, True]


def test_array_masking_is_exactly_the_complement(tmp_path):
    tsv = _write(tmp_path / "a.tsv", "chr1\t100\tA\tG\nchr1\t300\tG\tA\nchr2\t60\tA\tG\n")
    voc = _vocab()
    on = array_site_mask(tsv, voc)
    masker = Masker(MaskingConfig(random=0.0, array=1.0, array_sites=str(tsv)), array_mask=on)
    truth = np.array([0, 1, 2, 2, MISSING, 1, 0], dtype=np.int8)
    rng = np.random.default_rng(0)
    g, t = masker(truth, np.arange(7), rng)
    assert g.tolist() == [0, MASK, 2, MASK, MISSING, 1, MASK]
    assert t.tolist() == [IGNORE_INDEX, 1, IGNORE_INDEX, 2, IGNORE_INDEX, IGNORE_INDEX, 0]
    # a stretch of sites: site_index selects the global vocabulary rows
    g2, _ = masker(truth[4:], np.arange(4, 7), rng)
    assert g2.tolist() == [MISSING, 1, MASK]


def test_array_site_list_errors(tmp_path):
    voc = _vocab()
    with pytest.raises(SiteMismatchError, match="none of 2 array sites match"):
        array_site_mask(_write(tmp_path / "x.tsv", "chr9\t1\tA\tG\nchr1\t101\tA\tG\n"), voc)
    with pytest.raises(SiteMismatchError, match="empty"):
        array_site_mask(_write(tmp_path / "e.tsv", "chrom\tpos\tref\talt\n"), voc)
    with pytest.raises(InputError, match=r"bad.tsv:2: expected 4 tab-separated columns"):
        read_array_sites(_write(tmp_path / "bad.tsv", "chr1\t100\tA\tG\nchr1 200 C T\n"))
    with pytest.raises(InputError, match=r"pos.tsv:1: position 'x' is not an integer"):
        read_array_sites(_write(tmp_path / "pos.tsv", "chr1\tx\tA\tG\n"))
    with pytest.raises(InputError, match="cannot read array site list"):
        read_array_sites(tmp_path / "absent.tsv")


# --- mixtures and configuration -----------------------------------------------------------------------


def test_mixture_probabilities_and_determinism(tmp_path):
    n = 400
    on = np.zeros(n, dtype=bool)
    on[::5] = True  # a 20 % "array"
    cfg = MaskingConfig(random=0.3, array=0.7, array_sites="unused.tsv")
    masker = Masker(cfg, array_mask=on)
    truth = np.zeros(n, dtype=np.int8)
    n_array = 0
    for seed in range(2000):
        g, _ = masker(truth, np.arange(n), np.random.default_rng(seed))
        is_array = np.array_equal(g == MASK, ~on)
        n_array += is_array
        if not is_array:
            assert 0.85 <= (g == MASK).mean() <= 0.99
        g2, _ = masker(truth, np.arange(n), np.random.default_rng(seed))
        assert np.array_equal(g, g2)
    assert abs(n_array / 2000 - 0.7) < 0.04  # binomial sd ~0.01


def test_masking_config_validation():
    with pytest.raises(ConfigError, match="masking.min_rate=0.99 exceeds masking.max_rate=0.85"):
        MaskingConfig(min_rate=0.99, max_rate=0.85)
    with pytest.raises(ConfigError, match=r"masking.max_rate=1.5 must lie in \[0.0, 1.0\]"):
        MaskingConfig(max_rate=1.5)
    with pytest.raises(ConfigError, match="needs masking.array_sites"):
        MaskingConfig(array=1.0)
    with pytest.raises(ConfigError, match="weights must be >= 0, not both 0"):
        MaskingConfig(random=0.0, array=0.0)
    with pytest.raises(ConfigError, match="no array site mask"):
        Masker(MaskingConfig(array=1.0, array_sites="a.tsv"))


@pytest.mark.parametrize("name", ["random", "array"])
def test_masking_yaml_maps_onto_config(name):
    d = yaml.safe_load((CONFIGS / "masking" / f"{name}.yaml").read_text())
    if d.get("array", 0) > 0 and d.get("array_sites") is None:
        d["array_sites"] = "array.tsv"  # set on the command line in real use
    assert asdict(MaskingConfig(**d)) == {**asdict(MaskingConfig()), **d}


def test_curriculum_moves_the_rate_bounds_linearly_then_holds():
    cfg = MaskingConfig(min_rate=0.8, max_rate=0.9, curriculum_sequences=100, start_min_rate=0.1, start_max_rate=0.3)
    m = Masker(cfg)
    assert m.rates(0) == (0.1, 0.3)
    assert m.rates(50) == pytest.approx((0.45, 0.6))
    assert m.rates(100) == pytest.approx((0.8, 0.9)) and m.rates(10**6) == pytest.approx((0.8, 0.9))
    assert m.rates(None) == (0.8, 0.9)  # evaluation: the final bounds
    for seq, (lo, hi) in ((0, (0.1, 0.3)), (50, (0.45, 0.6)), (500, (0.8, 0.9))):
        rates = [m.mask(np.arange(1000), np.random.default_rng(s), sequence=seq).mean() for s in range(20)]
        assert lo <= min(rates) and max(rates) <= hi
    assert Masker(MaskingConfig()).rates(0) == (0.85, 0.99)  # off by default
    # off, the mask is the plain random mask of the same generator
    assert np.array_equal(Masker(MaskingConfig()).mask(np.arange(300), np.random.default_rng(4), sequence=7),
                          random_mask(300, np.random.default_rng(4)))


def test_curriculum_config_validation():
    with pytest.raises(ConfigError, match="masking.start_min_rate=0.6 exceeds masking.start_max_rate=0.5"):
        MaskingConfig(start_min_rate=0.6)
    with pytest.raises(ConfigError, match="masking.curriculum_sequences"):
        MaskingConfig(curriculum_sequences=-1)
