"""The composition root: assembles the Dagster ``Definitions`` from each area's module."""

from __future__ import annotations

import dagster as dg

from assets import ALL_ASSETS, ALL_CHECKS
from jobs import ALL_JOBS, ALL_SCHEDULES, ALL_SENSORS
from resources import build_resources

defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=ALL_JOBS,
    schedules=ALL_SCHEDULES,
    sensors=ALL_SENSORS,
    resources=build_resources(),
    executor=dg.in_process_executor,
)
