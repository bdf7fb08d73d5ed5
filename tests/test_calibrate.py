"""snpbag.inference.calibrate: the probability temperature fitted on held-out typed calls."""

from __future__ import annotations

import numpy as np
import pytest

from snpbag.inference.calibrate import MIN_CALLS, apply_temperature, fit_temperature, held_out_rows


def _calls(p, rng):
    return (rng.random(p.shape[0])[:, None] > np.cumsum(p, -1)).sum(-1)


def test_fit_recovers_the_temperature_that_undoes_a_flattening():
    rng = np.random.default_rng(0)
    p = rng.dirichlet([0.3, 0.3, 0.3], size=20_000)  # calibrated probabilities
    calls = _calls(p, rng)
    assert fit_temperature(p, calls) == pytest.approx(1.0, abs=0.04)
    flat = apply_temperature(p, 1.25)  # underconfident: p^(1/1.25)
    t = fit_temperature(flat, calls)
    assert t == pytest.approx(0.8, abs=0.04)
    np.testing.assert_allclose(apply_temperature(flat, t), p, atol=0.05)
    sharp = apply_temperature(p, 0.7)  # overconfident
    assert fit_temperature(sharp, calls) == pytest.approx(1 / 0.7, rel=0.05)


def test_few_or_missing_calls_keep_the_probabilities():
    p = np.full((MIN_CALLS - 1, 3), 1 / 3)
    assert fit_temperature(p, np.zeros(MIN_CALLS - 1, int)) == 1.0
    calls = np.full(10 * MIN_CALLS, -1)  # all missing
    assert fit_temperature(np.full((10 * MIN_CALLS, 3), 1 / 3), calls) == 1.0
    assert apply_temperature(p, 1.0) is p


def test_held_out_rows_skip_the_ends():
    rows = np.arange(100, 130)
    np.testing.assert_array_equal(held_out_rows(rows), [102, 107, 112, 117, 122, 127])
    np.testing.assert_array_equal(held_out_rows(rows, every=10), [105, 115, 125])
