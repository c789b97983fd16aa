"""The composition root: assembles the Dagster ``Definitions`` from each area's module.

:func:`build_defs` builds them for one configuration file: the pools and sessions of the partitions,
the resources (storage, the platform config) and the configuration the schedule and sensors read.
``defs`` is built when this module is loaded, from the file the environment names then
(``ROTATION_CONFIG``, default ``configs/demo.yaml``): ``dagster dev``, the webserver, the daemon, the
code server and the run workers each load it that way (``workspace.yaml``, ``[tool.dagster]``), and
``python -m jobs.main --config FILE`` calls ``build_defs(FILE)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from assets import ALL_ASSETS, ALL_CHECKS
from assets.partitions import bind, partitions_for
from jobs.daily import daily_job, summary_job
from jobs.executor import range_run_executor
from jobs.schedules import build_automation
from jobs.sensors import build_alert_sensors
from resources import build_resources
from rotation_platform.config import default_config_path, load_config


def resolve_config_path(config_path: str | os.PathLike | None = None) -> str:
    """The absolute path of ``config_path``, or of the file the environment names (``ROTATION_CONFIG``,
    default ``configs/demo.yaml``)."""
    return str(Path(config_path or default_config_path()).resolve())


def build_defs(config_path: str | os.PathLike | None = None, env: str | None = None) -> dg.Definitions:
    """The definitions for the configuration at ``config_path`` (default: the environment's)."""
    path = resolve_config_path(config_path)
    config = load_config(path)
    schedules, summary_sensors = build_automation(path)
    return dg.Definitions(
        assets=bind(ALL_ASSETS, partitions_for(config)),
        asset_checks=ALL_CHECKS,
        jobs=[daily_job, summary_job],
        schedules=schedules,
        sensors=[*build_alert_sensors(path), *summary_sensors],
        resources=build_resources(env=env, config_path=path),
        executor=range_run_executor,
    )


defs = build_defs()
