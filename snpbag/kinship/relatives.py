"""Degrees through relatives: a pair's degree bounded by a parent's relationship to the other member.

Why: beyond degree ~7 a pair's own segments stop telling relatives from unrelated pairs: a distant
relative shares no segment, or the one or two that unrelated pairs of one population also carry, so
no caller of one pair names it (68 of 228 held-out degree-8 pairs called unrelated; docs/benchmarks.md,
"Relationship degrees vs KING"). A parent in the
cohort is one meiosis closer to every relative of its child's that it passes on, and shares twice as
much with them: for C a parent of X, deg(X, B) ≤ deg(C, B) + 1 for every B that is not X's
descendant (X's relationship to B through C; X may be closer still through its other parent). This
module applies that bound along every parent link the pair calls reveal, to a fixpoint — the
lineal part of what pedigree-aware callers (PRIMUS, DRUID, Bonsai) do with sampled relatives. Where
no parent is sampled it changes nothing.

Parents come from the calls alone (no ages, :func:`find_parents`): the parent–offspring relatives
X shares with a full sibling are X's parents; two parent–offspring relatives of X that are far apart
(unrelated, or degree ≥ 4) are X's parents — two children of X are siblings (degree 1–2) and a
parent and a child of X are grandparent and grandchild (degree 2); once X's two parents are known,
its other parent–offspring relatives are its children if the parents are their grandparents. A sample with more than two parents so found,
or a pair each other's parent, has contradictory calls: its links are dropped.

A bound is only as good as the relative's call. Lifts start from a pair's own call of degree
``source_max`` or closer (default 7: unrelated pairs of one population are called degree 8–9 now and
then, rarely closer, and a lift from such a false call would pass it to every descendant); a bound
carries on down the generations to ``max_degree`` (each step adds one degree to the call it started
from, and its error).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations

import numpy as np

#: Farthest called degree a lift starts from (see the module docstring).
SOURCE_MAX = 7
#: Closest degree two parents of one sample may be called and still be told from a parent and child
#: (grandparent–grandchild, degree 2, now and then called 3) or two children (siblings, degree 1–2) of that
#: sample; mates who are first cousins (3) are not told.
MATES_MIN = 4


def _key(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def find_parents(pairs: np.ndarray, degree: np.ndarray, po: np.ndarray) -> dict[int, frozenset[int]]:
    """Each sample's parents as the calls reveal them: ``{child: parents}`` (one or two).

    ``pairs`` (m, 2) sample indices, ``degree`` (m,) called degrees (≤ 0 for unrelated; a pair not
    given is unrelated), ``po`` (m,) True where a degree-1 pair is called parent–offspring. Rules,
    from the most reliable calls (degree 1) on:

    * siblings: X's parent–offspring relatives that are also a full sibling's are their parents;
    * mates: of X's parent–offspring relatives, the one pair called farthest apart, if it is at least
      :data:`MATES_MIN` apart and no other pair of them is as far (a grandparent–grandchild pair
      called too far would otherwise pass for mates);
    * children: once X's two parents are known, its other parent–offspring relatives that are second-
      or third-degree relatives of both parents are its children (a second-degree relative of X's child
      may be the child's grandparent or half sibling: no rule takes it for X's parent);

    and a sample given more than two parents, or a pair each other's parent, gets none.
    """
    called: dict[tuple[int, int], int] = {}
    po_rel: dict[int, set[int]] = defaultdict(set)
    fs_rel: dict[int, set[int]] = defaultdict(set)
    near = np.flatnonzero(degree >= 1)  # a cohort's pairs are mostly unrelated: loop over the related only
    for (a, b), d, p in zip(pairs[near].tolist(), degree[near].tolist(), po[near].tolist()):
        called[_key(a, b)] = d
        if d == 1:
            for x, y in ((a, b), (b, a)):
                (po_rel if p else fs_rel)[x].add(y)
    apart = lambda y, z: called.get(_key(y, z), 1 << 30)  # noqa: E731
    parents: dict[int, set[int]] = defaultdict(set)
    for x, rel in po_rel.items():
        for s in fs_rel.get(x, ()):
            parents[x] |= rel & po_rel.get(s, set())
        far = sorted(((apart(y, z), (y, z)) for y, z in combinations(sorted(rel), 2)), reverse=True)
        if far and far[0][0] >= MATES_MIN and (len(far) == 1 or far[1][0] < far[0][0]):
            parents[x] |= set(far[0][1])
    changed = True
    while changed:
        changed = False
        children: dict[int, set[int]] = defaultdict(set)
        for c, ps in parents.items():
            for q in ps:
                children[q].add(c)
        for x, rel in po_rel.items():
            mine = parents.get(x, set())
            if len(mine) == 2:  # both parents known: the others are children, their grandchildren
                for v in rel - children.get(x, set()) - mine:
                    if all(2 <= apart(v, q) < MATES_MIN for q in mine):
                        parents[v].add(x)
                        changed = True
    bad = {x for x, ps in parents.items() if len(ps) > 2}
    bad |= {x for x, ps in parents.items() for q in ps if x in parents.get(q, ())}
    return {x: frozenset(ps) for x, ps in parents.items() if x not in bad and ps}


@dataclass
class Lifted:
    """Pairs whose degree the relatives bound closer than their own call.

    ``pairs`` (k, 2) sample indices (first < second), ``degree`` (k,) the bound, ``via`` (k,) the
    parent (of either member) whose degree with the other member gave it, ``source_pair`` (k, 2) that
    parent and member (a call, or itself a bound), ``scored`` (k,) the pair's row in the input, or -1
    for a pair that was not scored (outside a prefilter's candidates); ``parents`` as
    :func:`find_parents`.
    """

    pairs: np.ndarray
    degree: np.ndarray
    via: np.ndarray
    source_pair: np.ndarray
    scored: np.ndarray
    parents: dict[int, frozenset[int]]

    def __len__(self) -> int:
        return len(self.degree)


def lift(pairs: np.ndarray, degree: np.ndarray, po: np.ndarray, *, max_degree: int,
         source_max: int = SOURCE_MAX, only_scored: bool = False) -> Lifted:
    """Apply deg(X, B) ≤ deg(C, B) + 1 for every found parent C of X, to a fixpoint.

    Parameters
    ----------
    pairs, degree, po : as :func:`find_parents`; ``degree`` ≤ 0 is unrelated.
    max_degree : farthest degree a bound is carried to (the model's classes).
    source_max : farthest called degree a lift starts from.
    only_scored : bound only the input's pairs (``--pairs``: the user chose them), else also pairs that
        were not scored.

    Returns the pairs whose bound is closer than their call (unrelated counts as farthest), with the
    bound's parent and source pair, in sample order.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    degree = np.asarray(degree)
    parents = find_parents(pairs, degree, np.asarray(po, bool))
    children: dict[int, list[int]] = defaultdict(list)
    for c, ps in parents.items():
        for q in ps:
            children[q].append(c)
    n = int(pairs.max()) + 1 if len(pairs) else 0
    code = pairs.min(axis=1) * n + pairs.max(axis=1)  # each input pair's row, found by search (no dict of all)
    order = np.argsort(code, kind="stable")
    sorted_code = code[order]

    def row(k: tuple[int, int]) -> int:
        at = int(np.searchsorted(sorted_code, k[0] * n + k[1]))
        return int(order[at]) if at < len(sorted_code) and sorted_code[at] == k[0] * n + k[1] else -1

    near = np.flatnonzero(degree >= 1)
    best = {_key(a, b): d for (a, b), d in zip(pairs[near].tolist(), degree[near].tolist())}
    via: dict[tuple[int, int], tuple[int, tuple[int, int]]] = {}
    heap = [(d, k) for k, d in best.items() if d <= source_max]
    heapq.heapify(heap)
    while heap:
        d, (a, b) = heapq.heappop(heap)
        if best[a, b] != d:
            continue  # superseded by a closer bound
        for p, q in ((a, b), (b, a)):
            for x in children.get(p, ()):
                if x == q:
                    continue
                k = _key(x, q)
                if only_scored and row(k) < 0:
                    continue
                if d + 1 <= max_degree and d + 1 < best.get(k, 1 << 30):
                    best[k] = d + 1
                    via[k] = (p, (a, b))
                    heapq.heappush(heap, (d + 1, k))
    keys = sorted(via)
    return Lifted(pairs=np.array(keys, dtype=np.int64).reshape(-1, 2),
                  degree=np.array([best[k] for k in keys], dtype=np.int64),
                  via=np.array([via[k][0] for k in keys], dtype=np.int64),
                  source_pair=np.array([via[k][1] for k in keys], dtype=np.int64).reshape(-1, 2),
                  scored=np.array([row(k) for k in keys], dtype=np.int64), parents=parents)
