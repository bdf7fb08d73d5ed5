"""Degree-call metrics: exact and within-±1-degree accuracy per true degree.

Degrees are integers 1..; unrelated (and "more distant than the caller names") is
:data:`UNRELATED` (0 is never a degree here). An unrelated call is within ±1 of nothing but
an unrelated truth, so a caller that cannot name 4th degree (KING's thresholds) scores 0
on 4th-degree pairs rather than being credited for calling them "unrelated".
"""

from __future__ import annotations

import numpy as np

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
