"""Relationship degrees from KING kinship: the cut points of Manichaikul et al. (2010).

A kinship coefficient φ is assigned the degree d whose expected value 2^-(d+1) is
nearest on a log scale, i.e. the cut points are the geometric midpoints
2^-1.5, 2^-2.5, 2^-3.5, 2^-4.5 (0.354, 0.177, 0.0884, 0.0442 in the KING manual).
First-degree pairs are split into parent–offspring and full siblings by the
proportion of opposite-homozygote sites (IBS0): a parent and child always share an
allele, so their IBS0 is zero up to genotyping error, while full siblings share no
allele IBD over a quarter of the genome and so show about a quarter of the IBS0 of an
unrelated pair. KING's own cut is a fixed IBS0 < 0.008 (:data:`PO_IBS0`, its
``--kinship`` default; ``--errorrate`` changes it), tuned on array SNPs. The unrelated
level depends on the variant set (common array SNPs: ~0.03–0.05; sequence data full of
rare variants: ~0.01), so :func:`po_threshold` offers a relative cut instead:
PO_IBS0_FRACTION (0.1) of the IBS0 expected for an unrelated pair under
Hardy–Weinberg, mean(2p²q²) over the variants used, which ``snpbag king --po-ibs0
auto`` computes from the cohort's allele frequencies.

References
----------
Manichaikul A, Mychaleckyj JC, Rich SS, Daly K, Sale M, Chen WM (2010). Robust
relationship inference in genome-wide association studies. Bioinformatics 26:2867–2873.
KING 2.x source, ``relationship.cpp`` (``--kinship``: PO if IBS0 < 0.008, or < the
``--errorrate`` value) and ``bigdataKING.cpp`` (``--related`` without IBD segments and
with a pedigree: the midpoint of the mean IBS0 of the known PO and FS pairs), as copied
in github.com/statgen/topmed_variant_calling (``king/``).
"""

from __future__ import annotations

import numpy as np

#: Lower kinship bounds of duplicate/MZ, 1st, 2nd and 3rd degree (strictly greater than).
KING_CUTOFFS = (2 ** -1.5, 2 ** -2.5, 2 ** -3.5, 2 ** -4.5)
#: KING's parent–offspring/full-sibling cut: first-degree pairs with IBS0 below it are PO.
PO_IBS0 = 0.008
#: A first-degree pair is parent–offspring if its IBS0 is below this fraction of the
#: unrelated expectation (full siblings: ~0.25 of it, parent–offspring: 0).
PO_IBS0_FRACTION = 0.1

#: Labels of the INFTYPE column, KING's vocabulary; index = code returned by classify().
LABELS = ("Dup/MZ", "PO", "FS", "2nd", "3rd", "UN", "NA")
DUP, PO, FS, SECOND, THIRD, UNRELATED, MISSING = range(7)

#: Degree of each label code (−1: unrelated beyond 3rd degree, −2: no estimate).
CODE_DEGREE = np.array([0, 1, 1, 2, 3, -1, -2], dtype=np.int8)


def degree(kinship: np.ndarray, *, cutoffs: tuple[float, ...] = KING_CUTOFFS) -> np.ndarray:
    """Relationship degree of each kinship value.

    Parameters
    ----------
    kinship : array of KING kinship coefficients (nan allowed).
    cutoffs : decreasing lower bounds of degree 0 (duplicate/MZ), 1, 2, 3, ...

    Returns
    -------
    int8 array of the same shape: 0..len(cutoffs)-1, −1 below the last cut point
    (unrelated or more distant), −2 for nan.
    """
    k = np.asarray(kinship, dtype=np.float64)
    out = np.full(k.shape, -1, dtype=np.int8)
    for d in range(len(cutoffs) - 1, -1, -1):
        out[k > cutoffs[d]] = d
    out[np.isnan(k)] = -2
    return out


def po_threshold(expected_ibs0: float, *, fraction: float = PO_IBS0_FRACTION) -> float:
    """IBS0 proportion separating parent–offspring from full siblings.

    Parameters
    ----------
    expected_ibs0 : IBS0 proportion expected for an unrelated pair, mean(2p²q²).
    fraction : share of it below which a first-degree pair is parent–offspring.

    Returns
    -------
    float
    """
    return fraction * expected_ibs0


def po_probability(ibs0: np.ndarray, nsnp: np.ndarray, expected_ibs0: float) -> np.ndarray:
    """P(parent–offspring | first degree) from a pair's opposite-homozygote count.

    Two Poisson rates with equal priors: full siblings ``nsnp · u / 4`` (no allele IBD over a quarter
    of the genome; u = ``expected_ibs0``, mean(2p²q²)) and parent–offspring ``nsnp · u / 40`` (genotype
    error only). They cross at 0.098 · u, next to :data:`PO_IBS0_FRACTION`'s relative cut, so the call
    agrees with ``snpbag king --po-ibs0 auto``; NaN where ``nsnp`` is 0 or u is not positive.
    """
    k = np.asarray(ibs0, dtype=np.float64)
    fs = np.asarray(nsnp, dtype=np.float64) * expected_ibs0 / 4
    po = fs / 10
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = k * np.log(po / fs) - po + fs
        return np.where(fs > 0, 1 / (1 + np.exp(-np.clip(llr, -700, 700))), np.nan)


def classify(kinship: np.ndarray, ibs0: np.ndarray, *, po_ibs0: float,
             cutoffs: tuple[float, ...] = KING_CUTOFFS) -> np.ndarray:
    """KING relationship class of each pair as a code into :data:`LABELS`.

    Parameters
    ----------
    kinship : KING kinship coefficients.
    ibs0 : IBS0 proportions (opposite-homozygote sites / sites called in both).
    po_ibs0 : first-degree pairs with ``ibs0 < po_ibs0`` are parent–offspring, the
        others full siblings (see :func:`po_threshold`).
    cutoffs : four decreasing cut points (duplicate, 1st, 2nd, 3rd degree).

    Returns
    -------
    uint8 codes: DUP, PO, FS, SECOND, THIRD, UNRELATED, or MISSING for nan kinship.

    Raises
    ------
    ValueError : ``cutoffs`` does not have four decreasing values.
    """
    if len(cutoffs) != 4 or any(a <= b for a, b in zip(cutoffs, cutoffs[1:])):
        raise ValueError(f"cutoffs must be four decreasing kinship values, got {cutoffs}")
    d = degree(kinship, cutoffs=cutoffs)
    ibs0 = np.asarray(ibs0, dtype=np.float64)
    code = np.full(d.shape, UNRELATED, dtype=np.uint8)
    code[d == 0] = DUP
    with np.errstate(invalid="ignore"):
        code[(d == 1) & (ibs0 < po_ibs0)] = PO
        code[(d == 1) & ~(ibs0 < po_ibs0)] = FS
    code[d == 2] = SECOND
    code[d == 3] = THIRD
    code[d == -2] = MISSING
    return code


def labels(codes: np.ndarray) -> np.ndarray:
    """INFTYPE strings of codes from :func:`classify`."""
    return np.asarray(LABELS, dtype=object)[np.asarray(codes, dtype=np.int64)]
