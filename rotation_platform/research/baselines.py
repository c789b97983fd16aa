"""Naive baselines traded beside the strategy: the same market, costs, lots and corporate actions.

Every backtest is compared with three portfolios a quant would try first (:func:`baselines`):

* ``equal_weight`` -- the pool's funds in equal weights, rebalanced on the first session of every month;
* ``benchmark`` -- buy-and-hold of the pool's ``benchmark`` symbol (with ``benchmark: equal_weight``, the
  equal-weight pool bought once and held);
* ``momentum`` -- each month, the ``top_n`` funds with the highest ``lookback``-session return (adjusted
  closes, total return), equal weights ``1 / top_n``.

They are simulated in real units like the strategy (:mod:`rotation_platform.research.nb`): raw trade
prices, whole board lots (floored; buys add whole lots), sells before buys, buys cut lot by lot to the
cash, ``max(commission_rate * value, min_commission)`` per order on the slipped price, splits and
dividends applied to the holdings at the open, funds whose data ended sold at their last mark.

Timing (point-in-time): the portfolio starts with ``init_cash`` at ``start`` (the strategy's first
trade) and trades at ``start`` and on later rebalance sessions ``t``. The decision for ``t`` is made at
the close of ``t - 1``: the eligible funds are those :meth:`Market.tradeable_next` allows (a bar at
``t - 1``, not ended by ``t``), not excluded from the universe of ``t`` (``Market.excluded``) and with a
trade price at ``t``; the momentum score is ``close[t - 1] / close[t - 1 - lookback] - 1`` on the
adjusted panel. A holding that cannot trade keeps its shares; an ineligible one is sold. No liquidity
(ADV) rule applies: a baseline is the naive portfolio. The equity at ``t`` therefore uses data through
``t`` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from rotation_platform.data.panel import PricePanel
from rotation_platform.errors import ResearchError
from rotation_platform.research.market import Market
from rotation_platform.research.metrics import PerformanceMetrics, performance_metrics
from rotation_platform.research.nb import _fee, corporate_actions_nb, rebalance_targets_nb, sell_ended_nb

__all__ = ["BASELINES", "BaselineCurve", "Baselines", "baselines", "monthly_rebalance_rows", "baseline_weights",
           "simulate_weights_nb"]

#: the baselines in report order
BASELINES = ("equal_weight", "benchmark", "momentum")
#: short column prefixes of the baselines in frames and summaries
PREFIX = {"equal_weight": "ew", "benchmark": "bench", "momentum": "mom"}


@njit(cache=True)
def simulate_weights_nb(trade_price: np.ndarray, mark: np.ndarray, split: np.ndarray, dividend: np.ndarray,
                        ended: np.ndarray, lots: np.ndarray, reinvest: bool, weights: np.ndarray,
                        rebalance: np.ndarray, init_cash: float, rate: float, min_fee: float, slippage: float):
    """A book that trades to ``weights[t]`` on the sessions where ``rebalance[t]``; the order of events of
    a session as in :func:`~rotation_platform.research.nb.simulate_path_nb` (corporate actions,
    liquidations of ended funds, rebalance, mark to the close).

    Returns ``(equity[S], shares[S, N], cash[S], traded_value[S], costs[S])`` (traded value at the
    executed prices; costs: commission plus slippage).
    """
    n_s, n_f = trade_price.shape
    equity = np.empty(n_s)
    shares_out = np.zeros((n_s, n_f))
    cash_out = np.empty(n_s)
    traded = np.zeros(n_s)
    costs = np.zeros(n_s)
    shares = np.zeros(n_f)
    cash = init_cash
    target = np.zeros(n_f)
    tradeable = np.zeros(n_f, np.bool_)
    vprice = np.zeros(n_f)
    received = np.zeros(n_f)
    sold = np.zeros(n_f)
    sold_fee = np.zeros(n_f)
    sold_price = np.zeros(n_f)
    for t in range(n_s):
        cash = corporate_actions_nb(t, shares, cash, split, dividend, mark, reinvest, received)
        cash = sell_ended_nb(t, shares, cash, mark, ended, rate, min_fee, sold, sold_fee, sold_price)
        for i in range(n_f):
            if sold[i] > 0.0:
                traded[t] += sold[i] * sold_price[i]
                costs[t] += sold_fee[i]
        if rebalance[t]:
            for i in range(n_f):
                tp = trade_price[t, i]
                tradeable[i] = tp > 0.0 and not ended[t, i]
                if tradeable[i]:
                    vprice[i] = tp
                else:
                    vprice[i] = mark[t - 1, i] if t > 0 and mark[t - 1, i] > 0.0 else 0.0
            rebalance_targets_nb(weights[t], shares, cash, trade_price[t], vprice, tradeable, lots, rate, min_fee,
                                 slippage, target)
            for i in range(n_f):
                d = target[i] - shares[i]
                if d < 0.0:
                    v = -d * trade_price[t, i] * (1.0 - slippage)
                    f = _fee(v, rate, min_fee)
                    cash += v - f
                    shares[i] = target[i]
                    traded[t] += v
                    costs[t] += f - d * trade_price[t, i] * slippage
            for i in range(n_f):
                d = target[i] - shares[i]
                if d > 0.0:
                    v = d * trade_price[t, i] * (1.0 + slippage)
                    f = _fee(v, rate, min_fee)
                    cash -= v + f
                    shares[i] = target[i]
                    traded[t] += v
                    costs[t] += f + d * trade_price[t, i] * slippage
        val = cash
        for i in range(n_f):
            if shares[i] != 0.0:
                val += shares[i] * mark[t, i]
        equity[t] = val
        cash_out[t] = cash
        for i in range(n_f):
            shares_out[t, i] = shares[i]
    return equity, shares_out, cash_out, traded, costs


def monthly_rebalance_rows(sessions: pd.DatetimeIndex, start: int) -> np.ndarray:
    """``rebalance[t]``: ``t == start`` or ``t > start`` is the first session of its calendar month."""
    n = len(sessions)
    if not 0 <= start < n:
        raise ResearchError(f"baseline start row {start} is outside the {n} sessions of the panel")
    month = sessions.year * 12 + sessions.month
    first = np.zeros(n, np.bool_)
    first[1:] = np.asarray(month[1:] != month[:-1])
    out = first & (np.arange(n) > start)
    out[start] = True
    return out


def _eligible(market: Market, t: int) -> np.ndarray:
    """Funds a baseline may hold after trading at ``t`` (decided at the close of ``t - 1``)."""
    tp = market.trade_price[t]
    can_trade = np.isfinite(tp) & (tp > 0) & ~market.ended[t] & ~market.excluded[t]
    if t == 0:
        return np.zeros(len(market.symbols), np.bool_)
    return market.tradeable_next(t - 1) & can_trade


def baseline_weights(name: str, market: Market, panel: PricePanel, start: int, *, benchmark: str = "equal_weight",
                     top_n: int | Sequence[int] | np.ndarray = 2, lookback: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """``(weights[S, N], rebalance[S])`` of one baseline (see the module docstring). ``top_n``: one
    count, or one per session (the count in force when the session trades)."""
    n_s, n_f = market.shape
    weights = np.zeros((n_s, n_f))
    if name == "equal_weight":
        rebalance = monthly_rebalance_rows(market.sessions, start)
    elif name == "benchmark":
        rebalance = np.zeros(n_s, np.bool_)
        if benchmark == "equal_weight":
            rebalance[start] = True
        elif benchmark in market.symbols:
            # bought at the first session from ``start`` on where it is eligible, then held
            j = market.symbols.index(benchmark)
            for t in range(start, n_s):
                if _eligible(market, t)[j]:
                    rebalance[t] = True
                    weights[t, j] = 1.0
                    break
            return weights, rebalance
        else:
            raise ResearchError(f"baseline benchmark {benchmark!r} is neither 'equal_weight' nor a symbol of the "
                                f"pool {list(market.symbols)}; fix pools[].benchmark")
    elif name == "momentum":
        if lookback < 1:
            raise ResearchError(f"momentum baseline lookback must be at least 1 session, got {lookback}")
        rebalance = monthly_rebalance_rows(market.sessions, start)
        close = panel["close"].where(panel["close"] > 0.0).to_numpy(dtype=np.float64)
        counts = np.broadcast_to(np.asarray(top_n, dtype=np.int64), (n_s,))
        if (counts < 1).any():
            raise ResearchError(f"momentum baseline top_n must be at least 1, got {int(counts.min())}")
        for t in np.flatnonzero(rebalance):
            ok = _eligible(market, int(t))
            if t - 1 - lookback >= 0:
                with np.errstate(invalid="ignore", divide="ignore"):
                    score = close[t - 1] / close[t - 1 - lookback] - 1.0
            else:
                score = np.full(n_f, np.nan)
            cand = np.flatnonzero(ok & np.isfinite(score))
            k = int(counts[t])
            if cand.size == 0:
                continue
            order = cand[np.argsort(-score[cand], kind="mergesort")][:k]  # ties: the earlier column
            weights[t, order] = 1.0 / k
        return weights, rebalance
    else:
        raise ResearchError(f"unknown baseline {name!r}; use one of {list(BASELINES)}")
    for t in np.flatnonzero(rebalance):
        ok = _eligible(market, int(t))
        if ok.any():
            weights[t, ok] = 1.0 / ok.sum()
    return weights, rebalance


@dataclass(frozen=True)
class BaselineCurve:
    """One baseline's book: equity (CNY), daily returns, shares, cash, traded value and costs per session."""

    name: str
    label: str
    equity: pd.Series
    returns: pd.Series
    shares: pd.DataFrame
    cash: pd.Series
    traded_value: pd.Series
    costs: pd.Series
    weights: np.ndarray
    rebalance: np.ndarray

    def metrics(self, first: int, row: int, *, annualisation: int = 252, risk_free_rate: float = 0.0
                ) -> PerformanceMetrics:
        """The strategy's metrics on returns ``first..row`` (as :meth:`PoolRun.metrics_at` takes them)."""
        return performance_metrics(self.returns.iloc[first: row + 1], annualisation=annualisation,
                                   risk_free_rate=risk_free_rate, equity=self.equity.iloc[: row + 1],
                                   traded_value=self.traded_value.iloc[: row + 1],
                                   costs=float(self.costs.iloc[first: row + 1].sum()))


