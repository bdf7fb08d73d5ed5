"""Classification metrics and cross-validation folds: one definition each, shared by
``snpbag classify``, the benchmarks and the demo.

Folds are repeated, stratified and grouped: samples joined by a relative pair (a kinship
file) or by identical features (duplicates) form one group, and a group is never split
between training and test, so a relative's genome cannot leak the answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from snpbag.errors import InputError

#: KING kinship at or above which two samples are relatives for the folds: third degree
#: (KING's 2^-4.5 boundary between third degree and unrelated).
RELATIVE_KINSHIP = 0.0442


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts: row = true class, column = predicted class (-1: unassigned, not counted)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    ok = y_pred >= 0
    return np.bincount(y_true[ok] * n_classes + y_pred[ok], minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def f1_per_class(y_true, y_pred, n_classes: int) -> np.ndarray:
    """F1 of each class (0 where a class is never true nor predicted). Unassigned calls
    (-1) count as misses of their true class."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    out = np.zeros(n_classes)
    for c in range(n_classes):
        tp = np.sum((y_true == c) & (y_pred == c))
        denom = np.sum(y_true == c) + np.sum(y_pred == c)
        out[c] = 2 * tp / denom if denom else 0.0
    return out


def macro_f1(y_true, y_pred, n_classes: int) -> float:
    """Unweighted mean of the per-class F1 over the classes that occur in ``y_true``."""
    present = np.bincount(np.asarray(y_true), minlength=n_classes) > 0
    return float(f1_per_class(y_true, y_pred, n_classes)[present].mean())


def groups_of(n: int, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Connected components (int64 (n,), numbered by first member) of the graph of ``pairs``."""
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(n)])
    _, first = np.unique(roots, return_index=True)
    lookup = {int(roots[f]): k for k, f in enumerate(np.sort(first))}
    return np.array([lookup[int(r)] for r in roots], dtype=np.int64)


def duplicate_pairs(features: np.ndarray) -> list[tuple[int, int]]:
    """Pairs of rows with identical feature vectors (the same genome given twice)."""
    seen: dict[bytes, int] = {}
    pairs = []
    for i, row in enumerate(np.ascontiguousarray(features)):
        key = row.tobytes()
        if key in seen:
            pairs.append((seen[key], i))
        else:
            seen[key] = i
    return pairs


def check_labels(labels: np.ndarray, classes: Sequence[str], *, folds: int, what: str) -> None:
    """InputError for one class only, or a class with fewer members than folds."""
    counts = np.bincount(labels, minlength=len(classes))
    if len(classes) < 2:
        raise InputError(f"{what}: only one class ({', '.join(classes)}); a classifier needs at least two")
    small = [f"{c} ({n})" for c, n in zip(classes, counts) if n < folds]
    if small:
        raise InputError(f"{what}: class {', '.join(small)} has fewer samples than --folds {folds}; "
                         "lower --folds, merge the class or drop it from the labels")


def stratified_group_folds(labels, groups, *, folds: int, repeats: int, seed: int = 0) -> list[np.ndarray]:
    """Fold number of every sample (int64 (n,)) for each repeat.

    Groups are dealt in random order (largest first) to the fold whose class counts stay
    closest to an even share, so every fold holds about 1/folds of each class and every
    group sits whole in one fold.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    n_classes = int(labels.max()) + 1
    ids = np.unique(groups)
    counts = np.zeros((ids.size, n_classes))
    np.add.at(counts, (np.searchsorted(ids, groups), labels), 1)
    target = counts.sum(0) / folds
    out = []
    for r in range(repeats):
        rng = np.random.default_rng([seed, r])
        order = rng.permutation(ids.size)
        order = order[np.argsort(-counts[order].sum(1), kind="stable")]
        have = np.zeros((folds, n_classes))
        fold_of = np.empty(ids.size, np.int64)
        for g in order:
            cost = ((have + counts[g] - target) ** 2).sum(1) - ((have - target) ** 2).sum(1)
            best = np.flatnonzero(cost == cost.min())
            f = int(best[np.argmin(have[best].sum(1))])
            fold_of[g] = f
            have[f] += counts[g]
        out.append(fold_of[np.searchsorted(ids, groups)])
    return out
