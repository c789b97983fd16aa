"""The daily schedules (one per calendar group of pools, after its market's close, on its trading sessions
only) and the sensor that runs the cross-pool summary once every weighted pool has its target portfolio
for the session.

Each calendar group (``assets.partitions.market_groups``) has its schedule: ``daily_after_close`` for the
main calendar's pools -- 18:00 Asia/Shanghai for XSHG, as always -- and ``daily_after_close_<code>`` for
each other, firing at that market's regular close plus its data delay (``markets.<CODE>.
data_delay_minutes``, default ``orchestration.data_delay_minutes``) in the market's time zone: XNYS closes
16:00 America/New_York, so with 30 minutes ``30 16 * * 1-5`` there (never at 18:00 Shanghai, which is
before the US open). A delay that carries the time past midnight moves the weekdays with it, and the tick
then requests the session of the day before. Every tick requests the session only for the group's pools
whose data is complete by then on their own calendar, against the session's real close (an early close,
e.g. 13:00 the day after Thanksgiving, is complete earlier; a holiday of that calendar is skipped).

With ``data.history: store`` the pools read their history from the market store, so a group's schedule
launches its market data run (``ingest_market_data``, :mod:`jobs.market`) instead, and the sensor
``pools_when_market_data_stored`` (``_<code>`` for another group) launches the pools' daily runs of a
session once a run stored its market data; a failed ingest launches nothing.

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

import datetime as dt

import dagster as dg
import pandas as pd

from assets.partitions import MarketGroup, main_calendar, market_groups, partitions_for, pool_session_key
from jobs.daily import daily_job, summary_job
from rotation_platform.calendars import get_calendar
from rotation_platform.config import PlatformConfig, load_config
from rotation_platform.production.runlock import SUMMARY_SCOPE, WRITE_SCOPE_TAG

SCHEDULE_TZ = "Asia/Shanghai"
SCHEDULE_CRON = "0 18 * * 1-5"
#: the XSHG schedule fires at 18:00 at the earliest (close 15:00: room for vendors' late corrections)
XSHG_EARLIEST = dt.time(18, 0)
WEEKDAYS = (1, 2, 3, 4, 5)  # cron day-of-week numbers, Monday to Friday


def _config(config: PlatformConfig | str | None) -> PlatformConfig:
    return config if isinstance(config, PlatformConfig) else load_config(config)


def _group(config: PlatformConfig, calendar: str | None) -> MarketGroup:
    code = calendar or main_calendar(config)
    for group in market_groups(config):
        if group.calendar == code:
            return group
    raise KeyError(f"no pool of the configuration is on calendar {code!r}; calendars: {list(config.calendars)}")


def fire_time(calendar: str, delay_minutes: int) -> tuple[dt.time, int]:
    """When the schedule of ``calendar`` fires (local time) and how many days after the session's date:
    the regular close plus ``delay_minutes``; on XSHG not before 18:00."""
    close = get_calendar(calendar).regular_close
    minutes = close.hour * 60 + close.minute + int(delay_minutes)
    if calendar == "XSHG":
        minutes = max(minutes, XSHG_EARLIEST.hour * 60 + XSHG_EARLIEST.minute)
    days, minutes = divmod(minutes, 24 * 60)
    return dt.time(minutes // 60, minutes % 60), days


def schedule_cron(calendar: str, delay_minutes: int) -> str:
    """The cron of ``calendar``'s schedule (:func:`fire_time`, weekdays moved by the days it crosses)."""
    at, days = fire_time(calendar, delay_minutes)
    weekdays = sorted({(d + days) % 7 for d in WEEKDAYS})
    dow = "1-5" if weekdays == list(WEEKDAYS) else ",".join(map(str, weekdays))
    return f"{at.minute} {at.hour} * * {dow}"


