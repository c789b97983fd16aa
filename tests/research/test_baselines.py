"""The baselines against an independent pandas replay: monthly calendar, eligibility, momentum ranks,
whole lots, commission with its minimum, slippage, a split, dividends, a suspension, a fund whose data
ends and a fund excluded from the universe -- all to 1e-9 CNY."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.errors import ResearchError
from rotation_platform.research.baselines import BASELINES, baselines
from rotation_platform.research.market import Market

RATE, MIN_FEE, SLIP_BPS, CASH = 0.0003, 5.0, 5.0, 300_000.0
LOOKBACK, TOP_N = 5, 2


def _panel(close: pd.DataFrame, open_: pd.DataFrame) -> PricePanel:
    frames = {"open": open_, "high": np.maximum(open_, close), "low": np.minimum(open_, close), "close": close,
              "volume": close * 0 + 1e6, "amount": close * 0 + 1e9}
    return PricePanel({f: frames[f] for f in PRICE_FIELDS}, {"source": "test", "synthetic": True})


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(7)
    idx = pd.bdate_range("2024-01-15", periods=110, name="session")
    syms = ["A", "B", "C", "D", "E"]
    rets = rng.normal(0.0005, 0.015, (len(idx), len(syms)))
    close = pd.DataFrame(20.0 * np.exp(np.cumsum(rets, axis=0)), index=idx, columns=syms)
    close["E"] *= 0.15  # a cheap fund: lots of 10 shares, small orders pay the minimum commission
    split = np.ones(close.shape)
    div = np.zeros(close.shape)
    raw = close.copy()
    raw.iloc[60:, 1] /= 2.0  # B splits 1:2 at the open of row 60
    split[60, 1] = 2.0
    div[40, 0] = 0.30  # A pays 0.30 per share at row 40 (the raw price drops by it)
    raw.iloc[40:, 0] -= 0.30
    raw.iloc[30:33, 2] = np.nan  # C suspended for three sessions (spans the February rebalance)
    raw.iloc[75:, 3] = np.nan  # D's data ends after row 74
    opens = raw * (1.0 + rng.normal(0.0, 0.003, raw.shape))
    panel_raw = _panel(raw, opens)
    out = np.zeros(close.shape, bool)
    out[74:80, 4] = True  # E excluded from the universe for a while (covers the May rebalance)
    market = Market.build(panel_raw, trade_at="open", lots=np.array([100.0, 100.0, 100.0, 100.0, 10.0]),
                          split=split, dividend=div, ended_after=3, out_of_universe=out)
    adjusted = _panel(close.where(raw.notna()), opens)  # the signal panel: total-return closes
    return market, adjusted


def replay(market: Market, adjusted: PricePanel, name: str, start: int, benchmark: str) -> pd.Series:
    """The baseline's equity, event by event, with pandas and plain floats."""
    idx, syms = market.sessions, list(market.symbols)
    tp = pd.DataFrame(market.trade_price, index=idx, columns=syms)
    mark = pd.DataFrame(market.mark, index=idx, columns=syms)
    close = pd.DataFrame(market.close, index=idx, columns=syms)
    ended = pd.DataFrame(market.ended, index=idx, columns=syms)
    excluded = pd.DataFrame(market.excluded, index=idx, columns=syms)
    split = pd.DataFrame(market.split, index=idx, columns=syms)
    div = pd.DataFrame(market.dividend, index=idx, columns=syms)
    lots = dict(zip(syms, market.lots))
    slip = SLIP_BPS / 1e4
    fee = lambda v: max(v * RATE, MIN_FEE)  # noqa: E731

    month = pd.Series(idx.to_period("M"), index=idx)
    firsts = set(month.groupby(month).apply(lambda s: s.index[0]))
    monthly = [d for d in idx[start:] if d == idx[start] or d in firsts]
    momentum = adjusted["close"].pct_change(LOOKBACK, fill_method=None).shift(1)

    def eligible(d):
        prev = idx[idx.get_loc(d) - 1]
        return [s for s in syms if close.loc[prev, s] > 0 and not ended.loc[d, s] and not excluded.loc[d, s]
                and tp.loc[d, s] > 0]

    plan: dict[pd.Timestamp, dict[str, float]] = {}
    if name == "equal_weight" or (name == "benchmark" and benchmark == "equal_weight"):
        for d in (monthly if name == "equal_weight" else [idx[start]]):
            ok = eligible(d)
            plan[d] = {s: 1.0 / len(ok) for s in ok}
    elif name == "benchmark":
        d = next(d for d in idx[start:] if benchmark in eligible(d))
        plan[d] = {benchmark: 1.0}
    else:
        for d in monthly:
            ok = eligible(d)
            sc = momentum.loc[d, ok].dropna()
            sc = sc.iloc[np.argsort(-sc.to_numpy(), kind="mergesort")]  # ties: the earlier column
            plan[d] = {s: 1.0 / TOP_N for s in sc.index[:TOP_N]}

    held = {s: 0.0 for s in syms}
    cash = CASH
    equity = []
    for k, d in enumerate(idx):
        for s in syms:  # corporate actions at the open
            if held[s]:
                held[s] = math.floor(held[s] * split.loc[d, s] + 1e-9)
                cash += held[s] * div.loc[d, s]
        for s in syms:  # a fund whose data ended: sold at its last mark, commission only
            if ended.loc[d, s] and held[s] > 0:
                v = held[s] * mark.iloc[k - 1][s]
                cash += v - fee(v)
                held[s] = 0.0
        if d in plan:
            w = plan[d]
            can = {s: tp.loc[d, s] > 0 and not ended.loc[d, s] for s in syms}
            value = cash + sum(held[s] * (tp.loc[d, s] if can[s] else mark.iloc[k - 1][s]) for s in syms if held[s])
            tgt = dict(held)
            free = cash
            for s in syms:
                if not can[s]:
                    continue
                p, lot = tp.loc[d, s], lots[s]
                t = math.floor(w.get(s, 0.0) * value / (p * lot) + 1e-9) * lot if w.get(s, 0.0) > 0 else 0.0
                if t < held[s]:
                    got = (held[s] - t) * p * (1 - slip)
                    if got - fee(got) >= 0:
                        free += got - fee(got)
                    else:
                        t = held[s]
                tgt[s] = t
            while True:
                buys = {s: (tgt[s] - held[s]) * tp.loc[d, s] * (1 + slip) for s in syms if can[s] and tgt[s] > held[s]}
                if not buys or sum(v + fee(v) for v in buys.values()) <= free:
                    break
                big = max(buys, key=lambda s: (buys[s], -syms.index(s)))
                tgt[big] -= lots[big]
            for s in syms:
                if tgt[s] < held[s]:
                    v = (held[s] - tgt[s]) * tp.loc[d, s] * (1 - slip)
                    cash += v - fee(v)
                    held[s] = tgt[s]
            for s in syms:
                if tgt[s] > held[s]:
                    v = (tgt[s] - held[s]) * tp.loc[d, s] * (1 + slip)
                    cash -= v + fee(v)
                    held[s] = tgt[s]
        equity.append(cash + sum(held[s] * mark.loc[d, s] for s in syms if held[s]))
        assert cash >= -1e-9, f"{name}: negative cash at {d.date()}"
    return pd.Series(equity, index=idx)


