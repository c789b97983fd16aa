"""The daily schedule: 18:00 Asia/Shanghai, on XSHG trading sessions only, every pool."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from jobs.daily import daily_job
from rotation_platform.calendars import get_calendar
from rotation_platform.config import load_config

SCHEDULE_TZ = "Asia/Shanghai"


def session_run_requests(now: pd.Timestamp) -> list[dg.RunRequest] | dg.SkipReason:
    """Run requests for the session of ``now``'s local date, one per pool; a skip on non-sessions."""
    config = load_config()
    local = pd.Timestamp(now).tz_convert(SCHEDULE_TZ) if pd.Timestamp(now).tzinfo else \
        pd.Timestamp(now).tz_localize(SCHEDULE_TZ)
    day = local.tz_localize(None).normalize()
    requests = []
    for pool in config.pools:
        calendar = get_calendar(pool.calendar)
        if not calendar.is_session(day):
            continue
        requests.append(dg.RunRequest(
            run_key=f"{pool.name}|{day.date()}",
            partition_key=pool.name,
            tags={"rotation/session": str(day.date()), "rotation/pool": pool.name},
        ))
    if not requests:
        return dg.SkipReason(f"{day.date()} is not a trading session of any pool's calendar")
    return requests


@dg.schedule(job=daily_job, cron_schedule="0 18 * * 1-5", execution_timezone=SCHEDULE_TZ,
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="After the close: every pool, on its calendar's trading sessions only.")
def daily_after_close(context: dg.ScheduleEvaluationContext):
    return session_run_requests(pd.Timestamp(context.scheduled_execution_time))


ALL_SCHEDULES = [daily_after_close]
