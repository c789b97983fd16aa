"""The production library: re-optimisation cadence, data hashes, the fuses' edge cases, the summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rotation_platform.calendars import get_calendar
from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.production import PoolRun, data_hash_chain, reoptimisation_flags, reoptimisation_rows
from rotation_platform.production import fuses
from rotation_platform.production.summary import pool_metrics_summary

SESSIONS = get_calendar("XSHG").sessions(pd.Timestamp("2024-09-20"), pd.Timestamp("2025-01-10"))


@pytest.mark.parametrize("cadence,first_days", [
    ("monthly", ["2024-09-20", "2024-10-08", "2024-11-01", "2024-12-02", "2025-01-02"]),
    ("quarterly", ["2024-09-20", "2024-10-08", "2025-01-02"]),
])
def test_reoptimisation_sessions(cadence, first_days) -> None:
    flags = reoptimisation_flags(SESSIONS, cadence)
    assert [str(d.date()) for d in SESSIONS[flags]] == first_days
    rows = reoptimisation_rows(SESSIONS, cadence)
    assert (rows <= np.arange(len(SESSIONS))).all() and flags[rows].all()
    # a panel cut after any row gives the same answer up to it
    for cut in (10, 30, len(SESSIONS) - 1):
        assert (reoptimisation_rows(SESSIONS[: cut + 1], cadence) == rows[: cut + 1]).all()


def test_weekly_and_daily_cadence() -> None:
    weekly = SESSIONS[reoptimisation_flags(SESSIONS, "weekly")]
    assert (weekly.to_series().diff().dropna() >= pd.Timedelta(days=3)).all()  # one per week
    assert reoptimisation_flags(SESSIONS, "daily").all()
    with pytest.raises(Exception, match="cadence"):
        reoptimisation_flags(SESSIONS, "hourly")


@pytest.fixture(scope="module")
def qdii_run():
    config = load_config(CONFIG_DIR / "demo.yaml", env={"ROTATION_DATA__SYNTHETIC__END": "2024-12-31"})
    return PoolRun(config, "QDII", get_calendar("XSHG").sessions(pd.Timestamp("2024-12-27"),
                                                                 pd.Timestamp("2024-12-31")))


def test_data_hash_chain_depends_on_the_past_only(qdii_run) -> None:
    panel = qdii_run.panel
    full = data_hash_chain(panel)
    cut = data_hash_chain(panel.select(end=panel.sessions[-5]))
    assert full[: len(cut)] == cut and len(set(full)) == len(full)
    moved = panel.with_meta()
    frames = {f: moved[f].copy() for f in ("open", "high", "low", "close", "volume", "amount")}
    frames["close"].iloc[-1, 0] *= 1.01
    from rotation_platform.data.panel import PricePanel

    changed = data_hash_chain(PricePanel(frames, panel.meta))
    assert changed[:-1] == full[:-1] and changed[-1] != full[-1]


def test_static_scan_finding_fails_t_plus_one(qdii_run, tmp_path) -> None:
    bad = tmp_path / "bad_factor.py"
    bad.write_text("def f(close):\n    return close.shift(-1) / close - 1\n")
    result = fuses.t_plus_one(qdii_run, scan_paths=[bad])
    assert not result.passed and result.details["static_scan_passed"] is False
    assert result.details["runtime_passed"] is True and result.summary.startswith("LOOKAHEAD")
    assert result.details["checked_sessions"] == ["2024-12-27", "2024-12-31"]
    assert fuses.t_plus_one(qdii_run).passed


def test_metadata_completeness_names_what_is_missing() -> None:
    full = {k: "x" for k in fuses.REQUIRED_METADATA}
    assert fuses.metadata_completeness({"2024-12-31": full}).passed
    res = fuses.metadata_completeness({"2024-12-30": full, "2024-12-31": {**full, "config_hash": ""}})
    assert not res.passed and res.details["missing"] == {"2024-12-31": ["config_hash"]}
    assert not fuses.metadata_completeness({}).passed


def test_fuse_results_over_a_range(qdii_run) -> None:
    cov = fuses.coverage(qdii_run)
    assert cov.passed and cov.details["failed_sessions"] == []
    bt = qdii_run.backtest_frame()
    assert list(bt.index) == list(qdii_run.sessions)
    warn = fuses.backtest_thresholds(qdii_run, bt)
    assert [w.severity for w in warn] == ["WARN"] * 5
    with pytest.raises(ValueError):
        fuses.FuseResult("x", True, "INFO", "")


def test_summary_weights_and_missing_pools() -> None:
    config = load_config(CONFIG_DIR / "demo.yaml")
    t = pd.Timestamp("2024-12-31")

    def row(annual, sharpe):
        return pd.DataFrame([{"equity": 1e6, "annual_return": annual, "max_drawdown": -0.1, "sharpe": sharpe,
                              "monthly_win_rate": 0.6, "annual_turnover": 2.0, "var_95": 0.01,
                              "benchmark_annual_return": 0.02, "params": "p"}], index=pd.DatetimeIndex([t]))

    table = pool_metrics_summary(config, t, {"A_SHARE": row(0.10, 1.0), "QDII": row(0.20, 0.4), "OTHER": None})
    rows = table.droplevel("session")
    assert rows.loc["COMBINED", "annual_return"] == pytest.approx(0.7 * 0.10 + 0.3 * 0.20)
    assert rows.loc["COMBINED", "sharpe"] == pytest.approx(0.7 * 1.0 + 0.3 * 0.4)
    assert rows.loc["OTHER", "status"] == "missing" and not rows.loc["OTHER", "all_thresholds_ok"]
    assert rows.loc["COMBINED", "status"] == "ok"  # OTHER has weight 0
    assert rows.loc["A_SHARE", "all_thresholds_ok"] and not rows.loc["QDII", "sharpe_ok"]
    gone = pool_metrics_summary(config, t, {"A_SHARE": row(0.1, 1.0), "QDII": None, "OTHER": None})
    assert gone.droplevel("session").loc["COMBINED", "status"] == "missing pools"