def session_run_requests(now: pd.Timestamp, config: PlatformConfig | str | None = None,
                         calendar: str | None = None) -> list[dg.RunRequest] | dg.SkipReason:
    """Run requests for the session of ``now``'s local date on the group of ``calendar`` (default: the main
    calendar; the day before when the schedule's fire time crosses midnight, :func:`fire_time`): one per
    pool of the group whose calendar has that session and whose data is complete at ``now`` (the
    session's real close + the market's data delay); a skip otherwise."""
    config = _config(config)
    group = _group(config, calendar)
    cal = get_calendar(group.calendar)
    delay = config.market(group.calendar).data_delay_minutes
    now = pd.Timestamp(now)
    local = now.tz_convert(cal.tz) if now.tzinfo else now.tz_localize(cal.tz)
    day = local.tz_localize(None).normalize() - pd.Timedelta(days=fire_time(group.calendar, delay)[1])
    requests, waiting = [], []
    for name in group.pools:
        if not cal.is_session(day):
            continue
        if not cal.is_closed(day, local, delay):
            waiting.append(name)
            continue
        requests.append(dg.RunRequest(
            run_key=f"{name}|{day.date()}",
            partition_key=pool_session_key(name, day),
            job_name=group.daily_job,
            tags={"rotation/session": str(day.date()), "rotation/pool": name, WRITE_SCOPE_TAG: f"pool:{name}"},
        ))
    if not requests:
        if waiting:
            ready = cal.ready_at(day, delay)
            return dg.SkipReason(f"{day.date()}: the data of {', '.join(waiting)} counts as complete only from "
                                 f"{ready:%Y-%m-%d %H:%M %Z} (markets.{group.calendar}.data_delay_minutes, default "
                                 f"orchestration.data_delay_minutes)")
        return dg.SkipReason(f"{day.date()} is not an {group.calendar} trading session (pools "
                             f"{', '.join(group.pools)})")
    return requests


def market_data_requests(now: pd.Timestamp, config: PlatformConfig | str | None = None,
                         calendar: str | None = None) -> list[dg.RunRequest] | dg.SkipReason:
    """With ``data.history: store``: the market data run of the session :func:`session_run_requests` would
    run the pools of (the pools then run when it is stored, :func:`pools_after_market_data`); its skip
    otherwise."""
    from jobs.market import market_data_job_name

    config = _config(config)
    group = _group(config, calendar)
    pools = session_run_requests(now, config, calendar)
    if isinstance(pools, dg.SkipReason):
        return pools
    day = pools[0].tags["rotation/session"]
    return [dg.RunRequest(run_key=f"market_data|{group.calendar}|{day}", partition_key=day,
                          job_name=market_data_job_name(group),
                          tags={"rotation/session": day, WRITE_SCOPE_TAG: f"market_data:{group.calendar}"})]


#: the sessions a market-data sensor looks back over (a later catch-up is a backfill, launched on purpose)
MARKET_DATA_LOOKBACK = 3


def pools_after_market_data(instance: dg.DagsterInstance, config: PlatformConfig | str | None = None,
                            calendar: str | None = None, now: pd.Timestamp | None = None
                            ) -> list[dg.RunRequest] | dg.SkipReason:
    """With ``data.history: store``: the daily runs of the group's pools for each of the calendar's latest
    closed sessions whose market data is stored by a run that succeeded (the run keys are the
    schedule's, so a session's pool run is requested once)."""
    from assets.market_data import MARKET_DATA
    from jobs.market import market_data_job_name

    config = _config(config)
    group = _group(config, calendar)
    cal = get_calendar(group.calendar)
    delay = config.market(group.calendar).data_delay_minutes
    today = (pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz=cal.tz))
    today = (today.tz_convert(cal.tz) if today.tzinfo else today.tz_localize(cal.tz)).strftime("%Y-%m-%d")
    keys = [k for k in group.partitions.session.get_partition_keys() if k <= today]
    closed = [k for k in keys[-(MARKET_DATA_LOOKBACK + 2):] if cal.is_closed(k, now, delay)][-MARKET_DATA_LOOKBACK:]
    stored = {str(k) for k in instance.get_materialized_partitions(group.key(MARKET_DATA))}
    requests = []
    for day in closed:
        if day not in stored:
            continue
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=market_data_job_name(group),
                                                       tags={"dagster/partition": day}), limit=1)
        if runs and runs[0].status == dg.DagsterRunStatus.FAILURE:  # a later failed ingest: not current
            continue
        for name in group.pools:
            requests.append(dg.RunRequest(
                run_key=f"{name}|{day}", partition_key=pool_session_key(name, pd.Timestamp(day)),
                job_name=group.daily_job,
                tags={"rotation/session": day, "rotation/pool": name, WRITE_SCOPE_TAG: f"pool:{name}"}))
    if not requests:
        return dg.SkipReason(f"no {group.calendar} session of the latest {MARKET_DATA_LOOKBACK} has its market data "
                             "stored yet")
    return requests


