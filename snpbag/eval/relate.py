"""Degree-call metrics: exact and within-±1-degree accuracy per true degree.

Degrees are integers 1..; unrelated (and "more distant than the caller names") is
:data:`UNRELATED` (0 is never a degree here). An unrelated call is within ±1 of nothing but
an unrelated truth, so a caller that cannot name 4th degree (KING's thresholds) scores 0
on 4th-degree pairs rather than being credited for calling them "unrelated".
"""

from __future__ import annotations

import numpy as np

from snpbag.eval.classify import confusion_matrix

#: Code of "unrelated" in degree arrays.
UNRELATED = -1


def degree_accuracy(truth: np.ndarray, called: np.ndarray) -> dict[str, dict[str, float]]:
    """Per true degree (and ``UN``): pairs, exact accuracy and within-±1 accuracy of ``called``.

    Parameters
    ----------
    truth, called : int arrays of degrees (>= 1) or :data:`UNRELATED`.

    Returns
    -------
    {"1": {"n": .., "exact": .., "within1": ..}, ..., "UN": {...}} in degree order.
    """
    truth, called = np.asarray(truth), np.asarray(called)
    out: dict[str, dict[str, float]] = {}
    for d in sorted(set(truth.tolist()), key=lambda x: (x == UNRELATED, x)):
        m = truth == d
        c = called[m]
        exact = c == d
        if d == UNRELATED:
            within = exact
        else:
            within = (c != UNRELATED) & (np.abs(c - d) <= 1)
        out["UN" if d == UNRELATED else str(d)] = {"n": int(m.sum()), "exact": float(exact.mean()),
                                                   "within1": float(within.mean())}
    return out


def prefilter_recall(truth: np.ndarray, kinship: np.ndarray, thresholds) -> list[dict[str, float]]:
    """What a kinship prefilter (``snpbag relate --min-kinship X``) keeps, per true degree.

    Parameters
    ----------
    truth : int array of true degrees (>= 1) or :data:`UNRELATED`, one per pair.
    kinship : the pairs' KING-robust kinship (what ``snpbag king`` writes); NaN is never kept.
    thresholds : the cuts X; a pair is kept when its kinship is at least X.

    Returns
    -------
    One row per true degree (then ``UN``): ``{"degree", "pairs", "kept_X": share kept, ...}``.
    For a related degree the share kept is the prefilter's recall (1 − share missed); for
    unrelated pairs it is the share of the quadratic work the prefilter does not save.
    """
    truth, kinship = np.asarray(truth), np.asarray(kinship, dtype=np.float64)
    rows = []
    for d in sorted(set(truth.tolist()), key=lambda x: (x == UNRELATED, x)):
        k = kinship[truth == d]
        row: dict[str, float] = {"degree": "UN" if d == UNRELATED else str(d), "pairs": int(k.size)}
        for x in thresholds:
            row[f"kept_{x:g}"] = float(np.mean(k >= x))
        rows.append(row)
    return rows


def degree_confusion(truth: np.ndarray, called: np.ndarray, max_degree: int) -> tuple[list[str], np.ndarray]:
    """(labels ``1`` .. ``max_degree``, ``UN``; counts (L, L), row = true, column = called).
    Degrees beyond ``max_degree`` count as ``UN``."""
    labels = [*map(str, range(1, max_degree + 1)), "UN"]

    def index(d: np.ndarray) -> np.ndarray:
        d = np.asarray(d)
        return np.where((d == UNRELATED) | (d > max_degree), max_degree, d - 1)

    return labels, confusion_matrix(index(truth), index(called), len(labels))
