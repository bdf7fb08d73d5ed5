"""Per-patch pair counts against a naive per-pair, per-site loop and against KING's whole-genome counts."""

from __future__ import annotations

import numpy as np
import pytest

from snpbag.errors import InputError
from snpbag.kinship import pairfeatures as pf
from snpbag.kinship.counts import pair_counts


def naive_patch_counts(g: np.ndarray, pairs, patch_sites: int) -> np.ndarray:
    """The five counts by their definitions, one site at a time."""
    nv = g.shape[0]
    out = np.zeros((len(pairs), pf.n_patches(nv, patch_sites), 5), dtype=np.int64)
    for p, (i, j) in enumerate(pairs):
        for v in range(nv):
            a, b = int(g[v, i]), int(g[v, j])
            if a < 0 or b < 0:
                continue
            k = out[p, v // patch_sites]
            k[4] += 1
            k[0] += a == 1 and b == 1
            k[1] += {a, b} == {0, 2}
            k[2] += a == 1 and b != 1
            k[3] += b == 1 and a != 1
    return out


def _genotypes(seed: int, nv: int = 203, ns: int = 9) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = rng.choice(np.array([-1, 0, 1, 2], dtype=np.int8), size=(nv, ns), p=[0.05, 0.4, 0.35, 0.2])
    return g.astype(np.int8)


@pytest.mark.parametrize("patch_sites", [1, 16, 50, 203, 1000])
def test_patch_counts_equal_the_naive_loop(patch_sites):
    g = _genotypes(1)
    pairs = np.array([(i, j) for i in range(9) for j in range(9) if i != j])
    got = pf.patch_counts(g, pairs, patch_sites=patch_sites)
    assert got.shape == (len(pairs), pf.n_patches(203, patch_sites), 5)
    np.testing.assert_array_equal(got, naive_patch_counts(g, pairs, patch_sites))


def test_other_missing_codes_count_as_missing():
    g = _genotypes(5)
    pairs = np.array([(i, j) for i in range(9) for j in range(9) if i != j])
    odd = g.copy()
    odd[g == -1] = -2  # a haploid fill
    np.testing.assert_array_equal(pf.patch_counts(odd, pairs, patch_sites=16), naive_patch_counts(g, pairs, 16))


def test_streamed_chunks_give_the_same_patches():
    g = _genotypes(2)
    pairs = np.array([(0, 1), (3, 2), (8, 5)])
    whole = pf.patch_counts(g, pairs, patch_sites=37)
    for cuts in ([10, 60, 130], [37, 74], [1, 2, 3, 200]):
        chunks = np.split(g, cuts)
        np.testing.assert_array_equal(pf.stream_patch_counts(chunks, pairs, patch_sites=37), whole)


def test_patch_sums_equal_king_counts():
    g = _genotypes(3, nv=150, ns=6)

    class Source:  # a GenotypeSource stand-in: the dosages of all samples in one chunk
        path, n_samples = "mem", 6

        def dosages(self, n, *, chunk, stats):
            stats.variants += g.shape[0]
            yield g

    c = pair_counts(Source(), rows=(0, 6), kernel="gemm", sparse_limit=-1)
    pairs = np.array([(i, j) for i in range(6) for j in range(i)])
    tot = pf.patch_counts(g, pairs, patch_sites=20).sum(axis=1)
    for p, (i, j) in enumerate(pairs):
        king = [c.hethet[i, j], c.ibs0[i, j], c.het_row[i, j], c.het_col[i, j], c.nsnp[i, j]]
        assert tot[p].tolist() == [int(x) for x in king]


def test_bad_patch_and_pairs_fail():
    g = _genotypes(4)
    with pytest.raises(InputError, match="--patch-sites 0"):
        pf.patch_counts(g, np.array([(0, 1)]), patch_sites=0)
    with pytest.raises(InputError, match="out of range"):
        pf.patch_counts(g, np.array([(0, 9)]), patch_sites=5)
