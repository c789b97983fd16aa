"""Each calendar's first session comes from ``markets.<CODE>.calendar_start``: history from the 1990s loads
through the pipeline, and a day before the first session says so and names the key to change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from rotation_platform import calendars
from rotation_platform.calendars import calendar_start, get_calendar, storage_key
from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.errors import CalendarError

SYMBOLS = ["SPYA", "QQQA", "IWMA", "EFAA", "TLTA", "GLDA"]


@pytest.fixture(autouse=True)
def fresh_starts(monkeypatch):
    """An empty start registry: what one test's config registers stays out of the others."""
    monkeypatch.setattr(calendars, "_starts", {})


def _write_xnys_files(folder, start: str = "1999-01-04", end: str = "2001-06-29") -> pd.DatetimeIndex:
    """Plain-layout daily files of a few US funds on every XNYS session from ``start`` to ``end``."""
    sessions = get_calendar("XNYS", start="1995-01-03").sessions(start, end)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    for i, symbol in enumerate(SYMBOLS):
        close = 20.0 * (1 + i) * np.exp(np.cumsum(rng.normal(0.0003, 0.01, len(sessions))))
        frame = pd.DataFrame({"date": sessions.strftime("%Y-%m-%d"), "open": close * 0.999, "high": close * 1.004,
                              "low": close * 0.995, "close": close, "volume": 1_000_000.0 + 1000 * i,
                              "amount": close * (1_000_000.0 + 1000 * i)})
        frame.round(4).to_csv(folder / f"{symbol}.csv", index=False)
    return sessions


def _write_config(tmp_path, calendar_start: str | None) -> str:
    doc = {
        "extends": str(CONFIG_DIR / "base.yaml"),
        "name": "us_history",
        "data": {"source": "directory", "directory": str(tmp_path / "prices")},
        "storage": {"data_dir": str(tmp_path / "store")},
        "pools": [{"name": "US", "kind": "QDII", "calendar": "XNYS", "summary_weight": 1.0, "symbols": SYMBOLS,
                   "capital": {"target_capital": 1_000_000, "max_single_weight": 0.3, "max_adv_pct": 0.05}}],
    }
    if calendar_start is not None:
        doc["markets"] = {"XNYS": {"calendar_start": calendar_start}}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "us_history.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return str(path)


def _load(config, asof: str = "2001-06-29"):
    from rotation_platform.data.pipeline import load_pool_prices
    from rotation_platform.data.sources import make_source

    return load_pool_prices(make_source(config), config.pool("US"), config.data, asof=asof, today="2026-12-02")


def test_default_start_and_explicit_start() -> None:
    assert calendar_start("XNYS") == pd.Timestamp("2004-01-02")
    assert get_calendar("XNYS").first_session == pd.Timestamp("2004-01-02")
    early = get_calendar("XNYS", start="1999-01-04")
    assert early.first_session == pd.Timestamp("1999-01-04")
    assert early.is_session("2000-01-03") and not early.is_session("1999-12-24")  # Christmas, observed on Friday
    assert get_calendar("XNYS", start="1999-01-04") is early  # one object per code and start


def test_before_the_first_session_names_the_config_key() -> None:
    with pytest.raises(CalendarError) as err:
        get_calendar("XNYS").require_session("2000-01-03")
    text = str(err.value)
    assert "before its first session 2004-01-02" in text and "markets.XNYS.calendar_start" in text
    assert "(Monday)" not in text  # not the old "not a XNYS session (Monday)"
    assert err.value.key == "markets.XNYS.calendar_start"


def test_loading_a_config_registers_its_calendar_start(tmp_path) -> None:
    _write_xnys_files(tmp_path / "prices")
    load_config(_write_config(tmp_path, "1999-01-04"))
    assert calendar_start("XNYS") == pd.Timestamp("1999-01-04")
    assert get_calendar("XNYS").first_session == pd.Timestamp("1999-01-04")
    assert get_calendar("XNYS").require_session("2000-01-03") == pd.Timestamp("2000-01-03")
    # a second config with a later start keeps the earlier one: the other config's history stays valid
    (tmp_path / "later" / "prices").mkdir(parents=True)
    load_config(_write_config(tmp_path / "later", "2010-01-04"))
    assert calendar_start("XNYS") == pd.Timestamp("1999-01-04")


def test_pre_2004_history_loads_through_the_pipeline(tmp_path) -> None:
    sessions = _write_xnys_files(tmp_path / "prices")
    config = load_config(_write_config(tmp_path, "1999-01-04"))
    loaded = _load(config)
    assert loaded.panel.sessions[0] == pd.Timestamp("1999-01-04")
    assert loaded.panel.sessions.equals(pd.DatetimeIndex(sessions.to_numpy()))
    assert list(loaded.panel.symbols) == SYMBOLS
    assert not (loaded.quarantine["reason"] == "non_session_date").any()
    assert np.isfinite(np.asarray(loaded.raw_panel["close"].loc[pd.Timestamp("2000-01-03")])).all()


def test_without_the_start_the_early_rows_say_which_key_to_set(tmp_path) -> None:
    _write_xnys_files(tmp_path / "prices", end="2004-06-30")
    config = load_config(_write_config(tmp_path, None))
    loaded = _load(config, asof="2004-06-30")
    assert loaded.panel.sessions[0] == pd.Timestamp("2004-01-02")
    early = loaded.quarantine[pd.to_datetime(loaded.quarantine["date"]) < pd.Timestamp("2004-01-02")]
    assert len(early) == 6 * len(get_calendar("XNYS", start="1999-01-04").sessions("1999-01-04", "2003-12-31"))
    details = set(early["detail"])
    assert len(details) == 1
    (detail,) = details
    assert "before the first XNYS session" in detail and "markets.XNYS.calendar_start" in detail
    assert "(Monday)" not in detail


def test_a_start_exchange_calendars_cannot_build_is_one_line() -> None:
    with pytest.raises(CalendarError) as err:
        get_calendar("XSHG", start="1980-01-02")
    text = str(err.value)
    assert "\n" not in text and "markets.XSHG.calendar_start = 1980-01-02" in text


def test_stored_names_drop_a_market_prefix() -> None:
    assert storage_key(("xnys", "prices")) == ("prices",)
    assert storage_key(("prices",)) == ("prices",)
    assert storage_key(("positions",)) == ("positions",)
    assert storage_key(("reports", "prices")) == ("reports", "prices")  # not a calendar code: kept
