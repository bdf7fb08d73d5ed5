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
    kinship = np.asarray(kinship, dtype=np.float64)
    return kept_share(truth, {f"{x:g}": kinship >= x for x in thresholds})


def prefilter_misses(truth: np.ndarray, kinship: np.ndarray, realised: np.ndarray, threshold: float
                      ) -> list[dict[str, float]]:
    """Why a kinship prefilter at ``threshold`` misses related pairs, per true degree.

    A related pair is missed when its KING kinship is below the cut. Either the pair really shares
    less than the cut (its realised kinship is below it too: meiosis left it little IBD, and no
    estimator's cut at ``threshold`` would keep it) or it shares enough and the estimate fell below
    (KING's error: allele-frequency noise at few sites, population structure).

    Parameters
    ----------
    truth : int array of true degrees (>= 1) or :data:`UNRELATED`, one per pair (unrelated pairs are skipped).
    kinship : the pairs' KING-robust kinship; NaN counts as missed.
    realised : the pairs' true realised kinship (from IBD).
    threshold : the cut X of ``--min-kinship``.

    Returns
    -------
    One row per related degree: ``{"degree", "pairs", "missed", "missed_share", "shares_less",
    "king_below"}``; ``shares_less`` + ``king_below`` = ``missed`` (counts).
    """
    truth = np.asarray(truth)
    kinship, realised = np.asarray(kinship, dtype=np.float64), np.asarray(realised, dtype=np.float64)
    rows = []
    for d in sorted(set(truth.tolist()) - {UNRELATED}):
        m = truth == d
        missed = ~(kinship[m] >= threshold)
        less = missed & (realised[m] < threshold)
        rows.append({"degree": str(d), "pairs": int(m.sum()), "missed": int(missed.sum()),
                     "missed_share": float(missed.mean()), "shares_less": int(less.sum()),
                     "king_below": int((missed & ~less).sum())})
    return rows


def kept_share(truth: np.ndarray, kept: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """Share of each true degree's pairs (then ``UN``) that each prefilter keeps: ``kept`` maps a name to a
    boolean mask over the pairs; row ``{"degree", "pairs", "kept_NAME": share, ...}`` (recall for related
    degrees; for unrelated pairs the share of the quadratic work not saved)."""
    truth = np.asarray(truth)
    rows = []
    for d in sorted(set(truth.tolist()), key=lambda x: (x == UNRELATED, x)):
        m = truth == d
        rows.append({"degree": "UN" if d == UNRELATED else str(d), "pairs": int(m.sum()),
                     **{f"kept_{name}": float(mask[m].mean()) for name, mask in kept.items()}})
    return rows


def degree_confusion(truth: np.ndarray, called: np.ndarray, max_degree: int) -> tuple[list[str], np.ndarray]:
    """(labels ``1`` .. ``max_degree``, ``UN``; counts (L, L), row = true, column = called).
    Degrees beyond ``max_degree`` count as ``UN``."""
    labels = [*map(str, range(1, max_degree + 1)), "UN"]

    def index(d: np.ndarray) -> np.ndarray:
        d = np.asarray(d)
        return np.where((d == UNRELATED) | (d > max_degree), max_degree, d - 1)

    return labels, confusion_matrix(index(truth), index(called), len(labels))
