"""The Jobson-Korkie-Memmel Sharpe-difference test: its size under the null by simulation, its power
against a real difference, and its figures against a direct computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rotation_platform.errors import ResearchError
from rotation_platform.research.value_added import memmel_variance, sharpe_difference


def _pairs(rng, n: int, sr1: float, sr2: float, rho: float, vol1: float = 0.01, vol2: float = 0.02):
    z = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=n)
    return sr1 * vol1 + vol1 * z[:, 0], sr2 * vol2 + vol2 * z[:, 1]


@pytest.mark.parametrize("rho", [0.0, 0.7])
def test_the_test_rejects_about_five_percent_under_the_null(rho) -> None:
    rng = np.random.default_rng(20240613)
    reps, n = 1500, 500
    one, two = 0, 0
    for _ in range(reps):
        a, b = _pairs(rng, n, 0.05, 0.05, rho)  # equal Sharpe ratios (0.05 a session), different volatilities
        res = sharpe_difference(a, b)
        one += res.p_value < 0.05
        two += res.p_two_sided < 0.05
    # binomial(1500, 0.05): standard deviation 0.0056; 3.5 of them either side
    tol = 3.5 * math.sqrt(0.05 * 0.95 / reps)
    assert abs(one / reps - 0.05) < tol, one / reps
    assert abs(two / reps - 0.05) < tol, two / reps


def test_the_test_detects_a_real_difference() -> None:
    rng = np.random.default_rng(5)
    hits = 0
    for _ in range(200):
        a, b = _pairs(rng, 1000, 0.15, 0.0, 0.5)
        hits += sharpe_difference(a, b).beats
    assert hits / 200 > 0.9
    # and never calls the worse series the better one
    a, b = _pairs(rng, 1000, 0.0, 0.15, 0.5)
    res = sharpe_difference(a, b, against="equal_weight")
    assert not res.beats and res.z < 0 and res.p_value > 0.95
    assert "significantly worse" in res.line() and "equal_weight" in res.line()


def test_the_figures_follow_the_formula() -> None:
    rng = np.random.default_rng(11)
    a, b = _pairs(rng, 300, 0.1, 0.02, 0.3)
    rf = 0.02
    res = sharpe_difference(a, b, annualisation=252, risk_free_rate=rf)
    ea, eb = a - rf / 252, b - rf / 252
    sr1, sr2 = ea.mean() / ea.std(ddof=1), eb.mean() / eb.std(ddof=1)
    rho = np.corrcoef(ea, eb)[0, 1]
    var = (2 * (1 - rho) + 0.5 * (sr1 ** 2 + sr2 ** 2 - 2 * sr1 * sr2 * rho ** 2)) / 300
    assert res.std_error == pytest.approx(math.sqrt(var), rel=1e-12)
    assert memmel_variance(sr1, sr2, rho, 300) == pytest.approx(var, rel=1e-12)
    assert res.z == pytest.approx((sr1 - sr2) / math.sqrt(var), rel=1e-12)
    assert res.difference_annualised == pytest.approx((sr1 - sr2) * math.sqrt(252), rel=1e-12)
    assert res.p_two_sided == pytest.approx(2 * min(res.p_value, 1 - res.p_value), rel=1e-9)


def test_degenerate_inputs() -> None:
    flat = np.zeros(50)
    res = sharpe_difference(flat, np.linspace(-0.01, 0.01, 50))
    assert not res.beats and math.isnan(res.z) and "not testable" in res.line()
    with pytest.raises(ResearchError, match="same length"):
        sharpe_difference(np.zeros(5), np.zeros(6))


def test_the_verdict_names_a_strategy_significantly_worse_than_equal_weight() -> None:
    from rotation_platform.production.summary import value_added_verdict

    assert [value_added_verdict(p) for p in (0.01, 0.049, 0.5, 0.951, 0.999, float("nan"), None)] == [
        "significant", "significant", "not significant", "worse", "worse", "untested", "untested"]
