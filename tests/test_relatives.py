"""Degrees through relatives (snpbag.kinship.relatives): parents found from pair calls alone, and each pair's
degree bounded by a parent's, checked against the tabular kinship of the simulator's family template."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from snpbag.kinship import relatives as R
from snpbag.simulate import pedigree as ped


@pytest.fixture(scope="module")
def family():
    """One degree-12 template family: its pairs, true degrees (0 for unrelated: spouses, in-laws), parent–offspring
    flags and true parents, from the pedigree kinship (independent of the module under test)."""
    members = ped.build_families(1, populations=["X"], rng=np.random.default_rng(0), max_degree=12)
    phi = ped.expected_kinship_matrix(members)
    index = {m.id: k for k, m in enumerate(members)}
    pairs = np.array(list(itertools.combinations(range(len(members)), 2)))
    degree = np.array([round(-math.log2(phi[i, j])) - 1 if phi[i, j] > 0 else 0 for i, j in pairs])
    parents = {index[m.id]: frozenset((index[m.father], index[m.mother])) for m in members if m.father}
    po = np.array([i in parents.get(j, ()) or j in parents.get(i, ()) for i, j in pairs])
    return pairs, degree, po, parents


def test_parents_found_from_true_calls_are_the_pedigree_parents(family):
    pairs, degree, po, parents = family
    assert len(parents) == 29 and R.find_parents(pairs, degree, po) == parents
    founders = set(range(len(degree))) - set(parents)
    assert not set(R.find_parents(pairs, degree, po)) & founders


@pytest.mark.parametrize("known", [7, 5, 3])
def test_true_calls_to_a_degree_bound_every_farther_pair_exactly(family, known):
    """With true calls up to ``known`` and nothing farther, every pair of degree known+1 … 12 gets its true
    degree back, and no bound is ever closer than the truth (deg(X, B) ≤ deg(C, B) + 1 is exact here: every
    relationship of this template runs through one parent)."""
    pairs, degree, po, _ = family
    called = np.where(degree <= known, degree, 0)
    got = R.lift(pairs, called, po, max_degree=12)
    truth = degree[got.scored]
    assert (got.scored >= 0).all() and (got.degree == truth).all()
    assert sorted(got.scored.tolist()) == np.flatnonzero(degree > known).tolist()
    np.testing.assert_array_equal(got.pairs, pairs[got.scored])
    # each bound names a true parent of one member, and the source pair is that parent with the other member
    for (a, b), v, (s, t) in zip(got.pairs, got.via, got.source_pair):
        assert v in family[3].get(a, ()) or v in family[3].get(b, ())
        assert {s, t} == {v, b if v in family[3].get(a, ()) else a}
    # max_degree stops the bounds there
    capped = R.lift(pairs, called, po, max_degree=10)
    assert capped.degree.max() == 10 and set(capped.scored) <= set(got.scored)


def test_pair_and_member_order_do_not_change_the_bounds(family):
    pairs, degree, po, _ = family
    called = np.where(degree <= 4, degree, 0)
    a = R.lift(pairs, called, po, max_degree=12)
    rng = np.random.default_rng(1)
    order = rng.permutation(len(pairs))
    b = R.lift(pairs[order][:, ::-1], called[order], po[order], max_degree=12)
    np.testing.assert_array_equal(a.pairs, b.pairs)
    np.testing.assert_array_equal(a.degree, b.degree)
    np.testing.assert_array_equal(order[b.scored], a.scored)


def test_a_bound_starts_only_from_calls_within_source_max_and_spares_unscored_pairs_on_request():
    # trio: 0 and 1 are 2's parents; 3 is related to parent 0 only
    pairs = np.array([[0, 2], [1, 2], [0, 1], [0, 3], [2, 3]])
    po = np.array([True, True, False, False, False])
    for d, lifted in ((7, 8), (8, None)):
        got = R.lift(pairs, np.array([1, 1, 0, d, 0]), po, max_degree=12)
        assert got.parents == {2: frozenset({0, 1})}
        assert (got.degree.tolist(), got.via.tolist()) == (([lifted], [0]) if lifted else ([], []))
    # the pair 2–3 not scored: a row of its own (scored -1), unless only the scored pairs are bounded
    got = R.lift(pairs[:4], np.array([1, 1, 0, 5]), po[:4], max_degree=12)
    assert got.pairs.tolist() == [[2, 3]] and got.scored.tolist() == [-1] and got.degree.tolist() == [6]
    assert len(R.lift(pairs[:4], np.array([1, 1, 0, 5]), po[:4], max_degree=12, only_scored=True)) == 0
    # a closer own call is kept
    assert len(R.lift(pairs, np.array([1, 1, 0, 5, 4]), po, max_degree=12)) == 0


def test_parent_rules_and_contradictory_calls():
    # 3's three parent–offspring relatives, none close to another: no pair farthest apart, no parents
    pairs = np.array([[0, 3], [1, 3], [2, 3]])
    assert R.find_parents(pairs, np.array([1, 1, 1]), np.array([True, True, True])) == {}
    # two full siblings' shared parent–offspring relative is their parent
    sibs = np.array([[0, 1], [0, 2], [1, 2]])
    assert R.find_parents(sibs, np.array([1, 1, 1]), np.array([True, True, False])) == {1: {0}, 2: {0}}
    # a parent and a child of 1 are degree 2 apart: no mates
    chain = np.array([[0, 1], [1, 2], [0, 2]])
    assert R.find_parents(chain, np.array([1, 1, 2]), np.array([True, True, False])) == {}
    # ... and 2's mates 1 and 3 make 1 a parent of 2, not 0 a parent of 1: 0 may be 2's grandparent or half
    # sibling (1's child by another mate)
    pairs = np.array([[0, 1], [1, 2], [0, 2], [2, 3], [1, 3]])
    got = R.find_parents(pairs, np.array([1, 1, 2, 1, 0]), np.array([True, True, False, True, False]))
    assert got == {2: frozenset({1, 3})}
    # mates are the pair farthest apart: 2's parents 0, 1 (unrelated) and child 3, whose grandparent 0 is
    # called degree 3 — not a mate of 1 or 0; 3 is 2's child, a grandchild of both
    pairs = np.array([[0, 2], [1, 2], [2, 3], [0, 1], [0, 3], [1, 3]])
    got = R.find_parents(pairs, np.array([1, 1, 1, 0, 3, 2]), np.array([True, True, True, False, False, False]))
    assert got == {2: frozenset({0, 1}), 3: frozenset({2})}
    # a grandparent called degree 5 is too far for a grandchild: 3's link to 2 is left unknown
    got = R.find_parents(pairs, np.array([1, 1, 1, 0, 5, 2]), np.array([True, True, True, False, False, False]))
    assert got == {2: frozenset({0, 1})}
    # both 0–3 and 0–1 unrelated: two pairs equally far, and 2's parents stay unknown
    got = R.find_parents(pairs, np.array([1, 1, 1, 0, 0, 2]), np.array([True, True, True, False, False, False]))
    assert 2 not in got
    # contradictory calls: 1's mates 0 and 3 make 0 a parent of 1, and 2's mates 1 and 3 make 1 a parent
    # of 2, while 0 and 2 are full siblings (shared parent–offspring relative 1): 1 is both 0's parent and its
    # child, and neither keeps that link
    pairs = np.array([[0, 1], [1, 2], [0, 2], [1, 3], [2, 3], [0, 3]])
    got = R.find_parents(pairs, np.array([1, 1, 1, 1, 1, 0]), np.array([True, True, False, True, True, False]))
    assert got == {2: frozenset({1})}


def _slow_lift(n, pairs, called, parents, *, max_degree, source_max=R.SOURCE_MAX):
    """The bound by brute force: sweep every (child, parent, other) until nothing changes."""
    inf = 1 << 30
    cur = np.full((n, n), inf)
    for (a, b), d in zip(pairs.tolist(), called.tolist()):
        if d >= 1:
            cur[a, b] = cur[b, a] = d
    bound = np.zeros((n, n), bool)
    changed = True
    while changed:
        changed = False
        for x, ps in parents.items():
            for c in ps:
                for b in range(n):
                    d = cur[c, b]
                    if b == x or b == c or d == inf or not (d <= source_max or bound[c, b]):
                        continue
                    if d + 1 <= max_degree and d + 1 < cur[x, b]:
                        cur[x, b] = cur[b, x] = d + 1
                        bound[x, b] = bound[b, x] = True
                        changed = True
    return {(a, b): int(cur[a, b]) for a, b in zip(*np.nonzero(np.triu(bound)))}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lift_matches_a_brute_force_sweep_on_noisy_calls(family, seed):
    """Calls off by one degree, missed and made up at random: the heap's fixpoint is the brute force's."""
    pairs, degree, po, _ = family
    rng = np.random.default_rng(seed)
    called = np.where(degree > 0, degree + rng.integers(-1, 2, len(degree)), 0)
    called[degree == 1] = 1
    called[(degree > 3) & (rng.random(len(degree)) < 0.3)] = 0  # missed
    called[(degree == 0) & (rng.random(len(degree)) < 0.05)] = rng.choice([6, 7, 8])  # made up
    got = R.lift(pairs, called, po, max_degree=12)
    slow = _slow_lift(int(pairs.max()) + 1, pairs, called, got.parents, max_degree=12)
    assert len(got) > 50 and {tuple(p): d for p, d in zip(got.pairs.tolist(), got.degree.tolist())} == slow
