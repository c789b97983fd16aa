"""Jobs: ``daily`` materialises every per-pool asset of one pool and session (or a session range, as one
run); ``session_summary`` the cross-pool summary and snapshot of a session (or range).

Both run their steps in one process, so the pool's prices, factors, walk-forward grid and backtest are
computed once per run and shared by its steps (see ``PlatformResource.pool_run``). The executor is
Dagster's in-process executor with the repair of job-page range runs (:mod:`jobs.executor`).

The jobs select assets by key, so they do not depend on the configuration; the assets' partitions are
attached by ``definitions.build_defs``.
"""

from __future__ import annotations

import dagster as dg

from assets import POOL_SESSION_ASSETS, SESSION_ASSETS
from jobs.executor import range_run_executor

DAILY_JOB = "daily"
SUMMARY_JOB = "session_summary"

daily_job = dg.define_asset_job(
    DAILY_JOB,
    selection=dg.AssetSelection.assets(*POOL_SESSION_ASSETS),
    executor_def=range_run_executor,
    description="One pool and trading session: prices, factor panel, screen, walk-forward, backtest, capacity "
                "and the target portfolio, with every fuse.",
)

summary_job = dg.define_asset_job(
    SUMMARY_JOB,
    selection=dg.AssetSelection.assets(*SESSION_ASSETS),
    executor_def=range_run_executor,
    description="One trading session across pools: the combined metrics summary and the session snapshot.",
)
