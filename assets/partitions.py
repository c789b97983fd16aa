"""Partition definitions and key parsing, in one module.

* ``pool`` -- static, the configuration's pool names (``configs/*.yaml``);
* ``session`` -- one time window per trading session of the group's calendar (XSHG: a weekday cron at
  midnight Asia/Shanghai) with every weekday holiday of ``exchange_calendars`` excluded, from
  ``orchestration.first_session``;
* ``pool_session`` -- their product: every per-pool asset (prices ... target_portfolio).

Keys: ``"<pool>|<YYYY-MM-DD>"`` (Dagster orders dimensions by name).

Markets: the pools are grouped by calendar (:func:`market_groups`). Each group has its own pool x
session definition whose session dimension is its own calendar's sessions (a weekday cron at midnight in
the market's time zone, that calendar's weekday holidays excluded), so an XNYS pool has 2021-10-05
(Golden Week in China) and not 2021-07-05 (Independence Day observed). The group of the main calendar
(``orchestration.calendar``, default the first pool's) keeps the plain asset keys; every other group
gets its own copy of the per-pool assets and checks under a key prefix, the calendar code in lower case
(``xnys/prices``; :func:`group_assets`), its own daily job and schedule. A configuration whose pools
share one calendar therefore has exactly one group: the keys, jobs, schedule and definitions it always
had. The prefix is a Dagster name only: the stores keep every pool's values under the plain asset name
(``rotation_platform.calendars.storage_key``), so the summary, the snapshots, ``jobs.verify`` and the
console read a US pool where they read any other. The session partitions of the cross-pool assets are
the main calendar's.

The definitions belong to a configuration: :func:`partitions_for` builds them, and
``definitions.build_defs`` attaches them to the assets when it loads the definitions, so the config the
environment chooses then (``--config`` / ``ROTATION_CONFIG``) decides the pools. The module-level names
(``pool_session_partitions``, ``POOL_NAMES``, ...) are those of the environment's config at the moment
they are first read; the asset modules declare their partitions with them, and ``build_defs`` replaces
them with the loaded config's (:func:`bind`).

Today's session and sessions that have not closed -- the choice: the set keeps ``end_offset=1``, so
today's session is a partition from midnight Asia/Shanghai (the 18:00 schedule requests it), and runs
for a session are refused until its close plus ``orchestration.data_delay_minutes`` unless forced
(:func:`refuse_unclosed`). Ending the set at the last closed session instead was rejected: with
``end_offset=0`` the session of day D would only appear at the next weekday's midnight (too late for the
schedule); a cron at the close plus the delay (``30 15 * * 1-5``) would make D appear at 15:30, but each
partition's time window would then start at 15:30 on D while the stored values are indexed at midnight
D and the IO managers assign rows to partitions by window (``rotation_platform.storage.partitioning``),
the delay would be baked into a definition the instance's history is keyed on, and pools whose
calendars close at other times could not share one session dimension. So the launch dialog's "Latest"
may offer a session that has not closed; launching it fails at once with one line that says when its
data counts as complete and how to force the run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import dagster as dg
import pandas as pd

from rotation_platform.calendars import SessionNotClosedError, get_calendar, market_prefix
from rotation_platform.config import PlatformConfig, load_config

SESSION_TZ = "Asia/Shanghai"
SESSION_FMT = "%Y-%m-%d"
SESSION_CRON = "0 0 * * 1-5"
CALENDAR = "XSHG"

#: a run tagged ``rotation/force=true`` runs sessions that have not closed yet
FORCE_TAG = "rotation/force"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
DIMENSION_TAG_PREFIX = "dagster/partition/"


def session_exclusions(first: dt.date, calendar: str = CALENDAR) -> list[dt.datetime]:
    """Weekdays from ``first`` to the end of the calendar's known sessions that are not sessions."""
    cal = get_calendar(calendar)
    last = cal.last_session if hasattr(cal, "last_session") else None
    end = pd.Timestamp(last) if last is not None else pd.Timestamp.today().normalize() + pd.Timedelta(days=366)
    weekdays = pd.bdate_range(pd.Timestamp(first), end)
    sessions = pd.DatetimeIndex(cal.sessions(weekdays[0], weekdays[-1]))
    holidays = weekdays.difference(sessions)
    return [dt.datetime(d.year, d.month, d.day) for d in holidays]


