"""Capacity of a pool's strategy from its actual backtest holdings.

For every session and held fund the position value (shares x close) is compared with the liquidity
limit ``ADV20 x capital.max_adv_pct``, where ADV20 is the mean daily turnover (``amount``, CNY) of the 20
sessions before the session (known before trading; sessions without turnover data are skipped, at
least ``min_periods`` are needed -- a position without any ADV counts as an unbounded breach). Position
values scale with the capital, so the largest capital that never breaches the limit is
``target_capital x min(limit / position value)`` over all held fund-sessions; ``capital_at_quantile``
is the capital at which only ``1 - quantile`` of the held fund-sessions would breach. Single-weight
breaches (a position above ``capital.max_single_weight`` of the portfolio by more than
``weight_tolerance``, e.g. after a rally between rebalances) do not depend on the capital and are counted
separately. ``start`` limits the check to the sessions from that date.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rotation_platform.config.models import CapitalConfig
from rotation_platform.data.panel import PricePanel
from rotation_platform.errors import ResearchError
from rotation_platform.research.backtest import BacktestResult

__all__ = ["CapacityReport", "capacity_report"]


@dataclass(frozen=True)
class CapacityReport:
    """Liquidity use of a backtest's holdings."""

    utilisation: pd.DataFrame  # position value / liquidity limit (NaN where nothing is held)
    adv: pd.DataFrame
    adv_breaches: int
    weight_breaches: int
    max_weight: float
    max_capital: float
    capital_at_quantile: float
    quantile: float
    binding_session: pd.Timestamp | None
    binding_symbol: str | None
    by_fund: pd.DataFrame
    capital: float

    @property
    def capacity_ratio(self) -> float:
        """``max_capital`` over the pool's target capital (above 1: room to grow)."""
        return self.max_capital / self.capital


def capacity_report(result: BacktestResult, panel: PricePanel, capital: CapitalConfig, *, window: int = 20,
                    min_periods: int = 1, weight_tolerance: float = 0.01, quantile: float = 0.99,
                    start: object | None = None) -> CapacityReport:
    """Capacity of the backtest's holdings against ``capital`` (see the module docstring)."""
    if window < 1 or not 1 <= min_periods <= window:
        raise ResearchError(f"invalid ADV window {window} / min_periods {min_periods}")
    if not 0.0 < quantile <= 1.0:
        raise ResearchError(f"quantile must lie in (0, 1], got {quantile}")
    amount = panel["amount"].where(panel["amount"] > 0.0)
    adv = amount.rolling(window, min_periods=min_periods).mean().shift(1)
    first = result.start if start is None else max(pd.Timestamp(start), result.start)
    values = result.position_values.loc[first:]
    adv = adv.loc[first:]
    held = values > 0.0
    limit = adv * capital.max_adv_pct
    with np.errstate(invalid="ignore", divide="ignore"):
        util = (values / limit).where(held)
    no_adv = held & ~(limit > 0.0)
    util = util.mask(no_adv, np.inf)
    breaches = int((util > 1.0).sum().sum())
    weights = result.weights.loc[first:]
    w_breach = int((weights > capital.max_single_weight + weight_tolerance).sum().sum())
    stacked = util.stack().dropna()
    if stacked.empty:
        raise ResearchError("the backtest holds nothing: no capacity to measure")
    worst = stacked.idxmax()
    peak = float(stacked.max())
    base = float(result.plan.init_cash)
    max_capital = base / peak if peak > 0 else float("inf")
    q_util = float(np.quantile(stacked.to_numpy(), quantile))
    q_capital = base / q_util if q_util > 0 else float("inf")
    by_fund = pd.DataFrame({
        "sessions_held": held.sum(),
        "max_utilisation": util.max(),
        "mean_utilisation": util.mean(),
        "adv_breaches": (util > 1.0).sum(),
        "max_weight": weights.max(),
        "weight_breaches": (weights > capital.max_single_weight + weight_tolerance).sum(),
    })
    by_fund["max_capital"] = base / by_fund["max_utilisation"]
    return CapacityReport(util, adv, breaches, w_breach, float(weights.max().max()), max_capital, q_capital,
                          float(quantile), pd.Timestamp(worst[0]), str(worst[1]), by_fund[by_fund["sessions_held"] > 0], base)