def summary_keys(config: PlatformConfig, session: str) -> dict[str, tuple[dg.AssetKey, str]]:
    """Each pool's target-portfolio asset key and the partition key the summary of ``session`` (a main
    calendar session) waits for: the pool's latest session on or before it, on its own calendar."""
    from assets.summary import pool_sessions

    out = {}
    taken = pool_sessions(config, pd.Timestamp(session))
    for group in market_groups(config):
        for name in group.pools:
            if taken[name] is not None:
                out[name] = (group.key("target_portfolio"), f"{name}|{taken[name].date()}")
    return out


def ready_sessions(materialised: set[str], done: set[str], failed: set[str], sessions: list[str],
                   config: PlatformConfig | str | None = None,
                   keys: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Sessions whose weighted pools all have a target portfolio from a run that did not fail (a failed
    fuse stops the summary) and that have no summary yet. ``keys``: session -> pool -> the partition key
    that pool's target must have (default ``<pool>|<session>``: every pool on the summary's calendar)."""
    config = _config(config)
    weighted = [p.name for p in config.pools if p.summary_weight > 0] or list(config.pool_names)

    def key(s: str, p: str) -> str | None:
        return (keys or {}).get(s, {}).get(p) if keys is not None else f"{p}|{s}"

    return [s for s in sessions if s not in done
            and all(key(s, p) is not None and key(s, p) in materialised and key(s, p) not in failed
                    for p in weighted)]


def _failed_partitions(instance: dg.DagsterInstance, keys: list[str], jobs: dict[str, str] | None = None) -> set[str]:
    """Pool-session keys whose latest daily run failed; ``jobs``: pool -> its calendar group's daily job
    (default ``daily``)."""
    out = set()
    for key in keys:
        job = (jobs or {}).get(key.split("|")[0], daily_job.name)
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=job, tags={"dagster/partition": key}), limit=1)
        if runs and runs[0].status == dg.DagsterRunStatus.FAILURE:
            out.add(key)
    return out


def summary_requests(instance: dg.DagsterInstance, config: PlatformConfig,
                     now: pd.Timestamp | None = None) -> list[dg.RunRequest] | dg.SkipReason:
    """The summary runs due: the latest five sessions of the main calendar that have closed, every
    weighted pool done for its latest session on or before it (a US pool's session closes after the XSHG
    session of the same date: the summary waits for it)."""
    code = main_calendar(config)
    calendar = get_calendar(code)
    delay = config.market(code).data_delay_minutes
    closed = [s for s in partitions_for(config).session.get_partition_keys()[-6:]
              if calendar.is_closed(s, now, delay)]
    recent = closed[-5:]
    groups = market_groups(config)
    job_of = {name: g.daily_job for g in groups for name in g.pools}
    by_session = {s: summary_keys(config, s) for s in recent}
    materialised: set[str] = set()
    for group in groups:
        materialised |= {str(k) for k in instance.get_materialized_partitions(group.key("target_portfolio"))}
    done = {str(k) for k in instance.get_materialized_partitions(dg.AssetKey("pool_metrics_summary"))}
    wanted = sorted({k for keys in by_session.values() for _, k in keys.values()})
    keys = {s: {p: k for p, (_, k) in pools.items()} for s, pools in by_session.items()}
    ready = ready_sessions(materialised, done, _failed_partitions(instance, wanted, job_of), recent, config, keys)
    if not ready:
        return dg.SkipReason("no session has every weighted pool's target portfolio (each pool's latest session on "
                             "or before it) without a summary")
    return [dg.RunRequest(run_key=f"summary|{s}", partition_key=s,
                          tags={"rotation/session": s, WRITE_SCOPE_TAG: SUMMARY_SCOPE}) for s in ready]


def _daily_schedule(name: str, calendar: str | None, cron: str, tz: str, job_name: str, config_path: str | None,
                    description: str, requests=None) -> dg.ScheduleDefinition:
    requests = requests or session_run_requests

    @dg.schedule(name=name, job_name=job_name, cron_schedule=cron, execution_timezone=tz,
                 default_status=dg.DefaultScheduleStatus.STOPPED, description=description)
    def daily_schedule(context: dg.ScheduleEvaluationContext):
        return requests(pd.Timestamp(context.scheduled_execution_time), load_config(config_path), calendar)

    return daily_schedule


def _pools_sensor(group: MarketGroup, config_path: str | None) -> dg.SensorDefinition:
    name = "pools_when_market_data_stored" + ("" if group.main else f"_{group.prefix}")

    @dg.sensor(name=name, job_name=group.daily_job, minimum_interval_seconds=60,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"data.history: store -- runs the daily job of the {group.calendar} pools "
                           f"({', '.join(group.pools)}) for a session once its market data is stored.")
    def pools_when_market_data_stored(context: dg.SensorEvaluationContext):
        return pools_after_market_data(context.instance, load_config(config_path), group.calendar)

    return pools_when_market_data_stored


def build_automation(config_path: str | None = None, groups: tuple[MarketGroup, ...] | None = None
                     ) -> tuple[list[dg.ScheduleDefinition], list[dg.SensorDefinition]]:
    """The schedules and the summary sensor for the config at ``config_path`` (None: the environment's at
    each evaluation). ``groups``: the config's calendar groups, one schedule each (None: the main
    calendar's schedule only, 18:00 Asia/Shanghai, whatever pools the config has at evaluation)."""
    schedules = []
    if groups is None:
        schedules.append(_daily_schedule("daily_after_close", None, SCHEDULE_CRON, SCHEDULE_TZ, daily_job.name,
                                         config_path, "After the close: every pool, on its calendar's trading "
                                                      "sessions only."))
    pool_sensors = []
    if groups is not None:
        from jobs.market import market_data_job_name

        config = load_config(config_path)
        store = config.data.history == "store"  # the schedule ingests the market data, a sensor runs the pools
        for group in groups:
            delay = config.market(group.calendar).data_delay_minutes
            cal = get_calendar(group.calendar)
            at, days = fire_time(group.calendar, delay)
            when = f"{at:%H:%M} {cal.tz}" + (f", {days} day(s) after the session" if days else "")
            what = (f"the market data of the {group.calendar} funds, then (sensor) pools" if store else "pools")
            schedules.append(_daily_schedule(
                group.schedule, group.calendar, schedule_cron(group.calendar, delay), cal.tz,
                market_data_job_name(group) if store else group.daily_job, config_path,
                "After the close: " + ("the market data, then (sensor) every pool" if store else "every pool")
                + ", on its calendar's trading sessions only." if group.main and len(groups) == 1 else
                f"After the {group.calendar} close ({when}: close {cal.regular_close:%H:%M} + {delay} min): {what} "
                f"{', '.join(group.pools)}, on {group.calendar} sessions only.",
                requests=market_data_requests if store else None))
            if store:
                pool_sensors.append(_pools_sensor(group, config_path))

    @dg.sensor(name="summary_when_pools_done", job=summary_job, minimum_interval_seconds=120,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Runs session_summary for a session once every weighted pool has its target portfolio "
                           "(a pool on another calendar: its latest session on or before it).")
    def summary_when_pools_done(context: dg.SensorEvaluationContext):
        return summary_requests(context.instance, load_config(config_path))

    return schedules, [summary_when_pools_done, *pool_sensors]


_SCHEDULES, _SENSORS = build_automation()
daily_after_close = _SCHEDULES[0]
summary_when_pools_done = _SENSORS[0]
ALL_SCHEDULES = [daily_after_close]
ALL_SENSORS = [summary_when_pools_done]