@dataclass(frozen=True)
class Partitions:
    """The partition definitions of one calendar group of a configuration."""

    pools: tuple[str, ...]
    first_session: dt.date
    pool: dg.StaticPartitionsDefinition
    session: dg.TimeWindowPartitionsDefinition
    pool_session: dg.MultiPartitionsDefinition
    calendar: str = CALENDAR


@lru_cache(maxsize=16)
def _partitions(pools: tuple[str, ...], first: dt.date, calendar: str = CALENDAR) -> Partitions:
    pool = dg.StaticPartitionsDefinition(list(pools))
    session = dg.TimeWindowPartitionsDefinition(
        start=dt.datetime(first.year, first.month, first.day),
        # end_offset=1: today's session is a partition from midnight; runs refuse it until its data is
        # complete (refuse_unclosed) -- why the set does not end at the last closed session: module docstring
        fmt=SESSION_FMT, cron_schedule=SESSION_CRON, timezone=get_calendar(calendar).tz, end_offset=1,
        exclusions=session_exclusions(first, calendar),
    )
    return Partitions(pools, first, pool, session, dg.MultiPartitionsDefinition({"pool": pool, "session": session}),
                      calendar)


@dataclass(frozen=True)
class MarketGroup:
    """The pools of one calendar and what Dagster names for them: asset-key prefix (empty for the main
    calendar's group), daily job, schedule and partitions."""

    calendar: str
    prefix: str
    pools: tuple[str, ...]
    partitions: Partitions

    @property
    def main(self) -> bool:
        return not self.prefix

    def key(self, name: str) -> dg.AssetKey:
        """The group's key of the per-pool asset ``name`` (``prices`` or ``xnys/prices``)."""
        return dg.AssetKey([self.prefix, name]) if self.prefix else dg.AssetKey(name)

    @property
    def daily_job(self) -> str:
        return DAILY_JOB if self.main else f"{DAILY_JOB}_{self.prefix}"

    @property
    def schedule(self) -> str:
        return DAILY_SCHEDULE if self.main else f"{DAILY_SCHEDULE}_{self.prefix}"


DAILY_JOB = "daily"
DAILY_SCHEDULE = "daily_after_close"


def main_calendar(config: PlatformConfig) -> str:
    """The main calendar: ``orchestration.calendar``, default the first pool's."""
    return getattr(config.orchestration, "calendar", None) or config.calendars[0]


def market_groups(config: PlatformConfig) -> tuple[MarketGroup, ...]:
    """The configuration's pools grouped by calendar, the main calendar's group first (plain keys), the
    others in the order their first pool appears."""
    main = main_calendar(config)
    first = config.orchestration.first_session
    order = [main, *(c for c in config.calendars if c != main)]
    out = []
    for code in order:
        pools = tuple(p.name for p in config.pools if p.calendar == code)
        if not pools:
            continue
        out.append(MarketGroup(code, "" if code == main else market_prefix(code), pools,
                               _partitions(pools, first, code)))
    return tuple(out)


def group_of(config: PlatformConfig, pool: str) -> MarketGroup:
    """The calendar group of ``pool``."""
    for group in market_groups(config):
        if pool in group.pools:
            return group
    raise KeyError(f"no pool named {pool!r}; pools: {list(config.pool_names)}")


def partitions_for(config: PlatformConfig) -> Partitions:
    """The partition definitions of ``config``'s main calendar group (every pool when they share one
    calendar; the same objects for configs with the same pools, first session and calendar)."""
    return market_groups(config)[0].partitions


_ENVIRONMENT_NAMES = {
    "POOL_NAMES": lambda p: p.pools,
    "FIRST_SESSION": lambda p: p.first_session,
    "pool_partitions": lambda p: p.pool,
    "session_partitions": lambda p: p.session,
    "pool_session_partitions": lambda p: p.pool_session,
}


