"""Capacity of a pool's strategy from its actual holdings: one definition for every view.

For every session ``t`` and held fund the position value (shares x raw close) is compared with the
liquidity limit ``ADV x capital.max_adv_pct``, where ADV is the mean daily turnover (``amount``, in the
pool's currency like every money figure here) of the ``window`` sessions before ``t`` (known before
trading; sessions without turnover are skipped, at least ``min_periods`` are needed). ``utilisation = value / limit``.

* A fund whose files have no amount has, under ``data.amount: estimate``, an ADV from estimated turnover
  (volume x typical price; the panel's ``meta["amount_estimated"]``): :func:`adv_frame` lists those funds
  in ``attrs["estimated"]``, and the report's ``adv_estimated`` and ``notes`` say "ADV from estimated
  turnover" -- never presented as the exchange's turnover.
* A held position without any ADV is **reported as such** (``no_adv``), not as an infinite breach and
  not as no breach: its utilisation is NaN, it is counted in ``positions_without_adv`` and it does not
  bound the capacity figure, which is said to exclude it.
* The capacity at session ``t`` is ``equity[t] / max(utilisation[t])`` over the held positions with an
  ADV: the size the book of ``t`` could have, scaled as it is, before its most-used position reaches the
  limit (infinite when nothing with an ADV is held). It is ``capacity`` in the pool's currency
  (``currency`` when :func:`capacity_by_session` is told it); ``capacity_cny`` is the same number under
  its historical name, kept for the readers of values stored before pools had a currency, and present
  only for a CNY pool (or when no currency is given).
* Over a backtest, positions scale with the starting capital, so the largest starting capital that
  never breaches the limit is ``init_cash / max over sessions of utilisation`` (``max_capital``), and
  ``capital_at_quantile`` the one at which only ``1 - quantile`` of the held fund-sessions would breach.
* Single-weight breaches (a position above ``capital.max_single_weight`` of equity by more than
  ``weight_tolerance``, e.g. after a rally between rebalances) do not depend on the capital and are
  counted separately.

:func:`capacity_table` and :func:`capacity_by_session` are that definition; :func:`capacity_report`,
the production per-session table and the capacity fuse all read them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rotation_platform.config.models import CapitalConfig
from rotation_platform.data.panel import PricePanel
from rotation_platform.errors import ResearchError
from rotation_platform.research.backtest import BacktestResult

__all__ = ["CapacityReport", "capacity_report", "adv_frame", "capacity_table", "capacity_by_session",
           "WEIGHT_TOLERANCE"]

WEIGHT_TOLERANCE = 0.01


def adv_frame(panel: PricePanel, window: int = 20, min_periods: int = 1) -> pd.DataFrame:
    """Mean daily turnover (the pool's currency) of the ``window`` sessions before each session (NaN: none
    known)."""
    if window < 1 or not 1 <= min_periods <= window:
        raise ResearchError(f"invalid ADV window {window} / min_periods {min_periods}")
    amount = panel["amount"].where(panel["amount"] > 0.0)
    adv = amount.rolling(window, min_periods=min_periods).mean().shift(1)
    # funds whose files have no amount: their turnover is estimated (data.amount: estimate), and so is the ADV
    meta = getattr(panel, "meta", None) or {}
    adv.attrs["estimated"] = [s for s in (meta.get("amount_estimated") or []) if s in adv.columns]
    return adv


def capacity_table(result: BacktestResult, adv: pd.DataFrame, capital: CapitalConfig, *,
                   weight_tolerance: float = WEIGHT_TOLERANCE) -> pd.DataFrame:
    """Per (session, symbol): shares, value, weight, ADV, limit, utilisation and the breach flags."""
    positions = result.positions
    values = result.position_values
    weights = result.weights
    adv = adv.reindex(index=positions.index, columns=positions.columns)
    held = values > 0.0
    limit = adv * capital.max_adv_pct
    has_adv = limit > 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        util = (values / limit).where(held & has_adv)
    n_s, n_f = positions.shape
    index = pd.MultiIndex.from_product([positions.index, list(positions.columns)], names=["session", "symbol"])
    flat = lambda f: np.asarray(f.to_numpy(dtype=np.float64)).reshape(n_s * n_f)  # noqa: E731
    table = pd.DataFrame({
        "shares": flat(positions), "value": flat(values), "weight": flat(weights), "adv": flat(adv),
        "adv_limit": flat(limit), "utilisation": flat(util),
    }, index=index)
    held_flat = table["value"].to_numpy() > 0.0
    table["no_adv"] = held_flat & ~(table["adv_limit"].to_numpy() > 0.0)
    table["adv_breach"] = table["utilisation"].to_numpy() > 1.0
    table["weight_breach"] = table["weight"].to_numpy() > capital.max_single_weight + weight_tolerance
    return table


def capacity_by_session(table: pd.DataFrame, equity: pd.Series, *, currency: str | None = None) -> pd.DataFrame:
    """Per session: the most-used position, the capacity (``capacity``, in the currency of ``equity``; also
    as ``capacity_cny`` for a CNY pool, see the module docstring), breaches and positions without ADV;
    with ``currency`` a ``currency`` column names it."""
    util = table["utilisation"].unstack("symbol")
    no_adv = table["no_adv"].unstack("symbol")
    peak = util.max(axis=1, skipna=True)
    arr = util.to_numpy(dtype=np.float64)
    any_row = np.isfinite(arr).any(axis=1)
    pos = np.argmax(np.where(np.isfinite(arr), arr, -np.inf), axis=1)
    binding = pd.Series(np.where(any_row, np.asarray(util.columns, dtype=object)[pos], ""), index=util.index)
    eq = equity.reindex(util.index)
    with np.errstate(invalid="ignore", divide="ignore"):
        capacity = np.where(peak > 0, eq / peak, np.inf)
    out = pd.DataFrame({
        "max_utilisation": peak.fillna(0.0),
        "capacity": capacity,
        "binding_symbol": binding.astype(object),
        "adv_breaches": table["adv_breach"].unstack("symbol").sum(axis=1).astype(np.int64),
        "weight_breaches": table["weight_breach"].unstack("symbol").sum(axis=1).astype(np.int64),
        "positions_without_adv": no_adv.sum(axis=1).astype(np.int64),
        "without_adv": no_adv.apply(lambda r: ", ".join(r.index[r.to_numpy(dtype=bool)]), axis=1),
    }, index=util.index)
    if currency is None or currency == "CNY":   # the historical column, only where it is true
        out.insert(2, "capacity_cny", capacity)
    if currency is not None:
        out["currency"] = str(currency)
    return out


@dataclass(frozen=True)
class CapacityReport:
    """Liquidity use of a backtest's holdings (see the module docstring)."""

    table: pd.DataFrame           # per (session, symbol), :func:`capacity_table`
    by_session: pd.DataFrame      # per session, :func:`capacity_by_session`
    utilisation: pd.DataFrame     # sessions x funds (NaN where not held or without ADV)
    adv: pd.DataFrame
    adv_breaches: int
    weight_breaches: int
    positions_without_adv: int
    max_weight: float
    max_capital: float
    capital_at_quantile: float
    quantile: float
    binding_session: pd.Timestamp | None
    binding_symbol: str | None
    by_fund: pd.DataFrame
    capital: float
    as_of: pd.Timestamp
    capacity_cny: float           # the capacity at ``as_of`` in the currency of the backtest (historical name)
    adv_estimated: tuple[str, ...] = ()   # held funds whose ADV is from estimated turnover (no amount in the files)
    notes: tuple[str, ...] = ()           # e.g. "ADV from estimated turnover for ..."

    @property
    def capacity(self) -> float:
        """The capacity at ``as_of`` in the backtest's currency (the pool's)."""
        return self.capacity_cny

    @property
    def capacity_ratio(self) -> float:
        """``max_capital`` over the starting capital (above 1: room to grow)."""
        return self.max_capital / self.capital


