"""Sessions that have not closed: refused unless forced; the synthetic source serves no bar for them.

A session's data counts as complete at its close (the pool calendar's, from exchange_calendars) plus
``orchestration.data_delay_minutes``. To have a session whose bars exist but that is not "closed" yet at
any time of day, these tests set the delay to 30 days: the last closed sessions then count as not closed,
while the synthetic source (which only looks at the exchange close) has their bars.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import dagster as dg
import pandas as pd
import pytest

from rotation_platform.calendars import SessionNotClosedError, get_calendar
from rotation_platform.config import load_config
from rotation_platform.data.sources import make_source
from rotation_platform.data.sources.synthetic import SyntheticSource
from tests.orchestration.conftest import (
    QUIET,
    ROOT,
    fresh_defs,
    materialised_assets,
    run_summary,
    small_env,
    write_small_config,
)

XSHG = get_calendar("XSHG")
SH = "Asia/Shanghai"
MONTH = 43_200  # minutes: a data delay that keeps the last weeks' sessions "not closed"


def _recent_session() -> pd.Timestamp:
    """A session whose bars exist now (closed an hour or more ago) and that closed within the last weeks."""
    return XSHG.previous_session(XSHG.last_completed_session(close_buffer_minutes=60))


def _future_session() -> pd.Timestamp:
    today = pd.Timestamp.now(tz=SH).tz_localize(None).normalize()
    return XSHG.next_session(today)


# ------------------------------------------------------------------------------------- the calendar
def test_close_and_readiness_from_the_exchange_calendar() -> None:
    assert XSHG.session_close("2024-12-31") == pd.Timestamp("2024-12-31 15:00", tz=SH)
    assert XSHG.ready_at("2024-12-31", 30) == pd.Timestamp("2024-12-31 15:30", tz=SH)
    assert not XSHG.is_closed("2024-12-31", pd.Timestamp("2024-12-31 15:29", tz=SH), 30)
    assert XSHG.is_closed("2024-12-31", pd.Timestamp("2024-12-31 15:30", tz=SH), 30)
    assert XSHG.is_closed("2024-12-31", pd.Timestamp("2024-12-31 07:00", tz="UTC"), 0)  # 15:00 in Shanghai
    with pytest.raises(SessionNotClosedError) as err:
        XSHG.require_closed("2024-12-31", pd.Timestamp("2024-12-31 10:00", tz=SH), 30, what="QDII")
    assert str(err.value) == ("session 2024-12-31 of QDII has not closed yet: XSHG closes at 2024-12-31 15:00 "
                              "Asia/Shanghai and its data counts as complete from 2024-12-31 15:30 (close + 30 min)")


def test_refusal_names_the_session_its_close_and_how_to_force(tmp_path) -> None:
    from assets.partitions import refuse_unclosed

    config = load_config(write_small_config(tmp_path, data_dir=tmp_path / "data"), env={})
    day = [pd.Timestamp("2025-09-26")]
    with pytest.raises(SessionNotClosedError) as err:
        refuse_unclosed(config, "EQUITY", day, now=pd.Timestamp("2025-09-26 15:29", tz=SH))
    assert str(err.value) == ("session 2025-09-26 of EQUITY has not closed yet: XSHG closes at 2025-09-26 15:00 "
                              "Asia/Shanghai and its data counts as complete from 2025-09-26 15:30 (close + 30 min); "
                              "to run it anyway add the run tag rotation/force=true (python -m jobs.main --force)")
    refuse_unclosed(config, "EQUITY", day, forced=True, now=pd.Timestamp("2025-09-26 09:00", tz=SH))
    refuse_unclosed(config, "EQUITY", day, now=pd.Timestamp("2025-09-26 15:30", tz=SH))
    # a range is judged by its latest session; the summary (no pool) by XSHG
    with pytest.raises(SessionNotClosedError):
        refuse_unclosed(config, None, [pd.Timestamp("2025-09-25"), *day], now=pd.Timestamp("2025-09-26 12:00", tz=SH))


def test_config_default_data_delay() -> None:
    assert load_config(env={}).orchestration.data_delay_minutes == 30


# ------------------------------------------------------------------------------- the synthetic source
def test_synthetic_source_serves_no_bar_for_a_session_that_has_not_closed() -> None:
    config = load_config(env={})
    day = pd.Timestamp("2024-12-31")
    before = pd.Timestamp("2024-12-31 14:59", tz=SH)
    after = pd.Timestamp("2024-12-31 15:00", tz=SH)
    for end in ("2024-12-31", "2025-06-30"):  # asked for the session, or for months after it
        early = SyntheticSource(config.pools, config.data.synthetic, end=end, now=before)
        assert early.sessions[-1] == pd.Timestamp("2024-12-30")
        bars = early.read(["DA01"])["DA01"].frame
        assert pd.Timestamp(bars["date"].max()) == pd.Timestamp("2024-12-30")
        late = SyntheticSource(config.pools, config.data.synthetic, end=end, now=after)
        assert late.sessions[-1] == day
    # the history up to a session does not depend on when it is generated
    a = SyntheticSource(config.pools, config.data.synthetic, end="2025-06-30", now=before).read(["DQ01"])["DQ01"]
    b = SyntheticSource(config.pools, config.data.synthetic, end="2024-12-30").read(["DQ01"])["DQ01"]
    pd.testing.assert_frame_equal(a.frame, b.frame)
    # now: the source the runs use, asked for a session that has not closed
    source = make_source(config, end=_future_session().date())
    assert source.sessions[-1] == XSHG.last_completed_session(close_buffer_minutes=0)
    frame = source.read(["DO01"])["DO01"].frame
    assert pd.Timestamp(frame["date"].max()) <= XSHG.last_completed_session(close_buffer_minutes=0)


# --------------------------------------------------------------------------------- runs in process
@pytest.fixture()
def recent_env(tmp_path, monkeypatch):
    """The small config with data through now and a 30-day data delay."""
    path = write_small_config(tmp_path / "config", data_dir=tmp_path / "data", synthetic_end=None,
                              orchestration={"data_delay_minutes": MONTH})
    monkeypatch.setenv("ROTATION_CONFIG", str(path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return tmp_path


def _root_message(result) -> tuple[str, str]:
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.event_specific_data.error
    while error.cause is not None:
        error = error.cause
    return failure.step_key, error.message.strip()


def test_a_run_for_a_session_not_closed_is_refused_and_a_forced_one_runs(recent_env) -> None:
    from assets.partitions import FORCE_TAG, pool_session_key

    defs = fresh_defs()
    session = _recent_session()
    job = defs.resolve_job_def("daily")
    key = pool_session_key("OVERSEAS", session)
    with dg.DagsterInstance.get() as instance:
        refused = job.execute_in_process(partition_key=key, instance=instance, run_config=QUIET, raise_on_error=False)
        assert not refused.success
        step, message = _root_message(refused)
        assert step == "pool_chain" and "\n" not in message
        assert f"session {session.date()} of OVERSEAS has not closed yet: XSHG closes at {session.date()} 15:00 " \
               f"Asia/Shanghai" in message
        assert f"(close + {MONTH} min)" in message and f"add the run tag {FORCE_TAG}=true" in message
        assert materialised_assets(refused) == set()
        assert not list((recent_env / "data").rglob("*.parquet"))

        forced = job.execute_in_process(partition_key=key, instance=instance, run_config=QUIET,
                                        tags={FORCE_TAG: "true"})
        assert forced.success and "target_portfolio" in materialised_assets(forced)
        assert list((recent_env / "data" / "target_portfolio" / "OVERSEAS").glob(f"{session.date()}.*"))

        # the summary of the session: refused, then forced
        refused = run_summary(defs, instance, [str(session.date())], raise_on_error=False)
        assert not refused.success and "has not closed yet" in _root_message(refused)[1]
        assert run_summary(defs, instance, [str(session.date())], tags={FORCE_TAG: "true"}).success


# --------------------------------------------------------------------------------- the command line
def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_refuses_sessions_not_closed_and_runs_them_with_force(tmp_path) -> None:
    env = small_env(tmp_path, synthetic_end=None, orchestration={"data_delay_minutes": MONTH})
    future = _future_session()
    proc = _cli(["--session", str(future.date())], env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: session {future.date()} of EQUITY has not closed yet: XSHG closes at "
                           f"{future.date()} 15:00 Asia/Shanghai")
    assert line.endswith("add --force to run it anyway")

    session = _recent_session()
    proc = _cli(["--session", str(session.date()), "--pools", "OVERSEAS"], env)
    assert proc.returncode == 2 and f"session {session.date()} of OVERSEAS has not closed yet" in proc.stderr
    assert not (tmp_path / "data").exists()

    proc = _cli(["--session", str(session.date()), "--pools", "OVERSEAS", "--force"], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OVERSEAS target for" in proc.stdout
    assert list((tmp_path / "data" / "target_portfolio" / "OVERSEAS").glob(f"{session.date()}.*"))

    # without --session: the latest session whose data is complete (close + 30 days before now); whether
    # the pool's fuses pass on that day's synthetic data is not the point here
    proc = _cli(["--pools", "OVERSEAS", "--sessions", "1"], env)
    assert proc.returncode in (0, 1) and "has not closed" not in proc.stderr, proc.stdout[-3000:] + proc.stderr
    expected = XSHG.last_completed_session(close_buffer_minutes=MONTH)
    assert f"session {expected.date()}" in proc.stdout.splitlines()[0]


# -------------------------------------------------------------------------------------- automation
def test_schedule_requests_the_session_at_18_00_once_its_data_is_complete(recent_env, monkeypatch) -> None:
    from jobs.schedules import session_run_requests

    config = load_config()
    at_six = pd.Timestamp("2025-09-26 18:00", tz=SH)
    late = config.model_copy(update={"orchestration": config.orchestration.model_copy(
        update={"data_delay_minutes": 30})})
    requests = session_run_requests(at_six, late)
    assert sorted(str(r.partition_key) for r in requests) == ["EQUITY|2025-09-26", "OTHERS|2025-09-26",
                                                               "OVERSEAS|2025-09-26"]
    slow = config.model_copy(update={"orchestration": config.orchestration.model_copy(
        update={"data_delay_minutes": 240})})
    skip = session_run_requests(at_six, slow)
    assert isinstance(skip, dg.SkipReason) and "2025-09-26 19:00" in skip.skip_message
    assert isinstance(session_run_requests(pd.Timestamp("2025-10-01 18:00", tz=SH), late), dg.SkipReason)


def test_today_is_a_partition_and_tomorrow_is_not(recent_env) -> None:
    """end_offset=1: the session of today's date (Shanghai) is a partition from midnight; no later one."""
    from assets.partitions import partitions_for

    keys = partitions_for(load_config()).session.get_partition_keys()
    today = pd.Timestamp.now(tz=SH).tz_localize(None).normalize()
    assert pd.Timestamp(keys[-1]) == XSHG.session_on_or_before(today)
    assert pd.Timestamp(keys[-1]) < _future_session()
    assert dt.date.fromisoformat(keys[0]) == dt.date(2025, 6, 3)
