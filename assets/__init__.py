"""Dagster software-defined assets: thin wrappers over ``rotation_platform``.

Per pool and session (``pool_session`` partitions): prices -> factor_panel -> factor_screen ->
wfo_result -> backtest -> capacity_report -> target_portfolio, computed as one step that can be subset
(:mod:`assets.chain`). Per session: pool_metrics_summary -> session_snapshot. The fuses are asset checks
declared with the asset that computes them.
"""

import warnings

import dagster as dg

# single-run backfill policies are marked beta, partitioned asset checks preview; they are the point of
# these assets
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from assets.chain import CHAIN_ASSETS  # noqa: E402
from assets.summary import SUMMARY_ASSETS  # noqa: E402

POOL_SESSION_ASSETS = [*CHAIN_ASSETS]
SESSION_ASSETS = [*SUMMARY_ASSETS]
ALL_ASSETS = [*POOL_SESSION_ASSETS, *SESSION_ASSETS]
ALL_CHECKS: list = []

__all__ = ["ALL_ASSETS", "ALL_CHECKS", "POOL_SESSION_ASSETS", "SESSION_ASSETS"]
