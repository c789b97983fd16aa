"""Partition definitions and key parsing, in one module.

* ``pool`` -- static, the configuration's pool names (``configs/*.yaml``);
* ``session`` -- one time window per XSHG trading session: a weekday cron at midnight Asia/Shanghai
  with every weekday holiday of ``exchange_calendars`` excluded, from
  ``orchestration.first_session``; ``end_offset=1`` makes today's session a partition as soon as the
  day starts, so the 18:00 schedule can request it;
* ``pool_session`` -- their product: every per-pool asset (prices ... target_portfolio).

Keys: ``"<pool>|<YYYY-MM-DD>"`` (Dagster orders dimensions by name).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import dagster as dg
import pandas as pd

from rotation_platform.calendars import get_calendar
from rotation_platform.config import load_config

SESSION_TZ = "Asia/Shanghai"
SESSION_FMT = "%Y-%m-%d"
SESSION_CRON = "0 0 * * 1-5"

_CONFIG = load_config()
POOL_NAMES: tuple[str, ...] = _CONFIG.pool_names
FIRST_SESSION: dt.date = _CONFIG.orchestration.first_session
CALENDAR = "XSHG"


def session_exclusions(first: dt.date, calendar: str = CALENDAR) -> list[dt.datetime]:
    """Weekdays from ``first`` to the end of the calendar's known sessions that are not sessions."""
    cal = get_calendar(calendar)
    last = cal.last_session if hasattr(cal, "last_session") else None
    end = pd.Timestamp(last) if last is not None else pd.Timestamp.today().normalize() + pd.Timedelta(days=366)
    weekdays = pd.bdate_range(pd.Timestamp(first), end)
    sessions = pd.DatetimeIndex(cal.sessions(weekdays[0], weekdays[-1]))
    holidays = weekdays.difference(sessions)
    return [dt.datetime(d.year, d.month, d.day) for d in holidays]


pool_partitions = dg.StaticPartitionsDefinition(list(POOL_NAMES))
session_partitions = dg.TimeWindowPartitionsDefinition(
    start=dt.datetime(FIRST_SESSION.year, FIRST_SESSION.month, FIRST_SESSION.day),
    fmt=SESSION_FMT, cron_schedule=SESSION_CRON, timezone=SESSION_TZ, end_offset=1,
    exclusions=session_exclusions(FIRST_SESSION),
)
pool_session_partitions = dg.MultiPartitionsDefinition({"pool": pool_partitions, "session": session_partitions})


def pool_session_key(pool: str, session: object) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"pool": pool, "session": pd.Timestamp(session).strftime(SESSION_FMT)})


def parse_key(key: object) -> tuple[str, pd.Timestamp]:
    """``(pool, session)`` of a pool-session key (a ``MultiPartitionKey`` or its string)."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
    else:
        dims = pool_session_partitions.get_partition_key_from_str(str(key)).keys_by_dimension
    if dims["pool"] not in POOL_NAMES:
        raise dg.DagsterInvariantViolationError(f"partition {key}: {dims['pool']!r} is not a configured pool "
                                                f"{POOL_NAMES}")
    return dims["pool"], pd.Timestamp(dims["session"])


def run_groups(context: dg.AssetExecutionContext) -> list[tuple[str, pd.DatetimeIndex, list[str]]]:
    """``(pool, sessions, partition keys)`` for each pool a run covers, sessions sorted.

    The daily job covers one pool and session; a single-run backfill a session range of one pool, or
    -- when launched for several pools at once -- ranges of several pools.
    """
    by_pool: dict[str, list[tuple[pd.Timestamp, str]]] = {}
    for key in context.partition_keys:
        pool, session = parse_key(key)
        by_pool.setdefault(pool, []).append((session, str(key)))
    out = []
    for pool in POOL_NAMES:
        if pool in by_pool:
            items = sorted(by_pool[pool])
            out.append((pool, pd.DatetimeIndex([t for t, _ in items]), [k for _, k in items]))
    return out


def session_keys(sessions: Iterable[object]) -> list[str]:
    return [pd.Timestamp(s).strftime(SESSION_FMT) for s in sessions]


def session_of(context: dg.AssetExecutionContext) -> list[pd.Timestamp]:
    """The sessions of a session-partitioned run, sorted."""
    return sorted(pd.Timestamp(k) for k in context.partition_keys)
