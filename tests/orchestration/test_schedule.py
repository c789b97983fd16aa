"""The daily schedule requests runs only on XSHG sessions, at 18:00 Shanghai time."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd

from jobs.schedules import daily_after_close
from rotation_platform.calendars import get_calendar
from rotation_platform.config import CONFIG_DIR, load_config

SH = ZoneInfo("Asia/Shanghai")
DEMO = str(CONFIG_DIR / "demo.yaml")


@lru_cache(maxsize=1)
def _demo_defs() -> dg.Definitions:
    """The demo configuration's definitions, built here rather than taken from whichever environment
    first imported ``definitions``."""
    from definitions import build_defs

    return build_defs(DEMO)


def _evaluate(day: str):
    when = dt.datetime.fromisoformat(day).replace(hour=18, tzinfo=SH)
    schedule = _demo_defs().resolve_schedule_def("daily_after_close")
    with dg.build_schedule_context(scheduled_execution_time=when,
                                   repository_def=_demo_defs().get_repository_def()) as ctx:
        return schedule.evaluate_tick(ctx)


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
            assert sorted(str(r.partition_key) for r in result.run_requests) == \
                [f"{p}|{day.date()}" for p in ("A_SHARE", "OTHER", "QDII")]
            assert {r.tags["rotation/session"] for r in result.run_requests} == {str(day.date())}
            requested.append(day)
    assert pd.DatetimeIndex(requested).equals(pd.DatetimeIndex(xshg.sessions(days[0], days[-1]).to_numpy()))


def test_requested_partitions_exist() -> None:
    from assets.partitions import partitions_for

    result = _evaluate("2024-10-08")
    keys = set(partitions_for(load_config(DEMO)).pool_session.get_partition_keys())
    assert result.run_requests and all(str(r.partition_key) in keys for r in result.run_requests)


def test_summary_sensor_waits_for_every_weighted_pool() -> None:
    from jobs.schedules import ready_sessions

    sessions = ["2024-12-30", "2024-12-31"]
    both = {"A_SHARE|2024-12-30", "QDII|2024-12-30", "A_SHARE|2024-12-31"}
    # OTHER has weight 0 in the demo configuration: not waited for
    demo = load_config(DEMO)
    assert ready_sessions(both, set(), set(), sessions, demo) == ["2024-12-30"]
    assert ready_sessions(both | {"QDII|2024-12-31"}, {"2024-12-30"}, set(), sessions, demo) == ["2024-12-31"]
    assert ready_sessions(both | {"QDII|2024-12-31"}, set(), {"QDII|2024-12-31"}, sessions, demo) == ["2024-12-30"]
