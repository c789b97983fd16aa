"""The simulation in real units on hand cases: splits, dividends, suspensions, funds whose data ends, lots.

Each case drives the kernel with fixed scores on a few made-up sessions, checks the book against numbers
worked out by hand in the test, and against the independent ledger replay.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rotation_platform.config.models import BacktestConfig
from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.errors import ResearchError
from rotation_platform.research import Market, TradePlan, compare_with_plan, replay_ledger
from rotation_platform.research import nb
from rotation_platform.research.strategy import StrategyParams

FREE = BacktestConfig(commission_rate=0.0, min_commission=0.0, slippage_bps=0.0, trade_at="open")


def raw_panel(opens: dict[str, list[float]], closes: dict[str, list[float]] | None = None) -> PricePanel:
    idx = pd.bdate_range("2024-01-01", periods=len(next(iter(opens.values()))), name="session")
    o = pd.DataFrame(opens, index=idx, dtype=float)
    c = o if closes is None else pd.DataFrame(closes, index=idx, dtype=float)
    frames = {"open": o, "high": np.maximum(o, c), "low": np.minimum(o, c), "close": c,
              "volume": o * 0 + 1e6, "amount": o * 0 + 1e9}
    return PricePanel({f: frames[f] for f in PRICE_FIELDS}, {"source": "test", "synthetic": True})


def run(market: Market, scores: np.ndarray, *, top_n: int = 1, cadence: int = 100, cash: float = 100_000.0,
        costs: BacktestConfig = FREE, max_weight: float = 1.0, rebalance_rows: list[int] | None = None) -> TradePlan:
    n_s, n_f = market.shape
    active = np.zeros(n_s, np.int64)
    cube = np.full((1, n_s, n_f), np.nan)
    rows = list(range(0, n_s, cadence)) + list(rebalance_rows or [])
    cube[0, rows] = scores[rows]
    adv_limit = np.full((n_s, n_f), np.inf)
    out = nb.simulate_path_nb(market.trade_price, market.mark, market.split, market.dividend, market.ended,
                              market.excluded, market.lots, adv_limit, market.reinvest, cube, active, np.zeros(1, np.int64),
                              np.array([top_n]), np.array([0]), np.array([cadence]), max_weight, cash,
                              costs.commission_rate, costs.min_commission, costs.slippage_bps / 1e4)
    equity, shares, orders, fees, slip, weights, cash_path, price, divs, liq = out
    return TradePlan(market.sessions, market.symbols, market, orders, price, liq, shares, divs, fees, slip, weights,
                     cash_path, equity, active, (StrategyParams(top_n, cadence, 60),), cash, costs)


def scores_for(n_s: int, order: list[float]) -> np.ndarray:
    return np.tile(np.asarray(order, dtype=float), (n_s, 1))


def test_a_split_multiplies_the_shares_and_a_dividend_pays_cash() -> None:
    # X trades at 10, splits 1:2 at the open of session 3 (price 5 after), pays 0.10 per share on session 5
    px = [10, 10, 10, 5, 5, 5, 5.2]
    panel = raw_panel({"X": px, "Y": [20.0] * 7})
    split = np.ones(panel.shape)
    split[3, 0] = 2.0
    div = np.zeros(panel.shape)
    div[5, 0] = 0.10
    market = Market.build(panel, trade_at="open", lots=np.array([100.0, 100.0]), split=split, dividend=div)
    plan = run(market, scores_for(7, [1.0, 0.0]))
    # 100,000 CNY buys 10,000 shares of X at 10; 20,000 after the split; 2,000 CNY of dividend
    assert plan.orders[0].tolist() == [10_000.0, 0.0] and (plan.orders[1:] == 0).all()
    assert plan.shares[:, 0].tolist() == [10_000, 10_000, 10_000, 20_000, 20_000, 20_000, 20_000]
    assert plan.dividends[5, 0] == pytest.approx(2_000.0) and plan.dividends.sum() == pytest.approx(2_000.0)
    np.testing.assert_allclose(plan.cash, [0, 0, 0, 0, 0, 2_000, 2_000])
    np.testing.assert_allclose(plan.equity, [100_000] * 5 + [102_000, 20_000 * 5.2 + 2_000])
    ledger = compare_with_plan(plan)
    np.testing.assert_allclose(ledger.equity, plan.equity, rtol=0, atol=1e-9)


def test_reinvested_dividends_buy_whole_shares_at_the_reference_price() -> None:
    panel = raw_panel({"X": [10, 10, 10, 5, 5, 5, 5]})
    split = np.ones(panel.shape)
    split[3, 0] = 2.0
    div = np.zeros(panel.shape)
    div[5, 0] = 0.10
    market = Market.build(panel, trade_at="open", lots=np.array([100.0]), split=split, dividend=div, reinvest=True)
    plan = run(market, scores_for(7, [1.0]))
    # 2,000 CNY at the reference price 5.00 - 0.10 = 4.90: 408 whole shares, 0.80 CNY stays cash
    assert plan.shares[5, 0] == 20_408 and plan.cash[5] == pytest.approx(2_000 - 408 * 4.9)
    compare_with_plan(plan)


def test_a_split_of_an_odd_ratio_floors_the_shares() -> None:
    panel = raw_panel({"X": [10, 10, 26.96, 26.96]})
    split = np.ones(panel.shape)
    split[2, 0] = 0.3709  # a share conversion: 10,000 shares become 3,709
    market = Market.build(panel, trade_at="open", lots=np.array([100.0]), split=split)
    plan = run(market, scores_for(4, [1.0]), cash=100_000.0)
    assert plan.shares[2, 0] == np.floor(10_000 * 0.3709) == 3_709.0
    compare_with_plan(plan)


def test_a_suspended_holding_keeps_its_shares_and_takes_no_slot() -> None:
    # X is held; at the rebalance of session 4 it has no bar (suspended): it keeps its shares at the last
    # price, and the two picks go to Y and Z although X scores best
    nan = np.nan
    panel = raw_panel({"X": [10, 10, 10, 10, nan, 10, 10], "Y": [10.0] * 7, "Z": [10.0] * 7})
    market = Market.build(panel, trade_at="open", lots=np.full(3, 100.0))
    plan = run(market, scores_for(7, [3.0, 2.0, 1.0]), top_n=2, cadence=4, cash=100_000.0, max_weight=0.5)
    assert plan.orders[0].tolist() == [5_000.0, 5_000.0, 0.0]
    # session 4: book 100,000, X frozen at 50,000; Y keeps its slot (already 5,000), Z gets a slot but only the
    # cash left, nothing, is there to buy it -> no order on X, none possible for Z
    assert plan.orders[4, 0] == 0 and plan.shares[4, 0] == 5_000
    assert plan.weights[4].tolist() == [0.0, 0.5, 0.5]
    assert plan.mark[4, 0] == 10.0  # marked at its last close
    compare_with_plan(plan)


def test_a_fund_whose_data_ends_is_liquidated_at_its_last_price_and_never_bought_again() -> None:
    nan = np.nan
    # X's data ends after session 3 (close 12); with ended_after=3 it is known ended at the close of
    # session 6 and sold at the open of session 7 at 12
    opens = {"X": [10, 11, 11, 12] + [nan] * 8, "Y": [10.0] * 12}
    market = Market.build(raw_panel(opens), trade_at="open", lots=np.full(2, 100.0), ended_after=3)
    assert market.ended[:, 0].tolist() == [False] * 7 + [True] * 5
    assert np.isnan(market.mark[7, 0]) and market.mark[6, 0] == 12.0  # carried at most 3 sessions
    plan = run(market, scores_for(12, [2.0, 1.0]), top_n=1, cadence=2, cash=100_000.0)
    assert plan.orders[0, 0] == 10_000 and plan.liquidated[7, 0] and plan.orders[7, 0] == -10_000
    assert plan.order_price[7, 0] == 12.0 and plan.shares[7:, 0].tolist() == [0.0] * 5
    # X still scores best, but every rebalance from 7 on buys Y
    assert (plan.orders[8:, 0] == 0).all() and plan.shares[8, 1] > 0
    assert plan.cash[7] == pytest.approx(120_000.0) and plan.orders[8, 1] == 12_000
    ledger = compare_with_plan(plan)
    assert ledger.traded_value[7, 0] == pytest.approx(120_000.0)


def test_a_configured_delisting_ends_a_fund_on_its_date() -> None:
    panel = raw_panel({"X": [10.0] * 8, "Y": [10.0] * 8})
    market = Market.build(panel, trade_at="open", lots=np.full(2, 100.0), delisted={"X": panel.sessions[5]})
    assert market.ended[:, 0].tolist() == [False] * 5 + [True] * 3
    plan = run(market, scores_for(8, [2.0, 1.0]), cadence=3, cash=50_000.0)
    assert plan.liquidated[5, 0] and plan.order_price[5, 0] == 10.0
    compare_with_plan(plan)


def test_lots_are_per_fund() -> None:
    panel = raw_panel({"X": [10.0] * 3, "Y": [1.0] * 3})
    market = Market.build(panel, trade_at="open", lots=np.array([100.0, 1_000.0]))
    plan = run(market, scores_for(3, [1.0, 2.0]), top_n=2, cash=50_550.0, max_weight=0.5)
    assert plan.orders[0].tolist() == [2_500.0, 25_000.0]
    compare_with_plan(plan)


def test_the_ledger_refuses_what_an_exchange_refuses() -> None:
    panel = raw_panel({"X": [10.0] * 3})
    market = Market.build(panel, trade_at="open", lots=np.array([100.0]))
    plan = run(market, scores_for(3, [1.0]), cash=10_000.0)
    bad = plan.orders.copy()
    bad[0, 0] = 950.0  # not a whole lot
    with pytest.raises(ResearchError, match="not a whole number of 100-share lots"):
        replay_ledger(TradePlan(**{**plan.__dict__, "orders": bad}))
    bad = plan.orders.copy()
    bad[1, 0] = 1_000.0  # no cash left for it
    with pytest.raises(ResearchError, match="leaves cash"):
        replay_ledger(TradePlan(**{**plan.__dict__, "orders": bad,
                                   "order_price": np.where(bad != 0, 10.0, np.nan)}))
    shares = plan.shares.copy()
    shares[2, 0] += 100
    with pytest.raises(ResearchError, match="ledger holds"):
        compare_with_plan(TradePlan(**{**plan.__dict__, "shares": shares}))
