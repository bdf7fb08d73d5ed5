"""VCF-Zarr genotype calls → ALT allele dosages, the way plink2 imports them."""

from __future__ import annotations

import numpy as np


def alt_dosage(gt: np.ndarray) -> np.ndarray:
    """ALT allele count of each call: (..., 2) allele indices → (...) int8.

    −1 where an allele is missing (a half-call ``0/.`` is missing); a haploid call (second
    allele −2, VCF Zarr's fill) counts as homozygous, as plink2 imports it. Returns a new
    array; ``gt`` is not modified.
    """
    a0 = gt[..., 0]
    a1 = gt[..., 1]
    d = a0 + a1
    if not gt.size or gt.min() >= 0:  # no missing or haploid call: the common case, one pass
        return d
    haploid = a1 == -2
    if haploid.any():
        d[haploid] = 2 * a0[haploid]
    d[(a0 < 0) | (a1 == -1)] = -1
    return d
