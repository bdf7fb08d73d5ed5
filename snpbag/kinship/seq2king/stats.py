"""Connectivity of attention to group labels, its p-values, and the inversion rule (numpy, scipy).

Every function takes attention of equal-length sentences, ``A`` of shape (S, L, L) with
rows summing to 1 (query i's attention over keys j of sentence s), and integer group
codes ``G`` of shape (S, L) (continent or population of each token). Self-attention
(j = i) is always excluded.

Definitions (docs/seq2king.md gives them with the same symbols):

* query i is *eligible* when its sentence holds at least one other member of its group and
  at least one member of another group;
* (a) ``connectivity_a``: the share of eligible queries whose mean attention to same-group
  keys (j != i) is strictly greater than their mean attention to other-group keys (a
  relative difference within TIE = 1e-9 is a tie, which does not count);
* (b) ``connectivity_b``: over all eligible queries, the share of off-diagonal attention
  mass that falls on same-group keys, divided by the share of off-diagonal keys that are
  same-group (what uniform attention would give); 1 = no preference;
* ``permutation_p``: labels are shuffled within each sentence (group sizes kept); p is
  (1 + #{permuted statistic >= observed}) / (1 + permutations);
* ``wilcoxon_p``: a one-sided paired Wilcoxon signed-rank test of same- minus other-group
  mean attention over eligible queries (queries of one sentence are not independent: read
  it next to the permutation p, which respects that);
* inversion: ``invert`` maps each row to (row max - A) renormalised; ``choose_orientation``
  inverts a layer whose attention has a negative Spearman correlation with kinship on the
  calibration sentences it is given, and sees nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snpbag.errors import SampleError


def encode_groups(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(names, codes): integer codes for string labels of any shape."""
    names, codes = np.unique(labels, return_inverse=True)
    return names, codes.reshape(np.shape(labels))


def _query_means(A: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per query: same-group attention mass, other-group mass (self excluded), same-group and
    other-group key counts. Each (S, L)."""
    S, L, _ = A.shape
    n_groups = int(G.max()) + 1
    onehot = np.zeros((S, L, n_groups))
    np.put_along_axis(onehot, G[:, :, None], 1.0, axis=2)
    off = A * (1.0 - np.eye(L))  # self excluded
    mass = off @ onehot  # (S, L, n_groups): attention of query i on each group
    mine = onehot.astype(bool)
    same = np.where(mine, mass, 0.0).sum(axis=2)
    other = np.where(mine, 0.0, mass).sum(axis=2)
    sizes = onehot.sum(axis=1)  # (S, n_groups)
    n_same = np.take_along_axis(sizes, G, axis=1) - 1
    n_other = (L - 1) - n_same
    return same, other, n_same, n_other


#: Relative difference below which same- and other-group means count as tied (float rounding).
TIE = 1e-9


def query_differences(A: np.ndarray, G: np.ndarray) -> np.ndarray:
    """Mean same-group minus mean other-group attention of every eligible query (1-D); differences
    within TIE (relative) of zero are exactly 0."""
    same, other, n_same, n_other = _query_means(A, G)
    ok = (n_same > 0) & (n_other > 0)
    ms, mo = same[ok] / n_same[ok], other[ok] / n_other[ok]
    d = ms - mo
    return np.where(np.abs(d) <= TIE * np.maximum(np.abs(ms), np.abs(mo)), 0.0, d)


def _check(A: np.ndarray, G: np.ndarray) -> None:
    if A.ndim != 3 or A.shape[1] != A.shape[2] or G.shape != A.shape[:2]:
        raise ValueError(f"attention {A.shape} and groups {G.shape}: need (S, L, L) and (S, L)")


def connectivity_a(A: np.ndarray, G: np.ndarray) -> float:
    """Definition (a), in percent; NaN when no query is eligible."""
    _check(A, G)
    d = query_differences(A, G)
    return float(100.0 * (d > 0).mean()) if d.size else float("nan")


def connectivity_b(A: np.ndarray, G: np.ndarray) -> float:
    """Definition (b): same-group share of off-diagonal mass over the uniform expectation."""
    _check(A, G)
    same, other, n_same, n_other = _query_means(A, G)
    ok = (n_same > 0) & (n_other > 0)
    if not ok.any():
        return float("nan")
    observed = same[ok].sum() / (same[ok] + other[ok]).sum()
    uniform = n_same[ok].sum() / (n_same[ok] + n_other[ok]).sum()
    return float(observed / uniform)


def permutation_p(A: np.ndarray, G: np.ndarray, *, permutations: int = 1000, rng: np.random.Generator,
                  statistic=connectivity_a) -> float:
    """One-sided p of ``statistic`` against labels shuffled within each sentence."""
    _check(A, G)
    observed = statistic(A, G)
    if not np.isfinite(observed):
        return float("nan")
    S, L = G.shape
    hits = 0
    for _ in range(permutations):
        order = np.argsort(rng.random((S, L)), axis=1)
        hits += statistic(A, np.take_along_axis(G, order, axis=1)) >= observed
    return (1 + hits) / (1 + permutations)


def wilcoxon_p(A: np.ndarray, G: np.ndarray) -> float:
    """One-sided paired Wilcoxon signed-rank p (same > other) over eligible queries."""
    from scipy.stats import wilcoxon

    d = query_differences(A, G)
    d = d[d != 0]
    if d.size < 2:
        return float("nan")
    return float(wilcoxon(d, alternative="greater").pvalue)


def invert(A: np.ndarray) -> np.ndarray:
    """Row-normalised (row max - A); a constant row stays uniform."""
    B = A.max(axis=-1, keepdims=True) - A
    total = B.sum(axis=-1, keepdims=True)
    uniform = np.full_like(A, 1.0 / A.shape[-1])
    return np.where(total > 0, B / np.where(total > 0, total, 1.0), uniform)


def spearman(A: np.ndarray, K: np.ndarray) -> float:
    """Spearman correlation of attention and kinship over off-diagonal pairs of all sentences."""
    from scipy.stats import spearmanr

    off = ~np.eye(A.shape[-1], dtype=bool)
    a, k = A[:, off].ravel(), K[:, off].ravel()
    if np.ptp(a) == 0 or np.ptp(k) == 0:
        return 0.0
    return float(spearmanr(a, k).statistic)


@dataclass(frozen=True)
class Orientation:
    inverted: bool
    rho: float  # Spearman of the raw attention with kinship on the calibration sentences


def choose_orientation(A_calibration: np.ndarray, K_calibration: np.ndarray) -> Orientation:
    """Invert when attention runs against kinship on the calibration split (rho < 0)."""
    rho = spearman(A_calibration, K_calibration)
    return Orientation(rho < 0, rho)


def score(A: np.ndarray, G: np.ndarray, *, permutations: int, rng: np.random.Generator) -> dict[str, float]:
    """All statistics of one attention source on one split: connectivity (a, %), its permutation
    p, connectivity (b), its permutation p, the Wilcoxon p and the number of eligible queries."""
    if len(np.unique(G)) < 2:
        raise SampleError("one group only in the evaluation sentences: connectivity compares groups; "
                          "label at least two groups or use longer sentences (--sentence-len)")
    return {
        "connectivity": connectivity_a(A, G),
        "p_permutation": permutation_p(A, G, permutations=permutations, rng=rng),
        "connectivity_b": connectivity_b(A, G),
        "p_permutation_b": permutation_p(A, G, permutations=permutations, rng=rng, statistic=connectivity_b),
        "p_wilcoxon": wilcoxon_p(A, G),
        "n_queries": int(query_differences(A, G).size),
    }
