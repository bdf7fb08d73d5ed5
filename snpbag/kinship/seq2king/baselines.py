"""Attention-shaped baselines from the model's input alone (numpy): what the report compares with.

* ``king_attention``: each row of the sentence's kinship sub-matrix through a softmax
  (self excluded), temperature = the standard deviation of the cohort's off-diagonal kinship;
* ``pca_attention``: softmax of minus squared distances between individuals' top principal
  components of the kinship matrix (self excluded), temperature = the median squared
  distance of the sentence.
Neither reads labels.
"""

from __future__ import annotations

import numpy as np


def _softmax_off_diagonal(scores: np.ndarray) -> np.ndarray:
    L = scores.shape[-1]
    s = np.where(np.eye(L, dtype=bool), -np.inf, scores)
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def king_attention(K: np.ndarray, *, temperature: float) -> np.ndarray:
    """(S, L, L) sub-matrices of raw kinship -> row-stochastic attention."""
    return _softmax_off_diagonal(K / temperature)


def principal_components(matrix: np.ndarray, k: int = 10) -> np.ndarray:
    """Top ``k`` eigenvectors (scaled by sqrt of their eigenvalues) of the double-centred matrix: (N, k)."""
    n = len(matrix)
    c = matrix - matrix.mean(axis=0, keepdims=True) - matrix.mean(axis=1, keepdims=True) + matrix.mean()
    w, v = np.linalg.eigh(c)
    top = np.argsort(w)[::-1][:min(k, n)]
    return v[:, top] * np.sqrt(np.clip(w[top], 0, None))


def pca_attention(pcs: np.ndarray) -> np.ndarray:
    """(S, L, k) principal components of each sentence's tokens -> row-stochastic attention."""
    d2 = ((pcs[:, :, None, :] - pcs[:, None, :, :]) ** 2).sum(-1)
    off = ~np.eye(pcs.shape[1], dtype=bool)
    scale = np.median(d2[:, off], axis=1)[:, None, None]
    return _softmax_off_diagonal(-d2 / np.where(scale > 0, scale, 1.0))
