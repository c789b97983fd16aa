"""Pools on their own exchange calendar: an XNYS pool beside an XSHG one.

The XNYS pool gets its own pool x session partitions (NYSE sessions), its own prefixed copy of the pool
chain (``xnys/prices`` ...), job ``daily_xnys`` and schedule at 16:00 New York + the data delay; the
command line checks ``--session`` on each pool's own calendar; the summary (XSHG sessions) reads each pool
at its latest session on or before its date. The data: synthetic-looking daily files (plain layout) for an
XSHG pool and an XNYS pool, written from the synthetic generator once per calendar.

Dates: 2021-07-05 is an XSHG session and a US holiday (Independence Day observed); 2021-10-05 an NYSE
session inside China's Golden Week; 2021-11-26 (the day after Thanksgiving) closes at 13:00 New York.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
import yaml

from rotation_platform.config import CONFIG_DIR, load_config
from tests.orchestration.conftest import QUIET, ROOT

NY = ZoneInfo("America/New_York")
SH = ZoneInfo("Asia/Shanghai")
EQUITY = [f"DA{i:02d}" for i in range(1, 9)]
US = [f"US{i:02d}" for i in range(1, 7)]
DATA_START, DATA_END = "2019-01-02", "2021-10-29"
CAPITAL = {"target_capital": 3_000_000, "max_single_weight": 0.3, "max_adv_pct": 0.05}


def _write_prices(folder: Path) -> None:
    """Daily files for both pools in the plain layout (date, OHLC, volume in shares, amount), each on its
    own calendar's sessions."""
    from rotation_platform.config.models import PoolConfig, SyntheticConfig
    from rotation_platform.data.sources.synthetic import SyntheticSource

    folder.mkdir(parents=True, exist_ok=True)
    for calendar, kind, symbols in (("XSHG", "A_SHARE", EQUITY), ("XNYS", "QDII", US)):
        pool = PoolConfig(name=f"P{calendar}", kind=kind, summary_weight=1.0, calendar=calendar, symbols=symbols,
                          capital=CAPITAL)
        source = SyntheticSource([pool], SyntheticConfig(seed=3, start=DATA_START, end=DATA_END))
        for symbol, raw in source.read(symbols).items():
            raw.frame.drop(columns=["line"]).to_csv(folder / f"{symbol}.csv", index=False, date_format="%Y-%m-%d")


