"""Portfolio construction: cash policy, volatility target, trend filter and fund de-duplication.

Hand cases drive :func:`nb.construct_weights_nb` directly; the synthetic pool runs the whole strategy
(screen, scores, kernel, target portfolio) with every option on and replays it through the independent
ledger.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rotation_platform.config.models import (BacktestConfig, CapitalConfig, PlatformConfig, PoolConfig, PoolKind,
                                             ScreeningConfig, StrategyConfig)
from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.errors import ResearchError
from rotation_platform.research import StrategyContext, StrategyParams, StrategySpec, compare_with_plan, nb
from rotation_platform.research.market import (Construction, cluster_representatives, composite_index, daily_returns,
                                               trend_signals)
from rotation_platform.research.target import target_portfolio
from tests.research.realdata import price_factors

CASH, PRO_RATA, DEFENSIVE = nb.POLICY_CASH, nb.POLICY_PRO_RATA, nb.POLICY_DEFENSIVE
INF = np.full(6, np.inf)


def construct(score, *, top_n=2, cap=0.25, policy=CASH, eligible=None, held=None, rets=None, t_end=0,
              vol_window=60, target_vol=0.0, risk_on=True, defensive=-1, defensive_ok=True, limit=None, book=1e6):
    n = len(score)
    out = np.zeros(n)
    scale = nb.construct_weights_nb(np.asarray(score, float), np.ones(n, bool) if eligible is None else eligible,
                                    np.zeros(n, bool) if held is None else held, top_n, 0, cap, policy, book,
                                    np.full(n, np.inf) if limit is None else limit,
                                    np.zeros((1, n)) if rets is None else rets, t_end, vol_window, target_vol, 252,
                                    risk_on, defensive, defensive_ok, out)
    return out, scale


SCORE = [0.9, 0.1, 0.5, 0.7, 0.3, 0.2]  # ranks: 0, 3, 2, 4, 5, 1


# ------------------------------------------------------------------------------------------ hand cases
def test_cash_policy_cash_keeps_the_remainder_in_cash() -> None:
    w, scale = construct(SCORE)
    np.testing.assert_allclose(w, [0.25, 0, 0, 0.25, 0, 0])
    assert scale == 1.0


def test_pro_rata_widens_the_selection_to_the_next_ranked_funds_up_to_the_cap() -> None:
    w, _ = construct(SCORE, policy=PRO_RATA)
    np.testing.assert_allclose(w, [0.25, 0, 0.25, 0.25, 0.25, 0])  # the top four, each at the cap
    # a cap of 0.3: ceil(1 / 0.3) = 4 picks share the book equally (0.25 < cap)
    w, _ = construct(SCORE, policy=PRO_RATA, cap=0.3)
    np.testing.assert_allclose(w, [0.25, 0, 0.25, 0.25, 0.25, 0])
    # only three eligible funds: each grows to the cap, never beyond it; the rest is cash
    elig = np.array([True, False, True, True, False, False])
    w, _ = construct(SCORE, policy=PRO_RATA, eligible=elig)
    np.testing.assert_allclose(w, [0.25, 0, 0.25, 0.25, 0, 0])
    # a loose cap: the top_n picks hold the whole book
    w, _ = construct(SCORE, policy=PRO_RATA, cap=0.6, eligible=np.array([True, False, False, True, False, False]))
    np.testing.assert_allclose(w, [0.5, 0, 0, 0.5, 0, 0])
    # growing, a pick never exceeds its liquidity limit (eligible at 1 / 3 of the book, limited to 0.4)
    w, _ = construct(SCORE, policy=PRO_RATA, top_n=3, cap=0.6,
                     eligible=np.array([True, False, False, True, False, False]),
                     limit=np.array([4e5, 0, 0, 1e7, 0, 0]))
    np.testing.assert_allclose(w, [0.4, 0, 0, 0.5, 0, 0])


def test_defensive_policy_puts_the_remainder_in_the_defensive_fund_which_is_never_a_pick() -> None:
    w, _ = construct(SCORE, policy=DEFENSIVE, defensive=0)  # fund 0 has the best score but is the defensive fund
    np.testing.assert_allclose(w, [0.5, 0, 0.25, 0.25, 0, 0])
    # a defensive fund that cannot trade: the remainder stays cash
    w, _ = construct(SCORE, policy=DEFENSIVE, defensive=0, defensive_ok=False)
    np.testing.assert_allclose(w, [0, 0, 0.25, 0.25, 0, 0])


def test_trend_filter_off_rotates_the_book_into_the_defensive_fund_or_cash() -> None:
    w, scale = construct(SCORE, policy=PRO_RATA, defensive=5, risk_on=False)
    np.testing.assert_allclose(w, [0, 0, 0, 0, 0, 1.0])
    assert scale == 0.0
    w, _ = construct(SCORE, policy=PRO_RATA, risk_on=False)
    np.testing.assert_allclose(w, 0.0)
    # cash policy: the defensive fund takes what the filter removed, the cap's remainder stays cash
    w, _ = construct(SCORE, policy=CASH, defensive=5, risk_on=False)
    np.testing.assert_allclose(w, [0, 0, 0, 0, 0, 0.5])


def test_ex_ante_volatility_is_the_pairwise_sample_covariance_of_pandas() -> None:
    rng = np.random.default_rng(3)
    rets = rng.normal(0, 0.01, (120, 4)) + rng.normal(0, 0.01, (120, 1))
    rets[rng.random((120, 4)) < 0.1] = np.nan
    w = np.array([0.3, 0.0, 0.5, 0.2])
    for t_end, window in ((119, 60), (80, 40)):
        hist = pd.DataFrame(rets[: t_end + 1]).iloc[-window:]
        cov = hist.cov(min_periods=window // 2).to_numpy()
        expected = np.sqrt(w @ cov @ w * 252)
        got = nb.ex_ante_vol_nb(rets, t_end, window, window // 2, w, 252)
        assert got == pytest.approx(expected, rel=1e-12)


def test_volatility_target_scales_the_picks_by_target_over_ex_ante_vol() -> None:
    rng = np.random.default_rng(7)
    rets = rng.normal(0.0, 0.02, (100, 6))  # ~32% a year per fund
    w_plain, _ = construct(SCORE, policy=PRO_RATA, rets=rets, t_end=99)
    vol = np.sqrt(w_plain @ pd.DataFrame(rets[-60:]).cov().to_numpy() @ w_plain * 252)
    w, scale = construct(SCORE, policy=PRO_RATA, rets=rets, t_end=99, target_vol=0.10, defensive=5)
    assert scale == pytest.approx(0.10 / vol, rel=1e-12)
    picks = w_plain > 0
    np.testing.assert_allclose(w[picks], w_plain[picks] * 0.10 / vol, rtol=1e-12)
    assert w[5] == pytest.approx(1.0 - w[picks].sum())  # the defensive fund takes the rest
    # a target above the picks' volatility leaves them alone
    w, scale = construct(SCORE, policy=PRO_RATA, rets=rets, t_end=99, target_vol=2.0)
    np.testing.assert_allclose(w, w_plain)
    assert scale == 1.0
    # a fund without vol_window // 2 returns cannot be sized: not eligible under a volatility target
    short = rets.copy()
    short[:75, 0] = np.nan
    w, _ = construct(SCORE, policy=PRO_RATA, rets=short, t_end=99, target_vol=0.10)
    assert w[0] == 0.0 and (w > 0).sum() == 4


def test_trend_signals_use_data_through_the_row_before_only() -> None:
    level = np.array([1, 2, 3, 4, 5, 4, 3, 2, 1, 2, 3.0])
    on = trend_signals(level, level, 3)
    assert on[0].all()
    sma = pd.Series(level).rolling(3).mean().to_numpy()
    for t in range(1, len(level) + 1):
        want = True if not np.isfinite(sma[t - 1]) else level[t - 1] >= sma[t - 1]
        assert on[1, t] == want, t
        want_sign = True if t - 1 < 3 else level[t - 1] >= level[t - 4]
        assert on[2, t] == want_sign, t
    # changing levels after row 5 leaves every signal for trades through row 6 unchanged
    moved = level.copy()
    moved[6:] *= 10
    np.testing.assert_array_equal(trend_signals(moved, moved, 3)[:, :7], on[:, :7])


def test_clusters_link_correlated_and_same_index_funds_and_keep_the_most_liquid() -> None:
    rng = np.random.default_rng(11)
    base = rng.normal(0, 0.01, (300, 1))
    rets = np.hstack([base, base + rng.normal(0, 0.0005, (300, 1)), rng.normal(0, 0.01, (300, 3))])
    labels = nb.correlation_clusters_nb(rets, np.array([299]), 250, 0.98, 125, np.full(5, -1, np.int64))[0]
    np.testing.assert_array_equal(labels, [0, 0, 2, 3, 4])
    # funds 3 and 4 declare the same index: one cluster too
    labels = nb.correlation_clusters_nb(rets, np.array([299]), 250, 0.98, 125, np.array([-1, -1, -1, 0, 0]))[0]
    np.testing.assert_array_equal(labels, [0, 0, 2, 3, 3])
    adv = np.array([1e8, 5e8, 1e8, 1e7, np.nan])
    blocked = cluster_representatives(labels, np.ones(5, bool), adv)
    np.testing.assert_array_equal(blocked, [True, False, False, False, True])
    # the more liquid fund cannot trade: the other one represents the cluster
    cand = np.array([True, False, True, True, True])
    np.testing.assert_array_equal(cluster_representatives(labels, cand, adv), [False, True, False, False, True])


# ------------------------------------------------------------------------------------------ synthetic pool
SYMBOLS = ("F0", "F1", "F2", "F3", "F4", "F5", "F6", "BOND")


def synthetic_panel(n_s: int = 900, seed: int = 5) -> PricePanel:
    rng = np.random.default_rng(seed)
    market = rng.normal(0.0003, 0.012, (n_s, 1))
    rets = market + rng.normal(0.0, 0.012, (n_s, 7))
    rets[:, 1] = rets[:, 0] + rng.normal(0.0, 0.0008, n_s)  # F1 tracks F0 closely (correlation > 0.99)
    bond = rng.normal(0.0001, 0.0008, (n_s, 1))
    r = np.hstack([rets, bond])
    close = 10.0 * np.cumprod(1.0 + r, axis=0)
    idx = pd.bdate_range("2019-01-01", periods=n_s, name="session")
    c = pd.DataFrame(close, index=idx, columns=SYMBOLS)
    o = c.shift(1).fillna(c.iloc[0]) * (1 + rng.normal(0, 0.001, c.shape))
    amount = pd.DataFrame(np.tile([4e8, 1e8, 3e8, 3e8, 3e8, 3e8, 3e8, 5e8], (n_s, 1)), index=idx, columns=SYMBOLS)
    frames = {"open": o, "high": np.maximum(o, c), "low": np.minimum(o, c), "close": c,
              "volume": amount / c, "amount": amount}
    return PricePanel({f: frames[f] for f in PRICE_FIELDS}, {"source": "test", "synthetic": True})


def spec_for(strategy: StrategyConfig, *, defensive: str | None = "BOND", cap: float = 0.25) -> StrategySpec:
    return StrategySpec(capital=CapitalConfig(target_capital=5_000_000, max_single_weight=cap, max_adv_pct=0.05),
                        screening=ScreeningConfig(horizons=(1, 5), ic_lookback=60, top_k=3),
                        backtest=BacktestConfig(trade_at="open"), selection_horizon=5, strategy=strategy,
                        defensive=defensive, benchmark="equal_weight")


ALL_ON = StrategyConfig(cash_policy="defensive", target_volatility=0.12, trend_filter="composite_sign",
                        trend_window=60, dedup_correlation=0.98, dedup_window=120)
PARAMS = StrategyParams(top_n=2, rebalance_sessions=5, ic_lookback=60, trend_filter="composite_sign")
START = 150


@pytest.fixture(scope="module")
def pool():
    panel = synthetic_panel()
    return panel, price_factors(panel)


@pytest.fixture(scope="module")
def all_on(pool):
    panel, factors = pool
    ctx = StrategyContext(factors, panel, spec_for(ALL_ON))
    # from row 150 on every pair has the dedup_window // 2 = 60 common returns a correlation link needs
    return ctx, ctx.run(PARAMS, start=START)


def test_every_option_on_the_ledger_agrees_with_the_kernel(all_on) -> None:
    ctx, plan = all_on
    compare_with_plan(plan)  # share for share, and to 1e-9 of the capital
    reb = np.flatnonzero(np.isfinite(plan.weights).any(axis=1))
    assert reb.size > 50
    bond = plan.weights[reb, SYMBOLS.index("BOND")]
    assert (bond > 0.2).any()  # the defensive fund holds the remainder
    risk_off = ~ctx.construction.risk_on[2, reb]
    assert risk_off.any() and (~risk_off).any()
    # trend off: no pick, the whole book in the defensive fund
    picks = np.delete(plan.weights[reb], SYMBOLS.index("BOND"), axis=1)
    assert (picks[risk_off] == 0).all()
    np.testing.assert_allclose(bond[risk_off], 1.0)
    inv = plan.invested[reb[0]:]
    assert np.nanmean(inv) > 0.95  # fully invested: what the picks do not hold is in the bond fund


def test_near_identical_funds_are_never_held_together_and_the_more_liquid_wins(all_on, pool) -> None:
    _, plan = all_on
    held = plan.shares > 0
    assert not (held[:, 0] & held[:, 1]).any()
    assert held[:, 0].any() and not held[:, 1].any()  # F0 (ADV 4e8) always wins over F1 (1e8)
    # without de-duplication the less liquid twin is bought at some point
    panel, factors = pool
    plain = StrategyContext(factors, panel, spec_for(ALL_ON.model_copy(update={"dedup_correlation": None})))
    assert (plain.run(PARAMS, start=START).shares[:, 1] > 0).any()


def test_volatility_target_holds_out_of_sample_on_the_synthetic_pool(pool) -> None:
    panel, factors = pool
    cfg = StrategyConfig(cash_policy="pro_rata", target_volatility=0.08, dedup_correlation=None)
    params = StrategyParams(top_n=2, rebalance_sessions=5, ic_lookback=60)
    plan = StrategyContext(factors, panel, spec_for(cfg, defensive=None)).run(params)
    free = StrategyContext(factors, panel, spec_for(cfg.model_copy(update={"target_volatility": None}),
                                                    defensive=None)).run(params)
    compare_with_plan(plan)
    first = plan.first_trade_row
    half = first + (len(plan.equity) - first) // 2
    realised = pd.Series(plan.equity[half:]).pct_change().dropna().std() * np.sqrt(252)
    unscaled = pd.Series(free.equity[half:]).pct_change().dropna().std() * np.sqrt(252)
    assert unscaled > 0.12  # the picks alone run well above the target
    assert realised == pytest.approx(0.08, rel=0.2)


def test_target_portfolio_uses_the_same_rule_as_the_kernel(all_on) -> None:
    ctx, plan = all_on
    reb = np.flatnonzero(np.isfinite(plan.weights).any(axis=1))
    checked = 0
    for r in reb[5::9][:12]:
        tp = target_portfolio(ctx, PARAMS, decided_at=int(r - 1), holdings=plan.shares[r - 1], cash=plan.cash[r - 1],
                              prices=plan.trade_price[r])
        np.testing.assert_allclose(tp.table["target_weight"].to_numpy(), plan.weights[r], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(tp.table["target_shares"].to_numpy(), plan.shares[r])
        assert tp.risk_on == bool(ctx.construction.risk_on[2, r])
        assert not (tp.table["deduplicated"] & tp.table["selected"]).any()
        checked += 1
    assert checked >= 8
    clusters = ctx.construction.clusters(int(reb[-1]) - 1)
    assert ("F0", "F1") in clusters


def test_point_in_time_prices_after_t_change_nothing_at_or_before_t(pool, all_on) -> None:
    panel, factors = pool
    ctx, plan = all_on
    t = 600
    fields = {f: panel[f].copy() for f in PRICE_FIELDS}
    rng = np.random.default_rng(99)
    for f in ("open", "high", "low", "close"):
        fields[f].iloc[t + 1:] *= rng.uniform(0.7, 1.3, fields[f].iloc[t + 1:].shape)
    moved = PricePanel(fields, {"source": "test", "synthetic": True})
    other = StrategyContext(factors, moved, spec_for(ALL_ON))  # the same factor rows: only prices move
    plan2 = other.run(PARAMS, start=START)
    np.testing.assert_array_equal(plan2.shares[: t + 1], plan.shares[: t + 1])
    np.testing.assert_array_equal(plan2.weights[: t + 1], plan.weights[: t + 1])
    np.testing.assert_array_equal(plan2.equity[: t + 1], plan.equity[: t + 1])
    a, b = ctx.construction, other.construction
    np.testing.assert_array_equal(a.risk_on[:, : t + 2], b.risk_on[:, : t + 2])  # trades through t + 1
    np.testing.assert_array_equal(a.clusters_through(np.arange(t - 50, t + 1)), b.clusters_through(np.arange(t - 50, t + 1)))
    np.testing.assert_array_equal(a.blocked[: t + 1], b.blocked[: t + 1])


def test_configuration_is_validated_with_one_clear_line() -> None:
    pool = dict(name="P", kind=PoolKind.A_SHARE, symbols=("510300", "511010", "510500", "512880", "512100"),
                summary_weight=1.0,
                capital=CapitalConfig(target_capital=1e6, max_single_weight=0.5, max_adv_pct=0.05))
    with pytest.raises(ValueError, match=r"pools\[P\]\.defensive '159915' is not a symbol of the pool"):
        PoolConfig(**pool, defensive="159915")
    with pytest.raises(ValueError, match="cash_policy is 'defensive' but pool P has no defensive fund"):
        PlatformConfig(name="x", pools=(PoolConfig(**pool),), strategy={"cash_policy": "defensive"})
    cfg = PlatformConfig(name="x", pools=(PoolConfig(**pool, defensive="511010", tracks={"510300": "CSI300"}),))
    assert cfg.strategy.cash_policy == "pro_rata" and cfg.strategy.target_volatility is None
    assert cfg.wfo.grid.trend_filter == ("none",)
    # the grid's trend filters default to the configured one
    on = PlatformConfig(name="x", pools=(PoolConfig(**pool),), strategy={"trend_filter": "benchmark_sma"})
    assert on.wfo.grid.trend_filter == ("benchmark_sma",)
    with pytest.raises(ResearchError, match="trend_filter='sma'"):
        StrategyParams(2, 5, 60, trend_filter="sma")  # type: ignore[arg-type]
    assert StrategyParams(2, 5, 60).label == "top2_reb5_lb60_equal_buf0"
    assert StrategyParams(2, 5, 60, trend_filter="benchmark_sma").label == "top2_reb5_lb60_equal_buf0_tfsma"
    with pytest.raises(ResearchError, match="cash_policy is 'defensive' but the pool has no defensive fund"):
        Construction(StrategyConfig(cash_policy="defensive"), ("A", "B"), np.ones((5, 2)))


def test_daily_returns_and_composite_index() -> None:
    close = np.array([[10.0, 20.0], [11.0, np.nan], [12.1, 22.0]])
    r = daily_returns(close)
    assert np.isnan(r[0]).all() and r[1, 0] == pytest.approx(0.1) and np.isnan(r[1, 1]) and np.isnan(r[2, 1])
    np.testing.assert_allclose(composite_index(r), [1.0, 1.1, 1.21])
