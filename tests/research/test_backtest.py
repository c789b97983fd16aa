"""The backtest against an independent loop and vectorbt; metrics against vectorbt and hand computations."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from rotation_platform.config.models import BacktestConfig, FuseThresholds
from rotation_platform.errors import ResearchError
from rotation_platform.research import (
    StrategyContext,
    backtest,
    benchmark_returns,
    max_drawdown,
    monthly_returns,
    objective_matrix,
    performance_metrics,
)


def plain_replay(plan, costs: BacktestConfig) -> np.ndarray:
    """The same orders replayed by a plain loop: cash, positions, daily marks."""
    n_s, n_f = plan.orders.shape
    slip = costs.slippage_bps / 1e4
    cash = plan.init_cash
    pos = [0.0] * n_f
    last = [np.nan] * n_f
    out = []
    for t in range(n_s):
        sells = [i for i in range(n_f) if plan.orders[t, i] < 0]
        buys = [i for i in range(n_f) if plan.orders[t, i] > 0]
        for i in sells + buys:
            q = plan.orders[t, i]
            assert q % costs.lot_size == 0
            price = plan.trade_price[t, i] * (1 + slip if q > 0 else 1 - slip)
            value = abs(q) * price
            fee = max(value * costs.commission_rate, costs.min_commission)
            cash += -value - fee if q > 0 else value - fee
            assert cash >= -1e-6, "an order the cash cannot pay for"
            pos[i] += q
        total = cash
        for i in range(n_f):
            c = plan.mark[t, i]
            if c == c:
                last[i] = c
            if pos[i]:
                total += pos[i] * last[i]
        out.append(total)
    return np.array(out)


def test_vectorbt_equity_equals_a_plain_replay_of_the_orders(result, plan, spec) -> None:
    expected = plain_replay(plan, spec.backtest)
    np.testing.assert_allclose(result.equity.to_numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(plan.equity, expected, rtol=1e-9)
    assert len(result.orders) == int((plan.orders != 0).sum()) > 100
    assert (result.positions.to_numpy() % 100 == 0).all()
    # costs: vectorbt's fees are the plan's commissions, executed at the slipped price
    np.testing.assert_allclose(result.orders["commission"].sum(), plan.commission.sum(), rtol=1e-9)
    buy = result.orders["side"] == "buy"
    assert (result.orders.loc[buy, "price"] > 0).all()


def test_vectorbt_books_a_plan_without_corporate_actions_the_same_way(result, plan) -> None:
    """A third opinion: vectorbt's from_orders replays the orders of a plan on a panel without corporate
    actions (this research panel is back-adjusted) to the same positions and equity."""
    import vectorbt as vbt

    from rotation_platform.research import vectorbt_orders

    assert not plan.liquidated.any() and not plan.market.has_actions
    pf = vbt.Portfolio.from_orders(**vectorbt_orders(plan))
    np.testing.assert_allclose(np.asarray(pf.assets()), plan.shares, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(pf.value()), plan.equity, rtol=1e-9)
    assert len(pf.orders.records) == int((plan.orders != 0).sum())
    np.testing.assert_allclose(pf.orders.records["fees"].sum(), plan.commission.sum(), rtol=1e-9)
    np.testing.assert_allclose(result.ledger.equity, plan.equity, rtol=1e-12)


def test_trading_at_the_close_backtests_too(real_panel, real_factors, spec, params) -> None:
    close_spec = replace(spec, backtest=BacktestConfig(trade_at="close", min_commission=50.0, slippage_bps=10.0))
    values, names = real_factors
    engine_like = SimpleNamespace(values=values, names=names, sessions=real_panel.sessions,
                                  symbols=real_panel.symbols)  # aligned by session and symbol labels
    ctx = StrategyContext(engine_like, real_panel.select(start="2018-01-01"), close_spec)
    np.testing.assert_array_equal(ctx.values, values[real_panel.sessions >= "2018-01-01"])
    plan = ctx.run(params)
    res = backtest(plan, ctx.panel, benchmark="equal_weight")
    np.testing.assert_allclose(res.equity.to_numpy(), plain_replay(plan, close_spec.backtest), rtol=1e-6)
    has = plan.orders != 0
    np.testing.assert_array_equal(plan.trade_price[has], ctx.panel["close"].to_numpy()[has])


def test_metrics_match_vectorbt_returns_accessor(result) -> None:
    import vectorbt as vbt  # noqa: F401

    r = result.returns.loc[result.start:]
    acc = r.vbt.returns(freq="1D", year_freq="252D")
    m = result.metrics
    assert m.sharpe == pytest.approx(acc.sharpe_ratio(), rel=1e-9)
    assert m.sortino == pytest.approx(acc.sortino_ratio(), rel=1e-9)
    assert m.annual_return == pytest.approx(acc.annualized(), rel=1e-9)
    assert m.max_drawdown == pytest.approx(acc.max_drawdown(), rel=1e-9)
    assert m.calmar == pytest.approx(acc.calmar_ratio(), rel=1e-9)
    assert m.volatility == pytest.approx(acc.annualized_volatility(), rel=1e-9)
    assert m.total_return == pytest.approx(result.equity.iloc[-1] / result.equity.loc[:result.start].iloc[-2] - 1,
                                           rel=1e-12)


def test_metrics_by_hand() -> None:
    idx = pd.DatetimeIndex(["2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02", "2024-03-01", "2024-03-04"])
    r = pd.Series([0.10, -0.20, 0.05, 0.05, -0.10, 0.20], index=idx)
    m = performance_metrics(r, annualisation=4, equity=pd.Series(100.0, index=idx),
                            traded_value=pd.Series([400.0, 0, 0, 0, 0, 0], index=idx), costs=3.0)
    wealth = np.cumprod(1 + r.to_numpy())  # 1.1, 0.88, 0.924, 0.9702, 0.87318, 1.047816
    assert m.total_return == pytest.approx(wealth[-1] - 1)
    assert m.annual_return == pytest.approx(wealth[-1] ** (4 / 6) - 1)
    assert m.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * 2)
    assert m.max_drawdown == pytest.approx(0.87318 / 1.1 - 1)
    assert (m.drawdown_start, m.drawdown_trough, m.drawdown_recovery) == (idx[0], idx[4], None)
    months = monthly_returns(r)  # Jan: 1.1 * 0.8 - 1; Feb: 1.05 ** 2 - 1; Mar: 0.9 * 1.2 - 1
    np.testing.assert_allclose(months.to_numpy(), [-0.12, 0.1025, 0.08])
    assert m.monthly_win_rate == pytest.approx(2 / 3)
    assert m.annual_turnover == pytest.approx(400 / 2 / 100 * 4 / 6)
    assert m.cost_drag == pytest.approx(3 / 100 * 4 / 6)
    dd = max_drawdown(pd.Series([0.1, -0.1, 0.2], index=idx[:3]))
    assert dd.recovery == idx[2] and dd.depth == pytest.approx(-0.1)


def test_objective_matrix_agrees_with_the_scalar_metrics(result) -> None:
    r = result.returns.loc[result.start:]
    m = result.metrics
    for name, value in (("sharpe", m.sharpe), ("sortino", m.sortino), ("calmar", m.calmar),
                        ("annual_return", m.annual_return)):
        assert objective_matrix(r.to_numpy()[None, :], name)[0] == pytest.approx(value, rel=1e-9)
    with pytest.raises(ResearchError, match="unknown objective"):
        objective_matrix(r.to_numpy()[None, :], "omega")


def test_benchmark_metrics_and_fuse_checks(result, real_panel) -> None:
    bench = benchmark_returns(real_panel, "510300")
    close = real_panel["close"]["510300"]
    live = close.loc[result.start:]
    assert result.benchmark_metrics.total_return == pytest.approx(live.iloc[-1] / close.shift(1).loc[result.start] - 1,
                                                                  rel=1e-9)
    assert bench.loc[result.start:].equals(result.benchmark_returns.loc[result.start:])
    ew = benchmark_returns(real_panel, "equal_weight")
    rets = close.to_frame().join(real_panel["close"].drop(columns="510300")).pct_change(fill_method=None)
    np.testing.assert_allclose(ew.iloc[1:].to_numpy(), rets.mean(axis=1).iloc[1:].fillna(0).to_numpy(), rtol=1e-12)
    checks = result.fuse_checks(FuseThresholds())
    assert list(checks.index) == ["annual_return", "max_drawdown", "sharpe", "monthly_win_rate", "annual_turnover"]
    assert checks.loc["sharpe", "passed"] == (result.metrics.sharpe >= 0.5)
    assert result.summary().shape[1] == 2
    with pytest.raises(ResearchError, match="neither 'equal_weight' nor a symbol"):
        benchmark_returns(real_panel, "000300")
