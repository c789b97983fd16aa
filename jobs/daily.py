"""Jobs: ``daily`` materialises every per-pool asset of one pool and session (or a session range, as one
run); ``session_summary`` the cross-pool summary and snapshot of a session (or range).

The jobs take the executor of the definitions they are built into: ``orchestration.executor`` of the
configuration (``definitions.build_defs`` passes :func:`jobs.executor.executor_for`) -- in one process
(the default), one process per step, or on Celery workers -- each with the repair of job-page range runs
(:mod:`jobs.executor`). Every step computes what it needs itself, so the values are the same on each.

The jobs select assets by key, so they do not depend on the configuration; the assets' partitions are
attached by ``definitions.build_defs``. A configuration with pools on several calendars has one daily job
per calendar group (:func:`daily_jobs`): ``daily`` for the main calendar's pools (plain keys) and
``daily_<code>`` (``daily_xnys``) over the prefixed copies of the other groups.
"""

from __future__ import annotations

import dagster as dg

from assets import POOL_SESSION_ASSETS, SESSION_ASSETS
from assets.partitions import DAILY_JOB, MarketGroup

SUMMARY_JOB = "session_summary"

DAILY_DESCRIPTION = ("One pool and trading session: prices, factor panel, screen, walk-forward, backtest, capacity "
                     "and the target portfolio, with every fuse.")
#: the per-pool asset keys as declared (the main calendar's group)
POOL_SESSION_KEYS = [key for asset in POOL_SESSION_ASSETS for key in asset.keys]

daily_job = dg.define_asset_job(
    DAILY_JOB,
    selection=dg.AssetSelection.assets(*POOL_SESSION_ASSETS),
    description=DAILY_DESCRIPTION,
)


def daily_jobs(groups: tuple[MarketGroup, ...] | list[MarketGroup]) -> list:
    """The daily job of each calendar group: :data:`daily_job` for the main one, ``daily_<code>`` over its
    prefixed keys for each other."""
    out = []
    for group in groups:
        if group.main:
            out.append(daily_job)
            continue
        out.append(dg.define_asset_job(
            group.daily_job, selection=dg.AssetSelection.assets(*(group.key(k.path[-1]) for k in POOL_SESSION_KEYS)),
            description=f"{group.calendar} pools ({', '.join(group.pools)}), on {group.calendar} sessions: "
                        + DAILY_DESCRIPTION[0].lower() + DAILY_DESCRIPTION[1:]))
    return out

summary_job = dg.define_asset_job(
    SUMMARY_JOB,
    selection=dg.AssetSelection.assets(*SESSION_ASSETS),
    description="One trading session across pools: the combined metrics summary and the session snapshot.",
)
