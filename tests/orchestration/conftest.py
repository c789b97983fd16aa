"""Shared set-up: the demo configuration on temporary storage and helpers to run the jobs."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from rotation_platform.config import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
SESSION = "2024-12-31"  # the demo data end used by these tests


def fresh_defs():
    """Import the definitions again, so environment overrides set by the test apply."""
    for name in list(sys.modules):
        if name == "definitions" or name.split(".")[0] in {"assets", "resources", "jobs"}:
            del sys.modules[name]
    return importlib.import_module("definitions").defs


@pytest.fixture()
def demo_env(tmp_path, monkeypatch):
    """Demo config with storage in a temporary folder; the synthetic range is fixed."""
    monkeypatch.setenv("ROTATION_CONFIG", str(CONFIG_DIR / "demo.yaml"))
    monkeypatch.setenv("ROTATION_STORAGE__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ROTATION_DATA__SYNTHETIC__END", SESSION)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    shutil.copy(ROOT / "configs" / "dagster.yaml", tmp_path / "home" / "dagster.yaml")
    return tmp_path


def run_daily(defs, instance, pool: str, sessions: list[str], **kwargs):
    """The daily job for ``pool`` over ``sessions``: one partition, or one single run over the range."""
    from assets.partitions import pool_session_key

    job = defs.resolve_job_def("daily")
    if len(sessions) == 1:
        return job.execute_in_process(partition_key=pool_session_key(pool, sessions[0]), instance=instance,
                                      run_config=QUIET, **kwargs)
    return job.execute_in_process(instance=instance, run_config=QUIET, tags={
        "dagster/asset_partition_range_start": str(pool_session_key(pool, sessions[0])),
        "dagster/asset_partition_range_end": str(pool_session_key(pool, sessions[-1]))}, **kwargs)


def run_summary(defs, instance, sessions: list[str], **kwargs):
    job = defs.resolve_job_def("session_summary")
    if len(sessions) == 1:
        return job.execute_in_process(partition_key=sessions[0], instance=instance, run_config=QUIET, **kwargs)
    return job.execute_in_process(instance=instance, run_config=QUIET, tags={
        "dagster/asset_partition_range_start": sessions[0], "dagster/asset_partition_range_end": sessions[-1]},
        **kwargs)


def sessions_between(start: str, end: str) -> list[str]:
    from rotation_platform.calendars import get_calendar

    return [str(d.date()) for d in get_calendar("XSHG").sessions(pd.Timestamp(start), pd.Timestamp(end))]


def materialised_assets(result) -> set[str]:
    """Assets the run materialised."""
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def check_outcomes(result) -> dict[str, bool]:
    """``asset:check`` -> passed, for every check the run evaluated."""
    return {f"{c.asset_key.to_user_string()}:{c.check_name}": bool(c.passed)
            for c in result.get_asset_check_evaluations()}
