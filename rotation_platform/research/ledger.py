"""An independent ledger replay of a trade plan: the book rebuilt order by order, action by action.

The simulation kernel (:mod:`rotation_platform.research.nb`) decides and books its orders in one
numba pass. This module takes only the plan's *orders* (shares, the price they executed at before
slippage, and whether an order is the liquidation of a fund whose data ended) and the market's
corporate actions, and rebuilds the book in plain Python, one event at a time, in the order a broker
statement would show them:

1. at the open of each session, for every holding: a split multiplies the shares (floored to whole
   shares), then a cash dividend pays ``shares x dividend`` (or, with ``reinvest``, buys whole shares
   at the ex-dividend reference price ``previous close / ratio - dividend``, the rest staying cash);
2. the session's sales (liquidations first), then its purchases, each at ``price x (1 -/+ slippage)``
   (liquidations without slippage), paying ``max(commission_rate x value, min_commission)``;
3. the close: every holding valued at the session's raw mark.

Along the way it enforces what an exchange and a broker enforce: a purchase is a whole number of the
fund's board lots, an order needs a trade price (a liquidation needs a last price), nothing is sold that
is not held, and cash never goes below zero. It also enforces the universe policy on its own: nothing is
bought in a fund out of the session's universe (``market.excluded``), and on a rebalance session (a row of
target weights) such a fund with a trade price is sold out -- unless its sale cannot even pay the
commission. A violation raises
:class:`~rotation_platform.errors.ResearchError` naming the session, fund and rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rotation_platform.errors import ResearchError

__all__ = ["Ledger", "replay_ledger", "compare_with_plan"]


@dataclass(frozen=True)
class Ledger:
    """The rebuilt book: per session equity, cash and shares, dividends received and costs paid."""

    equity: np.ndarray
    cash: np.ndarray
    shares: np.ndarray
    dividends: np.ndarray
    commission: np.ndarray
    slippage: np.ndarray
    traded_value: np.ndarray


def _fee(value: float, rate: float, minimum: float) -> float:
    return max(value * rate, minimum)


def replay_ledger(plan) -> Ledger:
    """Rebuild ``plan``'s book from its orders and its market's corporate actions (module docstring)."""
    market = plan.market
    costs = plan.costs
    n_s, n_f = plan.orders.shape
    slip = float(costs.slippage_bps) / 1e4
    rate, minimum = float(costs.commission_rate), float(costs.min_commission)
    sessions, symbols = plan.sessions, plan.symbols
    cash = float(plan.init_cash)
    pos = [0.0] * n_f
    out_eq = np.empty(n_s)
    out_cash = np.empty(n_s)
    out_pos = np.zeros((n_s, n_f))
    out_div = np.zeros((n_s, n_f))
    out_fee = np.zeros((n_s, n_f))
    out_slip = np.zeros((n_s, n_f))
    out_traded = np.zeros((n_s, n_f))

    def where(t: int, i: int) -> str:
        return f"{symbols[i]} on {pd.Timestamp(sessions[t]).date()}"

    for t in range(n_s):
        for i in range(n_f):
            if pos[i] == 0.0:
                continue
            ratio = float(market.split[t, i])
            if ratio != 1.0:
                pos[i] = math.floor(pos[i] * ratio + 1e-9)
            cash_per_share = float(market.dividend[t, i])
            if cash_per_share > 0.0:
                paid = pos[i] * cash_per_share
                out_div[t, i] = paid
                if market.reinvest and t > 0:
                    reference = float(market.mark[t - 1, i]) / ratio - cash_per_share
                    if reference > 0.0:
                        bought = math.floor(paid / reference + 1e-9)
                        pos[i] += bought
                        paid -= bought * reference
                cash += paid
        orders = [(i, float(plan.orders[t, i])) for i in range(n_f) if plan.orders[t, i] != 0.0]
        liquidations = [(i, q) for i, q in orders if plan.liquidated[t, i]]
        sells = [(i, q) for i, q in orders if q < 0 and not plan.liquidated[t, i]]
        buys = [(i, q) for i, q in orders if q > 0]
        if any(q > 0 for i, q in liquidations):
            raise ResearchError(f"a liquidation buys {where(t, liquidations[0][0])}")
        for kind, group in (("liquidation", liquidations), ("sell", sells), ("buy", buys)):
            for i, q in group:
                price = float(plan.order_price[t, i])
                if kind == "liquidation":
                    if not market.ended[t, i]:
                        raise ResearchError(f"{where(t, i)}: liquidated although its data has not ended")
                    if not (price >= 0.0):
                        raise ResearchError(f"{where(t, i)}: liquidation without a last price")
                    executed = price
                else:
                    if not (price > 0.0) or price != float(market.trade_price[t, i]):
                        raise ResearchError(f"{where(t, i)}: {kind} order without the session's trade price")
                    if market.ended[t, i]:
                        raise ResearchError(f"{where(t, i)}: {kind} order in a fund whose data has ended")
                    if q > 0 and market.excluded[t, i]:
                        raise ResearchError(f"{where(t, i)}: buys a fund out of the session's universe (an ERROR "
                                            f"finding inside data.quality.exclusion_window)")
                    executed = price * (1.0 + slip) if q > 0 else price * (1.0 - slip)
                if q > 0:
                    lot = float(market.lots[i])
                    if abs(q / lot - round(q / lot)) > 1e-9:
                        raise ResearchError(f"{where(t, i)}: buys {q:g} shares, not a whole number of "
                                            f"{lot:g}-share lots")
                elif -q > pos[i] + 1e-9:
                    raise ResearchError(f"{where(t, i)}: sells {-q:g} shares but holds {pos[i]:g}")
                value = abs(q) * executed
                fee = _fee(value, rate, minimum) if value > 0.0 else (0.0 if kind == "liquidation" else minimum)
                cash += -value - fee if q > 0 else value - fee
                pos[i] += q
                out_fee[t, i] = fee
                out_slip[t, i] = abs(q) * abs(executed - price)
                out_traded[t, i] = abs(q) * price
                if cash < -1e-6:
                    raise ResearchError(f"{where(t, i)}: the {kind} order leaves cash at {cash:,.2f} (the pool's currency)")
        if np.isfinite(plan.weights[t]).any():  # a rebalance: excluded funds that can trade are sold out
            for i in range(n_f):
                price = float(market.trade_price[t, i])
                if pos[i] > 0.0 and market.excluded[t, i] and price > 0.0 and not market.ended[t, i]:
                    proceeds = pos[i] * price * (1.0 - slip)
                    if proceeds - _fee(proceeds, rate, minimum) >= 0.0:
                        raise ResearchError(f"{where(t, i)}: {pos[i]:g} shares kept at a rebalance although the "
                                            f"fund is out of the session's universe")
        total = cash
        for i in range(n_f):
            if pos[i] != 0.0:
                mark = float(market.mark[t, i])
                if not math.isfinite(mark):
                    raise ResearchError(f"{where(t, i)}: {pos[i]:g} shares held without a price to mark them")
                total += pos[i] * mark
            out_pos[t, i] = pos[i]
        out_eq[t] = total
        out_cash[t] = cash
    return Ledger(out_eq, out_cash, out_pos, out_div, out_fee, out_slip, out_traded)


def compare_with_plan(plan, ledger: Ledger | None = None, *, rtol: float = 1e-9) -> Ledger:
    """Replay ``plan`` and raise :class:`ResearchError` unless the ledger and the plan agree: the same
    shares every session, and equity, cash, dividends and commissions within ``rtol``."""
    led = replay_ledger(plan) if ledger is None else ledger
    if not np.array_equal(led.shares, plan.shares):
        t, i = np.argwhere(led.shares != plan.shares)[0]
        raise ResearchError(f"the ledger holds {led.shares[t, i]:g} shares of {plan.symbols[i]} on "
                            f"{pd.Timestamp(plan.sessions[t]).date()}, the simulation {plan.shares[t, i]:g}")
    scale = max(float(plan.init_cash), 1.0)
    for name, a, b in (("equity", led.equity, plan.equity), ("cash", led.cash, plan.cash),
                       ("dividends", led.dividends, plan.dividends), ("commission", led.commission, plan.commission),
                       ("slippage", led.slippage, plan.slippage_cost)):
        gap = np.abs(a - b)
        if not (gap <= rtol * scale).all():
            idx = np.unravel_index(int(np.argmax(gap)), gap.shape)
            raise ResearchError(f"the ledger's {name} departs from the simulation's by {float(gap[idx]):.6g} "
                                f"on {pd.Timestamp(plan.sessions[idx[0]]).date()}")
    return led
