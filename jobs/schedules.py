"""The daily schedule (18:00 Asia/Shanghai, XSHG trading sessions only, every pool) and the sensor that
runs the cross-pool summary once every weighted pool has its target portfolio for the session.

Both read the configuration the definitions were built from (:func:`build_automation`, called by
``definitions.build_defs``) when they are evaluated. The module-level ``daily_after_close`` and
``summary_when_pools_done`` read the environment's config (``ROTATION_CONFIG``) at evaluation.

Their runs carry the tag ``rotation/writes`` (``pool:<POOL>`` or ``summary``): the Dagster instance's run
queue (configs/dagster.yaml, deploy/dagster.yaml) keeps one run per value in progress, so two runs that
write the same pool's (or the summary's) partitions queue instead of interleaving. A run launched from
the UI gets it by hand (Launchpad, "Edit tags"); a single pool-session partition is also held back by
the instance's limit on ``dagster/partition/pool``, and every run's writes take the folder's run lock
(:mod:`rotation_platform.production.runlock`).
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from assets.partitions import partitions_for, pool_session_key
from jobs.daily import daily_job, summary_job
from rotation_platform.calendars import get_calendar
from rotation_platform.config import PlatformConfig, load_config
from rotation_platform.production.runlock import SUMMARY_SCOPE, WRITE_SCOPE_TAG

SCHEDULE_TZ = "Asia/Shanghai"
SCHEDULE_CRON = "0 18 * * 1-5"


def _config(config: PlatformConfig | str | None) -> PlatformConfig:
    return config if isinstance(config, PlatformConfig) else load_config(config)


def session_run_requests(now: pd.Timestamp, config: PlatformConfig | str | None = None
                         ) -> list[dg.RunRequest] | dg.SkipReason:
    """Run requests for the session of ``now``'s local date, one per pool whose calendar has that session
    and whose data is complete at ``now`` (close + ``orchestration.data_delay_minutes``); a skip
    otherwise."""
    config = _config(config)
    now = pd.Timestamp(now)
    local = now.tz_convert(SCHEDULE_TZ) if now.tzinfo else now.tz_localize(SCHEDULE_TZ)
    day = local.tz_localize(None).normalize()
    requests, waiting = [], []
    for pool in config.pools:
        calendar = get_calendar(pool.calendar)
        if not calendar.is_session(day):
            continue
        if not calendar.is_closed(day, local, config.orchestration.data_delay_minutes):
            waiting.append(pool.name)
            continue
        requests.append(dg.RunRequest(
            run_key=f"{pool.name}|{day.date()}",
            partition_key=pool_session_key(pool.name, day),
            tags={"rotation/session": str(day.date()), "rotation/pool": pool.name,
                  WRITE_SCOPE_TAG: f"pool:{pool.name}"},
        ))
    if not requests:
        if waiting:
            ready = get_calendar(config.pool(waiting[0]).calendar).ready_at(
                day, config.orchestration.data_delay_minutes)
            return dg.SkipReason(f"{day.date()}: the data of {', '.join(waiting)} counts as complete only from "
                                 f"{ready:%Y-%m-%d %H:%M %Z} (orchestration.data_delay_minutes)")
        return dg.SkipReason(f"{day.date()} is not a trading session of any pool's calendar")
    return requests


def ready_sessions(materialised: set[str], done: set[str], failed: set[str], sessions: list[str],
                   config: PlatformConfig | str | None = None) -> list[str]:
    """Sessions whose weighted pools all have a target portfolio from a run that did not fail (a failed
    fuse stops the summary) and that have no summary yet."""
    config = _config(config)
    weighted = [p.name for p in config.pools if p.summary_weight > 0] or list(config.pool_names)
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


def summary_requests(instance: dg.DagsterInstance, config: PlatformConfig,
                     now: pd.Timestamp | None = None) -> list[dg.RunRequest] | dg.SkipReason:
    """The summary runs due: the latest five sessions that have closed, every weighted pool done."""
    calendar = get_calendar("XSHG")
    delay = config.orchestration.data_delay_minutes
    closed = [s for s in partitions_for(config).session.get_partition_keys()[-6:]
              if calendar.is_closed(s, now, delay)]
    recent = closed[-5:]
    materialised = set(instance.get_materialized_partitions(dg.AssetKey("target_portfolio")))
    done = set(instance.get_materialized_partitions(dg.AssetKey("pool_metrics_summary")))
    keys = [f"{p}|{s}" for s in recent for p in config.pool_names]
    ready = ready_sessions({str(k) for k in materialised}, {str(k) for k in done},
                           _failed_partitions(instance, keys), recent, config)
    if not ready:
        return dg.SkipReason("no session has every weighted pool's target portfolio without a summary")
    return [dg.RunRequest(run_key=f"summary|{s}", partition_key=s,
                          tags={"rotation/session": s, WRITE_SCOPE_TAG: SUMMARY_SCOPE}) for s in ready]


def build_automation(config_path: str | None = None) -> tuple[list[dg.ScheduleDefinition], list[dg.SensorDefinition]]:
    """The schedule and the summary sensor for the config at ``config_path`` (None: the environment's at
    each evaluation)."""

    @dg.schedule(name="daily_after_close", job=daily_job, cron_schedule=SCHEDULE_CRON,
                 execution_timezone=SCHEDULE_TZ, default_status=dg.DefaultScheduleStatus.STOPPED,
                 description="After the close: every pool, on its calendar's trading sessions only.")
    def daily_after_close(context: dg.ScheduleEvaluationContext):
        return session_run_requests(pd.Timestamp(context.scheduled_execution_time), load_config(config_path))

    @dg.sensor(name="summary_when_pools_done", job=summary_job, minimum_interval_seconds=120,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Runs session_summary for a session once every weighted pool has its target portfolio.")
    def summary_when_pools_done(context: dg.SensorEvaluationContext):
        return summary_requests(context.instance, load_config(config_path))

    return [daily_after_close], [summary_when_pools_done]


_SCHEDULES, _SENSORS = build_automation()
daily_after_close = _SCHEDULES[0]
summary_when_pools_done = _SENSORS[0]
ALL_SCHEDULES = [daily_after_close]
ALL_SENSORS = [summary_when_pools_done]
