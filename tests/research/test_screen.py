"""Factor screen: batch rank IC against scipy and alphalens, window statistics, selection, point in time."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tests.research.realdata import perturb_after, price_factors
from rotation_platform.config.models import ScreeningConfig
from rotation_platform.errors import ResearchError
from rotation_platform.research import FactorScreen, forward_returns, rank_ic, trade_prices
from rotation_platform.research import nb


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(x, y)[0])


def test_rank_ic_equals_scipy_spearman_on_real_data(real_panel, real_factors) -> None:
    values, names = real_factors
    labels = forward_returns(real_panel, (1, 5, 20), "close")
    universe = np.isfinite(trade_prices(real_panel, "close"))
    ic, autocorr, n_valid, varying = rank_ic(values, labels, universe, min_obs=3)
    compared = 0
    for s in range(0, values.shape[0], 4):
        for k in range(values.shape[2]):
            x = values[s, :, k]
            for j in range(3):
                y = labels[j, s]
                ok = np.isfinite(x) & np.isfinite(y) & universe[s]
                expected = _spearman(x[ok], y[ok]) if ok.sum() >= 3 else np.nan
                if np.isnan(expected):
                    assert np.isnan(ic[s, k, j]), (s, names[k], j)
                else:
                    assert abs(ic[s, k, j] - expected) <= 1e-12, (s, names[k], j)
                    compared += 1
            if s > 0:
                xp = values[s - 1, :, k]
                ok = np.isfinite(x) & np.isfinite(xp) & universe[s] & universe[s - 1]
                if ok.sum() >= 3 and np.isfinite(exp := _spearman(x[ok], xp[ok])):
                    assert abs(autocorr[s, k] - exp) <= 1e-12
            assert n_valid[s, k] == (np.isfinite(x) & universe[s]).sum()
    assert compared > 15_000


def test_rank_ic_handles_ties_nan_and_blocks_like_scipy() -> None:
    rng = np.random.default_rng(3)
    n_s, n_f, n_k = 60, 30, 5
    values = rng.integers(0, 6, (n_s, n_f, n_k)).astype(float)  # heavy ties
    values[rng.random(values.shape) < 0.15] = np.nan
    values[:, :, 4] = 1.0  # no variation: IC undefined
    labels = np.round(rng.normal(size=(2, n_s, n_f)), 1)
    labels[rng.random(labels.shape) < 0.1] = np.nan
    universe = rng.random((n_s, n_f)) > 0.1
    one = nb.rank_ic_nb(values, labels, universe, 4, 1)
    many = nb.rank_ic_nb(values, labels, universe, 4, 7)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)
    ic = one[0]
    assert np.isnan(ic[:, 4]).all() and not one[3][:, 4].any()
    for s in range(n_s):
        for k in range(4):
            for j in range(2):
                x, y = values[s, :, k], labels[j, s]
                ok = np.isfinite(x) & np.isfinite(y) & universe[s]
                exp = _spearman(x[ok], y[ok]) if ok.sum() >= 4 else np.nan
                if np.isnan(exp):
                    assert np.isnan(ic[s, k, j])
                else:
                    assert abs(ic[s, k, j] - exp) <= 1e-12


def test_rank_ic_equals_alphalens_factor_information_coefficient(real_panel, real_factors) -> None:
    from alphalens.performance import factor_information_coefficient
    from alphalens.utils import get_clean_factor_and_forward_returns

    values, names = real_factors
    panel = real_panel.select(start="2019-01-01")
    row0 = real_panel.sessions.get_loc(panel.sessions[0])
    labels = forward_returns(panel, (1, 5, 20), "close")
    complete = np.isfinite(labels).all(axis=0)  # alphalens drops a row unless every horizon has a return
    for name in ("mom_20", "vol_20"):
        k = names.index(name)
        f = values[row0:, :, k].copy()
        f[~complete] = np.nan
        factor = pd.DataFrame(f, index=panel.sessions, columns=panel.symbols).stack().dropna()
        factor.index.names = ["date", "asset"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = get_clean_factor_and_forward_returns(factor, panel["close"], periods=(1, 5, 20), quantiles=None,
                                                        bins=1, max_loss=1.0, filter_zscore=None)
            theirs = factor_information_coefficient(data)
        fs = FactorScreen((f[:, :, None].copy(), [name]), panel, horizons=(1, 5, 20), trade_at="close", min_obs=2)
        ours = pd.DataFrame(fs.ic.ic[:, 0, :], index=panel.sessions, columns=theirs.columns).reindex(theirs.index)
        assert len(theirs) > 1500
        assert np.isfinite(ours.to_numpy()).all() and np.isfinite(theirs.to_numpy()).all()
        np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=0, atol=1e-9)


def test_forward_returns_use_the_trade_price(real_panel) -> None:
    for at in ("open", "close"):
        labels = forward_returns(real_panel, (1, 5), at)
        price = real_panel[at]
        expected = (price.shift(-5) / price - 1.0).to_numpy()
        np.testing.assert_allclose(labels[1], expected, rtol=1e-14, equal_nan=True)
        assert np.isnan(labels[1][-5:]).all()


def test_screen_statistics_match_a_pandas_recomputation(context, screening) -> None:
    fs = context.screen
    as_of = fs.sessions.get_loc(pd.Timestamp("2021-06-30"))
    res = fs.screen(as_of, screening, selection_horizon=5)
    for h in (1, 5, 20):
        ics = fs.ic.frame(h).iloc[as_of - h - screening.ic_lookback + 1: as_of - h + 1]
        assert ics.index[-1] == fs.sessions[as_of - h]  # the last label realised at the as-of session
        for name in ("mom_60", "vol_20"):
            s = ics[name].dropna()
            assert res.stats.loc[name, f"ic_mean_{h}"] == pytest.approx(s.mean(), abs=1e-14)
            assert res.stats.loc[name, f"ic_std_{h}"] == pytest.approx(s.std(ddof=1), abs=1e-14)
            assert res.stats.loc[name, f"icir_{h}"] == pytest.approx(s.mean() / s.std(ddof=1) * np.sqrt(252), rel=1e-12)
            assert res.stats.loc[name, f"t_stat_{h}"] == pytest.approx(s.mean() / s.std(ddof=1) * np.sqrt(len(s) / h),
                                                                     rel=1e-12)
            assert res.stats.loc[name, f"hit_rate_{h}"] == pytest.approx((np.sign(s) == np.sign(s.mean())).mean())
    window = slice(as_of - screening.ic_lookback + 1, as_of + 1)
    k = fs.names.index("mom_60")
    coverage = fs.ic.n_valid[window, k].sum() / fs.ic.n_universe[window].sum()
    assert res.stats.loc["mom_60", "coverage"] == pytest.approx(coverage, rel=1e-14)
    assert res.stats.loc["mom_60", "rank_autocorr"] == pytest.approx(np.nanmean(fs.ic.autocorr[window, k]), rel=1e-12)
    assert res.decay.loc["mom_60"].tolist() == [res.stats.loc["mom_60", f"ic_mean_{h}"] for h in (1, 5, 20)]
    assert not res.stats["zero_variance"].any()
    # selection: top K eligible cluster leaders by |ICIR| at the selection horizon, with the IC's sign
    assert 1 <= len(res.selected) <= screening.top_k
    icir = res.stats["icir_5"]
    assert [f.sign for f in res.selected] == [int(np.sign(icir[f.name])) for f in res.selected]
    strengths = [abs(f.icir) for f in res.selected]
    assert strengths == sorted(strengths, reverse=True)
    assert set(res.stats.loc[res.stats["selected"]].index) == set(res.selected_names)


def test_correlated_factors_are_deduplicated_keeping_the_best_icir(real_panel, real_factors) -> None:
    values, names = real_factors
    k = names.index("mom_60")
    rng = np.random.default_rng(0)
    twin = values[:, :, k] * 1.0 + rng.normal(0, 1e-4, values.shape[:2])  # same ranks almost everywhere
    noise = rng.normal(size=values.shape[:2])
    noise[~np.isfinite(values[:, :, k])] = np.nan
    stack = np.stack([values[:, :, k], twin, noise], axis=2)
    fs = FactorScreen((stack, ["mom_60", "mom_60_twin", "noise"]), real_panel, horizons=(1, 5, 20))
    res = fs.screen("2022-12-30", ScreeningConfig(top_k=3, correlation_threshold=0.8), selection_horizon=5)
    leader = res.stats.loc[["mom_60", "mom_60_twin"], "icir_5"].abs().idxmax()
    other = ({"mom_60", "mom_60_twin"} - {leader}).pop()
    assert leader in res.selected_names and other not in res.selected_names
    assert res.stats.loc[other, "cluster"] == leader and res.stats.loc[other, "cluster_corr"] > 0.99
    assert res.stats.loc[leader, "cluster_size"] == 2


def test_zero_variance_factor_is_flagged_and_never_selected(real_panel, real_factors) -> None:
    values, names = real_factors
    flat = np.where(np.isfinite(values[:, :, 0]), 1.0, np.nan)
    fs = FactorScreen((np.stack([values[:, :, 0], flat], axis=2), ["mom_20", "flat"]), real_panel)
    res = fs.screen("2020-12-31", ScreeningConfig(top_k=2))
    assert bool(res.stats.loc["flat", "zero_variance"]) and not res.stats.loc["flat", "eligible"]
    assert "flat" not in res.selected_names


def test_selection_path_kernel_agrees_with_single_screens(context, screening) -> None:
    fs = context.screen
    rows = np.array([400, 900, 1500, 2200, 3000], dtype=np.int64)
    path = fs.selection_path(rows, screening, lookback=120, selection_horizon=5)
    for a, row in enumerate(rows):
        single = fs.screen(int(row), screening, lookback=120, selection_horizon=5)
        assert [(f.name, f.sign) for f in path.at(a)] == [(f.name, f.sign) for f in single.selected]
        np.testing.assert_allclose([f.icir for f in path.at(a)], [f.icir for f in single.selected], rtol=1e-12)


def test_screen_with_precomputed_ranks_equals_the_screen_that_ranks_its_own_window(context, screening) -> None:
    fs = context.screen
    offset = 300
    ranks = (offset, *fs.normalized_ranks(offset, 2400))
    for row in (600, 1500, 2399):
        own = fs.screen(row, screening, selection_horizon=5)
        shared = fs.screen(row, screening, selection_horizon=5, ranks=ranks)
        pd.testing.assert_frame_equal(own.stats, shared.stats)
        assert own.selected == shared.selected
    with pytest.raises(ResearchError, match="the window needs"):
        fs.screen(400, screening, selection_horizon=5, ranks=ranks)  # window starts before row 300


def test_screen_as_of_t_ignores_every_return_after_t(real_panel, screening) -> None:
    t = real_panel.sessions.get_loc(pd.Timestamp("2020-09-30"))
    cfg = screening
    base = FactorScreen(price_factors(real_panel), real_panel, horizons=cfg.horizons, trade_at="open")
    moved_panel = perturb_after(real_panel, t)
    moved = FactorScreen(price_factors(moved_panel), moved_panel, horizons=cfg.horizons, trade_at="open")
    assert not np.allclose(real_panel["close"].iloc[t + 1:], moved_panel["close"].iloc[t + 1:])
    a = base.screen(t, cfg, selection_horizon=5)
    b = moved.screen(t, cfg, selection_horizon=5)
    pd.testing.assert_frame_equal(a.stats, b.stats)
    assert a.selected == b.selected
    # control: the screen one session later does see the change (labels realised at t + 1)
    c = base.screen(t + 1, cfg, selection_horizon=5)
    d = moved.screen(t + 1, cfg, selection_horizon=5)
    assert not c.stats["ic_mean_1"].equals(d.stats["ic_mean_1"])


def test_screen_rejects_unknown_horizon_and_bad_shapes(real_panel, real_factors) -> None:
    values, names = real_factors
    fs = FactorScreen((values, names), real_panel)
    with pytest.raises(ResearchError, match="selection horizon 3"):
        fs.screen("2020-01-02", ScreeningConfig(), selection_horizon=3)
    with pytest.raises(ResearchError, match="do not match"):
        FactorScreen((values[:-1], names), real_panel)
