"""Historical one-day VaR and CVaR, and the current exposure by fund.

Definitions: for ``n`` daily returns and confidence ``c``, the tail holds the ``k = ceil(n (1 - c))``
worst returns (at least one); VaR is minus the best return of the tail (the ``k``-th worst) and CVaR
minus the tail's mean. Both are positive numbers for losses, as fractions of the portfolio value; the
CNY figures multiply them by the latest equity.

The holdings VaR applies today's weights (shares at raw prices over equity) to the funds' past daily
total returns (historical simulation over ``window`` sessions). Its CVaR splits into per-fund components (each fund's weighted
return averaged over the tail scenarios) that add up to the total.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rotation_platform.errors import ResearchError
from rotation_platform.research.backtest import BacktestResult

__all__ = ["RiskReport", "historical_var", "risk_report"]


def _tail(x: np.ndarray, level: float) -> np.ndarray:
    if not 0.0 < level < 1.0:
        raise ResearchError(f"a VaR confidence level must lie in (0, 1), got {level}")
    k = max(1, math.ceil(x.size * (1.0 - level) - 1e-12))
    return np.argsort(x, kind="mergesort")[:k]


def historical_var(returns: pd.Series | np.ndarray, levels: Sequence[float] = (0.95, 0.99)) -> pd.DataFrame:
    """One-day historical VaR and CVaR of ``returns`` at each confidence level (positive = loss)."""
    x = np.asarray(returns, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ResearchError("VaR needs at least one finite return")
    rows = []
    for lv in levels:
        tail = x[_tail(x, lv)]
        rows.append({"level": lv, "var": float(-tail.max()), "cvar": float(-tail.mean()), "tail_size": tail.size})
    return pd.DataFrame(rows).set_index("level")


@dataclass(frozen=True)
class RiskReport:
    as_of: pd.Timestamp
    equity: float
    strategy: pd.DataFrame
    holdings: pd.DataFrame
    exposure: pd.DataFrame
    window: int


def risk_report(result: BacktestResult, *, window: int | None = 252, levels: Sequence[float] = (0.95, 0.99),
                as_of: object | None = None) -> RiskReport:
    """VaR/CVaR of the strategy's daily returns (last ``window`` sessions to ``as_of``; ``None``: all
    sessions since the first trade) and of the current holdings, with the exposure by fund."""
    idx = result.equity.index
    end = len(idx) - 1 if as_of is None else int(idx.searchsorted(pd.Timestamp(as_of), side="right")) - 1
    if end < 0:
        raise ResearchError(f"risk as of {as_of} is before the backtest starts")
    first = result.plan.first_trade_row or 0
    lo = first if window is None else max(first, end - window + 1)
    rets = result.returns.iloc[max(lo, 1): end + 1]
    equity = float(result.equity.iloc[end])
    strat = historical_var(rets, levels)
    strat["var_cny"] = strat["var"] * equity
    strat["cvar_cny"] = strat["cvar"] * equity
    shares = result.positions.iloc[end]
    mark = pd.Series(result.plan.mark[end], index=shares.index)
    values = (shares * mark.fillna(0.0)).where(shares != 0.0, 0.0)
    exposure = pd.DataFrame({"shares": shares, "price": mark, "value": values, "weight": values / equity})
    exposure = exposure[exposure["shares"] != 0.0].sort_values("value", ascending=False)
    # scenarios from total returns (adjusted closes): a split or dividend is not a loss
    fund_rets = result.asset_returns.iloc[max(lo, 1): end + 1][exposure.index].fillna(0.0)
    w = exposure["weight"].to_numpy()
    scen = fund_rets.to_numpy() @ w if len(exposure) else np.zeros(len(fund_rets))
    hold = historical_var(scen, levels) if len(scen) else pd.DataFrame()
    if len(scen):
        for lv in levels:
            tail = _tail(scen, lv)
            comp = -(fund_rets.to_numpy()[tail] * w).mean(axis=0)
            exposure[f"cvar_{int(round(lv * 100))}"] = comp
        hold["var_cny"] = hold["var"] * equity
        hold["cvar_cny"] = hold["cvar"] * equity
    return RiskReport(idx[end], equity, strat, hold, exposure, len(rets))
