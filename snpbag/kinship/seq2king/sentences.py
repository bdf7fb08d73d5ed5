"""Sentences of individuals, the normalised target and the token features (numpy; no torch).

A sentence is a set of individuals (row numbers of the kinship matrix); its target is the
kinship sub-matrix of that set, normalised over the whole matrix (global min-max to [0, 1]
as the original, or z-score). Sentences of different lengths are padded with -1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Normaliser:
    """``(k - shift) / scale``: global min-max or z-score of the off-diagonal kinship."""

    kind: str
    shift: float
    scale: float

    @classmethod
    def fit(cls, matrix: np.ndarray, kind: str) -> Normaliser:
        if kind == "minmax":  # the original normalises the whole matrix, diagonal included
            lo, hi = float(matrix.min()), float(matrix.max())
            return cls(kind, lo, (hi - lo) or 1.0)
        off = matrix[~np.eye(len(matrix), dtype=bool)]
        return cls(kind, float(off.mean()), float(off.std()) or 1.0)

    def __call__(self, k: np.ndarray) -> np.ndarray:
        return (k - self.shift) / self.scale


def split_individuals(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) row numbers, sorted; at least 2 on each side."""
    order = rng.permutation(n)
    k = min(max(2, int(round(n * fraction))), n - 2)
    return np.sort(order[k:]), np.sort(order[:k])


def choose_anchors(pool: np.ndarray, n_anchors: int, rng: np.random.Generator) -> np.ndarray:
    """``n_anchors`` individuals of ``pool`` (all of it when smaller): the fixed feature columns."""
    return np.sort(rng.choice(pool, size=min(n_anchors, len(pool)), replace=False))


def sample_sentences(pool: np.ndarray, n: int, *, min_len: int, max_len: int,
                     rng: np.random.Generator) -> np.ndarray:
    """``n`` random sets of ``min_len``..``max_len`` individuals of ``pool``: (n, L) with -1 padding."""
    max_len = min(max_len, len(pool))
    min_len = min(min_len, max_len)
    out = np.full((n, max_len), -1, dtype=np.int64)
    lengths = rng.integers(min_len, max_len + 1, size=n)
    for i, L in enumerate(lengths):
        out[i, :L] = rng.choice(pool, size=L, replace=False)
    return out


def targets(norm_matrix: np.ndarray, sentences: np.ndarray) -> np.ndarray:
    """The normalised kinship sub-matrix of each sentence, 0 where padded: (n, L, L)."""
    idx = np.where(sentences < 0, 0, sentences)
    t = norm_matrix[idx[:, :, None], idx[:, None, :]]
    valid = sentences >= 0
    return np.where(valid[:, :, None] & valid[:, None, :], t, 0.0)

