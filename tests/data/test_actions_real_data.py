"""The raw panel, the corporate-action arrays and the factor-noise / data-ended checks on the real funds of
../shared/data/cn_etf (through the session's ``real_pools``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rotation_platform.data import quality as q
from rotation_platform.data.pipeline import PoolPrices, load_pool_prices
from rotation_platform.data.sources.directory import DirectorySource

pytestmark = pytest.mark.real_data

VENDOR_SCHEMA = {"159980", "160520", "510050", "510180"}
NO_FACTOR_FILE = {"159920", "159996", "511090", "512660", "512880", "512980", "513030", "515080", "515700",
                  "563020", "563030"}
NOISY = {"510050", "510180", "510300", "510880"}           # additive vendor "hfq" factors: WARN
ADDITIVE_IN_CLEAN_FILE = {"510310", "510500"}              # a few big-day steps follow the price: INFO
PRICES = ("open", "high", "low", "close")


def _pool_of(real_pools: dict[str, PoolPrices], symbol: str) -> PoolPrices:
    return next(p for p in real_pools.values() if symbol in p.panel.symbols)


def _events(real_pools: dict[str, PoolPrices], symbol: str) -> pd.DataFrame:
    ev = _pool_of(real_pools, symbol).actions.events
    return ev[ev["symbol"] == symbol].reset_index(drop=True)


def _file_frame(shared_data: Path, symbol: str) -> pd.DataFrame:
    """The fund's CSV read independently of the platform's readers, in canonical units."""
    text = pd.read_csv(shared_data / f"{symbol}.csv", dtype={"code": str})
    suffix = "_price" if symbol in VENDOR_SCHEMA else ""
    frame = pd.DataFrame({
        "date": pd.to_datetime(text["trade_date"]),
        **{c: text[f"{c}{suffix}"].astype(float) for c in PRICES},
        "volume": text["volume"].astype(float) * 100,           # lots -> shares
        "amount": text["amount"].astype(float),
    })
    return frame.sort_values("date").set_index("date")


# ------------------------------------------------------------------------------------------- raw panel
def test_raw_panel_holds_the_files_prices_unadjusted(real_pools: dict[str, PoolPrices], shared_data: Path) -> None:
    checked = 0
    for loaded in real_pools.values():
        raw, panel = loaded.raw_panel, loaded.panel
        assert raw.meta["adjusted"] is False and panel.meta["adjusted"] is True
        assert raw.sessions.equals(panel.sessions) and raw.symbols == panel.symbols
        for symbol in panel.symbols:
            expected = _file_frame(shared_data, symbol)
            for name in (*PRICES, "volume", "amount"):
                column = raw[name][symbol]
                assert column.isna().equals(panel[name][symbol].isna()), (symbol, name)
                got = column.dropna()
                assert got.index.equals(pd.DatetimeIndex(expected.index, name="session")), (symbol, name)
                np.testing.assert_array_equal(got.to_numpy(), expected[name].to_numpy(), err_msg=f"{symbol} {name}")
            checked += 1
    assert checked == 38


def test_panel_is_raw_panel_times_the_factor(real_pools: dict[str, PoolPrices]) -> None:
    for loaded in real_pools.values():
        for symbol in loaded.panel.symbols:
            f = loaded.adjustments[symbol].factor.reindex(loaded.panel.sessions).to_numpy()
            for name in PRICES:
                np.testing.assert_array_equal(loaded.panel[name][symbol].to_numpy(),
                                              loaded.raw_panel[name][symbol].to_numpy() * f, err_msg=symbol)
            np.testing.assert_array_equal(loaded.panel["volume"][symbol].to_numpy(),
                                          loaded.raw_panel["volume"][symbol].to_numpy() / f, err_msg=symbol)
            np.testing.assert_array_equal(loaded.panel["amount"][symbol].to_numpy(),
                                          loaded.raw_panel["amount"][symbol].to_numpy())


# ---------------------------------------------------------------------------------------- action panel
@pytest.mark.parametrize("symbol, day, kind, value", [
    ("513100", "2022-01-14", "split", 5.0),          # 1:5, effective the session after the 2022-01-13 suspension
    ("159928", "2021-06-25", "split", 4.0),
    ("512010", "2021-06-28", "split", 4.0),
    ("513500", "2022-03-30", "split", 2.0),
    ("510300", "2025-06-18", "dividend", 0.088),
    ("510300", "2026-01-19", "dividend", 0.123),
    ("512690", "2021-12-31", "dividend", 0.35),
    ("159920", "2018-06-22", "dividend", 0.076),      # no factor file: the dividends table
])
def test_known_actions_on_their_sessions(real_pools: dict[str, PoolPrices], symbol: str, day: str, kind: str,
                                         value: float) -> None:
    loaded = _pool_of(real_pools, symbol)
    actions = loaded.actions
    j, t = actions.symbols.index(symbol), actions.sessions.get_loc(pd.Timestamp(day))
    field = actions.split if kind == "split" else actions.dividend
    other = actions.dividend if kind == "split" else actions.split
    assert field[t, j] == pytest.approx(value, rel=1e-6)
    assert other[t, j] == (0.0 if kind == "split" else 1.0)
    ev = _events(real_pools, symbol)
    row = ev[ev["session"] == pd.Timestamp(day)]
    assert row[["kind", "source"]].values.tolist() == [[kind, "table"]]


def test_funds_without_factor_files_use_the_tables(real_pools: dict[str, PoolPrices]) -> None:
    for symbol in NO_FACTOR_FILE:
        ev = _events(real_pools, symbol)
        assert (ev["source"] == "table").all(), symbol
    assert _events(real_pools, "159920")[["kind", "value"]].values.tolist() == [["dividend", 0.076]]
    # the A-share funds without a factor file have no table action either
    assert all(_events(real_pools, s).empty for s in NO_FACTOR_FILE - {"159920"})


def test_a_table_action_the_factor_file_contradicts_pays_nothing(real_pools: dict[str, PoolPrices]) -> None:
    """platform_dividends.csv has 0.077 for 515210 on 2020-05-25; prices and factor file show nothing: no cash."""
    ev = _events(real_pools, "515210")
    assert pd.Timestamp("2020-05-25") not in set(ev["session"])
    assert ev["kind"].tolist() == ["dividend"] * 5 and (ev["source"] == "table").all()


def test_split_sessions_reproduce_adjusted_returns_exactly(real_pools: dict[str, PoolPrices]) -> None:
    seen = 0
    for loaded in real_pools.values():
        a, raw, adj = loaded.actions, loaded.raw_panel["close"], loaded.panel["close"]
        for j, symbol in enumerate(a.symbols):
            rows = np.flatnonzero((a.split[:, j] != 1.0) & (a.dividend[:, j] == 0.0))
            valid = raw[symbol].notna().to_numpy()
            for t in rows:
                prev = np.flatnonzero(valid[:t])[-1]                        # the fund's previous bar
                holder = a.split[t, j] * raw[symbol].iloc[t] / raw[symbol].iloc[prev]
                assert holder == pytest.approx(adj[symbol].iloc[t] / adj[symbol].iloc[prev], rel=1e-12), \
                    (symbol, a.sessions[t])
                seen += 1
    # 15 from the tables (the table's splits of 510300, 510880, 511260 and 518880 predate their rows), and
    # 510180's 1:10 and 4:1 and 510310's 2:1 from their factor files alone
    assert seen == 18


def test_holding_a_fund_through_its_history_matches_the_adjusted_total_return(
        real_pools: dict[str, PoolPrices]) -> None:
    """One share held with no trading: splits multiply the shares, cash is reinvested at the ex-date close.

    Between actions the (snapped) adjusted return is the raw return exactly. On a dividend session the
    adjusted step reinvests differently from the holder: for a factor-derived dividend (hfq convention,
    cash = prev close x (1 - 1/m)) the gap is (cash / prev close) x |ex-day move| / (1 + move); a table
    dividend adds the table/factor difference (tables round to 0.001 CNY; the check tolerates 1% in
    log terms). With payouts under 5% of the price and moves within the 10% limit that is below 5e-3
    per dividend (the largest found: 2.2e-3, 512690's 27% payout); over a history the gaps partly cancel,
    so the total stays within 2.5e-3 per dividend.
    """
    for loaded in real_pools.values():
        a, raw, adj = loaded.actions, loaded.raw_panel["close"], loaded.panel["close"]
        for j, symbol in enumerate(a.symbols):
            ok = raw[symbol].notna().to_numpy()
            r, x = raw[symbol].to_numpy()[ok], adj[symbol].to_numpy()[ok]
            split, cash = a.split[ok, j], a.dividend[ok, j]
            holder = split[1:] * (r[1:] + cash[1:]) / r[:-1]
            adjusted = x[1:] / x[:-1]
            acted = (split[1:] != 1.0) | (cash[1:] != 0.0)
            np.testing.assert_allclose(holder[~acted], adjusted[~acted], rtol=1e-13, err_msg=symbol)
            assert np.all(np.abs(holder[acted] / adjusted[acted] - 1) < 5e-3), symbol
            shares = 1.0
            for t in range(1, len(r)):
                shares *= split[t]
                shares += shares * cash[t] / r[t]
            n_div = int((cash != 0).sum())
            total = (shares * r[-1] / r[0]) / (x[-1] / x[0]) - 1
            assert abs(total) <= 2.5e-3 * n_div + 1e-12, (symbol, total)


# --------------------------------------------------------------------------------------- factor noise
def test_adjustment_noise_fires_for_the_noisy_files_only(real_pools: dict[str, PoolPrices]) -> None:
    found = {f.symbol: f for loaded in real_pools.values() for f in loaded.report.select(q.ADJUSTMENT_NOISE)}
    assert {s for s, f in found.items() if f.severity is q.Severity.WARN} == NOISY
    assert {s for s, f in found.items() if f.severity is q.Severity.INFO} == ADDITIVE_IN_CLEAN_FILE
    for symbol in NOISY:
        f = found[symbol]
        adj = _pool_of(real_pools, symbol).adjustments[symbol]
        assert adj.noise.noisy and adj.noise.snapped and f.count == adj.noise.days
        assert f"{symbol}_hfq_factor.csv is noisy" in f.message and "snapped" in f.message
        assert f.file.endswith(f"{symbol}.csv") and "largest noise step" in f.message
    for loaded in real_pools.values():
        for symbol, adj in loaded.adjustments.items():
            if symbol not in NOISY and adj.noise is not None:
                assert not adj.noise.noisy and adj.noise.share < 0.01, symbol


def test_noisy_files_keep_their_real_actions_only(real_pools: dict[str, PoolPrices]) -> None:
    # 510050: a dividend a year, 1.2-3.5% of the price, in November/December (and May 2006); none on the big
    # market days where the vendor's additive factor jumps by more than 1% (2015-08-24, 2024-09-24 ...)
    ev = _events(real_pools, "510050")
    assert (ev["kind"] == "dividend").all() and (ev["source"] == "factor").all() and len(ev) == 17
    assert set(pd.DatetimeIndex(ev["session"]).month) <= {5, 11, 12}
    yields = 1 - 1 / ev["multiplier"].to_numpy()
    assert yields.min() > 0.012 and yields.max() < 0.036
    for day in ("2015-01-19", "2015-08-24", "2015-08-27", "2020-02-03", "2024-09-24", "2024-09-30", "2024-10-09"):
        assert pd.Timestamp(day) not in set(ev["session"])
    # 510180: the 1:10 split of 2009-05-21 and the 4:1 consolidation of 2013-12-23, from its factor file alone
    ev = _events(real_pools, "510180")
    splits = ev[ev["kind"] == "split"]
    assert pd.DatetimeIndex(splits["session"]).strftime("%Y-%m-%d").tolist() == ["2009-05-21", "2013-12-23"]
    assert splits["value"].tolist() == pytest.approx([10.0, 0.25], rel=3e-3)
    assert (ev["kind"] == "dividend").sum() == 15
    # 510300 and 510880: their dividends come from the table; the factor adds nothing
    for symbol, n in (("510300", 14), ("510880", 17)):
        ev = _events(real_pools, symbol)
        assert (ev["source"] == "table").all() and (ev["kind"] == "dividend").all() and len(ev) == n
    # 510310 (not noisy): the 2:1 consolidation of 2024-09-23 and six dividends since
    ev = _events(real_pools, "510310")
    assert ev[["kind"]].values[0].tolist() == ["split"] and ev["session"].iloc[0] == pd.Timestamp("2024-09-23")
    assert ev["value"].iloc[0] == pytest.approx(0.5, rel=1e-3) and (ev["kind"].iloc[1:] == "dividend").all()


def test_snapping_removes_the_noise_from_the_adjusted_returns(real_pools: dict[str, PoolPrices]) -> None:
    loaded = _pool_of(real_pools, "510050")
    raw, adj = loaded.raw_panel["close"]["510050"], loaded.panel["close"]["510050"]
    day = pd.Timestamp("2015-08-24")                     # raw -9.98%; the vendor's factor made it -8.85%
    i = adj.index.get_loc(day)
    assert adj.iloc[i] / adj.iloc[i - 1] == pytest.approx(raw.iloc[i] / raw.iloc[i - 1], rel=1e-13)
    vendor = loaded.adjustments["510050"].vendor_factor
    assert vendor.loc[day] / vendor.iloc[vendor.index.get_loc(day) - 1] == pytest.approx(1.01258, abs=1e-5)


def test_snap_noise_off_keeps_the_vendor_factor(cn_config, real_source: DirectorySource) -> None:
    data = cn_config.data.model_copy(update={"adjustment": cn_config.data.adjustment.model_copy(
        update={"snap_noise": False})})
    pool = cn_config.pool("A_SHARE").model_copy(update={"symbols": ("510050", "510300")})
    loaded = load_pool_prices(real_source, pool, data)
    for symbol in ("510050", "510300"):
        adj = loaded.adjustments[symbol]
        np.testing.assert_array_equal(adj.factor.to_numpy(), adj.vendor_factor.to_numpy())
        (f,) = loaded.report.select(q.ADJUSTMENT_NOISE, symbol)
        assert f.severity is q.Severity.WARN and "applied as is" in f.message
    # noise still never becomes an action
    ev = loaded.actions.events
    assert len(ev[ev["symbol"] == "510050"]) == 17 and (ev[ev["symbol"] == "510300"]["source"] == "table").all()


# ----------------------------------------------------------------------------------------- data ended
def test_data_ended_on_the_real_pools(real_pools: dict[str, PoolPrices]) -> None:
    ended = {name: {s: str(d.date()) for s, d in loaded.ended.items()} for name, loaded in real_pools.items()}
    assert ended == {
        "A_SHARE": {"510050": "2026-04-09", "510180": "2026-04-09", "510310": "2026-07-13", "515080": "2026-07-10",
                    "563020": "2026-07-10", "563030": "2026-06-08"},
        "QDII": {},
        "OTHER": {"511130": "2026-07-13", "159980": "2026-05-29", "160520": "2021-04-28"},
    }
    (f,) = real_pools["A_SHARE"].report.select(q.DATA_ENDED, "563030")
    assert f.severity is q.Severity.WARN and f.dates == ("2026-06-08",) and f.file.endswith("563030.csv")
    assert "563030.csv" in f.message and "2026-06-08" in f.message and "liquidates" in f.message


def test_a_configured_delisting_ends_a_fund(cn_config, real_source: DirectorySource) -> None:
    pool = cn_config.pool("QDII").model_copy(update={"delisted": {"513030": dt.date(2024, 6, 29)}})  # a Saturday
    loaded = load_pool_prices(real_source, pool, cn_config.data)
    assert loaded.ended == {"513030": pd.Timestamp("2024-06-28")}
    (f,) = loaded.report.select(q.DATA_ENDED)
    assert "delisted on 2024-06-29 (pool.delisted)" in f.message and "never traded" in f.message


def test_asof_view_of_the_noisy_pool_is_the_prefix_of_the_full_one(cn_config, real_source: DirectorySource,
                                                                   real_pools: dict[str, PoolPrices]) -> None:
    full = real_pools["A_SHARE"]
    early = load_pool_prices(real_source, cn_config.pool("A_SHARE"), cn_config.data, asof="2020-12-31")
    assert early.panel.equals(full.panel.select(end="2020-12-31"))
    assert early.raw_panel.equals(full.raw_panel.select(end="2020-12-31"))
    n = len(early.panel.sessions)
    np.testing.assert_array_equal(early.actions.split, full.actions.split[:n])
    np.testing.assert_array_equal(early.actions.dividend, full.actions.dividend[:n])
