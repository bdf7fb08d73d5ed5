"""snpbag.retrieval.hapclasses: the panel's columns grouped by their alleles between typed sites."""

from __future__ import annotations

import numpy as np
import pytest

from snpbag.retrieval.hapclasses import covers, hap_classes, no_classes


@pytest.mark.parametrize("typed", [[], [0], [5, 6, 20], [39], [3, 17, 30]])
def test_classes_are_the_distinct_allele_sequences_of_each_interval(typed):
    """Two columns share a class in an interval exactly where their alleles agree at every
    site of it (np.unique of the columns, the slow reference), classes numbered from 0 in
    order of first appearance; an untyped site lists the classes carrying whichever allele
    fewer classes carry (ties: ALT), a typed site none. Intervals that are empty (two typed
    sites side by side, one at either end) hold no class."""
    rng = np.random.default_rng(4)
    L, H = 40, 50
    panel = rng.choice(4, (L, H)).astype(np.int8)  # founders 0..3 per site, then alleles from them
    panel = (panel == 0).astype(np.int8)
    panel[10] = 1  # monomorphic ALT
    panel[11, :25], panel[11, 25:] = 0, 1
    typed = np.array(typed, np.int64)
    k = hap_classes(panel, typed)
    bounds = np.concatenate([[-1], typed, [L]])
    for i in range(typed.size + 1):
        a, b = bounds[i] + 1, bounds[i + 1]
        if a >= b:
            assert k.n_cls[i] == 0
            continue
        _, first, inv = np.unique(panel[a:b].T, axis=0, return_index=True, return_inverse=True)
        assert k.n_cls[i] == first.size
        same = inv[:, None] == inv[None, :]
        np.testing.assert_array_equal(k.cls[i][:, None] == k.cls[i][None, :], same)
        seen = k.cls[i][np.sort(first)]
        np.testing.assert_array_equal(seen, np.arange(first.size))  # numbered by first appearance
        rep = np.array([np.flatnonzero(k.cls[i] == c)[0] for c in range(first.size)])
        for s in range(a, b):
            alt = np.flatnonzero(panel[s, rep] == 1)
            ref = np.flatnonzero(panel[s, rep] == 0)
            want = alt if alt.size <= ref.size else ref
            assert k.alt_short[s] == (alt.size <= ref.size)
            np.testing.assert_array_equal(k.indices[k.indptr[s]:k.indptr[s + 1]], want)
    for s in typed:
        assert k.indptr[s] == k.indptr[s + 1]


def test_classes_cover_a_target_whose_visible_sites_they_type():
    panel = np.zeros((10, 4), np.int8)
    k = hap_classes(panel, np.array([2, 5, 7]))
    assert covers(k, np.array([2, 7]), 10) and covers(k, np.array([2, 5, 7]), 10)
    assert not covers(k, np.array([2, 6]), 10)
    assert not covers(no_classes(10, 4), np.array([2]), 10)