@pytest.mark.parametrize("benchmark", ["B", "equal_weight"])
def test_baselines_equal_an_independent_pandas_replay(case, benchmark) -> None:
    market, adjusted = case
    start = 12
    res = baselines(market, adjusted, start, init_cash=CASH, commission_rate=RATE, min_commission=MIN_FEE,
                    slippage_bps=SLIP_BPS, benchmark=benchmark, top_n=TOP_N, lookback=LOOKBACK)
    for name in BASELINES:
        curve = res[name]
        expected = replay(market, adjusted, name, start, benchmark)
        np.testing.assert_allclose(curve.equity.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-9, err_msg=name)
        assert (curve.equity.iloc[:start] == CASH).all()
        assert curve.costs.iloc[start] > 0  # the first purchase paid commission and slippage
    # the cases the market was built to exercise actually happened
    ew = res["equal_weight"]
    assert ew.shares.iloc[59]["B"] > 0 and ew.shares.iloc[60]["B"] >= 2 * ew.shares.iloc[59]["B"] - 1
    assert ew.shares.iloc[78]["D"] == 0 and ew.shares.iloc[74]["D"] > 0  # D's data ended: liquidated
    may = int(np.flatnonzero(ew.rebalance & (market.sessions.month == 5))[0])
    assert ew.weights[may, 4] == 0 and ew.weights[may, :4].sum() > 0  # E excluded at the May rebalance
    mom = res["momentum"]
    assert (np.count_nonzero(mom.weights[mom.rebalance], axis=1) == TOP_N).all()


def test_the_baselines_point_in_time(case) -> None:
    """Changing the prices after row t changes none of the baseline values at or before t."""
    market, adjusted = case
    kw = dict(init_cash=CASH, commission_rate=RATE, min_commission=MIN_FEE, slippage_bps=SLIP_BPS, benchmark="B",
              top_n=TOP_N, lookback=LOOKBACK)
    cut = 70
    base = baselines(market, adjusted, 12, **kw)
    tp = market.trade_price.copy()
    mk = market.mark.copy()
    tp[cut + 1:] *= 1.7
    mk[cut + 1:] *= 0.6
    changed = Market(market.sessions, market.symbols, tp, mk, market.close, market.split, market.dividend,
                     market.ended, market.lots, out_of_universe=market.out_of_universe)
    adj = adjusted["close"].copy()
    adj.iloc[cut + 1:] *= np.linspace(0.5, 2.0, adj.shape[1])
    frames = {f: adjusted[f] for f in PRICE_FIELDS}
    frames["close"] = adj
    other = baselines(changed, PricePanel(frames, adjusted.meta), 12, **kw)
    for name in BASELINES:
        a, b = base[name].equity, other[name].equity
        np.testing.assert_array_equal(a.iloc[: cut + 1].to_numpy(), b.iloc[: cut + 1].to_numpy())
        assert not np.allclose(a.iloc[cut + 2:].to_numpy(), b.iloc[cut + 2:].to_numpy())


def test_an_unknown_benchmark_is_one_clear_error(case) -> None:
    market, adjusted = case
    with pytest.raises(ResearchError, match="pools\\[\\].benchmark"):
        baselines(market, adjusted, 12, init_cash=CASH, commission_rate=RATE, min_commission=MIN_FEE,
                  slippage_bps=SLIP_BPS, benchmark="ZZZ")