@dataclass(frozen=True)
class Baselines:
    start: int
    curves: dict[str, BaselineCurve]

    def __getitem__(self, name: str) -> BaselineCurve:
        return self.curves[name]


def baselines(market: Market, panel: PricePanel, start: int, *, init_cash: float, commission_rate: float,
              min_commission: float, slippage_bps: float, benchmark: str = "equal_weight",
              top_n: int | Sequence[int] | np.ndarray = 2, lookback: int = 20) -> Baselines:
    """The three baselines of a pool from row ``start`` on (see the module docstring)."""
    market.check_aligned(panel)
    if init_cash <= 0:
        raise ResearchError(f"baselines need positive starting capital, got {init_cash}")
    idx, cols = market.sessions, list(market.symbols)
    curves = {}
    for name in BASELINES:
        w, reb = baseline_weights(name, market, panel, start, benchmark=benchmark, top_n=top_n, lookback=lookback)
        eq, sh, cash, traded, costs = simulate_weights_nb(
            market.trade_price, market.mark, market.split, market.dividend, market.ended, market.lots,
            bool(market.reinvest), np.ascontiguousarray(w), reb, float(init_cash), float(commission_rate),
            float(min_commission), float(slippage_bps) / 1e4)
        equity = pd.Series(eq, index=idx, name=name)
        label = {"equal_weight": "equal weight (monthly)",
                 "benchmark": (f"{benchmark} buy-and-hold" if benchmark != "equal_weight"
                               else "equal weight buy-and-hold"),
                 "momentum": f"momentum {lookback}d top-N (monthly)"}[name]
        curves[name] = BaselineCurve(name, label, equity, equity.pct_change().fillna(0.0).rename(name),
                                     pd.DataFrame(sh, index=idx, columns=cols), pd.Series(cash, index=idx),
                                     pd.Series(traded, index=idx), pd.Series(costs, index=idx), w, reb)
    return Baselines(int(start), curves)
