"""The daily schedule (18:00 Asia/Shanghai, XSHG trading sessions only, every pool) and the sensor that
runs the cross-pool summary once every weighted pool has its target portfolio for the session."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from assets.partitions import POOL_NAMES, pool_session_key, session_partitions
from jobs.daily import daily_job, summary_job
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
            partition_key=pool_session_key(pool.name, day),
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


def ready_sessions(materialised: set[str], done: set[str], failed: set[str], sessions: list[str]) -> list[str]:
    """Sessions whose weighted pools all have a target portfolio from a run that did not fail (a failed
    fuse stops the summary) and that have no summary yet."""
    config = load_config()
    weighted = [p.name for p in config.pools if p.summary_weight > 0] or list(POOL_NAMES)
    return [s for s in sessions if s not in done
            and all(f"{p}|{s}" in materialised and f"{p}|{s}" not in failed for p in weighted)]


def _failed_partitions(instance: dg.DagsterInstance, keys: list[str]) -> set[str]:
    """Pool-session keys whose latest daily run failed."""
    out = set()
    for key in keys:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=daily_job.name, tags={"dagster/partition": key}),
                                 limit=1)
        if runs and runs[0].status == dg.DagsterRunStatus.FAILURE:
            out.add(key)
    return out


@dg.sensor(job=summary_job, minimum_interval_seconds=120, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Runs session_summary for a session once every weighted pool has its target portfolio.")
def summary_when_pools_done(context: dg.SensorEvaluationContext):
    recent = session_partitions.get_partition_keys()[-5:]
    materialised = set(context.instance.get_materialized_partitions(dg.AssetKey("target_portfolio")))
    done = set(context.instance.get_materialized_partitions(dg.AssetKey("pool_metrics_summary")))
    keys = [f"{p}|{s}" for s in recent for p in POOL_NAMES]
    ready = ready_sessions({str(k) for k in materialised}, {str(k) for k in done},
                           _failed_partitions(context.instance, keys), recent)
    if not ready:
        return dg.SkipReason("no session has every weighted pool's target portfolio without a summary")
    return [dg.RunRequest(run_key=f"summary|{s}", partition_key=s, tags={"rotation/session": s}) for s in ready]


ALL_SCHEDULES = [daily_after_close]
ALL_SENSORS = [summary_when_pools_done]

