"""Holidays exchange_calendars does not record yet come from ``markets.<CODE>.holidays``: exchange_calendars
4.13.2 records XSHG holidays through 2026 only, so without them no XSHG session exists after 2026-12-31."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from rotation_platform import calendars
from rotation_platform.calendars import get_calendar
from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.errors import CalendarError, ConfigError

# weekday closures given for the test (the exchange publishes the real ones in its annual notice)
HOLIDAYS_2027 = ["2027-01-01", "2027-02-05", "2027-02-08", "2027-02-09", "2027-10-01", "2027-10-04"]


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """Empty start and holiday registries: what one test's config registers stays out of the others."""
    monkeypatch.setattr(calendars, "_starts", {})
    monkeypatch.setattr(calendars, "_holidays", {})


def _config(tmp_path, holidays):
    doc = {"extends": str(CONFIG_DIR / "demo.yaml"), "storage": {"data_dir": str(tmp_path / "store")}}
    if holidays is not None:
        doc["markets"] = {"XSHG": {"holidays": holidays}}
    path = tmp_path / "next_year.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_config(path, env={})


def test_without_next_years_holidays_the_horizon_message_says_what_to_do(tmp_path) -> None:
    _config(tmp_path, None)
    cal = get_calendar("XSHG")
    assert cal.last_session == pd.Timestamp("2026-12-31")
    with pytest.raises(CalendarError) as err:
        cal.require_session("2027-01-04")
    text = str(err.value)
    assert "beyond its horizon, which ends at 2026-12-31" in text
    assert "list them in markets.XSHG.holidays" in text and "\n" not in text


def test_configured_holidays_extend_xshg_through_their_year(tmp_path) -> None:
    config = _config(tmp_path, HOLIDAYS_2027)
    assert config.markets["XSHG"].holidays[0].isoformat() == "2027-01-01"
    cal = get_calendar("XSHG")
    assert cal.last_session == pd.Timestamp("2027-12-31")
    for day in HOLIDAYS_2027:
        assert not cal.is_session(day), day
    assert cal.is_session("2027-01-04") and cal.is_session("2027-02-10")
    with pytest.raises(CalendarError, match="not an XSHG trading session"):
        cal.require_session("2027-02-08")
    # recorded history is unchanged
    before = get_calendar("XSHG", start="2004-01-02")
    assert cal.sessions("2020-01-01", "2026-12-31").equals(before.sessions("2020-01-01", "2026-12-31"))
    assert not cal.is_session("2026-10-01") and cal.is_session("2026-12-31")
    # the partitions follow: a 2027 holiday is not a session partition, the next weekday is
    from assets.partitions import session_exclusions

    excluded = {d.date().isoformat() for d in session_exclusions(config.orchestration.first_session)}
    assert {"2027-01-01", "2027-02-05", "2027-10-04"} <= excluded and "2027-01-04" not in excluded


def test_a_rule_based_calendar_closes_the_configured_days(tmp_path) -> None:
    calendars._holidays["XNYS"] = (pd.Timestamp("2027-01-05"),)
    cal = get_calendar("XNYS")
    assert not cal.is_session("2027-01-05") and cal.is_session("2027-01-06")
    assert not cal.is_session("2021-07-05")    # its own rules still apply


def test_a_weekend_holiday_is_a_configuration_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="2027-01-02 is a weekend day"):
        _config(tmp_path, ["2027-01-01", "2027-01-02"])


def test_a_calendar_about_to_end_is_announced(tmp_path) -> None:
    _config(tmp_path, None)
    text = calendars.horizon_warning("XSHG", today="2026-12-02")
    assert text == ("the XSHG calendar ends at 2026-12-31 (29 day(s) from 2026-12-02): no session after it can run; "
                    "list the exchange's published holidays of 2027 in markets.XSHG.holidays (or upgrade "
                    "exchange_calendars)")
    assert calendars.horizon_warning("XSHG", today="2026-10-01") is None       # more than 45 days ahead
    _config(tmp_path, HOLIDAYS_2027)
    assert calendars.horizon_warning("XSHG", today="2026-12-02") is None       # extended through 2027
