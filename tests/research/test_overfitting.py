"""PBO by CSCV and the deflated Sharpe ratio: the papers' example, hand cases, a brute-force reference."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rotation_platform.errors import ResearchError
from rotation_platform.research import deflated_sharpe_ratio, expected_max_sharpe, pbo_cscv


def test_deflated_sharpe_reproduces_the_papers_numerical_example() -> None:
    # Bailey & Lopez de Prado (2014), section "A numerical example": N = 100 trials, variance of the
    # annualised Sharpe ratios 1/2, best annualised SR 2.5 over T = 1250 daily returns (250 a year),
    # skewness -3, kurtosis 10 -> SR0 ~ 0.1132 (per day) and DSR ~ 0.9004.
    res = deflated_sharpe_ratio(n_trials=100, sharpe_variance=0.5 / 250, sharpe=2.5 / np.sqrt(250), n_obs=1250,
                                skew=-3.0, kurtosis=10.0)
    assert res.sr0 == pytest.approx(0.1132, abs=5e-5)
    assert res.dsr == pytest.approx(0.9004, abs=5e-5)


def test_expected_max_sharpe_by_hand() -> None:
    g = 0.5772156649015329
    z1, z2 = stats.norm.ppf(1 - 1 / 10), stats.norm.ppf(1 - 1 / (10 * np.e))
    assert expected_max_sharpe(10, 4.0) == pytest.approx(2.0 * ((1 - g) * z1 + g * z2), rel=1e-14)
    assert expected_max_sharpe(1, 4.0) == 0.0


def test_deflated_sharpe_from_returns_measures_the_moments() -> None:
    r = np.random.default_rng(1).standard_t(5, 1000) * 0.01 + 0.001
    res = deflated_sharpe_ratio(r, n_trials=20, sharpe_variance=0.002)
    assert res.sharpe == pytest.approx(r.mean() / r.std(ddof=1))
    assert res.skew == pytest.approx(stats.skew(r)) and res.kurtosis == pytest.approx(stats.kurtosis(r, fisher=False))
    z = (res.sharpe - res.sr0) * np.sqrt(999) / np.sqrt(1 - res.skew * res.sharpe + (res.kurtosis - 1) / 4 * res.sharpe ** 2)
    assert res.dsr == pytest.approx(stats.norm.cdf(z), rel=1e-12)


def test_pbo_hand_case_reversal_is_fully_overfit() -> None:
    # two blocks, two configurations; A wins block 0 and loses block 1, B the opposite. Each split picks the
    # in-sample winner, which is the worse of two out of sample: rank 1, w = 1/3, logit ln(1/2) < 0.
    a = [0.02, 0.03, -0.02, -0.01]
    b = [-0.02, -0.01, 0.02, 0.03]
    res = pbo_cscv(np.array([a, b]).T, n_blocks=2)
    assert res.n_splits == 2 and res.pbo == 1.0
    np.testing.assert_allclose(res.logits, [np.log(0.5), np.log(0.5)])
    # A better in both blocks: never overfit, rank 2, logit ln 2
    res = pbo_cscv(np.array([[0.03, 0.04, 0.04, 0.05], b]).T, n_blocks=2)  # Sharpe 4.95 / 6.36 vs -2.12 / 3.54
    assert res.pbo == 0.0
    np.testing.assert_allclose(res.logits, [np.log(2.0), np.log(2.0)])


def _pbo_reference(m: np.ndarray, s: int) -> float:
    t, n = m.shape
    size = t // s
    m = m[t - size * s:]
    blocks = np.split(np.arange(len(m)), s)
    lam = []
    for combo in combinations(range(s), s // 2):
        is_rows = np.concatenate([blocks[b] for b in combo])
        oos_rows = np.concatenate([blocks[b] for b in range(s) if b not in combo])
        sr_is = m[is_rows].mean(0) / m[is_rows].std(0, ddof=1)
        sr_oos = m[oos_rows].mean(0) / m[oos_rows].std(0, ddof=1)
        best = int(np.argmax(sr_is))
        rank = stats.rankdata(sr_oos)[best]
        w = rank / (n + 1)
        lam.append(np.log(w / (1 - w)))
    return float(np.mean(np.array(lam) <= 0))


def test_pbo_matches_a_brute_force_reference_and_separates_skill_from_noise() -> None:
    rng = np.random.default_rng(5)
    noise = rng.normal(0, 0.01, (803, 12))
    res = pbo_cscv(noise, n_blocks=8)
    assert res.pbo == pytest.approx(_pbo_reference(noise, 8), abs=1e-15)
    assert res.n_sessions == 800
    skill = noise.copy()
    skill[:, 3] += 0.004  # one configuration with a real edge everywhere
    assert pbo_cscv(skill, n_blocks=8).pbo == 0.0
    big = rng.normal(0, 0.01, (1600, 40))
    assert 0.3 < pbo_cscv(big, n_blocks=16).pbo < 0.7  # pure noise: the in-sample winner is a coin flip
    with pytest.raises(ResearchError, match="even number"):
        pbo_cscv(noise, n_blocks=5)


def test_deflated_sharpe_agrees_with_vectorbt() -> None:
    import vectorbt as vbt  # noqa: F401

    rng = np.random.default_rng(11)
    trials = pd.DataFrame(rng.normal(0.0004, 0.01, (1000, 25)))
    best = trials.mean() / trials.std()
    pick = int(best.idxmax())
    ours = deflated_sharpe_ratio(trials[pick].to_numpy(), n_trials=25, sharpe_variance=float(best.var(ddof=1)))
    theirs = trials.vbt.returns(freq="1D", year_freq="252D").deflated_sharpe_ratio()
    assert ours.dsr == pytest.approx(float(theirs.iloc[pick]), abs=1e-3)
