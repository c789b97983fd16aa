"""The universe policy in production: a fund with an ERROR finding inside the exclusion window is left out
of the session's target and of the simulated strategy (its held shares sold at the rebalance), rows outside
the window do not block, and the pool's gate fails only when fewer than pools[].min_funds funds remain.

Real data: the OTHER pool of configs/cn_etf.yaml (../shared/data/cn_etf), copied to tmp_path where a case
needs a changed file."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.data.sources.directory import DirectorySource
from rotation_platform.errors import ResearchError
from rotation_platform.production import fuses
from rotation_platform.production.pool_run import PoolRun
from rotation_platform.research import target_portfolio
from rotation_platform.research.ledger import replay_ledger

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data" / "cn_etf"
POOL = "OTHER"


@pytest.fixture(scope="module")
def config():
    if not (SHARED / "518880.csv").is_file():
        pytest.fail(f"the shared real data is missing: expected {SHARED}")
    return load_config(CONFIG_DIR / "cn_etf.yaml", env={})


def _copy(config, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for symbol in config.pool(POOL).symbols:
        for path in SHARED.glob(f"{symbol}*"):
            shutil.copy(path, folder / path.name)
    return folder


def _last_session(config) -> pd.Timestamp:
    run = PoolRun(config, POOL, ["2026-07-31"], source=DirectorySource(SHARED))
    return run.prices.panel["close"].dropna(how="all").index[-1]


def _break_close(path: Path, day: pd.Timestamp) -> int:
    """Blank the close of ``day`` in a cn_etf file (a missing price: a quarantined ERROR row); returns its line."""
    frame = pd.read_csv(path, dtype=str)
    hit = np.flatnonzero(pd.to_datetime(frame["trade_date"]) == day)
    assert hit.size == 1, day
    frame.loc[hit[0], "close"] = ""
    frame.to_csv(path, index=False)
    return int(hit[0]) + 1


@pytest.fixture(scope="module")
def real_run(config):
    t = _last_session(config)
    return PoolRun(config, POOL, [t], source=DirectorySource(SHARED))


def test_other_trades_without_160520_and_the_gate_passes(real_run) -> None:
    t = real_run.sessions[-1]
    gate = fuses.quality_gate(real_run)
    assert gate.passed and gate.severity == "ERROR"
    assert "160520" in gate.summary and "data ended: last bar 2021-04-28" in gate.summary
    universe = real_run.universe_at(t)
    assert "160520" in universe["ended"] and "160520" not in universe["tradeable"]
    assert len(universe["tradeable"]) >= real_run.pool.min_funds
    target = real_run.target_frame().loc[t]
    assert target.loc["160520", "target_weight"] == 0 and target.loc["160520", "excluded"]
    assert "data_ended" in target.loc["160520", "excluded_reason"]
    assert target["target_weight"].sum() > 0
    assert set(target.index[target["target_weight"] > 0]) <= set(universe["tradeable"])
    # what the desk reads: the result file, the console and the UI name every fund left out, with why
    from rotation_platform.reports.orders import pool_result, target_lines, target_markdown

    frame = real_run.target_frame()
    doc = pool_result(POOL, t, frame, None)
    left_out = {e["symbol"]: e["reason"] for e in doc["excluded"]}
    assert set(left_out) == set(target.index[target["excluded"].astype(bool)]) and "160520" in left_out
    assert "last bar 2021-04-28" in left_out["160520"]
    assert all(o["symbol"] not in left_out or o["side"] == "sell" for o in doc["orders"])
    block = frame.xs(t, level="session")
    line = next(x for x in target_lines(POOL, block) if "160520" in x)
    assert line.startswith("  left out of the universe: 160520 -- data ended: last bar 2021-04-28")
    assert "- `160520`: data ended: last bar 2021-04-28" in target_markdown(block)


def test_min_funds_blocks_the_pool(config, real_run) -> None:
    t = real_run.sessions[-1]
    n = len(real_run.universe_at(t)["tradeable"])
    pool = config.pool(POOL).model_copy(update={"min_funds": n + 1})
    strict = config.model_copy(update={"pools": tuple(pool if p.name == POOL else p for p in config.pools)})
    run = PoolRun(strict, POOL, [t], source=DirectorySource(SHARED))
    gate = fuses.quality_gate(run)
    assert not gate.passed and gate.severity == "ERROR"
    assert gate.summary.startswith(f"QUALITY GATE FAILED at {t.date()}: only {n} of 8 funds tradeable")
    assert f"pools[{POOL}].min_funds is {n + 1}" in gate.summary
    assert not gate.verdict(t).passed
    # an ERROR check on prices: the orchestration skips every asset after prices (tests/orchestration)
    from assets.chain import pool_chain

    assert any(spec.name == "quality_gate" and spec.asset_key == dg.AssetKey("prices") and spec.blocking
               for spec in pool_chain.check_specs)


def test_a_bad_row_outside_the_window_does_not_block(config, real_run, tmp_path) -> None:
    t = real_run.sessions[-1]
    folder = _copy(config, tmp_path / "data")
    sessions = real_run.panel.sessions
    old = sessions[len(sessions) - config.data.quality.exclusion_window - 30]
    _break_close(folder / "518880.csv", old)
    run = PoolRun(config, POOL, [t], source=DirectorySource(folder))
    assert not run.prices.report.passed  # an ERROR finding ...
    assert "518880" in set(run.prices.quarantine["symbol"])  # ... its row quarantined ...
    assert fuses.quality_gate(run).passed  # ... but outside the window: no block, no exclusion
    assert "518880" in run.universe_at(t)["tradeable"]
    target = run.target_frame().loc[t]
    assert not target.loc["518880", "excluded"]
    # the fund can be held and chosen: it is scored and ranked like the others
    assert target.loc["518880", "tradeable"] and np.isfinite(target.loc["518880", "score"])
    assert target.loc["518880", "excluded_reason"] == ""


def test_a_bad_fund_inside_the_window_is_excluded_and_sold(config, real_run, tmp_path) -> None:
    t = real_run.sessions[-1]
    folder = _copy(config, tmp_path / "data")
    sessions = real_run.panel.sessions
    bad_day = sessions[-40]
    line = _break_close(folder / "518880.csv", bad_day)
    run = PoolRun(config, POOL, [t], source=DirectorySource(folder))
    i = run.panel.symbols.index("518880")
    gate = fuses.quality_gate(run)
    assert gate.passed and "518880" in gate.summary and "excluded from the universe" in gate.summary
    universe = run.universe_at(t)
    assert f"missing_price on {bad_day.date()} (data row {line})" in universe["excluded"]["518880"]
    assert "518880" not in universe["tradeable"]
    # the target: no weight on it; held shares are sold at a rebalance
    target = run.target_frame().loc[t]
    assert target.loc["518880", "excluded"] and target.loc["518880", "target_weight"] == 0
    assert "exclusion_window" in target.loc["518880", "excluded_reason"]
    assert target["target_weight"].sum() > 0
    row = int(run.rows[-1])
    live = run.params[run.live_choices[run.live_row(row)]]
    holdings = np.zeros(len(run.panel.symbols))
    holdings[i] = 10_000
    tp = target_portfolio(run.ctx, live, decided_at=row, next_factors=run._next_factor_row(row), holdings=holdings,
                          cash=1_000_000.0, rebalance=True)
    assert tp.table.loc["518880", "target_shares"] == 0 and tp.table.loc["518880", "order_shares"] == -10_000
    # the simulation: never bought, and sold out at the first rebalance, from the session after the bad row
    plan = run.backtest.plan
    first = int(sessions.get_loc(bad_day)) + 1
    assert not (plan.orders[first:, i] > 0).any()
    rebalances = np.flatnonzero(np.isfinite(plan.weights[:, 0]))
    after = rebalances[rebalances >= first]
    assert (plan.shares[after, i] == 0).all() and (plan.weights[after, i] == 0).all()
    # the ledger enforces the rule on its own: a buy of the excluded fund is refused
    k = int(after[0]) if after.size else first
    doctored = plan.orders.copy()
    doctored[k, i] = 100.0
    price = plan.order_price.copy()
    price[k, i] = plan.market.trade_price[k, i]
    from dataclasses import replace

    with pytest.raises(ResearchError, match="out of the session's universe"):
        replay_ledger(replace(plan, orders=doctored, order_price=price))


def test_point_in_time_exclusion_of_the_simulation(config, real_run, tmp_path) -> None:
    """Changing data after t changes nothing the book did through t."""
    t = real_run.sessions[-1]
    folder = _copy(config, tmp_path / "data")
    sessions = real_run.panel.sessions
    _break_close(folder / "518880.csv", sessions[-3])  # an ERROR row two sessions before the end
    run = PoolRun(config, POOL, [t], source=DirectorySource(folder))
    upto = len(sessions) - 3
    np.testing.assert_array_equal(run.market.out_of_universe[:upto], real_run.market.out_of_universe[:upto])
    assert run.market.out_of_universe[upto:, run.panel.symbols.index("518880")].all()
