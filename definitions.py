"""The composition root: assembles the Dagster ``Definitions`` from each area's module.

:func:`build_defs` builds them for one configuration file: the pools and sessions of the partitions,
the resources (storage, the platform config) and the configuration the schedule and sensors read.
``defs`` is built when this module is loaded, from the file the environment names then
(``ROTATION_CONFIG``, default ``configs/demo.yaml``): ``dagster dev``, the webserver, the daemon, the
code server and the run workers each load it that way (``workspace.yaml``, ``[tool.dagster]``), and
``python -m jobs.main --config FILE`` calls ``build_defs(FILE)``.

Pools on several exchange calendars: one group per calendar (``assets.partitions.market_groups``). The
main calendar's group has the plain keys, the ``daily`` job and the ``daily_after_close`` schedule; each
other group a prefixed copy of the per-pool assets (``xnys/prices`` ...), ``daily_<code>`` and
``daily_after_close_<code>`` at its market's close. A configuration on one calendar builds exactly the
definitions it always did.

A configuration error while the definitions load (the asset modules read the environment's config when
they are imported) is one line on stderr and the command line's exit code when a one-shot ``dagster``
command loads this file (``dagster asset materialize``, ``dagster job execute``, ``dagster definitions
validate``; ``ROTATION_DEBUG=1`` prints the traceback too). The servers (``dagster dev``, the code server,
the daemon) get the exception itself, which the UI shows as the code location's load error.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

#: ``dagster`` sub-commands that serve (their load errors belong in the UI), not one-shot commands
SERVING_COMMANDS = frozenset({"dev", "api", "code-server", "daemon"})


def _dagster_command_line(argv: list[str] | None = None) -> bool:
    """Whether this process is a one-shot ``dagster`` command (``dagster ...`` or ``python -m dagster ...``)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return False
    program = Path(argv[0])
    is_dagster = program.name == "dagster" or (program.name == "__main__.py" and program.parent.name == "dagster")
    return is_dagster and len(argv) > 1 and argv[1] not in SERVING_COMMANDS


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """On a one-shot ``dagster`` command, turn a platform error (configuration, data) into one line and
    its exit code; elsewhere let it through."""
    from rotation_platform.errors import RotationError

    try:
        yield
    except RotationError as exc:
        if not _dagster_command_line():
            raise
        from jobs.cli import debug_requested, report

        raise SystemExit(report(exc, debug_requested([]))) from None


with _one_line_errors():
    from assets import ALL_CHECKS, POOL_SESSION_ASSETS
    from assets.market_data import market_data_asset
    from assets.partitions import bind, group_assets, market_groups
    from assets.summary import build_summary_assets
    from jobs.daily import daily_jobs, summary_job
    from jobs.executor import executor_for
    from jobs.market import market_data_jobs
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
    config = load_config(path)  # also registers the config's calendar starts (rotation_platform.calendars)
    groups = market_groups(config)
    schedules, summary_sensors = build_automation(path, groups)
    # each calendar's market data and pool chain, renamed together for a group other than the main one
    pool_assets = [asset for group in groups
                   for asset in group_assets([*POOL_SESSION_ASSETS, market_data_asset(group, plain_key=True)], group)]
    return dg.Definitions(
        assets=[*pool_assets, *bind(build_summary_assets(groups), groups[0].partitions)],
        asset_checks=ALL_CHECKS,
        jobs=[*daily_jobs(groups), summary_job, *market_data_jobs(groups)],
        schedules=schedules,
        sensors=[*build_alert_sensors(path), *summary_sensors],
        resources=build_resources(env=env, config_path=path),
        executor=executor_for(config),  # orchestration.executor (jobs/executor.py)
    )


with _one_line_errors():
    defs = build_defs()
