"""Tomorrow's orders on the real pools of ../shared/data/cn_etf, checked against the raw price files.

Every target's price is the raw close of its file; buys are whole board lots; the backtest's orders
executed at the files' raw opens; turnover equals an independent computation from the orders; a fund
whose data ends is liquidated and never targeted after; capacity is one figure in every view; given
actual positions, orders are target minus actual to the share.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rotation_platform.config import load_config
from rotation_platform.production import PoolRun
from rotation_platform.production import fuses
from rotation_platform.production.positions import DirectoryPositions
from rotation_platform.research import capacity_report

pytestmark = pytest.mark.real_data

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data" / "cn_etf"
SESSION = pd.Timestamp("2026-07-31")
LAST = pd.Timestamp("2026-08-03")
SECOND_SCHEMA = {"159980", "160520", "510050", "510180"}


def raw_file(symbol: str) -> pd.DataFrame:
    """The fund's CSV read with pandas alone (unadjusted prices as quoted)."""
    text = pd.read_csv(SHARED / f"{symbol}.csv", dtype={"code": str})
    suffix = "_price" if symbol in SECOND_SCHEMA else ""
    frame = pd.DataFrame({"date": pd.to_datetime(text["trade_date"]),
                          "open": text[f"open{suffix}"].astype(float), "close": text[f"close{suffix}"].astype(float)})
    return frame.drop_duplicates("date", keep="last").set_index("date").sort_index()


@pytest.fixture(scope="module")
def config():
    if not (SHARED / "510300.csv").is_file():
        pytest.fail(f"the shared real data is missing at {SHARED}")
    return load_config(REPO / "configs" / "cn_etf.yaml", env={})


@pytest.fixture(scope="module")
def runs(config):
    return {pool: PoolRun(config, pool, [SESSION, LAST]) for pool in config.pool_names}


@pytest.fixture(scope="module")
def targets(runs):
    return {pool: run.target_frame() for pool, run in runs.items()}


def test_every_target_price_is_the_raw_close_of_its_file_and_buys_are_whole_lots(runs, targets) -> None:
    checked = 0
    for pool, frame in targets.items():
        for (session, symbol), rec in frame.iterrows():
            raw = raw_file(symbol)
            if session in raw.index and raw.loc[session, "close"] > 0:
                assert rec["price"] == raw.loc[session, "close"], (pool, symbol, session)
                checked += 1
            else:
                assert not rec["tradeable"] and rec["order_shares"] == 0, (pool, symbol, session)
            assert rec["lot"] == 100
            if rec["order_shares"] > 0:
                assert rec["order_shares"] % 100 == 0, (pool, symbol)
            assert rec["target_shares"] == int(rec["target_shares"]) and rec["current_shares"] >= 0
    assert checked > 50
    # the simulated book holds exchange shares: whole numbers, and whole lots unless a share conversion
    # left an odd remainder
    for pool, run in runs.items():
        shares = run.backtest.plan.shares
        assert (shares == np.floor(shares)).all(), pool


def test_backtest_orders_executed_at_the_files_raw_opens(runs) -> None:
    bt = runs["A_SHARE"].backtest
    orders = bt.orders
    trades = orders[orders["kind"] == "trade"]
    assert len(trades) > 200
    slip = bt.plan.costs.slippage_bps / 1e4
    files = {s: raw_file(s) for s in trades["symbol"].unique()}
    for rec in trades.itertuples():
        opened = files[rec.symbol].loc[rec.session, "open"]
        expected = opened * (1 + slip) if rec.side == "buy" else opened * (1 - slip)
        assert rec.price == pytest.approx(expected, rel=1e-12), (rec.symbol, rec.session)
        if rec.side == "buy":
            assert rec.shares % 100 == 0
    # marks are the files' raw closes
    mark = pd.DataFrame(bt.plan.mark, index=bt.plan.sessions, columns=bt.plan.symbols)
    for symbol in ("513100", "512480", "510300"):
        if symbol not in mark.columns:
            continue
        raw = raw_file(symbol)["close"]
        common = raw.index.intersection(mark.index)
        np.testing.assert_array_equal(mark.loc[common, symbol].to_numpy(), raw.loc[common].to_numpy())


def test_turnover_equals_an_independent_computation_from_the_orders(runs) -> None:
    run = runs["A_SHARE"]
    bt = run.backtest
    slip = bt.plan.costs.slippage_bps / 1e4
    o = bt.orders
    pre = np.where(o["kind"] == "liquidation", o["price"],
                   np.where(o["side"] == "buy", o["price"] / (1 + slip), o["price"] / (1 - slip)))
    traded = pd.Series(o["shares"].to_numpy() * pre, index=o["session"]).groupby(level=0).sum()
    live = bt.returns.loc[bt.start:]
    mean_eq = bt.equity.loc[live.index].mean()
    expected = traded.loc[live.index[0]:].sum() / 2 / mean_eq * 252 / len(live)
    assert bt.metrics.annual_turnover == pytest.approx(expected, rel=1e-9)
    # every session with an order counts (none is lost to a fund without a trade price)
    sessions_with_orders = int((bt.plan.orders != 0).any(axis=1).sum())
    assert int((bt.traded_value > 0).sum()) == sessions_with_orders
    frame = run.backtest_frame()
    assert frame.loc[LAST, "annual_turnover"] == pytest.approx(expected, rel=1e-9)


