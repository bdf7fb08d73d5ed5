"""Compiled genotype loops (snpbag.store.kernels, popcount.ones) against their numpy references."""

from __future__ import annotations

import numpy as np

from snpbag.io.dosage import alt_dosage
from snpbag.store.kernels import add_alleles, row_sums
from snpbag.kinship import popcount


def test_add_alleles_equals_numpy_transpose():
    rng = np.random.default_rng(0)
    for nt, nv, ns in ((3, 130, 16), (1, 1, 16), (5, 64, 4), (2, 200, 16)):
        buf = rng.integers(0, 2, (nt, nv, ns, 2)).astype(np.int8)
        want = np.empty((nv, nt * ns), dtype=np.int8)
        want.reshape(nv, nt, ns).transpose(1, 0, 2)[...] = alt_dosage(buf)
        got = np.empty_like(want)
        assert add_alleles(buf, got)
        assert np.array_equal(got, want)
        for allele in (-1, -2):  # missing or haploid fill: refused, numpy's rules apply
            bad = buf.copy()
            bad[nt - 1, nv - 1, ns - 1, 1] = allele
            assert not add_alleles(bad, got)


def test_row_sums_equal_numpy():
    rng = np.random.default_rng(1)
    g = rng.integers(0, 3, (300, 1001)).astype(np.int8)
    for x in (g, g[:, :997], g[5:6]):  # strided views too
        sums, low = row_sums(x)
        assert np.array_equal(sums, x.sum(axis=1, dtype=np.int64)) and low == x.min()
    g[17, 3] = -1
    assert row_sums(g)[1] == -1


def test_ones_counts_heterozygous_calls():
    rng = np.random.default_rng(2)
    for v in (1, 63, 64, 700):
        d = rng.integers(0, 3, (v, 37)).astype(np.int8)
        H, _ = popcount.pack(d, missing=False)
        assert np.array_equal(popcount.ones(H), (d == 1).sum(axis=0))
