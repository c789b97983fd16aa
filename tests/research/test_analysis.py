"""Extreme-month attribution, capacity and risk of the real backtest, plus hand-checkable cases."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from rotation_platform.config.models import CapitalConfig
from rotation_platform.research import (
    capacity_report,
    daily_pnl_components,
    extreme_months,
    historical_var,
    monthly_attribution,
    risk_report,
)

PARTS = ["allocation", "selection", "trading", "commission", "slippage"]


def test_daily_components_add_up_to_the_equity_change(result) -> None:
    daily = daily_pnl_components(result)
    eq = result.equity
    np.testing.assert_allclose(daily["pnl"].to_numpy(), np.diff(np.concatenate([[result.plan.init_cash], eq])),
                               rtol=0, atol=1e-6)
    assert daily["residual"].abs().max() <= 1e-7 * eq.max()
    # costs are the backtest's commissions and slippage, signed as losses
    assert -daily["commission"].sum() == pytest.approx(result.orders["commission"].sum(), rel=1e-9)
    assert -daily["slippage"].sum() == pytest.approx(result.orders["slippage"].sum(), rel=1e-9)


def test_monthly_parts_add_up_exactly_to_each_months_return(result) -> None:
    table, funds = monthly_attribution(result)
    monthly = (1 + result.returns.loc[result.start:]).groupby(result.returns.loc[result.start:].index.to_period("M")).prod() - 1
    np.testing.assert_allclose(table["return"].to_numpy(), monthly.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(table[PARTS].sum(axis=1).to_numpy(), table["return"].to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(funds.sum(axis=1).to_numpy(), table["selection"].to_numpy(), rtol=0, atol=1e-12)


def test_extreme_months_are_the_three_best_and_worst(result) -> None:
    att = extreme_months(result, n=3)
    table, _ = monthly_attribution(result)
    best = table["return"].nlargest(3)
    worst = table["return"].nsmallest(3)
    assert list(att.months.index) == list(best.index) + list(worst.index)
    assert (att.months["kind"] == ["best"] * 3 + ["worst"] * 3).all()
    np.testing.assert_allclose(att.months[PARTS].sum(axis=1), att.months["return"], rtol=0, atol=1e-12)
    assert att.fund_selection.shape == (6, len(result.plan.symbols))


def test_capacity_by_hand() -> None:
    idx = pd.bdate_range("2024-01-01", periods=25)
    amount = pd.DataFrame({"A": 1_000_000.0, "B": 4_000_000.0, "C": np.nan}, index=idx)
    values = pd.DataFrame(0.0, index=idx, columns=["A", "B", "C"])
    values.iloc[21:, 0] = 30_000.0  # A: 30k against 5% of 1M = 50k -> 60% used
    values.iloc[22, 1] = 260_000.0  # B: 260k against 5% of 4M = 200k -> 130%: a breach
    values.iloc[24, 2] = 10_000.0  # C: held without any turnover data: reported, not a breach, no bound
    equity = pd.Series(300_000.0, index=idx)
    result = SimpleNamespace(position_values=values, positions=values / 10.0, weights=values / 300_000.0,
                             equity=equity, start=idx[0], plan=SimpleNamespace(init_cash=300_000.0))
    panel = {"amount": amount}
    cap = CapitalConfig(target_capital=300_000, max_single_weight=0.5, max_adv_pct=0.05)
    rep = capacity_report(result, panel, cap)  # type: ignore[arg-type]
    assert rep.adv_breaches == 1 and rep.weight_breaches == 1  # B at 86.7% of the portfolio on one session
    assert rep.utilisation.loc[idx[22], "B"] == pytest.approx(1.3)
    assert rep.utilisation.loc[idx[23], "A"] == pytest.approx(0.6)
    assert np.isnan(rep.utilisation.loc[idx[24], "C"]) and rep.positions_without_adv == 1
    assert rep.by_session.loc[idx[24], "without_adv"] == "C"
    assert rep.max_capital == pytest.approx(300_000 / 1.3)
    assert (rep.binding_session, rep.binding_symbol) == (idx[22], "B")
    assert rep.by_fund.loc["A", "max_capital"] == pytest.approx(500_000.0)
    # the capacity at a session: that session's book over its most-used position with an ADV
    assert rep.by_session.loc[idx[22], "capacity_cny"] == pytest.approx(300_000 / 1.3)
    assert rep.capacity_cny == pytest.approx(300_000 / 0.6) and rep.as_of == idx[24]
    # five held fund-sessions with an ADV, utilisation 0.6, 0.6, 0.6, 0.6, 1.3: the median allows 300k / 0.6
    median = capacity_report(result, panel, cap, quantile=0.5)  # type: ignore[arg-type]
    assert median.capital_at_quantile == pytest.approx(500_000.0)


def test_capacity_of_the_real_backtest_matches_a_plain_recomputation(result, real_panel, a_share_pool) -> None:
    rep = capacity_report(result, real_panel, a_share_pool.capital, start="2020-01-01")
    amount = real_panel["amount"]
    worst = 0.0
    for t in range(real_panel.sessions.get_loc(pd.Timestamp("2020-01-02")), len(real_panel.sessions)):
        for sym in real_panel.symbols:
            v = result.position_values.iloc[t][sym]
            if v <= 0:
                continue
            prior = amount[sym].iloc[max(0, t - 20): t].dropna()
            prior = prior[prior > 0]
            worst = max(worst, v / (prior.mean() * 0.05))
    assert rep.max_capital == pytest.approx(7_000_000 / worst, rel=1e-12)
    assert np.isfinite(rep.capital_at_quantile) and rep.capital_at_quantile >= rep.max_capital
    assert rep.max_weight <= 0.25 * 1.5


def test_historical_var_by_hand() -> None:
    r = -np.arange(1, 101) / 1000.0  # losses of 0.1% .. 10%
    np.random.default_rng(0).shuffle(r)
    v = historical_var(r, (0.95, 0.99))
    assert v.loc[0.95, "tail_size"] == 5 and v.loc[0.99, "tail_size"] == 1
    assert v.loc[0.95, "var"] == pytest.approx(0.096) and v.loc[0.95, "cvar"] == pytest.approx(0.098)
    assert v.loc[0.99, "var"] == pytest.approx(0.100) and v.loc[0.99, "cvar"] == pytest.approx(0.100)


def test_risk_report_of_the_real_backtest(result) -> None:
    rep = risk_report(result, window=252)
    last = result.returns.iloc[-252:]
    ref = historical_var(last)
    pd.testing.assert_frame_equal(rep.strategy[["var", "cvar", "tail_size"]], ref)
    assert rep.strategy.loc[0.95, "var_cny"] == pytest.approx(ref.loc[0.95, "var"] * result.equity.iloc[-1])
    held = result.positions.iloc[-1]
    assert set(rep.exposure.index) == set(held[held != 0].index)
    assert rep.exposure["weight"].sum() == pytest.approx(result.position_values.iloc[-1].sum() / result.equity.iloc[-1])
    # component CVaR adds up to the holdings CVaR
    for lv, col in ((0.95, "cvar_95"), (0.99, "cvar_99")):
        assert rep.exposure[col].sum() == pytest.approx(rep.holdings.loc[lv, "cvar"], rel=1e-12)
    assert (rep.strategy["cvar"] >= rep.strategy["var"]).all()
