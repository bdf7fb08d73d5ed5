"""Figures of population structure (matplotlib, Agg backend, PNG): a 2-D projection of
genome embeddings coloured by population, and confusion matrices side by side.

The projection is UMAP when the ``umap-learn`` package is installed (the SNPBag paper's
Fig. 4a) and the first two principal components otherwise; the figure title names which,
so a reader never mistakes one for the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from snpbag.errors import InputError
from snpbag.fileio import atomic_output


def pca2(x: np.ndarray) -> np.ndarray:
    """(n, d) -> (n, 2): scores on the first two principal components of the centred rows."""
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    return u[:, :2] * s[:2]


def project2(x: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, str]:
    """(n, 2) coordinates and the method's name: UMAP when installed, else PCA."""
    try:
        import umap  # noqa: F401  (umap-learn; optional)
    except ImportError:
        return pca2(x), "PCA"
    import umap

    return umap.UMAP(n_components=2, random_state=seed).fit_transform(x), "UMAP"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def projection_png(x: np.ndarray, labels: Sequence[str], path: str | Path, *, what: str = "genome embeddings",
                   seed: int = 0) -> str:
    """Write a PNG of a 2-D projection of ``x`` (one row per sample), one colour per label.

    Returns the projection's name ("UMAP" or "PCA"), which the title also gives.

    Raises
    ------
    InputError : ``x`` not 2-D, not finite, fewer than 3 rows, or labels not one per row.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3 or x.shape[1] < 2:
        raise InputError(f"{path}: a projection needs a (samples, numbers) matrix of at least 3 x 2, "
                         f"got shape {x.shape}; plot more samples")
    if len(labels) != x.shape[0]:
        raise InputError(f"{path}: {len(labels)} labels for {x.shape[0]} samples; give one label per sample")
    if not np.isfinite(x).all():
        raise InputError(f"{path}: the embeddings hold NaN or infinite values; re-run `snpbag embed`")
    xy, method = project2(x, seed=seed)
    plt = _pyplot()
    names = sorted(set(labels))
    lab = np.asarray(labels)
    cmap = plt.get_cmap("tab20", max(len(names), 1))
    fig, ax = plt.subplots(figsize=(6, 5))
    for i, name in enumerate(names):
        sel = lab == name
        ax.scatter(xy[sel, 0], xy[sel, 1], s=10, color=cmap(i), label=f"{name} ({int(sel.sum())})")
    ax.set_title(f"{method} of {what}, {x.shape[0]} samples", fontsize=10)
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    _save(fig, path, plt)
    return method


def confusion_png(matrices: Mapping[str, np.ndarray], classes: Sequence[str], path: str | Path) -> None:
    """Write a PNG of confusion matrices side by side, titled by their keys (rows: true class,
    columns: predicted; each row drawn as shares of its true class, in per cent).

    Raises
    ------
    InputError : no matrix, or a matrix that is not classes x classes of counts.
    """
    if not matrices:
        raise InputError(f"{path}: no confusion matrix to plot")
    k = len(classes)
    mats = {}
    for name, m in matrices.items():
        m = np.asarray(m, dtype=np.float64)
        if m.shape != (k, k) or (m < 0).any() or not np.isfinite(m).all():
            raise InputError(f"{path}: confusion matrix of {name!r} has shape {m.shape}, want {k} x {k} "
                             "non-negative counts (one row and column per class)")
        mats[name] = m
    plt = _pyplot()
    n = len(mats)
    size = 1.2 + 0.35 * k
    fig, axes = plt.subplots(1, n, figsize=(size * n + 0.8, size), squeeze=False)
    for ax, (name, m) in zip(axes[0], mats.items()):
        share = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(k), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(k), classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= 15:
            for i in range(k):
                for j in range(k):
                    if share[i, j] >= 0.005:
                        ax.text(j, i, f"{100 * share[i, j]:.0f}", ha="center", va="center", fontsize=6,
                                color="white" if share[i, j] > 0.5 else "black")
    _save(fig, path, plt)


def _save(fig, path: str | Path, plt) -> None:
    try:
        fig.tight_layout()
        with atomic_output(path, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
