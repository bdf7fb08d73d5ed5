"""The classifiers an embedding classifier must beat: principal components of the genotypes
(as plink2 ``--pca`` computes them) with multinomial logistic regression, and k nearest
neighbours on the same components. numpy only.
"""

from __future__ import annotations

import numpy as np


def standardised(dosage: np.ndarray) -> np.ndarray:
    """(N, M) ALT dosages (-1 missing) -> (N, M') variance-standardised genotypes
    ``(g - 2p) / sqrt(2p(1 - p))`` over the polymorphic sites, missing calls at 0 (the mean);
    p is the ALT frequency among called genotypes, as plink2 computes it for --pca."""
    g = np.asarray(dosage, dtype=np.float64)
    called = g >= 0
    n = called.sum(0)
    p = np.where(called, g, 0).sum(0) / np.maximum(2 * n, 1)
    keep = (p > 0) & (p < 1) & (n > 0)
    g, called, p = g[:, keep], called[:, keep], p[keep]
    x = (g - 2 * p) / np.sqrt(2 * p * (1 - p))
    return np.where(called, x, 0.0)


def pca(dosage: np.ndarray, n_components: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Top principal components of the genetic relationship matrix ``X Xᵀ / M`` of the
    standardised genotypes X (plink2 --pca): eigenvectors (N, k), unit length, and their
    eigenvalues (k,), largest first. Signs are fixed so each eigenvector's largest-magnitude
    entry is positive (plink2's signs are arbitrary)."""
    x = standardised(dosage)
    grm = x @ x.T / max(x.shape[1], 1)
    vals, vecs = np.linalg.eigh(grm)
    k = min(n_components, vals.size)
    order = np.argsort(vals)[::-1][:k]
    vals, vecs = vals[order], vecs[:, order]
    sign = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(k)])
    return vecs * sign, vals


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


class LogisticRegression:
    """Multinomial logistic regression with an L2 penalty ``l2/2 * |W|²`` (not on the
    intercepts), fitted by Newton's method: the penalised log-likelihood is strictly concave,
    so the optimum is unique and reached in a few steps for the ~20 features of a PCA."""

    def __init__(self, *, l2: float = 1.0, max_iter: int = 50, tol: float = 1e-8) -> None:
        self.l2, self.max_iter, self.tol = l2, max_iter, tol

    def fit(self, x: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> LogisticRegression:
        x = np.asarray(x, np.float64)
        self.mean, self.scale = x.mean(0), x.std(0) + 1e-12
        xs = np.hstack([(x - self.mean) / self.scale, np.ones((x.shape[0], 1))])
        n, d = xs.shape
        k = n_classes or int(y.max()) + 1
        onehot = np.eye(k)[y]
        w = np.zeros((d, k))
        pen = np.full(d, self.l2)
        pen[-1] = 0.0
        ridge = np.kron(np.diag(pen), np.eye(k)) + 1e-9 * np.eye(d * k)
        for _ in range(self.max_iter):
            p = _softmax(xs @ w)  # (n, k)
            grad = (xs.T @ (p - onehot) + pen[:, None] * w).reshape(-1)  # (d*k,)
            # Hessian: block (c, c') = Σ_i x_i x_iᵀ p_ic (δ_cc' - p_ic'), index (feature, class)
            hess = np.empty((d, k, d, k))
            for c in range(k):
                for c2 in range(c, k):
                    wgt = p[:, c] * ((c == c2) - p[:, c2])
                    hess[:, c, :, c2] = hess[:, c2, :, c] = (xs * wgt[:, None]).T @ xs
            hess = hess.reshape(d * k, d * k)
            step = np.linalg.solve(hess + ridge, grad)
            w -= step.reshape(d, k)
            if np.abs(step).max() < self.tol:
                break
        self.w = w
        return self

    def decision(self, x: np.ndarray) -> np.ndarray:
        xs = (np.asarray(x, np.float64) - self.mean) / self.scale
        return xs @ self.w[:-1] + self.w[-1]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return _softmax(self.decision(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.decision(x).argmax(1)


def knn_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, *, k: int = 5) -> np.ndarray:
    """Majority class among the k nearest training rows (Euclidean); a tie goes to the tied
    class whose members among the k are nearest in total, then to the lower class."""
    train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    d = ((test_x[:, None, :] - train_x[None, :, :]) ** 2).sum(-1)  # (t, n)
    k = min(k, train_x.shape[0])
    near = np.argsort(d, axis=1, kind="stable")[:, :k]
    n_classes = int(train_y.max()) + 1
    out = np.empty(test_x.shape[0], np.int64)
    for i, idx in enumerate(near):
        votes = np.bincount(train_y[idx], minlength=n_classes)
        tied = np.flatnonzero(votes == votes.max())
        if tied.size > 1:
            dist = np.array([d[i, idx[train_y[idx] == c]].sum() for c in tied])
            tied = tied[dist == dist.min()]
        out[i] = tied[0]
    return out