def capacity_report(result: BacktestResult, panel: PricePanel, capital: CapitalConfig, *, window: int = 20,
                    min_periods: int = 1, weight_tolerance: float = WEIGHT_TOLERANCE, quantile: float = 0.99,
                    start: object | None = None) -> CapacityReport:
    """Capacity of the backtest's holdings against ``capital`` (see the module docstring)."""
    if not 0.0 < quantile <= 1.0:
        raise ResearchError(f"quantile must lie in (0, 1], got {quantile}")
    adv = adv_frame(panel, window, min_periods)
    first = result.start if start is None else max(pd.Timestamp(start), result.start)
    table = capacity_table(result, adv, capital, weight_tolerance=weight_tolerance)
    table = table.loc[pd.IndexSlice[first:, :], :]
    sessions = capacity_by_session(table, result.equity)
    util = table["utilisation"].unstack("symbol")
    weights = table["weight"].unstack("symbol")
    held = table["value"].unstack("symbol") > 0.0
    stacked = util.stack().dropna()
    if not held.to_numpy().any():
        raise ResearchError("the backtest holds nothing: no capacity to measure")
    base = float(result.plan.init_cash)
    if stacked.empty:
        worst, peak, q_util = (None, None), 0.0, 0.0
    else:
        worst = stacked.idxmax()
        peak = float(stacked.max())
        q_util = float(np.quantile(stacked.to_numpy(), quantile))
    max_capital = base / peak if peak > 0 else float("inf")
    q_capital = base / q_util if q_util > 0 else float("inf")
    by_fund = pd.DataFrame({
        "sessions_held": held.sum(),
        "sessions_without_adv": table["no_adv"].unstack("symbol").sum(),
        "max_utilisation": util.max(),
        "mean_utilisation": util.mean(),
        "adv_breaches": (util > 1.0).sum(),
        "max_weight": weights.where(held).max(),
        "weight_breaches": (weights > capital.max_single_weight + weight_tolerance).sum(),
    })
    with np.errstate(divide="ignore"):
        by_fund["max_capital"] = base / by_fund["max_utilisation"]
    last = sessions.iloc[-1]
    held_any = set(held.columns[held.to_numpy().any(axis=0)])
    estimated = tuple(s for s in adv.attrs.get("estimated", []) if s in held_any)
    notes = ((f"ADV from estimated turnover for {', '.join(estimated)}: the files have no amount, so turnover is "
              f"volume x typical price (data.amount: estimate), not the exchange's figure",) if estimated else ())
    return CapacityReport(table, sessions, util, adv.loc[first:], int(sessions["adv_breaches"].sum()),
                          int(sessions["weight_breaches"].sum()), int(sessions["positions_without_adv"].sum()),
                          float(weights.where(held).max().max()), max_capital, q_capital, float(quantile),
                          None if worst[0] is None else pd.Timestamp(worst[0]),
                          None if worst[1] is None else str(worst[1]),
                          by_fund[by_fund["sessions_held"] > 0], base, sessions.index[-1], float(last["capacity"]),
                          adv_estimated=estimated, notes=notes)
