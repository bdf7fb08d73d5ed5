"""The KING-robust kinship estimators, from exact integer counts as plink2 computes them."""

from __future__ import annotations

import numpy as np

from snpbag.errors import InputError

ESTIMATORS = ("between", "within")


def kinship(hethet, ibs0, het_row, het_col, *, estimator: str = "between") -> np.ndarray:
    """KING-robust kinship from integer counts, computed exactly as plink2 does.

    between: ½ − (4·IBS0 + A + B) / (4·(HETHET + min(A, B)))   (plink2 --make-king-table)
    within:  (HETHET − 2·IBS0) / (2·HETHET + A + B)            (KING within-family; vcftools --relatedness2)

    with A, B the two het/hom counts. Integer numerator and denominator, one double
    division: a pair without usable heterozygous sites gives ``nan`` (0/0) or ``-inf``,
    as plink2 prints them.

    Parameters
    ----------
    hethet, ibs0, het_row, het_col : integer count arrays of equal shape.
    estimator : ``between`` or ``within``.

    Returns
    -------
    float64 array.

    Raises
    ------
    InputError : unknown estimator.
    """
    hh = np.asarray(hethet, dtype=np.int64)
    i0 = np.asarray(ibs0, dtype=np.int64)
    a = np.asarray(het_row, dtype=np.int64)
    b = np.asarray(het_col, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if estimator == "between":
            return 0.5 - (4 * i0 + a + b).astype(np.float64) / (4 * (hh + np.minimum(a, b))).astype(np.float64)
        if estimator == "within":
            return (hh - 2 * i0).astype(np.float64) / (2 * hh + a + b).astype(np.float64)
    raise InputError(f"--estimator {estimator!r}: choose one of {', '.join(ESTIMATORS)}")
