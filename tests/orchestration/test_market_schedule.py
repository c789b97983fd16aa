"""``data.history: store`` on a schedule: the daily schedule launches the session's market data run, and the pools'
daily runs follow once a run has stored it -- never after a failed ingest."""

from __future__ import annotations

import datetime as dt
import sys
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd

from jobs.schedules import pools_after_market_data
from rotation_platform.config import CONFIG_DIR, load_config
from tests.orchestration.conftest import QUIET, SESSION, fresh_defs

SH = ZoneInfo("Asia/Shanghai")
LATER = pd.Timestamp("2025-01-02 09:00", tz="Asia/Shanghai")  # SESSION closed, the next one not yet
POOLS = ("A_SHARE", "QDII", "OTHER")


def _store_env(demo_env, monkeypatch):
    monkeypatch.setenv("ROTATION_DATA__HISTORY", "store")
    return load_config(CONFIG_DIR / "demo.yaml")


def test_the_schedule_launches_the_market_data_run(demo_env, monkeypatch) -> None:
    _store_env(demo_env, monkeypatch)
    defs = fresh_defs()
    schedule = defs.resolve_schedule_def("daily_after_close")
    assert schedule.job_name == "ingest_market_data"
    when = dt.datetime.fromisoformat(SESSION).replace(hour=18, tzinfo=SH)
    with dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def()) as ctx:
        result = schedule.evaluate_tick(ctx)
    assert [(r.job_name, r.partition_key) for r in result.run_requests] == [("ingest_market_data", SESSION)]
    holiday = dt.datetime(2024, 10, 1, 18, tzinfo=SH)
    with dg.build_schedule_context(scheduled_execution_time=holiday, repository_def=defs.get_repository_def()) as ctx:
        assert not schedule.evaluate_tick(ctx).run_requests  # National Day: no session, no ingest
    assert "pools_when_market_data_stored" in {s.name for s in defs.sensors}


def test_pools_run_once_their_market_data_is_stored(demo_env, monkeypatch) -> None:
    config = _store_env(demo_env, monkeypatch)
    defs = fresh_defs()
    with dg.DagsterInstance.get() as instance:
        before = pools_after_market_data(instance, config, now=LATER)
        assert isinstance(before, dg.SkipReason) and "market data" in before.skip_message
        ingest = defs.resolve_job_def("ingest_market_data")
        assert ingest.execute_in_process(partition_key=SESSION, instance=instance, run_config=QUIET).success
        requests = pools_after_market_data(instance, config, now=LATER)
        assert sorted((r.job_name, r.partition_key, r.run_key) for r in requests) == \
            sorted(("daily", f"{p}|{SESSION}", f"{p}|{SESSION}") for p in POOLS)
        # a later ingest of the session failed: its stored bars are not current, no pool runs on them
        def unreachable(*args, **kwargs):
            raise ConnectionError("the vendor's server refused the connection")

        monkeypatch.setattr(sys.modules["assets.market_data"], "ingest_from_source", unreachable)
        failed = ingest.execute_in_process(partition_key=SESSION, instance=instance, run_config=QUIET,
                                           raise_on_error=False)
        assert not failed.success
        after = pools_after_market_data(instance, config, now=LATER)
        assert isinstance(after, dg.SkipReason)
