"""The daily job: every asset of one pool partition."""

from __future__ import annotations

import dagster as dg


DAILY_JOB = "daily"

daily_job = dg.define_asset_job(
    DAILY_JOB,
    selection=dg.AssetSelection.all(),
    description="Materialise every asset of one pool for the latest completed session.",
)
