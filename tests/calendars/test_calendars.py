"""Trading calendars come from exchange_calendars; helpers behave at holidays and edges."""

from __future__ import annotations

import pandas as pd
import pytest

from rotation_platform.calendars import get_calendar
from rotation_platform.errors import CalendarError


@pytest.fixture(scope="module")
def xshg():
    return get_calendar("XSHG")


def test_national_day_2024_has_no_sessions(xshg) -> None:
    assert len(xshg.sessions("2024-10-01", "2024-10-07")) == 0
    for day in pd.date_range("2024-10-01", "2024-10-07"):
        assert not xshg.is_session(day)
    around = xshg.sessions("2024-09-27", "2024-10-10")
    assert [d.strftime("%m-%d") for d in around] == ["09-27", "09-30", "10-08", "10-09", "10-10"]


def test_spring_festival_2024_and_weekends(xshg) -> None:
    # Spring Festival 2024: markets closed 2024-02-09 .. 2024-02-16 (Fri 2-9 to Fri 2-16)
    assert len(xshg.sessions("2024-02-09", "2024-02-16")) == 0
    assert not xshg.is_session("2024-02-10")  # weekend inside the holiday
    assert xshg.is_session("2024-02-08") and xshg.is_session("2024-02-19")
    assert not xshg.is_session("2024-06-01")  # a Saturday


def test_previous_next_offset(xshg) -> None:
    assert xshg.previous_session("2024-10-08") == pd.Timestamp("2024-09-30")
    assert xshg.previous_session("2024-10-05") == pd.Timestamp("2024-09-30")  # not a session itself
    assert xshg.next_session("2024-09-30") == pd.Timestamp("2024-10-08")
    assert xshg.session_offset("2024-09-30", 1) == pd.Timestamp("2024-10-08")
    assert xshg.session_offset("2024-10-08", -1) == pd.Timestamp("2024-09-30")
    assert xshg.session_offset("2024-10-08", 0) == pd.Timestamp("2024-10-08")
    assert xshg.session_on_or_before("2024-10-07") == pd.Timestamp("2024-09-30")


def test_sessions_are_plain_sorted_named_index(xshg) -> None:
    s = xshg.sessions("2024-01-01", "2024-12-31")
    assert s.name == "session" and s.tz is None and s.is_monotonic_increasing and s.is_unique
    assert len(s) == 242  # the Shanghai exchange's 2024 trading days


def test_errors_name_the_problem(xshg) -> None:
    with pytest.raises(CalendarError, match="not a XSHG session"):
        xshg.session_offset("2024-10-01", 1)
    with pytest.raises(CalendarError, match="unknown exchange calendar 'XMOON'"):
        get_calendar("XMOON")
    with pytest.raises(CalendarError, match="outside the XSHG calendar"):
        xshg.previous_session("1990-01-01")


def test_last_completed_session_respects_close(xshg) -> None:
    # 2024-10-08 15:30 Shanghai: the close (15:00) + 60 min buffer has not passed -> previous session
    assert xshg.last_completed_session(pd.Timestamp("2024-10-08 15:30", tz="Asia/Shanghai")) == \
        pd.Timestamp("2024-09-30")
    assert xshg.last_completed_session(pd.Timestamp("2024-10-08 18:00", tz="Asia/Shanghai")) == \
        pd.Timestamp("2024-10-08")
    assert xshg.last_completed_session(pd.Timestamp("2024-10-03 12:00", tz="Asia/Shanghai")) == \
        pd.Timestamp("2024-09-30")


def test_other_exchange_available() -> None:
    hk = get_calendar("XHKG")
    assert hk.is_session("2024-10-02") and not hk.is_session("2024-10-01")
