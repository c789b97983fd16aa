"""The daily schedule requests runs only on XSHG sessions, at 18:00 Shanghai time."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd

from jobs.schedules import daily_after_close
from rotation_platform.calendars import get_calendar

SH = ZoneInfo("Asia/Shanghai")


def _evaluate(day: str):
    when = dt.datetime.fromisoformat(day).replace(hour=18, tzinfo=SH)
    from definitions import defs

    with dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def()) as ctx:
        return daily_after_close.evaluate_tick(ctx)


def test_cron_and_timezone() -> None:
    assert daily_after_close.cron_schedule == "0 18 * * 1-5"
    assert daily_after_close.execution_timezone == "Asia/Shanghai"


def test_no_runs_during_national_day_2024() -> None:
    for day in pd.date_range("2024-10-01", "2024-10-07"):
        result = _evaluate(str(day.date()))
        assert not result.run_requests
        assert result.skip_message and str(day.date()) in result.skip_message


def test_runs_for_every_pool_on_sessions_only() -> None:
    xshg = get_calendar("XSHG")
    days = pd.date_range("2024-09-23", "2024-10-18", freq="B")
    requested = []
    for day in days:
        result = _evaluate(str(day.date()))
        if result.run_requests:
            assert sorted(r.partition_key for r in result.run_requests) == ["A_SHARE", "OTHER", "QDII"]
            assert {r.tags["rotation/session"] for r in result.run_requests} == {str(day.date())}
            requested.append(day)
    assert pd.DatetimeIndex(requested).equals(pd.DatetimeIndex(xshg.sessions(days[0], days[-1]).to_numpy()))
