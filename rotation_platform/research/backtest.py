"""The backtest of a trade plan with vectorbt ``Portfolio.from_orders``.

The strategy kernel decides whole-lot target positions with the cash it has (:class:`TradePlan`);
vectorbt executes exactly those orders -- ``size_type="targetamount"`` (target shares), granularity of
one board lot, ``cash_sharing=True`` and ``group_by=True`` (one portfolio), sells before buys
(``call_seq="auto"``), slippage as a fraction of the price, and the commission
``max(rate * value, min_commission)`` passed per order as a fee rate -- and marks every position to the
close each session. The result is checked against the plan: every order must fill at its full size and
the two equity curves must agree, or :class:`~rotation_platform.errors.ResearchError` is raised.

Metrics are taken from the first session with an order to the end; the benchmark (a symbol of the pool,
held, or the equal-weight pool rebalanced daily, both without costs) over the same sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rotation_platform.config.models import FuseThresholds
from rotation_platform.data.panel import PricePanel
from rotation_platform.errors import ResearchError
from rotation_platform.research.metrics import PerformanceMetrics, fuse_checks, performance_metrics
from rotation_platform.research.strategy import TradePlan

__all__ = ["BacktestResult", "backtest", "benchmark_returns", "vectorbt_orders"]

@dataclass(frozen=True)
class BacktestResult:
    """A vectorbt backtest of one trade plan with its metrics."""

    portfolio: object  # vectorbt.Portfolio
    plan: TradePlan
    equity: pd.Series
    returns: pd.Series
    positions: pd.DataFrame
    position_values: pd.DataFrame
    weights: pd.DataFrame
    orders: pd.DataFrame
    traded_value: pd.Series
    costs: pd.Series
    benchmark: str
    benchmark_returns: pd.Series
    metrics: PerformanceMetrics
    benchmark_metrics: PerformanceMetrics
    relative: dict[str, float]
    start: pd.Timestamp

    def fuse_checks(self, fuses: FuseThresholds) -> pd.DataFrame:
        return fuse_checks(self.metrics, fuses)

    def summary(self) -> pd.DataFrame:
        """Strategy and benchmark metrics side by side."""
        return pd.DataFrame({"strategy": self.metrics.as_dict(), "benchmark": self.benchmark_metrics.as_dict()})


def benchmark_returns(panel: PricePanel, benchmark: str) -> pd.Series:
    """Daily close-to-close returns of ``benchmark``: a symbol of the panel or ``"equal_weight"`` (the mean
    return of the funds with a close on both sessions, i.e. the equal-weight pool rebalanced daily)."""
    close = panel["close"].where(panel["close"] > 0.0)
    rets = close / close.shift(1) - 1.0
    if benchmark == "equal_weight":
        out = rets.mean(axis=1, skipna=True)
    elif benchmark in close.columns:
        out = rets[benchmark]
    else:
        raise ResearchError(f"benchmark {benchmark!r} is neither 'equal_weight' nor a symbol of the pool "
                            f"{list(close.columns)}")
    return out.fillna(0.0).rename("benchmark")


def vectorbt_orders(plan: TradePlan) -> dict[str, object]:
    """The keyword arguments of ``vectorbt.Portfolio.from_orders`` that replay ``plan``."""
    idx, cols = plan.sessions, list(plan.symbols)
    has = plan.orders != 0.0
    slip = float(plan.costs.slippage_bps) / 1e4
    exec_price = np.where(plan.orders > 0, plan.trade_price * (1.0 + slip), plan.trade_price * (1.0 - slip))
    value = np.abs(plan.orders) * exec_price
    with np.errstate(invalid="ignore", divide="ignore"):
        fee_rate = np.where(has, plan.commission / value, 0.0)
    size = np.where(has, plan.shares, np.nan)
    price = np.where(has, plan.trade_price, np.nan)
    frame = lambda a: pd.DataFrame(a, index=idx, columns=cols)  # noqa: E731
    return dict(close=frame(plan.mark), size=frame(size), size_type="targetamount", direction="longonly",
                price=frame(price), fees=frame(fee_rate), slippage=slip, size_granularity=float(plan.costs.lot_size),
                init_cash=plan.init_cash, cash_sharing=True, group_by=True, call_seq="auto", freq="1D")


def backtest(plan: TradePlan, panel: PricePanel, *, benchmark: str = "equal_weight") -> BacktestResult:
    """Replay ``plan`` through vectorbt and compute the strategy's and the benchmark's metrics."""
    import vectorbt as vbt

    if tuple(panel.symbols) != plan.symbols or not panel.sessions.equals(plan.sessions):
        raise ResearchError("the trade plan was built on other sessions or symbols than this panel")
    first = plan.first_trade_row
    if first is None:
        raise ResearchError("the trade plan has no orders: nothing to backtest (check the strategy's start "
                            "and that the screens select factors)")
    kwargs = vectorbt_orders(plan)
    pf = vbt.Portfolio.from_orders(**kwargs)
    idx, cols = plan.sessions, list(plan.symbols)
    positions = pd.DataFrame(np.asarray(pf.assets()), index=idx, columns=cols)
    equity = pd.Series(np.asarray(pf.value()), index=idx, name="equity")
    records = pf.orders.records
    n_orders = int((plan.orders != 0.0).sum())
    if len(records) != n_orders or not np.allclose(positions.to_numpy(), plan.shares, rtol=0, atol=1e-6):
        raise ResearchError(f"vectorbt filled {len(records)} of {n_orders} orders or ended on other positions "
                            f"than the plan: the plan's cash check and vectorbt disagree")
    gap = np.max(np.abs(equity.to_numpy() / plan.equity - 1.0))
    if not gap <= 1e-6:
        raise ResearchError(f"vectorbt's equity departs from the plan's by {gap:.3g} (relative)")
    mark = pd.DataFrame(plan.mark, index=idx, columns=cols)
    position_values = (positions * mark.fillna(0.0)).where(positions != 0.0, 0.0)
    weights = position_values.div(equity, axis=0)
    slip = float(plan.costs.slippage_bps) / 1e4
    rows = records["idx"].astype(np.int64)
    colno = records["col"].astype(np.int64)
    sides = np.where(records["side"] == 0, "buy", "sell")
    orders = pd.DataFrame({
        "session": idx[rows], "symbol": np.asarray(cols, dtype=object)[colno], "side": sides,
        "shares": records["size"], "price": records["price"], "value": records["size"] * records["price"],
        "commission": records["fees"],
        "slippage": records["size"] * plan.trade_price[rows, colno] * slip,
    })
    traded = pd.Series(np.abs(plan.orders * plan.trade_price).sum(axis=1), index=idx, name="traded_value")
    costs = pd.Series((plan.commission + plan.slippage_cost).sum(axis=1), index=idx, name="costs")
    returns = equity.pct_change().fillna(0.0).rename("returns")
    start = idx[first]
    live = returns.iloc[first:]
    ann = int(plan.costs.annualisation)
    rf = float(plan.costs.risk_free_rate)
    metrics = performance_metrics(live, annualisation=ann, risk_free_rate=rf, equity=equity, traded_value=traded,
                                  costs=float(costs.iloc[first:].sum()))
    bench = benchmark_returns(panel, benchmark)
    bench_live = bench.iloc[first:]
    bench_metrics = performance_metrics(bench_live, annualisation=ann, risk_free_rate=rf)
    active = live - bench_live
    te = float(active.std(ddof=1) * np.sqrt(ann))
    relative = {
        "excess_annual_return": metrics.annual_return - bench_metrics.annual_return,
        "tracking_error": te,
        "information_ratio": float(active.mean() * ann / te) if te > 0 else float("nan"),
        "beta": float(np.cov(live, bench_live)[0, 1] / np.var(bench_live, ddof=1)) if bench_live.var() > 0 else float("nan"),
    }
    return BacktestResult(pf, plan, equity, returns, positions, position_values, weights, orders, traded, costs,
                          benchmark, bench, metrics, bench_metrics, relative, start)
