"""The pure-Python statistics against NumPy's and SciPy's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from fhir_bridge.report.statistics import (
    incomplete_beta,
    paired_change,
    quantile,
    summary,
    t_cdf,
    t_quantile,
)


@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 11, 30, 120, 1000, 0.5, 2.5])
@pytest.mark.parametrize("p", [0.0001, 0.025, 0.05, 0.3, 0.5, 0.8, 0.95, 0.975, 0.995, 0.9999])
def test_t_quantile_matches_scipy(p: float, df: float) -> None:
    assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("t", [-40.0, -3.1, -1.0, 0.0, 0.7, 2.2, 12.0])
def test_t_cdf_matches_scipy(t: float) -> None:
    for df in (1, 4, 10, 57):
        assert t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), rel=1e-10, abs=1e-14)


def test_incomplete_beta_matches_scipy() -> None:
    for a, b, x in [(0.5, 0.5, 0.3), (5, 0.5, 0.99), (50, 0.5, 0.2), (2, 3, 0.6), (1, 1, 0.4)]:
        assert incomplete_beta(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-10)


def test_t_quantile_refuses_probabilities_outside_the_open_unit_interval() -> None:
    for p in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError):
            t_quantile(p, 5)


def test_quantiles_are_numpys_linear_ones() -> None:
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    for p in (0.0, 0.25, 0.5, 0.75, 1.0, 0.1):
        assert quantile(values, p) == pytest.approx(np.quantile(values, p))
    assert summary([]).mean is None and summary([7.0]).sd is None


def test_paired_change_is_a_t_interval_with_d_z() -> None:
    changes = [-12.0, -20.0, -3.0, -15.0, -18.0]
    change = paired_change(changes)
    sem = stats.sem(changes)
    low, high = stats.t.interval(0.95, len(changes) - 1, loc=np.mean(changes), scale=sem)
    assert (change.ci_low, change.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert change.d_z == pytest.approx(np.mean(changes) / np.std(changes, ddof=1))
    assert paired_change([-4.0]).ci_low is None
    assert paired_change([2.0, 2.0]).d_z is None  # no spread: no standardized effect