def __getattr__(name: str):  # PEP 562: the environment's config, read when a name is first asked for
    if name in _ENVIRONMENT_NAMES:
        return _ENVIRONMENT_NAMES[name](partitions_for(load_config()))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pool_session_key(pool: str, session: object) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"pool": pool, "session": pd.Timestamp(session).strftime(SESSION_FMT)})


def parse_key(key: object, pools: Sequence[str] | None = None) -> tuple[str, pd.Timestamp]:
    """``(pool, session)`` of a pool-session key (a ``MultiPartitionKey`` or its string ``pool|session``);
    with ``pools``, a pool outside them is an error."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = dict(key.keys_by_dimension)
    else:
        parts = str(key).split("|")
        if len(parts) != 2:
            raise dg.DagsterInvariantViolationError(f"partition {key!r} is not a '<pool>|<YYYY-MM-DD>' key")
        dims = {"pool": parts[0], "session": parts[1]}
    if pools is not None and dims["pool"] not in pools:
        raise dg.DagsterInvariantViolationError(f"partition {key}: {dims['pool']!r} is not a configured pool "
                                                f"{tuple(pools)}")
    return dims["pool"], pd.Timestamp(dims["session"])


class PartialRangeRunError(dg.DagsterInvariantViolationError):
    """A run whose range tags name more partitions than Dagster would hand its steps."""


def _run_keys(context: dg.AssetExecutionContext) -> list[str]:
    """The partition keys of the run, checked against its range tags.

    A job-page backfill of a multi-partitioned job with a single-run backfill policy gives its run the
    range tags *and* the per-dimension tags of the range's first partition; Dagster 1.13 then hands the
    steps, the IO manager and the materialisation events that one partition only, while the backfill
    counts the whole range as done. ``jobs.executor`` repairs such runs before their steps start; a run
    that reaches a step unrepaired (another executor) is refused rather than half computed.
    """
    keys = [str(k) for k in context.partition_keys]
    tags = context.run.tags
    start, end = tags.get(RANGE_START), tags.get(RANGE_END)
    if start and end and any(t.startswith(DIMENSION_TAG_PREFIX) for t in tags):
        pdef = context.assets_def.partitions_def
        want = [str(k) for k in pdef.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))] \
            if pdef is not None else keys
        if set(want) != set(keys):
            raise PartialRangeRunError(
                f"run {context.run.run_id[:8]} covers {start}..{end} ({len(want)} partitions) but carries the "
                f"per-dimension tags of one partition, so Dagster would compute {len(keys)} of them: launch the "
                f"range from the asset catalog (select the assets, Materialize, pick the range) or with "
                f"`python -m jobs.main --session <last> --sessions N`, or run the daily job with the in-process "
                f"executor of jobs.executor")
    return keys


def _forced(context: dg.AssetExecutionContext) -> bool:
    return str(context.run.tags.get(FORCE_TAG, "")).lower() in ("true", "1", "yes")


def refuse_unclosed(config: PlatformConfig, pool: str | None, sessions: Sequence[pd.Timestamp],
                    forced: bool = False, now: pd.Timestamp | None = None) -> None:
    """Raise one line when the latest of ``sessions`` has not closed (its pool's calendar -- the main
    calendar for ``pool`` None -- plus that market's data delay, ``markets.<CODE>.data_delay_minutes``,
    default ``orchestration.data_delay_minutes``), unless ``forced``."""
    if forced or not len(sessions):
        return
    code = config.pool(pool).calendar if pool is not None else main_calendar(config)
    calendar = get_calendar(code)
    last = max(pd.Timestamp(s) for s in sessions)
    try:
        calendar.require_closed(last, now, config.market(code).data_delay_minutes, what=pool or "")
    except SessionNotClosedError as exc:
        raise SessionNotClosedError(f"{exc}; to run it anyway add the run tag {FORCE_TAG}=true "
                                    f"(python -m jobs.main --force)", exc.session, exc.ready_at) from None


def _platform_config(context: dg.AssetExecutionContext) -> PlatformConfig | None:
    platform = getattr(context.resources, "platform", None)
    return getattr(platform, "config", None)


def run_groups(context: dg.AssetExecutionContext) -> list[tuple[str, pd.DatetimeIndex, list[str]]]:
    """``(pool, sessions, partition keys)`` for each pool a run covers, sessions sorted.

    The daily job covers one pool and session; a single-run backfill a session range of one pool, or
    -- when launched for several pools at once -- ranges of several pools. Pools come from the asset's
    own partitions (the configuration the definitions were built from). A session that has not closed
    is refused unless the run is forced (:data:`FORCE_TAG`).
    """
    pdef = context.assets_def.partitions_def
    pools = list(pdef.get_partitions_def_for_dimension("pool").get_partition_keys()) \
        if isinstance(pdef, dg.MultiPartitionsDefinition) else None
    by_pool: dict[str, list[tuple[pd.Timestamp, str]]] = {}
    for key in _run_keys(context):
        pool, session = parse_key(key, pools)
        by_pool.setdefault(pool, []).append((session, str(key)))
    out = []
    for pool in pools if pools is not None else sorted(by_pool):
        if pool in by_pool:
            items = sorted(by_pool[pool])
            out.append((pool, pd.DatetimeIndex([t for t, _ in items]), [k for _, k in items]))
    config = _platform_config(context)
    if config is not None:
        for pool, sessions, _ in out:
            refuse_unclosed(config, pool, sessions, _forced(context))
    return out


def session_keys(sessions: Iterable[object]) -> list[str]:
    return [pd.Timestamp(s).strftime(SESSION_FMT) for s in sessions]


def session_of(context: dg.AssetExecutionContext) -> list[pd.Timestamp]:
    """The sessions of a session-partitioned run, sorted; a session that has not closed is refused
    unless the run is forced."""
    sessions = sorted(pd.Timestamp(k) for k in _run_keys(context))
    config = _platform_config(context)
    if config is not None:
        refuse_unclosed(config, None, sessions, _forced(context))
    return sessions


def group_assets(assets: Iterable[object], group: MarketGroup) -> list[object]:
    """The per-pool ``assets`` (declared with the plain keys) for calendar ``group``: their keys -- with
    their deps and checks -- renamed to the group's (:meth:`MarketGroup.key`) and its partitions bound."""
    assets = list(assets)
    if not group.main:
        names = [key for a in assets if isinstance(a, dg.AssetsDefinition) for key in a.keys]
        replacements = {key: dg.AssetKey([group.prefix, *key.path]) for key in names}
        assets = [a.with_attributes(asset_key_replacements=replacements) if isinstance(a, dg.AssetsDefinition)
                  else a for a in assets]
    return bind(assets, group.partitions)