def _write_config(folder: Path, prices: Path, data_dir: Path, **orchestration) -> Path:
    doc = {
        "extends": str(CONFIG_DIR / "base.yaml"),
        "name": "mixed",
        "data": {"source": "directory", "directory": str(prices)},
        "storage": {"data_dir": str(data_dir)},
        "orchestration": {"first_session": "2021-06-01", **orchestration},
        "wfo": {"train_sessions": 250, "test_sessions": 40, "embargo_sessions": 5,
                "grid": {"top_n": [2, 3], "rebalance_sessions": [5, 10], "ic_lookback": [60],
                         "weighting": ["equal"], "buffer": [0]}},
        "pools": [
            {"name": "EQUITY", "kind": "A_SHARE", "summary_weight": 0.7, "symbols": EQUITY, "capital": CAPITAL},
            {"name": "US", "kind": "QDII", "calendar": "XNYS", "summary_weight": 0.3, "symbols": US,
             "capital": CAPITAL},
        ],
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mixed.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prices_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mixed_prices")
    _write_prices(folder)
    return folder


@pytest.fixture()
def mixed(tmp_path, prices_dir, monkeypatch) -> dict[str, object]:
    """The mixed config on temporary storage and Dagster home; ``env`` for a subprocess."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "configs" / "dagster.yaml", home / "dagster.yaml")
    path = _write_config(tmp_path / "config", prices_dir, tmp_path / "data")
    monkeypatch.setenv("ROTATION_CONFIG", str(path))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_") or k == "ROTATION_ENV"}
    env.update({"ROTATION_CONFIG": str(path), "DAGSTER_HOME": str(home),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    yield {"path": path, "env": env, "data": tmp_path / "data", "home": home, "config": load_config(path)}
    # ``definitions`` builds its module-level ``defs`` from the environment's config when first imported:
    # one imported under this mixed config must not be what later tests import
    sys.modules.pop("definitions", None)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def _stored_sessions(data_dir: Path, asset: str, pool: str) -> set[str]:
    folder = data_dir / asset / pool
    return {p.name.split(".")[0] for p in folder.iterdir()} if folder.is_dir() else set()


def _summary(data_dir: Path, session: str) -> pd.DataFrame:
    from rotation_platform.storage.base import Partition
    from rotation_platform.storage.files import FileStore

    table = FileStore(str(data_dir)).read(("pool_metrics_summary",), Partition.single(session))
    return table.droplevel("session")


# ----------------------------------------------------------------------------------- partitions
def test_each_calendar_group_has_its_own_session_partitions(mixed) -> None:
    from assets.partitions import market_groups, partitions_for

    config = mixed["config"]
    main, us = market_groups(config)
    assert (main.calendar, main.prefix, main.pools) == ("XSHG", "", ("EQUITY",))
    assert (us.calendar, us.prefix, us.pools) == ("XNYS", "xnys", ("US",))
    assert partitions_for(config) is main.partitions
    us_sessions = set(us.partitions.session.get_partition_keys())
    xshg_sessions = set(main.partitions.session.get_partition_keys())
    assert "2021-10-05" in us_sessions and "2021-07-05" not in us_sessions
    assert "2021-07-05" in xshg_sessions and "2021-10-05" not in xshg_sessions
    assert us.partitions.session.timezone == "America/New_York"
    assert us.partitions.pool.get_partition_keys() == ["US"]
    # holidays of its own calendar only: Thanksgiving out, the day after in; the Golden Week days in
    assert "2021-11-25" not in us_sessions and "2021-11-26" in us_sessions
    assert {"2021-10-01", "2021-10-04", "2021-10-06", "2021-10-07"} <= us_sessions
    assert us.partitions.pool_session.has_partition_key("2021-10-05|US") is False  # dims are ordered by name
    assert us.partitions.pool_session.has_partition_key(dg.MultiPartitionKey({"pool": "US", "session": "2021-10-05"}))


def test_the_main_calendar_is_configurable_and_checked(tmp_path, prices_dir) -> None:
    from assets.partitions import market_groups
    from rotation_platform.errors import ConfigError

    path = _write_config(tmp_path, prices_dir, tmp_path / "data", calendar="XNYS")
    groups = market_groups(load_config(path))
    assert [(g.calendar, g.prefix) for g in groups] == [("XNYS", ""), ("XSHG", "xshg")]
    bad = _write_config(tmp_path / "bad", prices_dir, tmp_path / "data", calendar="XHKG")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "orchestration.calendar" in str(err.value) and "XHKG" in str(err.value)


# ---------------------------------------------------------------------------------- definitions
def test_mixed_definitions_have_two_daily_jobs_two_schedules_and_prefixed_keys(mixed) -> None:
    from definitions import build_defs

    defs = build_defs(mixed["path"])
    repo = defs.get_repository_def()
    assert sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")) == \
        ["daily", "daily_xnys", "ingest_market_data", "ingest_market_data_xnys", "session_summary"]
    schedules = {s.name: s for s in defs.schedules}
    assert set(schedules) == {"daily_after_close", "daily_after_close_xnys"}
    assert (schedules["daily_after_close"].cron_schedule, schedules["daily_after_close"].execution_timezone) == \
        ("0 18 * * 1-5", "Asia/Shanghai")
    assert (schedules["daily_after_close_xnys"].cron_schedule,
            schedules["daily_after_close_xnys"].execution_timezone) == ("30 16 * * 1-5", "America/New_York")
    assert schedules["daily_after_close_xnys"].job_name == "daily_xnys"
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    chain = ["prices", "price_quarantine", "factor_panel", "factor_screen", "wfo_result", "backtest",
             "capacity_report", "target_portfolio"]
    assert set(chain) <= keys and {f"xnys/{a}" for a in chain} <= keys
    assert {f"xnys/{a}" for a in chain} == {k.to_user_string() for k in
                                            defs.resolve_job_def("daily_xnys").asset_layer.executable_asset_keys}
    # deps and checks follow the keys
    assert dg.AssetKey(["xnys", "prices"]) in graph.get(dg.AssetKey(["xnys", "factor_panel"])).parent_keys
    checks = {c.to_user_string() for c in graph.asset_check_keys}
    assert "xnys/prices:quality_gate" in checks and "prices:quality_gate" in checks
    assert "xnys/target_portfolio:metadata_completeness" in checks
    us_pdef = graph.get(dg.AssetKey(["xnys", "prices"])).partitions_def
    assert us_pdef.get_partitions_def_for_dimension("pool").get_partition_keys() == ["US"]
    assert graph.get(dg.AssetKey("prices")).partitions_def.get_partitions_def_for_dimension(
        "pool").get_partition_keys() == ["EQUITY"]
    summary = graph.get(dg.AssetKey("pool_metrics_summary"))
    assert {dg.AssetKey("backtest"), dg.AssetKey(["xnys", "target_portfolio"])} <= set(summary.parent_keys)
    assert summary.partitions_def.timezone == "Asia/Shanghai"


def test_a_single_calendar_config_keeps_todays_definitions() -> None:
    from definitions import build_defs

    defs = build_defs(CONFIG_DIR / "demo.yaml")
    assert sorted(j.name for j in defs.jobs) == ["daily", "ingest_market_data", "session_summary"]
    assert [s.name for s in defs.schedules] == ["daily_after_close"]
    assert not [k for k in defs.resolve_asset_graph().get_all_asset_keys() if len(k.path) > 1]


# ------------------------------------------------------------------------------------- schedules
def _at(day: str, hh: int, mm: int, tz=NY) -> pd.Timestamp:
    return pd.Timestamp(dt.datetime.fromisoformat(day).replace(hour=hh, minute=mm, tzinfo=tz))


def test_the_xnys_run_request_waits_for_16_00_new_york_plus_the_delay(mixed) -> None:
    from jobs.schedules import session_run_requests

    config = mixed["config"]
    before = session_run_requests(_at("2021-10-05", 16, 29), config, "XNYS")
    assert isinstance(before, dg.SkipReason) and "2021-10-05 16:30" in before.skip_message
    requests = session_run_requests(_at("2021-10-05", 16, 30), config, "XNYS")
    assert [(str(r.partition_key), r.job_name) for r in requests] == [("US|2021-10-05", "daily_xnys")]
    assert requests[0].tags["rotation/writes"] == "pool:US"
    # 18:00 Shanghai of the same date is 06:00 New York: nothing for the US pool, from either schedule
    six_pm = _at("2021-10-05", 18, 0, SH)
    assert isinstance(session_run_requests(six_pm, config, "XNYS"), dg.SkipReason)
    assert isinstance(session_run_requests(six_pm, config), dg.SkipReason)  # not an XSHG session (Golden Week)
    on_xshg = session_run_requests(_at("2021-10-08", 18, 0, SH), config)
    assert [str(r.partition_key) for r in on_xshg] == ["EQUITY|2021-10-08"]  # the main schedule: its pools only


def test_an_early_close_and_holidays_on_the_pool_calendar(mixed) -> None:
    from jobs.schedules import session_run_requests

    config = mixed["config"]
    # the day after Thanksgiving closes at 13:00: complete at 13:30, the 16:30 tick requests it
    assert isinstance(session_run_requests(_at("2021-11-26", 13, 29), config, "XNYS"), dg.SkipReason)
    early = session_run_requests(_at("2021-11-26", 13, 30), config, "XNYS")
    assert [str(r.partition_key) for r in early] == ["US|2021-11-26"]
    assert [str(r.partition_key) for r in session_run_requests(_at("2021-11-26", 16, 30), config, "XNYS")] == \
        ["US|2021-11-26"]
    holiday = session_run_requests(_at("2021-07-05", 16, 30), config, "XNYS")
    assert isinstance(holiday, dg.SkipReason) and "2021-07-05 is not an XNYS trading session" in holiday.skip_message
    # an XSHG session that is a US holiday: the main schedule runs its pool, not the US one
    assert [str(r.partition_key) for r in session_run_requests(_at("2021-07-05", 18, 0, SH), config)] == \
        ["EQUITY|2021-07-05"]


def test_the_schedule_tick_of_the_built_definitions(mixed) -> None:
    from definitions import build_defs

    defs = build_defs(mixed["path"])
    schedule = next(s for s in defs.schedules if s.name == "daily_after_close_xnys")
    when = dt.datetime(2021, 10, 5, 16, 30, tzinfo=NY)
    with dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def()) as ctx:
        result = schedule.evaluate_tick(ctx)
    assert [str(r.partition_key) for r in result.run_requests] == ["US|2021-10-05"]


def test_a_delay_past_midnight_moves_the_cron_and_the_session(tmp_path, prices_dir) -> None:
    from jobs.schedules import fire_time, schedule_cron, session_run_requests

    assert schedule_cron("XNYS", 30) == "30 16 * * 1-5"
    assert schedule_cron("XSHG", 30) == "0 18 * * 1-5"      # XSHG: not before 18:00, as always
    assert schedule_cron("XSHG", 240) == "0 19 * * 1-5"
    assert fire_time("XNYS", 600) == (dt.time(2, 0), 1)
    assert schedule_cron("XNYS", 600) == "0 2 * * 2,3,4,5,6"
    doc = yaml.safe_load(_write_config(tmp_path, prices_dir, tmp_path / "data").read_text())
    doc["markets"] = {"XNYS": {"data_delay_minutes": 600}}
    path = tmp_path / "late.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    config = load_config(path)
    assert config.market("XNYS").data_delay_minutes == 600 and config.market("XSHG").data_delay_minutes == 30
    requests = session_run_requests(_at("2021-10-06", 2, 0), config, "XNYS")  # Wednesday 02:00: Tuesday's
    assert [str(r.partition_key) for r in requests] == ["US|2021-10-05"]


def test_the_summary_sensor_waits_for_the_us_pool_latest_session(mixed) -> None:
    from jobs.schedules import ready_sessions, summary_keys

    config = mixed["config"]
    keys = {s: {p: k for p, (_, k) in summary_keys(config, s).items()} for s in ("2021-07-05", "2021-10-08")}
    assert keys["2021-07-05"] == {"EQUITY": "EQUITY|2021-07-05", "US": "US|2021-07-02"}
    assert keys["2021-10-08"] == {"EQUITY": "EQUITY|2021-10-08", "US": "US|2021-10-08"}
    assert summary_keys(config, "2021-10-08")["US"][0] == dg.AssetKey(["xnys", "target_portfolio"])
    done_xshg = {"EQUITY|2021-07-05", "EQUITY|2021-10-08", "US|2021-07-02"}
    # the US session of 2021-10-08 closes at 04:00 Shanghai on 10-09: the summary of 10-08 waits for it
    assert ready_sessions(done_xshg, set(), set(), ["2021-07-05", "2021-10-08"], config, keys) == ["2021-07-05"]
    assert ready_sessions(done_xshg | {"US|2021-10-08"}, {"2021-07-05"}, set(), ["2021-07-05", "2021-10-08"],
                          config, keys) == ["2021-10-08"]


# ------------------------------------------------------------------------------- command line
def test_cli_refuses_a_us_holiday_for_the_us_pool(mixed) -> None:
    proc = _cli(["--pools", "US", "--session", "2021-07-05"], mixed["env"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "--session 2021-07-05" in lines[0] and "XNYS" in lines[0] and "July 4th" in lines[0]
    assert "2021-07-02" in lines[0] and "Traceback" not in proc.stderr


def test_cli_runs_the_us_pool_on_a_golden_week_session(mixed) -> None:
    proc = _cli(["--pools", "US", "--session", "2021-10-05"], mixed["env"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "XNYS pools 2021-10-05" in proc.stdout.splitlines()[0]
    assert "2021-10-05" in _stored_sessions(mixed["data"], "target_portfolio", "US")


def test_cli_mixed_run_over_a_us_holiday_and_the_summary_as_of(mixed) -> None:
    """2021-07-05: the XSHG pool runs it, the US pool (no session) its latest before it, 2021-07-02, and
    the summary of 2021-07-05 reads the US pool as of 2021-07-02."""
    proc = _cli(["--session", "2021-07-05"], mixed["env"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "no prices" not in proc.stdout + proc.stderr
    assert "US: 2021-07-05 is not an XNYS session; runs its latest session on or before it, 2021-07-02" \
        in proc.stdout
    assert "2021-07-05" in _stored_sessions(mixed["data"], "target_portfolio", "EQUITY")
    assert "2021-07-02" in _stored_sessions(mixed["data"], "target_portfolio", "US")
    summary = _summary(mixed["data"], "2021-07-05")
    assert summary.loc["EQUITY", "status"] == "ok" and summary.loc["US", "status"] == "ok"
    assert summary.loc["US", "as_of"] == "2021-07-02" and summary.loc["EQUITY", "as_of"] == "2021-07-05"


def test_cli_backfill_computes_each_pool_sessions_on_its_calendar(mixed) -> None:
    proc = _cli(["--session", "2021-10-08", "--sessions", "3"], mixed["env"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "session 2021-09-29..2021-10-08 · XNYS pools 2021-10-06..2021-10-08" in proc.stdout.splitlines()[0]
    assert {"2021-09-29", "2021-09-30", "2021-10-08"} <= _stored_sessions(mixed["data"], "backtest", "EQUITY")
    assert _stored_sessions(mixed["data"], "backtest", "US") >= {"2021-10-06", "2021-10-07", "2021-10-08"}
    assert not _stored_sessions(mixed["data"], "backtest", "US") & {"2021-10-01", "2021-10-04", "2021-10-05"}
    assert not (mixed["data"] / "xnys").exists()  # the prefix is a Dagster name, not a stored one
    summary = _summary(mixed["data"], "2021-10-08")
    assert summary.loc["US", "as_of"] == "2021-10-08" and summary.loc["US", "status"] == "ok"
    # the summary of 2021-09-30 reads the US pool's 09-30, which this run did not compute: said, not hidden
    earlier = _summary(mixed["data"], "2021-09-30")
    assert earlier.loc["US", "status"] == "missing" and earlier.loc["EQUITY", "status"] == "ok"
    with dg.DagsterInstance.from_config(str(mixed["home"])) as instance:
        us = {str(k) for k in instance.get_materialized_partitions(dg.AssetKey(["xnys", "target_portfolio"]))}
        assert us == {"US|2021-10-06", "US|2021-10-07", "US|2021-10-08"}
        assert not {str(k) for k in instance.get_materialized_partitions(dg.AssetKey("target_portfolio"))
                    if str(k).startswith("US|")}
    # the store and Dagster agree on the US pool's values too (recorded under xnys/..., stored as plain names)
    verify = subprocess.run([sys.executable, "-m", "jobs.verify"], cwd=ROOT, env=mixed["env"], capture_output=True,
                            text=True, timeout=600)
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr
    assert "0 disagreements" in verify.stdout and "unrecorded" not in verify.stdout.split("disagreements")[0]


# --------------------------------------------------------------------- a range through Dagster
def mixed_xnys_job():
    """The daily job of the XNYS group, for ``dg.reconstructable`` (the config: ``ROTATION_CONFIG``)."""
    from definitions import build_defs

    return build_defs(os.environ["ROTATION_CONFIG"]).resolve_job_def("daily_xnys")


def test_dagster_range_runs_of_the_prefixed_group_and_the_summary(mixed) -> None:
    """A job-page backfill run of the XNYS group (range tags plus the first key's per-dimension tags) is
    executed over its whole range by the project's executor; the summary range then reads each pool's
    latest session on or before each XSHG session."""
    from definitions import build_defs

    tags = {"dagster/asset_partition_range_start": "US|2021-09-30",
            "dagster/asset_partition_range_end": "US|2021-10-05",
            "dagster/partition/pool": "US", "dagster/partition/session": "2021-09-30"}
    defs = build_defs(mixed["path"])
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(dg.reconstructable(mixed_xnys_job), instance, tags=tags, run_config=QUIET)
        assert result.success
        us = {str(k) for k in instance.get_materialized_partitions(dg.AssetKey(["xnys", "backtest"]))}
        assert us == {"US|2021-09-30", "US|2021-10-01", "US|2021-10-04", "US|2021-10-05"}
        checks = [c for c in result.get_asset_check_evaluations()
                  if c.asset_key == dg.AssetKey(["xnys", "prices"]) and c.check_name == "quality_gate"]
        assert {str(c.partition) for c in checks} >= {"US|2021-10-05"}
        equity = defs.resolve_job_def("daily").execute_in_process(instance=instance, run_config=QUIET, tags={
            "dagster/asset_partition_range_start": "EQUITY|2021-09-29",
            "dagster/asset_partition_range_end": "EQUITY|2021-09-30"})
        assert equity.success
        summary = defs.resolve_job_def("session_summary").execute_in_process(instance=instance, run_config=QUIET, tags={
            "dagster/asset_partition_range_start": "2021-09-29", "dagster/asset_partition_range_end": "2021-09-30"})
        assert summary.success
        table = summary.output_for_node("pool_metrics_summary")
    assert {f"US|{s}" for s in _stored_sessions(mixed["data"], "backtest", "US")} == us
    assert not (mixed["data"] / "xnys").exists()
    as_of = table["as_of"].unstack("pool")
    assert as_of.loc[pd.Timestamp("2021-09-30"), "US"] == "2021-09-30"
    assert as_of.loc[pd.Timestamp("2021-09-29"), "US"] == "2021-09-29"
    status = table["status"].unstack("pool")
    assert status.loc[pd.Timestamp("2021-09-30"), "US"] == "ok"
    assert status.loc[pd.Timestamp("2021-09-29"), "US"] == "missing"  # not in the US range that was run


# ------------------------------------------------------------------------ one line, no traceback
def test_a_config_error_through_the_dagster_command_line_is_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {CONFIG_DIR / 'demo.yaml'}\nname: bad\norchestration:\n  first_sesion: 2020-01-01\n",
                   encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_")}
    env.update({"ROTATION_CONFIG": str(bad), "DAGSTER_HOME": str(tmp_path)})
    shutil.copy(ROOT / "configs" / "dagster.yaml", tmp_path / "dagster.yaml")
    proc = subprocess.run([sys.executable, "-m", "dagster", "asset", "materialize", "-f", "definitions.py",
                           "--select", "prices", "--partition", "A_SHARE|2024-12-31"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    ours = [line for line in proc.stderr.splitlines() if line.startswith(("error:", "internal error:"))]
    assert len(ours) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "orchestration.first_sesion" in ours[0] and "did you mean 'first_session'" in ours[0]
    assert str(bad) in ours[0]
