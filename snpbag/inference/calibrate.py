"""One temperature for a model's genotype probabilities, fitted on the input's own typed calls.

INFO/R2 (Beagle's DR2 formula, :func:`snpbag.inference.vcfout.dose_r2`) is the squared
correlation of dose and truth only if the probabilities are calibrated. An encoder trained
with masked cross-entropy can be underconfident where the copying input is uncertain: its
R2 then reads low in the middle of the range (docs/benchmarks.md, "R2 calibration").
Before imputing, ``snpbag impute`` hides every fifth typed site of the first 32 samples,
predicts them, and fits the temperature T that maximises the likelihood of the hidden
calls (Guo et al. 2017, as ``snpbag relate`` does for its degrees); every probability is
then ``p^(1/T)`` renormalised (= softmax(logits / T)). T = 1 changes nothing.
"""

from __future__ import annotations

import numpy as np

#: Fewer held-out calls than this: keep T = 1 (the fit would follow noise).
MIN_CALLS = 500
_FLOOR = 1e-6


def apply_temperature(gp: np.ndarray, t: float) -> np.ndarray:
    """Probabilities (..., 3) → ``p^(1/t)`` renormalised (the same array back for t = 1)."""
    if t == 1.0:
        return gp
    p = np.clip(np.asarray(gp, dtype=np.float64), _FLOOR, None) ** (1.0 / t)
    return (p / p.sum(-1, keepdims=True)).astype(np.asarray(gp).dtype, copy=False)


def fit_temperature(gp: np.ndarray, calls: np.ndarray) -> float:
    """The T with the largest likelihood of ``calls`` (0/1/2; anything else: missing, left
    out) under ``apply_temperature(gp, T)`` — :func:`snpbag.model.popclass.fit_temperature`
    on log ``gp`` as logits; 1.0 with fewer than :data:`MIN_CALLS` calls."""
    import torch

    from snpbag.model.popclass import fit_temperature as fit_logits

    gp = np.asarray(gp, dtype=np.float64).reshape(-1, 3)
    calls = np.asarray(calls).reshape(-1)
    ok = (calls >= 0) & (calls <= 2) & np.isfinite(gp).all(-1)
    if ok.sum() < MIN_CALLS:
        return 1.0
    logits = torch.as_tensor(np.log(np.clip(gp[ok], _FLOOR, None)))
    return fit_logits(logits, torch.as_tensor(calls[ok].astype(np.int64)))


def held_out_rows(typed_rows: np.ndarray, *, every: int = 5) -> np.ndarray:
    """The typed rows hidden for the fit: every ``every``-th, starting half a step in (so
    an input's first typed site keeps its neighbours)."""
    return np.asarray(typed_rows)[every // 2::every]
