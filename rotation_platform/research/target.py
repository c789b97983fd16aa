"""The target portfolio for the next session and the orders that reach it, in real shares and money.

Decided at the close of session ``T`` (``decided_at``) for trading at the next session: the screen as of
``T`` selects the factors, the factor row of the next session (data through ``T``) scores the funds, and
the same candidates (funds with a bar at ``T`` whose data has not ended; the liquidity filter with the
ADV known at ``T`` and the book's value), the same selection and the same whole-lot sizing as the backtest kernel (:func:`nb.select_weights_nb`,
:func:`nb.rebalance_targets_nb`) turn them into share counts. Prices default to the raw (tradable)
close of ``T`` from the market, holdings are real shares and cash, values and commissions are in the pool's currency (CNY for an A-share
pool, USD on XNYS); the board lot is the fund's (:func:`~rotation_platform.research.market.pool_lots`).

Portfolio construction is the kernel's (:func:`nb.construct_weights_nb`): the cash policy, the trend
signal for the next session (data through ``T``), the volatility target on the returns through ``T``,
the defensive fund, and the de-duplication clusters from the returns through ``T`` with the most liquid
candidate by the ADV known at ``T``. ``risk_on`` and ``exposure_scale`` record the trend signal and the
volatility scaling; the table's ``cluster``, ``deduplicated`` and ``defensive`` columns show the rest.

A fund out of the universe of the decision (``Market.out_of_universe[T]``: an ERROR finding on data through
``T`` inside ``data.quality.exclusion_window``) is neither scored nor selected: it cannot be bought or
added to, and on a rebalance a holding's target is 0 shares (it is sold, like a fund leaving the
selection); the ``excluded`` column marks it.

The factor row of the next session is the factor input's row after ``T`` when the panel has one (a
historical decision), otherwise ``next_factors`` (funds x factors) computed by the factor engine from
data through ``T``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rotation_platform.errors import ResearchError
from rotation_platform.research import nb
from rotation_platform.research.inputs import session_row
from rotation_platform.research.market import TREND_FILTERS
from rotation_platform.research.strategy import StrategyContext, StrategyParams

__all__ = ["TargetPortfolio", "target_portfolio"]


@dataclass(frozen=True)
class TargetPortfolio:
    decided_at: pd.Timestamp
    trade_session: pd.Timestamp | None
    scheduled_rebalance: bool
    params: StrategyParams
    factors: tuple[tuple[str, int, float], ...]
    equity: float
    cash_after: float
    table: pd.DataFrame
    rebalance: bool = True
    risk_on: bool = True
    exposure_scale: float = 1.0

    @property
    def orders(self) -> pd.DataFrame:
        """The non-zero orders, sells first."""
        o = self.table[self.table["order_shares"] != 0.0]
        return o.sort_values("order_shares", kind="mergesort")


def _by_symbol(values: Mapping[str, float] | pd.Series | np.ndarray | None, symbols: tuple[str, ...],
               default: np.ndarray, what: str) -> np.ndarray:
    if values is None:
        return default.copy()
    if isinstance(values, np.ndarray):
        if values.shape != (len(symbols),):
            raise ResearchError(f"{what} must hold one value per fund of the pool ({len(symbols)})")
        return values.astype(np.float64)
    series = pd.Series(values, dtype=np.float64)
    unknown = sorted(set(series.index) - set(symbols))
    if unknown:
        raise ResearchError(f"{what} names funds outside the pool: {unknown}")
    out = default.copy()
    for s, v in series.items():
        out[symbols.index(str(s))] = v
    return out


def target_portfolio(ctx: StrategyContext, params: StrategyParams, *, decided_at: object | None = None,
                     next_factors: np.ndarray | None = None,
                     holdings: Mapping[str, float] | pd.Series | np.ndarray | None = None, cash: float | None = None,
                     prices: Mapping[str, float] | pd.Series | np.ndarray | None = None,
                     rebalance: bool | None = None) -> TargetPortfolio:
    """Target weights, whole-lot shares and orders for the session after ``decided_at``.

    ``holdings`` are current shares by symbol (default none); ``cash`` defaults to the pool's target
    capital without holdings and to 0 with holdings; ``prices`` default to the raw closes of
    ``decided_at``. ``rebalance=False`` (a session the strategy does not rebalance on) keeps the holdings:
    the model's weights are still shown, but the target shares are the current ones and no order is
    made; ``None`` sizes the orders whatever the day.
    """
    n_s = ctx.n_sessions
    t = n_s - 1 if decided_at is None else session_row(ctx.sessions, decided_at, what="decided_at")
    symbols = ctx.symbols
    n_f = len(symbols)
    if next_factors is not None:
        row = np.asarray(next_factors, dtype=np.float64)
        if row.shape != (n_f, ctx.values.shape[2]):
            raise ResearchError(f"next_factors must be (funds, factors) = ({n_f}, {ctx.values.shape[2]}), "
                                f"got {row.shape}")
    elif t + 1 < n_s:
        row = ctx.values[t + 1]
    else:
        raise ResearchError(f"the factor input has no row for the session after {ctx.sessions[t].date()}; pass "
                            f"next_factors computed from data through that session")
    market = ctx.market
    close_t = market.close[t]
    default_price = np.where(close_t > 0, close_t, np.nan)
    price = _by_symbol(prices, symbols, default_price, "prices")
    trade_session = ctx.sessions[t + 1] if t + 1 < n_s else None
    tradeable = np.isfinite(price) & (price > 0) & market.tradeable_next(t, trade_session)
    shares = _by_symbol(holdings, symbols, np.zeros(n_f), "holdings")
    if (shares < 0).any():
        raise ResearchError("holdings must not be negative (the strategy is long only)")
    spec = ctx.spec
    if cash is None:
        cash = 0.0 if shares.any() else float(spec.capital.target_capital)
    held = shares > 0
    value_price = np.where(tradeable, price, market.mark[t])
    if (held & ~np.isfinite(value_price)).any():
        bad = [symbols[i] for i in np.flatnonzero(held & ~np.isfinite(value_price))]
        raise ResearchError(f"held funds without any price to value them on {ctx.sessions[t].date()}: {bad} "
                            f"(their data ended: remove them from the holdings or give their prices)")
    out = market.out_of_universe[t]
    candidates = tradeable & ~out
    adv = ctx.adv_known_at(t)
    path = ctx.selections(params.ic_lookback, np.array([t], np.int64), spec.horizon_for(params))
    weight = np.abs(np.nan_to_num(path.icir)) if params.weighting == "ic" else np.where(path.kept >= 0, 1.0, 0.0)
    scores = nb.composite_scores_nb(np.ascontiguousarray(row[None, :, :]), candidates[None, :],
                                    np.zeros(1, np.int64), np.zeros(1, np.int64), path.kept,
                                    np.ascontiguousarray(path.sign), np.ascontiguousarray(weight))[0]
    w = np.zeros(n_f)
    bt = spec.backtest
    cons = ctx.construction
    cap = float(spec.capital.max_single_weight)
    w_each = min(1.0 / nb.pick_count_nb(params.top_n, cap, cons.policy), cap)
    equity = float(cash + np.nansum(shares * np.nan_to_num(value_price)))
    liquid = ctx.liquid(w_each * equity, adv)
    # de-duplication: the clusters from the returns through T, the most liquid candidate by the ADV known at T
    blocked = cons.blocked_at(t, candidates, adv)
    eligible = tradeable & liquid & ~out & ~blocked
    d = cons.defensive
    risk_on = bool(cons.risk_on[TREND_FILTERS.index(params.trend_filter), t + 1])
    scale = 1.0
    if np.isfinite(scores).any():
        c = spec.strategy
        scale = nb.construct_weights_nb(
            scores, eligible, held, params.top_n, params.buffer, cap, cons.policy, equity,
            np.ascontiguousarray(ctx.position_limit(adv), dtype=np.float64), cons.rets, t, int(c.vol_window),
            float(c.target_volatility or 0.0), cons.annualisation, risk_on, d, bool(d >= 0 and candidates[d]), w)
    else:
        raise ResearchError(f"no fund has a composite score for the session after {ctx.sessions[t].date()}: "
                            f"the screen as of that date selected no factor, the factor row is empty or no "
                            f"fund passes the liquidity filter (backtest.liquidity_filter)")
    safe_price = np.where(tradeable, price, 1.0)
    target = np.zeros(n_f)
    slip = float(bt.slippage_bps) / 1e4
    if rebalance is False:
        target = shares.copy()
    else:
        nb.rebalance_targets_nb(w, shares, float(cash), safe_price, np.nan_to_num(value_price), tradeable,
                                market.lots, float(bt.commission_rate), float(bt.min_commission), slip, target)
    order = target - shares
    exec_price = np.where(order > 0, safe_price * (1 + slip), safe_price * (1 - slip))
    value = np.abs(order) * exec_price
    commission = np.where(order != 0, np.maximum(value * bt.commission_rate, bt.min_commission), 0.0)
    cash_after = float(cash - np.sum(np.sign(order) * value) - commission.sum())
    ranks = pd.Series(scores, index=list(symbols)).rank(ascending=False, method="first")
    target_value = target * np.nan_to_num(value_price)
    limit = adv * spec.capital.max_adv_pct
    with np.errstate(invalid="ignore", divide="ignore"):
        util = np.where((target > 0) & (limit > 0), target_value / limit, np.nan)
    table = pd.DataFrame({
        "score": scores, "rank": ranks.to_numpy(), "selected": w > 0, "target_weight": w, "price": price,
        "lot": market.lots, "tradeable": tradeable, "current_shares": shares, "target_shares": target,
        "order_shares": order, "side": np.where(order > 0, "buy", np.where(order < 0, "sell", "")),
        "order_value": np.where(order != 0, value, 0.0), "est_commission": commission,
        "est_slippage": np.abs(order) * safe_price * slip, "target_value": target_value,
        "adv": adv, "adv_utilisation": util, "liquid": liquid, "excluded": out.copy(),
        "defensive": np.arange(n_f) == d, "cluster": _cluster_column(cons.clusters(t), symbols),
        "deduplicated": blocked,
    }, index=pd.Index(list(symbols), name="symbol"))
    factors = tuple((path.names[int(k)], int(s), float(ic)) for k, s, ic in zip(path.kept[0], path.sign[0],
                                                                                 path.icir[0]) if k >= 0)
    scheduled = (t + 1) % params.rebalance_sessions == 0
    return TargetPortfolio(ctx.sessions[t], trade_session, scheduled, params, factors, equity, cash_after, table,
                           scheduled if rebalance is None else bool(rebalance), risk_on, float(scale))


def _cluster_column(clusters: list[tuple[str, ...]], symbols: tuple[str, ...]) -> list[str]:
    """Per fund, the members of its de-duplication cluster joined by commas ('' when it is alone)."""
    of = {s: ",".join(c) for c in clusters for s in c}
    return [of.get(s, "") for s in symbols]
