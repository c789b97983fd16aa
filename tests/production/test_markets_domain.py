"""Markets in the domain: board lots per market and per fund, money in the pool's currency, and the
combined summary of pools on other exchanges' calendars, per currency or converted with an FX series."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest

from rotation_platform.calendars import get_calendar
from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.config.models import PlatformConfig
from rotation_platform.data.fx import MAX_GAP_DAYS, read_fx
from rotation_platform.data.sources.synthetic import SyntheticSource
from rotation_platform.errors import PriceDataError
from rotation_platform.production import PoolRun
from rotation_platform.production.summary import (
    COMBINED,
    PoolAsOf,
    as_of_lines,
    combined_label,
    combined_result,
    pool_metrics_summary,
    pool_sessions,
    summarise,
)
from rotation_platform.reports.console import render_run_report
from rotation_platform.reports.orders import pool_result, run_result, target_lines
from rotation_platform.research.market import pool_lot_size, pool_lots

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "run-result.schema.json").read_text(encoding="utf-8"))
END = "2021-10-08"


def _config(pools: list[dict], **sections) -> PlatformConfig:
    """The demo configuration with other pools and sections (a validated PlatformConfig)."""
    base = load_config(CONFIG_DIR / "demo.yaml", env={"ROTATION_DATA__SYNTHETIC__END": END})
    doc = base.model_dump(mode="json")
    by_name = {p["name"]: p for p in doc["pools"]}
    doc["pools"] = [{**by_name[p["like"]], **{k: v for k, v in p.items() if k != "like"}} for p in pools]
    doc.update(sections)
    return PlatformConfig.model_validate(doc)


MIXED = [{"like": "A_SHARE", "name": "A_SHARE", "summary_weight": 0.6},
         {"like": "OTHER", "name": "CN_OTHER", "summary_weight": 0.1},
         {"like": "QDII", "name": "QDII_US", "calendar": "XNYS", "summary_weight": 0.3}]


# ------------------------------------------------------------------------------------------------ lots
def test_board_lots_follow_the_documented_precedence() -> None:
    config = _config(MIXED)
    assert (pool_lots(config, "QDII_US") == 1).all()          # XNYS: whole shares without configuration
    assert (pool_lots(config, "A_SHARE") == 100).all()        # XSHG keeps its 100-share board lot
    assert config.pool_currency("QDII_US") == "USD" and config.pool_currency("A_SHARE") == "CNY"

    market = _config(MIXED, markets={"XNYS": {"lot_size": 10}})
    assert (pool_lots(market, "QDII_US") == 10).all() and (pool_lots(market, "A_SHARE") == 100).all()

    pool = _config([{**MIXED[0]}, {**MIXED[1]}, {**MIXED[2], "lot_size": 5, "lot_sizes": {"DQ02": 50}}],
                   markets={"XNYS": {"lot_size": 10}})
    lots = dict(zip(pool.pool("QDII_US").symbols, pool_lots(pool, "QDII_US")))
    assert lots["DQ02"] == 50 and {v for s, v in lots.items() if s != "DQ02"} == {5}
    assert pool_lot_size(pool, "QDII_US", "DQ02") == 50 and pool_lot_size(pool, "QDII_US") == 5

    # a market without a built-in lot takes backtest.lot_size (its currency must be given)
    swiss = _config([{**MIXED[0]}, {"like": "QDII", "name": "CH", "calendar": "XSWX", "currency": "CHF",
                                         "summary_weight": 0.4}],
                    backtest={**_config(MIXED).backtest.model_dump(mode="json"), "lot_size": 25})
    assert (pool_lots(swiss, "CH") == 25).all() and swiss.pool_currency("CH") == "CHF"
    assert (pool_lots(swiss, "A_SHARE") == 100).all()  # the built-in XSHG lot comes before backtest.lot_size


@pytest.fixture(scope="module")
def mixed() -> PlatformConfig:
    return _config(MIXED)


def _run(config: PlatformConfig, pool: str, first: str, last: str) -> PoolRun:
    p = config.pool(pool)
    cal = get_calendar(p.calendar)
    source = SyntheticSource([p], config.data.synthetic, end=END, calendar=cal)
    return PoolRun(config, pool, cal.sessions(first, last), source=source)


@pytest.fixture(scope="module")
def us_run(mixed) -> PoolRun:
    return _run(mixed, "QDII_US", "2021-10-04", "2021-10-05")  # both NYSE sessions in China's Golden Week


@pytest.fixture(scope="module")
def cn_run(mixed) -> PoolRun:
    return _run(mixed, "A_SHARE", "2021-09-29", "2021-09-30")


def test_an_xnys_pool_trades_whole_shares_and_its_money_is_in_usd(us_run) -> None:
    assert (us_run.market.lots == 1).all()
    target = us_run.target_frame()
    assert (target["lot"] == 1).all() and set(target["currency"]) == {"USD"}
    held = target["target_shares"][target["target_shares"] > 0]
    assert len(held) and (held == np.floor(held)).all()
    assert (held % 100 != 0).any()  # sized to the share, not to 100-share lots
    # the backtest's book is in whole shares too, verified by the ledger
    shares = us_run.backtest.positions.to_numpy()
    assert (shares == np.floor(shares)).all() and (shares % 100 != 0).any()
    capacity = us_run.capacity_sessions()
    assert set(capacity["currency"]) == {"USD"} and "capacity_cny" not in capacity   # never labelled CNY

    t = us_run.sessions[-1]
    frame = us_run.backtest_frame()
    result = pool_result("QDII_US", t, target, frame.loc[t].to_dict(), capacity=capacity.loc[t].to_dict())
    assert result["currency"] == "USD"
    assert result["metrics"]["capacity"] == pytest.approx(float(capacity.loc[t, "capacity"]))
    assert "capacity_cny" not in result["metrics"]  # a USD figure is never labelled CNY
    assert all(o["shares"] >= 1 for o in result["orders"])
    header = target_lines("QDII_US", target.xs(t, level="session"))[0]
    assert " USD" in header and "CNY" not in header


def test_an_a_share_pool_keeps_100_share_lots_and_cny(cn_run) -> None:
    assert (cn_run.market.lots == 100).all()
    target = cn_run.target_frame()
    assert set(target["currency"]) == {"CNY"} and (target["lot"] == 100).all()
    assert (target["target_shares"] % 100 == 0).all() and (target["order_shares"] % 100 == 0).all()
    t = cn_run.sessions[-1]
    capacity = cn_run.capacity_sessions()
    result = pool_result("A_SHARE", t, target, cn_run.backtest_frame().loc[t].to_dict(),
                         capacity=capacity.loc[t].to_dict())
    assert result["currency"] == "CNY" and result["metrics"]["capacity_cny"] == result["metrics"]["capacity"]
    assert "CNY" in target_lines("A_SHARE", target.xs(t, level="session"))[0]


# --------------------------------------------------------------------------------------------- summary
FIGURES = {"equity": 1.0, "annual_return": 0.0, "max_drawdown": -0.1, "sharpe": 1.0, "monthly_win_rate": 0.6,
           "annual_turnover": 5.0, "var_95": 0.02, "benchmark_annual_return": 0.05, "daily_return": 0.0,
           "live_sessions": 250.0, "params": "top3_reb20_lb252_ic_buf1"}


def _frame(rows: dict[str, dict[str, float]]) -> pd.DataFrame:
    """A stored backtest value: one row per session with the figures the summary reads."""
    return pd.DataFrame([{**FIGURES, **v} for v in rows.values()],
                        index=pd.DatetimeIndex([pd.Timestamp(k) for k in rows], name="session"))


CN1 = {"2021-09-30": {"equity": 7_100_000.0, "annual_return": 0.12, "daily_return": 0.004, "sharpe": 1.1}}
CN2 = {"2021-09-30": {"equity": 2_050_000.0, "annual_return": 0.04, "daily_return": -0.002, "sharpe": 0.5}}
US = {"2021-10-05": {"equity": 480_000.0, "annual_return": 0.20, "daily_return": 0.01, "sharpe": 1.4,
                     "benchmark_annual_return": 0.15, "live_sessions": 300.0}}
DAY = pd.Timestamp("2021-10-05")  # an NYSE session; Shanghai is closed for the National Day holiday


def _inputs(config: PlatformConfig, day: pd.Timestamp = DAY) -> dict[str, PoolAsOf]:
    sessions = pool_sessions(config, day)
    frames = {"A_SHARE": _frame(CN1), "CN_OTHER": _frame(CN2), "QDII_US": _frame(US)}
    return {name: PoolAsOf(sessions[name], frames[name]) for name in config.pool_names}


def _fx_file(path: Path, rates: dict[str, float]) -> Path:
    path.write_text("date,rate\n" + "".join(f"{d},{r}\n" for d, r in rates.items()), encoding="utf-8")
    return path


RATES = {"2021-09-24": 6.4650, "2021-09-27": 6.4600, "2021-09-28": 6.4620, "2021-09-29": 6.4640,
         "2021-09-30": 6.4460, "2021-10-01": 6.4500, "2021-10-04": 6.4400}  # none dated 2021-10-05 itself


def test_each_pool_is_taken_as_of_its_latest_session_on_or_before_the_date(mixed) -> None:
    sessions = pool_sessions(mixed, DAY)
    assert sessions == {"A_SHARE": pd.Timestamp("2021-09-30"), "CN_OTHER": pd.Timestamp("2021-09-30"),
                        "QDII_US": pd.Timestamp("2021-10-05")}
    july = pool_sessions(mixed, "2021-07-05")  # a Shanghai session, an NYSE holiday
    assert july["QDII_US"] == pd.Timestamp("2021-07-02") and july["A_SHARE"] == pd.Timestamp("2021-07-05")
    table = summarise(mixed, DAY, _inputs(mixed)).droplevel("session")
    assert table.loc["A_SHARE", "as_of"] == "2021-09-30" and table.loc["QDII_US", "as_of"] == "2021-10-05"
    assert table.loc["A_SHARE", "status"] == "ok" and table.loc["A_SHARE", "equity"] == 7_100_000.0
    assert as_of_lines(table, mixed, DAY) == ["A_SHARE as of 2021-09-30 (XSHG)", "CN_OTHER as of 2021-09-30 (XSHG)"]
    # a pool whose session on or before the date has no stored backtest is missing, and says which session
    gone = summarise(mixed, DAY, {**_inputs(mixed), "A_SHARE": PoolAsOf(pd.Timestamp("2021-09-30"), None)})
    row = gone.droplevel("session").loc["A_SHARE"]
    assert row["status"] == "missing" and row["reason"] == "no backtest for the session 2021-09-30 (XSHG)"
    assert gone.droplevel("session").loc[combined_label("CNY"), "status"] == "missing pools"


def test_without_fx_the_combined_view_is_per_currency_and_says_so(mixed) -> None:
    table = summarise(mixed, DAY, _inputs(mixed)).droplevel("session")
    comb = table.loc[COMBINED]
    assert comb["status"] == "per currency" and np.isnan(comb["equity"]) and np.isnan(comb["annual_return"])
    assert "summary.fx.USD" in comb["reason"] and "not added up" in comb["reason"]
    cny, usd = table.loc[combined_label("CNY")], table.loc[combined_label("USD")]
    assert cny["currency"] == "CNY" and usd["currency"] == "USD"
    # weights renormalised within each currency; money summed within it only
    assert cny["annual_return"] == pytest.approx((0.6 * 0.12 + 0.1 * 0.04) / 0.7, rel=1e-12)
    assert cny["equity"] == pytest.approx(7_100_000.0 + 2_050_000.0)
    assert usd["annual_return"] == pytest.approx(0.20) and usd["equity"] == pytest.approx(480_000.0)
    assert bool(comb["all_thresholds_ok"]) == bool(cny["all_thresholds_ok"] and usd["all_thresholds_ok"])

    # the result file keeps both currencies apart and validates against its schema
    combined = combined_result(table)
    assert combined["status"] == "per currency" and set(combined["by_currency"]) == {"CNY", "USD"}
    assert combined["as_of"] == {"A_SHARE": "2021-09-30", "CN_OTHER": "2021-09-30", "QDII_US": "2021-10-05"}
    doc = run_result(mixed.name, "h", [DAY], [], combined)
    jsonschema.validate(doc, SCHEMA)
    assert doc["summary"]["equity"] is None and doc["summary"]["by_currency"]["USD"]["equity"] == 480_000.0

    text = render_run_report(mixed, DAY, summarise(mixed, DAY, _inputs(mixed)), {}, {}, {})
    assert "A_SHARE as of 2021-09-30 (XSHG)" in text and "capacity: each row's currency" in text
    assert "COMBINED USD" in text and "capacity: CNY" not in text


def test_with_an_fx_series_the_combined_view_is_in_the_base_currency(mixed, tmp_path) -> None:
    fx_file = _fx_file(tmp_path / "usdcny.csv", RATES)
    config = _config(MIXED, summary={"base_currency": "CNY", "fx": {"USD": str(fx_file)}})
    table = summarise(config, DAY, _inputs(config)).droplevel("session")
    comb = table.loc[COMBINED]
    assert comb["currency"] == "CNY" and comb["status"] == "ok"
    assert not any(str(p).startswith(COMBINED + " ") for p in table.index)
    # by hand: the rate of a day is the latest on or before it
    x_a = RATES["2021-10-04"]                       # for 2021-10-05 (no rate that day)
    x_prev = RATES["2021-10-04"]                    # NYSE's session before 2021-10-05 is 2021-10-04
    nyse = get_calendar("XNYS").sessions("2020-01-01", "2021-10-05")
    start = nyse[-1 - 300]                          # the close before the first of the 300 live returns
    x_start = [r for d, r in RATES.items() if pd.Timestamp(d) <= start]
    assert comb["equity"] == pytest.approx(7_100_000.0 + 2_050_000.0 + 480_000.0 * x_a, rel=1e-12)
    r_us = (1.0 + 0.01) * (1.0 + (x_a / x_prev - 1.0)) - 1.0
    assert comb["daily_return"] == pytest.approx(0.6 * 0.004 + 0.1 * -0.002 + 0.3 * r_us, rel=1e-12)
    # the FX file starts after the backtest period: the converted annual return cannot be computed, and
    # the reason says why instead of mixing USD and CNY returns
    assert not x_start and np.isnan(comb["annual_return"])
    assert "no USD rate on or before" in comb["reason"] and "FX findings" in comb["reason"]

    # with rates back to the start: (1 + a)(X_a / X_start) ** (252 / n) - 1
    early = _fx_file(tmp_path / "usdcny_long.csv", {str(start.date()): 6.90, **RATES})
    config = _config(MIXED, summary={"base_currency": "CNY", "fx": {"USD": str(early)}})
    comb = summarise(config, DAY, _inputs(config)).droplevel("session").loc[COMBINED]
    ann = config.backtest.annualisation
    a_us = (1.2) * (x_a / 6.90) ** (ann / 300) - 1.0
    assert comb["annual_return"] == pytest.approx(0.6 * 0.12 + 0.1 * 0.04 + 0.3 * a_us, rel=1e-12)
    b_us = (1.15) * (x_a / 6.90) ** (ann / 300) - 1.0
    assert comb["benchmark_annual_return"] == pytest.approx(0.6 * 0.05 + 0.1 * 0.05 + 0.3 * b_us, rel=1e-12)
    assert comb["sharpe"] == pytest.approx(0.6 * 1.1 + 0.1 * 0.5 + 0.3 * 1.4, rel=1e-12)  # the pools' own
    assert f"QDII_US USD {x_a:g} CNY of 2021-10-04" in comb["reason"]
    # the gap from the first rate to 2021-09-24 is a finding (more than five days without a rate)
    assert f"more than {MAX_GAP_DAYS} without a rate" in comb["reason"]
    jsonschema.validate(run_result(config.name, "h", [DAY], [], combined_result(
        summarise(config, DAY, _inputs(config)))), SCHEMA)


def test_a_rate_after_the_summary_date_changes_nothing(tmp_path) -> None:
    before = _fx_file(tmp_path / "a.csv", {**RATES, "2021-10-05": 6.4300})
    after = _fx_file(tmp_path / "b.csv", {**RATES, "2021-10-05": 6.4300, "2021-10-06": 9.99, "2021-10-08": 0.5})
    day = pd.Timestamp("2021-10-05")
    tables = []
    for path in (before, after):
        config = _config(MIXED, summary={"base_currency": "CNY", "fx": {"USD": str(path)}})
        table = summarise(config, day, _inputs(config, day))
        table["reason"] = table["reason"].str.replace(str(path), "<fx file>", regex=False)
        tables.append(table)
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert tables[0].loc[(day, COMBINED), "equity"] == pytest.approx(7_100_000.0 + 2_050_000.0 + 480_000.0 * 6.43)


@pytest.mark.parametrize("body,line,what", [
    ("date,rate\n2021-10-01,6.45\n2021-10-04,abc\n", 3, "is not a positive number"),
    ("date,rate\n2021-10-01,6.45\n2021/10/04,6.44\n", 3, "is not YYYY-MM-DD"),
    ("date,rate\n2021-10-01,6.45\n\n2021-10-04,-1\n", 4, "is not a positive number"),
    ("date,rate\n2021-10-01,6.45\n2021-10-01,6.46\n", 3, "is given again (first on line 2)"),
    ("day,value\n2021-10-01,6.45\n", 1, "lacks 'date' and 'rate'"),
])
def test_a_bad_fx_row_is_one_line_naming_the_file_and_line(tmp_path, body, line, what) -> None:
    path = tmp_path / "usdcny.csv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(PriceDataError) as err:
        read_fx(path, "USD", "CNY")
    text = err.value.one_line()
    assert "\n" not in str(err.value) and str(path) in text and f"line {line}:" in text and what in text
    assert err.value.file == str(path) and err.value.line == line
    # the summary reads the configured file and stops on the same line
    config = _config(MIXED, summary={"base_currency": "CNY", "fx": {"USD": str(path)}})
    with pytest.raises(PriceDataError, match=f"line {line}:"):
        summarise(config, DAY, _inputs(config))


def test_one_currency_gives_the_same_combined_row_as_before(tmp_path) -> None:
    """All-CNY pools: an FX series configured or not, the combined row is the plain weighted average."""
    pools = [{**MIXED[0]}, {**MIXED[1]}, {"like": "QDII", "name": "QDII", "summary_weight": 0.3}]
    plain = _config(pools)
    fx = _config(pools, summary={"base_currency": "CNY", "fx": {"USD": str(_fx_file(tmp_path / "x.csv", RATES))}})
    t = pd.Timestamp("2021-09-30")
    frames = {"A_SHARE": _frame(CN1), "CN_OTHER": _frame(CN2),
              "QDII": _frame({"2021-09-30": {"equity": 3_000_000.0, "annual_return": 0.08, "daily_return": 0.001}})}
    one = pool_metrics_summary(plain, t, frames)
    pd.testing.assert_frame_equal(one, pool_metrics_summary(fx, t, frames))
    comb = one.droplevel("session").loc[COMBINED]
    assert comb["status"] == "ok" and comb["currency"] == "CNY" and comb["reason"] == ""
    assert comb["equity"] == pytest.approx(7_100_000.0 + 2_050_000.0 + 3_000_000.0)
    assert comb["annual_return"] == pytest.approx(0.6 * 0.12 + 0.1 * 0.04 + 0.3 * 0.08, rel=1e-12)
    assert list(one.index.get_level_values("pool")) == ["A_SHARE", "CN_OTHER", "QDII", COMBINED]
    assert as_of_lines(one, plain) == []
    text = render_run_report(plain, t, one, {}, {}, {})
    assert "capacity: CNY before a holding exceeds its ADV limit" in text and " as of " not in text


def test_the_per_pool_mapping_may_be_session_and_stored_values(tmp_path) -> None:
    """The orchestration's form ``pool -> (session_used, {"backtest": frame})`` and FX read once with
    :func:`summary_fx` give the same summary as :class:`PoolAsOf` with the files read per call."""
    from rotation_platform.production.summary import summary_fx

    config = _config(MIXED, summary={"base_currency": "CNY", "fx": {"USD": str(_fx_file(tmp_path / "u.csv", RATES))}})
    given = _inputs(config)
    as_tuples = {name: (p.session, {"backtest": p.backtest}) for name, p in given.items()}
    expected = summarise(config, DAY, given)
    pd.testing.assert_frame_equal(summarise(config, DAY, as_tuples, fx=summary_fx(config)), expected)
    assert expected.loc[(DAY, COMBINED), "currency"] == "CNY"