def test_a_fund_whose_data_ends_is_liquidated_and_never_targeted_after(runs, targets) -> None:
    run = runs["A_SHARE"]
    bt = run.backtest
    plan = bt.plan
    i = plan.symbols.index("563030")
    last_bar = raw_file("563030").index.max()  # 2026-06-08
    assert last_bar == pd.Timestamp("2026-06-08")
    ended_from = run.market.ended[:, i]
    first_ended = plan.sessions[np.argmax(ended_from)]
    gap = run.panel.sessions.get_indexer([first_ended])[0] - run.panel.sessions.get_loc(last_bar)
    assert gap == run.config.data.ended_after + 1  # known at the close after ended_after sessions without a bar
    after = plan.sessions >= first_ended
    assert (plan.shares[after, i] == 0).all()
    assert not (plan.orders[after, i] > 0).any()
    held_before = plan.shares[plan.sessions.get_loc(last_bar), i]
    if held_before > 0:
        row = plan.sessions.get_loc(first_ended)
        assert plan.liquidated[row, i] and plan.order_price[row, i] == raw_file("563030").loc[last_bar, "close"]
    frame = targets["A_SHARE"]
    assert (frame.xs("563030", level="symbol")["target_shares"] == 0).all()
    # OTHER held 511130 when its file ended (2026-07-13): sold at that close once 5 sessions had no bar
    other = runs["OTHER"].backtest
    liq = other.orders[(other.orders["kind"] == "liquidation") & (other.orders["symbol"] == "511130")]
    assert len(liq) == 1 and liq["session"].iloc[0] == pd.Timestamp("2026-07-21")
    assert liq["price"].iloc[0] == raw_file("511130").loc["2026-07-13", "close"]
    j = other.plan.symbols.index("511130")
    assert (other.plan.shares[other.plan.sessions >= "2026-07-21", j] == 0).all()
    assert not frame.xs("563030", level="symbol")["tradeable"].any()
    # the quality gate says so
    found = [f for f in run.prices.report.findings if f.check == "data_ended" and f.symbol == "563030"]
    assert found and "2026-06-08" in found[0].message


def test_capacity_is_one_figure_in_every_view(runs, config) -> None:
    run = runs["A_SHARE"]
    by_session = run.capacity_sessions()
    rep = capacity_report(run.backtest, run.panel, run.pool.capital, window=config.backtest.adv_window,
                          start=run.backtest.start)
    fuse = fuses.capacity(run)
    for t in (SESSION, LAST):
        assert rep.by_session.loc[t, "capacity_cny"] == pytest.approx(by_session.loc[t, "capacity_cny"], rel=1e-12)
        # the per-session table recomputed: equity over the most-used held position with an ADV
        table = run.capacity_frame().xs(t, level="session")
        held = table[(table["value"] > 0) & (table["adv_limit"] > 0)]
        util = held["value"] / held["adv_limit"]
        assert by_session.loc[t, "capacity_cny"] == pytest.approx(run.backtest.equity.loc[t] / util.max(), rel=1e-12)
    assert fuse.details["capacity"] == pytest.approx(by_session.loc[LAST, "capacity_cny"], rel=1e-12)
    assert fuse.details["currency"] == "CNY"
    assert np.isfinite(by_session["capacity_cny"]).all() and (by_session["capacity_cny"] > 0).all()


def test_orders_are_target_minus_actual_positions_to_the_share(config, runs, tmp_path) -> None:
    run = runs["QDII"]
    folder = tmp_path / "QDII"
    folder.mkdir()
    (folder / f"{LAST.date()}.csv").write_text("symbol,shares,cash\n513100,123400,\n159920,5000,\nCASH,,1250000.5\n")
    frame = run.target_frame(DirectoryPositions(tmp_path))
    day = frame.xs(LAST, level="session")
    assert (day["book"] == "actual").all() and str(folder) in day["book_source"].iloc[0]
    actual = pd.Series({"513100": 123_400.0, "159920": 5_000.0}).reindex(day.index).fillna(0.0)
    np.testing.assert_array_equal(day["current_shares"].to_numpy(), actual.to_numpy())
    if day["rebalance"].iloc[0]:
        np.testing.assert_array_equal(day["order_shares"].to_numpy(), (day["target_shares"] - actual).to_numpy())
        buys = day[day["order_shares"] > 0]
        assert (buys["order_shares"] % 100 == 0).all()
    else:
        assert (day["order_shares"] == 0).all()
    # equity is the actual book at the raw closes
    prices = day["price"].fillna(0.0)
    assert day["equity"].iloc[0] == pytest.approx(1_250_000.5 + float((actual * prices).sum()), rel=1e-12)
    np.testing.assert_array_equal(day["shares_vs_simulated"].to_numpy(),
                                  (actual - day["simulated_shares"]).to_numpy())
    # the session without a file falls back to the simulated book and names the stale file
    prev = frame.xs(SESSION, level="session")
    assert (prev["book"] == "simulated").all() and "no actual positions" in prev["book_source"].iloc[0]


def test_the_target_of_a_session_does_not_see_later_data(config, targets) -> None:
    """The run through LAST and a run that stops at SESSION (prices loaded as of SESSION) give the same
    target and book for SESSION: nothing after the decision's close reaches it."""
    alone = PoolRun(config, "A_SHARE", [SESSION])
    pd.testing.assert_frame_equal(alone.target_frame(), targets["A_SHARE"].loc[[SESSION]])
    assert alone.market.ended.shape[0] < PoolRun(config, "A_SHARE", [LAST]).market.ended.shape[0]