def bind(assets: Iterable[object], partitions: Partitions) -> list[object]:
    """``assets`` with the partitions of one configuration: the pool-session definition on multi-
    partitioned assets and their (partitioned) checks, the session definition on session-partitioned
    ones."""
    from dagster_shared.record import replace

    def new_def(current: object) -> object:
        if isinstance(current, dg.MultiPartitionsDefinition):
            return partitions.pool_session
        if isinstance(current, dg.TimeWindowPartitionsDefinition):
            return partitions.session
        return current

    out = []
    for asset in assets:
        if not isinstance(asset, dg.AssetsDefinition):
            out.append(asset)
            continue
        # asset specs and check specs in one step: an AssetsDefinition whose checks and assets have
        # different partitions is refused
        attrs = asset.get_attributes_dict()
        attrs["specs"] = [spec.replace_attributes(partitions_def=new_def(spec.partitions_def))
                          if spec.partitions_def is not None else spec for spec in asset.specs]
        attrs["check_specs_by_output_name"] = {
            name: replace(spec, partitions_def=new_def(spec.partitions_def)) if spec.partitions_def is not None
            else spec for name, spec in attrs["check_specs_by_output_name"].items()}
        out.append(asset.__class__.dagster_internal_init(**attrs))
    return out


__all__ = [
    "CALENDAR", "DAILY_JOB", "DAILY_SCHEDULE", "FORCE_TAG", "MarketGroup", "PartialRangeRunError", "Partitions",
    "SESSION_CRON", "SESSION_FMT", "SESSION_TZ", "bind", "group_assets", "group_of", "main_calendar",
    "market_groups", "parse_key", "partitions_for", "pool_session_key", "refuse_unclosed", "run_groups", "session_exclusions",
    "session_keys", "session_of",
]
