"""Extreme-month attribution of a backtest.

Each session's P&L (CNY) splits exactly into four parts. With ``q0`` the shares entering session ``t``,
``q`` the shares after it, ``d`` the shares traded at ``t`` at the price ``p`` (executed at
``p (1 +/- slippage)``; a liquidation at its last price), ``m`` the raw daily marks and ``b_t`` the
benchmark's total return:

* allocation = ``sum(q0 * m[t-1]) * b_t`` -- the return of having that much invested in the benchmark;
* selection  = holding P&L ``sum((q - d) * m[t] - q0 * m[t-1])`` plus the cash the holdings paid
  (dividends) ``- allocation`` -- the held funds against the benchmark; a split changes ``q`` without
  an order and nothing else, so it adds nothing;
* trading    = ``sum(d * (m[t] - p))`` -- the trades marked from the trade price to the close;
* costs      = ``-(commission + slippage)``, reported as ``commission`` and ``slippage``.

They add up to ``V[t] - V[t-1]``. Summed over a calendar month and divided by the value at the end of
the previous month (the starting capital for the first month) they add up to the month's return
exactly (up to floating-point rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rotation_platform.errors import ResearchError
from rotation_platform.research.backtest import BacktestResult

__all__ = ["MonthAttribution", "daily_pnl_components", "monthly_attribution", "extreme_months"]

COMPONENTS = ("allocation", "selection", "trading", "commission", "slippage")


@dataclass(frozen=True)
class MonthAttribution:
    """The best and worst months with their decomposition and per-fund selection contributions."""

    months: pd.DataFrame
    fund_selection: pd.DataFrame


def daily_pnl_components(result: BacktestResult) -> pd.DataFrame:
    """Per-session P&L (CNY) split into allocation, selection, trading, commission and slippage, plus
    ``pnl`` (the change of the backtest's equity) and ``residual`` (``pnl`` minus the parts)."""
    return _components(result)[0]


def _components(result: BacktestResult) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    plan = result.plan
    idx, cols = plan.sessions, list(plan.symbols)
    q = plan.shares
    q0 = np.vstack([np.zeros((1, q.shape[1])), q[:-1]])
    d = plan.orders
    mark = np.nan_to_num(plan.mark)
    prev_mark = np.vstack([mark[:1], mark[:-1]])
    comm = plan.commission
    p = np.nan_to_num(plan.order_price)
    slip = plan.slippage_cost
    # cash the holdings paid (dividends, net of what a reinvestment bought): the cash change that is not trading
    cash = plan.cash
    prev_cash = np.concatenate([[plan.init_cash], cash[:-1]])
    # trading moves cash by -(d * p) - slippage - commission, buys and sales alike
    income = cash - prev_cash + (d * p).sum(axis=1) + slip.sum(axis=1) + comm.sum(axis=1)
    invested = (q0 * prev_mark).sum(axis=1)
    b = result.benchmark_returns.reindex(idx).fillna(0.0).to_numpy()
    fund_hold_arr = (q - d) * mark - q0 * prev_mark
    hold = fund_hold_arr.sum(axis=1) + income
    allocation = invested * b
    trading = (d * (mark - p)).sum(axis=1)
    equity = result.equity.to_numpy()
    prev_eq = np.concatenate([[plan.init_cash], equity[:-1]])
    pnl = equity - prev_eq
    out = pd.DataFrame({
        "allocation": allocation, "selection": hold - allocation, "trading": trading,
        "commission": -comm.sum(axis=1), "slippage": -slip.sum(axis=1), "pnl": pnl,
    }, index=idx)
    out["residual"] = out["pnl"] - out[list(COMPONENTS)].sum(axis=1)
    fund_hold = pd.DataFrame(fund_hold_arr + plan.dividends, index=idx, columns=cols)
    fund_invested = pd.DataFrame(q0 * prev_mark, index=idx, columns=cols)
    return out, fund_hold, fund_invested


def monthly_attribution(result: BacktestResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every month from the first trade: return and its parts as fractions of the month's starting value,
    and the per-fund selection contributions (fund P&L minus its invested value times the benchmark)."""
    daily, fund_hold, fund_invested = _components(result)
    start = result.plan.first_trade_row
    if start is None:
        raise ResearchError("the backtest has no trades to attribute")
    daily = daily.iloc[start:]
    equity = result.equity
    months = daily.index.to_period("M")
    prev_eq = pd.Series(np.concatenate([[result.plan.init_cash], equity.to_numpy()[:-1]]), index=equity.index)
    start_value = prev_eq.reindex(daily.index).groupby(months).first()
    end_value = equity.reindex(daily.index).groupby(months).last()
    sums = daily[list(COMPONENTS) + ["residual"]].groupby(months).sum()
    table = sums.div(start_value, axis=0)
    table.insert(0, "return", end_value / start_value - 1.0)
    b = result.benchmark_returns.reindex(daily.index).fillna(0.0)
    fund_sel = fund_hold.iloc[start:].sub(fund_invested.iloc[start:].mul(b, axis=0))
    fund_table = fund_sel.groupby(months).sum().div(start_value, axis=0)
    table.index = table.index.to_timestamp()
    fund_table.index = fund_table.index.to_timestamp()
    table.index.name = fund_table.index.name = "month"
    return table, fund_table


def extreme_months(result: BacktestResult, n: int = 3) -> MonthAttribution:
    """The ``n`` best and ``n`` worst calendar months, each decomposed (see the module docstring)."""
    table, funds = monthly_attribution(result)
    if len(table) < 2 * n:
        raise ResearchError(f"the backtest spans {len(table)} months; {2 * n} are needed for {n} best and worst")
    best = table.nlargest(n, "return").assign(kind="best")
    worst = table.nsmallest(n, "return").assign(kind="worst")
    months = pd.concat([best, worst])
    return MonthAttribution(months, funds.loc[months.index])
