"""The market data jobs: ``ingest_market_data`` (``ingest_market_data_<code>`` for another calendar's
group) ingests the session's bars of every fund on the group's calendar into the market store
(:mod:`assets.market_data`).

With ``data.history: store`` the pools read their history from that store, so the market data of a
session is ingested before the pools run it: ``python -m jobs.main`` runs this job first.
"""

from __future__ import annotations

import dagster as dg

from assets.market_data import MARKET_DATA
from assets.partitions import MarketGroup

__all__ = ["MARKET_DATA_JOB", "market_data_job_name", "market_data_jobs"]

MARKET_DATA_JOB = "ingest_market_data"


def market_data_job_name(group: MarketGroup) -> str:
    return MARKET_DATA_JOB if group.main else f"{MARKET_DATA_JOB}_{group.prefix}"


def market_data_jobs(groups: tuple[MarketGroup, ...] | list[MarketGroup]) -> list:
    """One market data job per calendar group."""
    return [dg.define_asset_job(
        market_data_job_name(group), selection=dg.AssetSelection.assets(group.key(MARKET_DATA)),
        description=f"One {group.calendar} session (or range): the bars and corporate actions of every configured fund "
                    "on the calendar, from data.source into the market store; restatements recorded.")
        for group in groups]
