"""Strategy: selection with a buffer, whole-lot sizing, the grid simulator and the target portfolio."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rotation_platform.config.models import ScreeningConfig
from rotation_platform.errors import ResearchError
from rotation_platform.research import StrategyContext, StrategyParams, target_portfolio
from rotation_platform.research import nb
from tests.research.realdata import perturb_after, price_factors


LOTS = np.full(3, 100.0)


def test_top_n_with_buffer_keeps_held_funds_within_n_plus_buffer() -> None:
    score = np.array([5.0, 4.0, 3.0, 2.0, 1.0, np.nan])
    tradeable = np.array([True, True, True, True, True, True])
    out = np.zeros(6)
    # nothing held: the best two
    assert nb.select_weights_nb(score, tradeable, np.zeros(6, bool), 2, 1, 0.5, out) == 2
    assert out.tolist() == [0.5, 0.5, 0, 0, 0, 0]
    # fund 2 held, ranked third, buffer 1: kept, plus the best other
    held = np.array([False, False, True, False, False, False])
    nb.select_weights_nb(score, tradeable, held, 2, 1, 0.5, out)
    assert out.tolist() == [0.5, 0, 0.5, 0, 0, 0]
    # fund 3 held, ranked fourth: outside top_n + buffer, replaced
    held = np.array([False, False, False, True, False, False])
    nb.select_weights_nb(score, tradeable, held, 2, 1, 0.5, out)
    assert out.tolist() == [0.5, 0.5, 0, 0, 0, 0]
    # the best fund cannot trade: it is no candidate; a NaN score never is
    tradeable[0] = False
    nb.select_weights_nb(score, tradeable, np.zeros(6, bool), 2, 0, 0.4, out)
    assert out.tolist() == [0, 0.4, 0.4, 0, 0, 0]


def test_rebalance_targets_floor_to_lots_sell_first_and_fit_the_cash() -> None:
    w = np.array([0.5, 0.5, 0.0])
    shares = np.array([0.0, 0.0, 1000.0])
    price = np.array([10.0, 3.0, 20.0])
    target = np.zeros(3)
    # value = 80,000 cash + 20,000 holdings = 100,000; 50,000 / (10 * 100) = 50 lots; 50,000 / 300 = 166.67 lots
    nb.rebalance_targets_nb(w, shares, 80_000.0, price, price, np.ones(3, bool), LOTS, 0.0002, 5.0, 0.0005, target)
    assert target.tolist() == [5000.0, 16600.0, 0.0]
    # with 1% slippage the buys no longer fit: cash after the sell 80,000 + 19,800 - 5 = 99,795 against
    # 50,500 + 10.10 + 50,298 + 10.06 = 100,818.16; cutting the largest buy a lot at a time:
    # 49,490 + 9.90 + 50,298 + 10.06 = 99,807.96 (still short), then 49,490 + 9.90 + 49,995 + 10.00 = 99,504.90
    nb.rebalance_targets_nb(w, shares, 80_000.0, price, price, np.ones(3, bool), LOTS, 0.0002, 5.0, 0.01, target)
    sell = 1000 * 20 * 0.99 - max(1000 * 20 * 0.99 * 0.0002, 5.0)
    cost = sum(q * p * 1.01 + max(q * p * 1.01 * 0.0002, 5.0) for q, p in zip(target[:2], price[:2]))
    assert cost <= 80_000 + sell
    assert target[0] == 4900.0 and target[1] == 16500.0
    # a fund that cannot trade keeps its shares
    tradeable = np.array([True, True, False])
    nb.rebalance_targets_nb(w, shares, 80_000.0, price, price, tradeable, LOTS, 0.0002, 5.0, 0.0005, target)
    assert target[2] == 1000.0


def test_buys_add_whole_lots_to_an_odd_holding_and_lots_are_per_fund() -> None:
    # 370 shares after a 1:0.3709 share conversion; a buy adds whole 100-share lots on top of them, a sale
    # goes down to a whole-lot target; fund 1 trades in lots of 1,000
    w = np.array([0.5, 0.5])
    shares = np.array([370.0, 0.0])
    price = np.array([10.0, 2.0])
    target = np.zeros(2)
    nb.rebalance_targets_nb(w, shares, 16_300.0, price, price, np.ones(2, bool), np.array([100.0, 1000.0]),
                            0.0, 0.0, 0.0, target)
    # value 20,000: fund 0 wants 1,000 shares -> 370 + 6 lots = 970; fund 1 wants 5,000 -> 5 lots of 1,000
    assert target.tolist() == [970.0, 5000.0]
    nb.rebalance_targets_nb(np.array([0.1, 0.0]), shares, 16_300.0, price, price, np.ones(2, bool),
                            np.array([100.0, 1000.0]), 0.0, 0.0, 0.0, target)
    assert target.tolist() == [200.0, 0.0]  # 2,000 CNY -> 200 shares: the odd 170 are sold with the rest


def test_plan_trades_whole_lots_with_costs_and_never_borrows(plan, spec) -> None:
    assert plan.first_trade_row is not None
    assert np.all(np.mod(plan.shares, spec.backtest.lot_size) == 0)
    assert np.all(np.mod(plan.orders, spec.backtest.lot_size) == 0)
    assert plan.cash.min() >= -1e-6
    has = plan.orders != 0
    value = np.abs(plan.orders) * plan.trade_price * (1 + np.sign(plan.orders) * spec.backtest.slippage_bps / 1e4)
    np.testing.assert_allclose(plan.commission[has],
                               np.maximum(value[has] * spec.backtest.commission_rate, spec.backtest.min_commission))
    assert (plan.commission[has] == spec.backtest.min_commission).any()  # small re-weighting orders pay the minimum
    # orders only on rebalance sessions (every 20th row or the first), never on a fund without a price
    rows = np.flatnonzero(has.any(axis=1))
    assert all(r % 20 == 0 or r == plan.first_trade_row for r in rows)
    assert np.isfinite(plan.trade_price[has]).all()
    # each rebalance targets at most top_n funds, each at most max_single_weight
    w = plan.weights[rows]
    assert ((w > 0).sum(axis=1) <= 4).all() and np.nanmax(w) <= spec.capital.max_single_weight + 1e-12


def test_grid_simulation_equals_single_runs(context) -> None:
    grid = [StrategyParams(2, 5, 60, "equal", 0), StrategyParams(3, 10, 120, "ic", 1),
            StrategyParams(4, 20, 252, "equal", 2)]
    start = context.first_signal_row([252])
    curves = context.simulate_grid(grid, start)
    for p, curve in zip(grid, curves):
        single = context.run(p, start=start)
        np.testing.assert_allclose(curve, single.equity, rtol=1e-12)


def test_composite_score_is_the_weighted_mean_of_sign_aligned_zscores(context, params) -> None:
    t = 2000
    path = context.selection_at(params, t)
    sel = path.at(0)
    assert sel
    scores_eq = context.scores(params.ic_lookback, "equal", np.array([t]))[t]
    scores_ic = context.scores(params.ic_lookback, "ic", np.array([t]))[t]
    uni = context.candidates[t]
    num_eq = np.zeros(len(context.symbols))
    num_ic = np.zeros(len(context.symbols))
    for f in sel:
        x = context.values[t, :, f.index]
        ok = uni & np.isfinite(x)
        z = np.where(ok, (x - x[ok].mean()) / x[ok].std(), 0.0)
        num_eq += f.sign * z
        num_ic += abs(f.icir) * f.sign * z
    ok = uni & np.isfinite(context.values[t][:, [f.index for f in sel]]).all(axis=1)
    np.testing.assert_allclose(scores_eq[ok], num_eq[ok] / len(sel), rtol=1e-12)
    np.testing.assert_allclose(scores_ic[ok], num_ic[ok] / sum(abs(f.icir) for f in sel), rtol=1e-12)


def test_target_portfolio_reproduces_the_simulated_rebalance(context, plan, params) -> None:
    rows = [r for r in np.flatnonzero((plan.orders != 0).any(axis=1)) if r > plan.first_trade_row][:3]
    for r in rows:
        tp = target_portfolio(context, params, decided_at=int(r - 1),
                              holdings=pd.Series(plan.shares[r - 1], index=context.symbols), cash=plan.cash[r - 1],
                              prices=plan.trade_price[r])
        assert tp.trade_session == context.sessions[r] and tp.scheduled_rebalance
        np.testing.assert_array_equal(tp.table["target_shares"].to_numpy(), plan.shares[r])
        np.testing.assert_array_equal(tp.table["order_shares"].to_numpy(), plan.orders[r])
        np.testing.assert_allclose(tp.table["est_commission"].to_numpy(), plan.commission[r], rtol=1e-12)
        assert tp.cash_after == pytest.approx(plan.cash[r], abs=1e-6)  # CNY


def test_target_portfolio_hand_check_from_cash(context, params, spec) -> None:
    tp = target_portfolio(context, params, decided_at="2024-06-28", cash=1_000_000.0)
    t = tp.table
    chosen = t[t["selected"]]
    assert len(chosen) == params.top_n and (chosen["target_weight"] == 0.25).all()
    assert set(chosen.index) == set(t.nsmallest(params.top_n, "rank").index)
    expected = (np.floor(0.25 * 1_000_000 / (chosen["price"] * 100)) * 100).to_dict()
    slip, rate = spec.backtest.slippage_bps / 1e4, spec.backtest.commission_rate

    def cost(q: dict) -> float:
        return sum(n * chosen.at[s, "price"] * (1 + slip) + max(n * chosen.at[s, "price"] * (1 + slip) * rate, 5.0)
                   for s, n in q.items())

    while cost(expected) > 1_000_000:  # slippage and commission on top: cut the largest buy by a lot
        big = max(expected, key=lambda s: expected[s] * chosen.at[s, "price"])
        expected[big] -= 100
    assert chosen["target_shares"].to_dict() == expected
    assert (t.loc[~t["selected"], "target_shares"] == 0).all()
    orders = tp.orders
    assert (orders["side"] == "buy").all() and len(orders) == params.top_n
    cost = (orders["order_value"] + orders["est_commission"]).sum()
    assert tp.cash_after == pytest.approx(1_000_000 - cost, rel=1e-12) and tp.cash_after >= 0
    assert [name for name, _, _ in tp.factors] == [f.name for f in context.selection_at(params, tp.trade_session).at(0)]


def test_target_made_at_t_ignores_returns_after_t(real_panel, spec, params) -> None:
    t = real_panel.sessions.get_loc(pd.Timestamp("2023-03-31"))
    moved_panel = perturb_after(real_panel, t)
    a = StrategyContext(price_factors(real_panel), real_panel, spec)
    b = StrategyContext(price_factors(moved_panel), moved_panel, spec)
    holdings = {"510300": 20_000.0, "512800": 50_000.0}
    ta = target_portfolio(a, params, decided_at=t, holdings=holdings, cash=2_000_000.0)
    tb = target_portfolio(b, params, decided_at=t, holdings=holdings, cash=2_000_000.0)
    pd.testing.assert_frame_equal(ta.table, tb.table)
    assert ta.factors == tb.factors
    # control: the decision one session later sees the changed prices
    tc = target_portfolio(a, params, decided_at=t + 1, holdings=holdings, cash=2_000_000.0)
    td = target_portfolio(b, params, decided_at=t + 1, holdings=holdings, cash=2_000_000.0)
    assert not tc.table["score"].equals(td.table["score"])


def test_target_needs_the_next_factor_row(context, params) -> None:
    with pytest.raises(ResearchError, match="next_factors"):
        target_portfolio(context, params)
    row = context.values[-1]
    tp = target_portfolio(context, params, next_factors=row)
    assert tp.trade_session is None and tp.table["selected"].sum() == params.top_n


def test_invalid_parameters_are_named() -> None:
    with pytest.raises(ResearchError, match="top_n=0"):
        StrategyParams(0, 5, 60)
    with pytest.raises(ResearchError, match="weighting='rank'"):
        StrategyParams(2, 5, 60, "rank")  # type: ignore[arg-type]


def test_screening_that_selects_nothing_is_an_error(real_panel, real_factors, spec) -> None:
    from dataclasses import replace

    strict = replace(spec, screening=ScreeningConfig(min_abs_icir=1e6))
    ctx = StrategyContext(real_factors, real_panel, strict)
    with pytest.raises(ResearchError, match="no screen selects any factor"):
        ctx.run(StrategyParams(3, 20, 120))


def test_liquidity_filter_only_buys_funds_that_fit_the_adv_limit(real_panel, real_factors, spec, params) -> None:
    from dataclasses import replace

    # a small daily turnover share makes the limit bind: a position of 1/top_n of the book must fit
    # 1% of the ADV of the 20 sessions before the trade
    tight = replace(spec, capital=spec.capital.model_copy(update={"max_adv_pct": 0.01}), liquidity_filter=True)
    ctx = StrategyContext(real_factors, real_panel, tight)
    plan = ctx.run(params)
    amount = real_panel["amount"].where(real_panel["amount"] > 0)
    adv = amount.rolling(20, min_periods=1).mean().shift(1).to_numpy()
    prev_shares = np.vstack([np.zeros((1, plan.shares.shape[1])), plan.shares[:-1]])
    prev_cash = np.concatenate([[plan.init_cash], plan.cash[:-1]])
    opened = (plan.orders > 0) & (prev_shares == 0)
    assert opened.sum() > 20
    w_each = min(1 / params.top_n, spec.capital.max_single_weight)
    for r, i in zip(*np.nonzero(opened)):
        book = prev_cash[r] + np.nansum(prev_shares[r] * np.where(np.isfinite(plan.trade_price[r]),
                                                                   plan.trade_price[r], plan.mark[r - 1]))
        assert adv[r, i] * 0.01 >= w_each * book - 1e-6
    # the target portfolio applies the same rule with the ADV known at the decision
    r = int(np.flatnonzero(opened.any(axis=1))[3])
    tp = target_portfolio(ctx, params, decided_at=r - 1, holdings=pd.Series(plan.shares[r - 1], index=ctx.symbols),
                          cash=plan.cash[r - 1], prices=plan.trade_price[r])
    np.testing.assert_array_equal(tp.table["target_shares"].to_numpy(), plan.shares[r])
    assert not tp.table.loc[~tp.table["liquid"], "selected"].any()
    # where the limit binds, the filter changes the target: without it an illiquid fund is bought
    free = StrategyContext(real_factors, real_panel, replace(tight, liquidity_filter=False))
    changed = 0
    for row in np.flatnonzero(opened.any(axis=1))[:12]:
        a = target_portfolio(ctx, params, decided_at=int(row - 1), cash=5_000_000.0, prices=plan.trade_price[row])
        b = target_portfolio(free, params, decided_at=int(row - 1), cash=5_000_000.0, prices=plan.trade_price[row])
        known = amount.iloc[max(0, row - 20): row].mean().to_numpy()  # the ADV known at the close of row - 1
        liquid = np.nan_to_num(known) * 0.01 >= w_each * 5_000_000.0
        np.testing.assert_array_equal(a.table["liquid"].to_numpy(), liquid)
        assert not (a.table["selected"].to_numpy() & ~liquid).any()
        if not a.table["target_shares"].equals(b.table["target_shares"]):
            changed += 1
            assert (b.table["selected"].to_numpy() & ~liquid).any()
    assert changed > 0
