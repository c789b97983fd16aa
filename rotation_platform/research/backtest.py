"""The backtest of a trade plan: the simulated book in real units, verified by an independent ledger.

The strategy kernel decides whole-lot orders with the cash it has and books them, with corporate
actions and liquidations, in raw prices (:class:`TradePlan`). :func:`backtest` replays the orders
through :func:`~rotation_platform.research.ledger.replay_ledger` -- a plain, event-by-event ledger
that also enforces board lots, trade prices and non-negative cash -- and raises
:class:`~rotation_platform.errors.ResearchError` unless both books agree share for share and to
``1e-9`` of the capital (in the pool's currency, like every money figure here). For a plan without corporate actions or liquidations
:func:`vectorbt_orders` gives the arguments of ``vectorbt.Portfolio.from_orders`` that replay it (a
third, external opinion; the tests use it).

Metrics are taken from the first session with an order to the end; the benchmark (a symbol of the pool,
held, or the equal-weight pool rebalanced daily, both without costs) over the same sessions, on the
adjusted (total-return) closes. Turnover is the traded value of every order (liquidations included)
over the mean equity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rotation_platform.config.models import FuseThresholds
from rotation_platform.data.panel import PricePanel
from rotation_platform.errors import ResearchError
from rotation_platform.research.ledger import Ledger, compare_with_plan
from rotation_platform.research.metrics import PerformanceMetrics, fuse_checks, performance_metrics
from rotation_platform.research.strategy import TradePlan

__all__ = ["BacktestResult", "backtest", "benchmark_returns", "vectorbt_orders"]

@dataclass(frozen=True)
class BacktestResult:
    """The backtest of one trade plan (real units) with its metrics.

    ``positions`` are shares, ``position_values`` in the pool's currency at the raw marks, ``weights`` their share of
    equity; ``orders`` one row per order (``kind``: trade or liquidation); ``dividends`` the cash paid
    per session; ``asset_returns`` the funds' daily total returns (adjusted closes) for risk figures.
    """

    ledger: Ledger
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
    dividends: pd.Series
    asset_returns: pd.DataFrame

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
    """The keyword arguments of ``vectorbt.Portfolio.from_orders`` that replay ``plan`` -- only for a plan
    without corporate actions on its holdings and without liquidations, which vectorbt cannot book."""
    if (plan.dividends != 0).any() or plan.liquidated.any() or _held_through_split(plan):
        raise ResearchError("vectorbt cannot replay corporate actions or liquidations; use replay_ledger")
    idx, cols = plan.sessions, list(plan.symbols)
    has = plan.orders != 0.0
    slip = float(plan.costs.slippage_bps) / 1e4
    exec_price = np.where(plan.orders > 0, plan.order_price * (1.0 + slip), plan.order_price * (1.0 - slip))
    value = np.abs(plan.orders) * exec_price
    with np.errstate(invalid="ignore", divide="ignore"):
        fee_rate = np.where(has, plan.commission / value, 0.0)
    size = np.where(has, plan.shares, np.nan)
    price = np.where(has, plan.order_price, np.nan)
    lots = np.unique(plan.market.lots)
    frame = lambda a: pd.DataFrame(a, index=idx, columns=cols)  # noqa: E731
    return dict(close=frame(plan.mark), size=frame(size), size_type="targetamount", direction="longonly",
                price=frame(price), fees=frame(fee_rate), slippage=slip,
                size_granularity=float(lots[0]) if lots.size == 1 else None,
                init_cash=plan.init_cash, cash_sharing=True, group_by=True, call_seq="auto", freq="1D")


def _held_through_split(plan: TradePlan) -> bool:
    prev = np.vstack([np.zeros((1, plan.shares.shape[1])), plan.shares[:-1]])
    return bool(((plan.market.split != 1.0) & (prev != 0.0)).any())


def backtest(plan: TradePlan, panel: PricePanel, *, benchmark: str = "equal_weight") -> BacktestResult:
    """Verify ``plan`` against the independent ledger and compute the strategy's and the benchmark's
    metrics (``panel``: the adjusted prices the signals used, for the benchmark and risk returns)."""
    if tuple(panel.symbols) != plan.symbols or not panel.sessions.equals(plan.sessions):
        raise ResearchError("the trade plan was built on other sessions or symbols than this panel")
    first = plan.first_trade_row
    if first is None:
        raise ResearchError("the trade plan has no orders: nothing to backtest (check the strategy's start "
                            "and that the screens select factors)")
    ledger = compare_with_plan(plan)
    idx, cols = plan.sessions, list(plan.symbols)
    positions = pd.DataFrame(plan.shares, index=idx, columns=cols)
    equity = pd.Series(plan.equity, index=idx, name="equity")
    mark = pd.DataFrame(plan.mark, index=idx, columns=cols)
    position_values = (positions * mark.fillna(0.0)).where(positions != 0.0, 0.0)
    weights = position_values.div(equity, axis=0)
    slip = float(plan.costs.slippage_bps) / 1e4
    rows, colno = np.nonzero(plan.orders)
    q = plan.orders[rows, colno]
    p0 = plan.order_price[rows, colno]
    liq = plan.liquidated[rows, colno]
    executed = np.where(liq, p0, np.where(q > 0, p0 * (1.0 + slip), p0 * (1.0 - slip)))
    orders = pd.DataFrame({
        "session": idx[rows], "symbol": np.asarray(cols, dtype=object)[colno],
        "side": np.where(q > 0, "buy", "sell"), "kind": np.where(liq, "liquidation", "trade"),
        "shares": np.abs(q), "price": executed, "value": np.abs(q) * executed,
        "commission": plan.commission[rows, colno], "slippage": plan.slippage_cost[rows, colno],
    })
    traded = pd.Series(plan.traded_value.sum(axis=1), index=idx, name="traded_value")
    costs = pd.Series((plan.commission + plan.slippage_cost).sum(axis=1), index=idx, name="costs")
    dividends = pd.Series(plan.dividends.sum(axis=1), index=idx, name="dividends")
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
    adj = panel["close"].where(panel["close"] > 0.0)
    asset_returns = adj / adj.ffill().shift(1) - 1.0
    return BacktestResult(ledger, plan, equity, returns, positions, position_values, weights, orders, traded, costs,
                          benchmark, bench, metrics, bench_metrics, relative, start, dividends, asset_returns)
