"""The baselines and the value-added verdict in a pool run: the backtest frame, the WARN check, the
summary, the console, the result file (validated against its schema) and the tear sheet."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest

from rotation_platform.calendars import get_calendar
from rotation_platform.config import load_config
from rotation_platform.production import PoolRun, fuses
from rotation_platform.production.summary import pool_metrics_summary
from rotation_platform.reports.console import render_run_report
from rotation_platform.reports.orders import failed_pool_result, pool_result, run_result
from rotation_platform.reports.plots import pool_tear_sheet, tear_sheet_png
from rotation_platform.research.baselines import BASELINES, PREFIX
from rotation_platform.research.value_added import sharpe_difference

ROOT = Path(__file__).resolve().parents[2]
SESSIONS = (pd.Timestamp("2024-12-27"), pd.Timestamp("2024-12-31"))


@pytest.fixture(scope="module")
def config():
    return load_config(ROOT / "configs" / "demo.yaml", env={"ROTATION_DATA__SYNTHETIC__END": "2024-12-31"})


@pytest.fixture(scope="module")
def run(config):
    return PoolRun(config, "QDII", get_calendar("XSHG").sessions(*SESSIONS))


@pytest.fixture(scope="module")
def frame(run):
    return run.backtest_frame()


def test_the_frame_carries_each_baseline_and_the_test_point_in_time(config, run, frame) -> None:
    bt = run.backtest
    first = bt.plan.first_trade_row
    for t, row in zip(run.sessions, run.rows):
        for name in BASELINES:
            px = PREFIX[name]
            assert frame.loc[t, f"{px}_equity"] == run.baselines[name].equity.iloc[row]
            assert np.isfinite(frame.loc[t, f"{px}_sharpe"]) and frame.loc[t, f"{px}_max_drawdown"] <= 0
        va = sharpe_difference(bt.returns.iloc[first: row + 1], run.baselines["equal_weight"].returns.iloc[first: row + 1])
        assert frame.loc[t, "sharpe_diff_z"] == pytest.approx(va.z, rel=1e-12)
        assert frame.loc[t, "sharpe_diff_p"] == pytest.approx(va.p_value, rel=1e-12)
    # the baselines start with the strategy's capital at its first trade and trade monthly
    ew = run.baselines["equal_weight"]
    assert ew.equity.iloc[first - 1] == bt.plan.init_cash and ew.rebalance[first]
    months = run.panel.sessions[ew.rebalance][1:]
    assert (pd.Series(months.month).diff().fillna(1) != 0).all()
    # a run of the first session alone (data as of then) gives the same values for it
    alone = PoolRun(config, "QDII", [SESSIONS[0]]).backtest_frame()
    cols = [c for c in frame.columns if c.startswith(("ew_", "bench_", "mom_", "sharpe_diff"))]
    pd.testing.assert_series_equal(alone.loc[SESSIONS[0], cols], frame.loc[SESSIONS[0], cols])


def test_the_value_added_check_warns_unless_significant(run, frame) -> None:
    res = fuses.beats_equal_weight(run, frame)
    assert res.severity == "WARN" and res.name == "beats_equal_weight"
    for t in run.sessions:
        v = res.verdict(t)
        p = float(frame.loc[t, "sharpe_diff_p"])
        assert v.passed == (p < 0.05)
        assert f"p {p:.3f}" in v.summary and f"z {float(frame.loc[t, 'sharpe_diff_z']):.2f}" in v.summary
        assert v.summary.startswith("BEATS_EQUAL_WEIGHT FAILED") != v.passed
    # a strategy made to beat it clearly passes; one without a testable difference fails
    better = frame.copy()
    better["sharpe_diff_p"] = 0.001
    assert fuses.beats_equal_weight(run, better).passed
    untested = frame.copy()
    untested["sharpe_diff_p"] = np.nan
    out = fuses.beats_equal_weight(run, untested)
    assert not out.passed and "no Sharpe difference" in out.summary


def test_summary_console_and_result_file_show_the_baselines(config, run, frame) -> None:
    t = SESSIONS[1]
    summary = pool_metrics_summary(config, t, {"QDII": frame})
    row = summary.loc[(t, "QDII")]
    for k in ("ew_annual_return", "ew_sharpe", "bench_sharpe", "mom_annual_return", "sharpe_diff_p"):
        assert row[k] == frame.loc[t, k]
    p = frame.loc[t, "sharpe_diff_p"]
    expected = "significant" if p < 0.05 else "worse" if p > 0.95 else "not significant"
    assert row["value_added"] == expected
    assert np.isnan(summary.loc[(t, "COMBINED"), "sharpe_diff_p"])
    # an old stored frame without the baselines: NaN and untested, not an error
    old = pool_metrics_summary(config, t, {"QDII": frame.drop(columns=[c for c in frame.columns
                                                                      if c.startswith(("ew_", "sharpe_diff"))])})
    assert old.loc[(t, "QDII"), "value_added"] == "untested"

    target = run.target_frame()
    text = render_run_report(config, t, summary, {}, {"QDII": target}, {})
    line = next(x for x in text.splitlines() if x.startswith("QDII") and "/" in x)
    assert f"{frame.loc[t, 'ew_annual_return']:.1%}" in line and f"{frame.loc[t, 'sharpe_diff_p']:.3f}" in line
    assert {"not significant": "NO", "worse": "(worse)", "significant": "yes"}[expected] in line.split()[-1]

    rec = frame.loc[t].to_dict()
    pool = pool_result("QDII", t, target, rec, [("backtest", "beats_equal_weight", False, "WARN", "x")])
    assert pool["baselines"]["equal_weight"]["sharpe"] == pytest.approx(rec["ew_sharpe"])
    assert pool["baselines"]["momentum"]["equity"] == pytest.approx(rec["mom_equity"])
    assert pool["value_added"]["beats"] == (rec["sharpe_diff_p"] < 0.05)
    assert pool["value_added"]["verdict"] == expected
    doc = run_result("demo", "h", [t], [pool, failed_pool_result("A_SHARE", t, "stopped")],
                     summary.loc[(t, "COMBINED")].to_dict())
    doc = json.loads(json.dumps(doc, allow_nan=False))
    jsonschema.validate(doc, json.loads((ROOT / "docs" / "run-result.schema.json").read_text(encoding="utf-8")))


def test_the_tear_sheet_is_one_picture_and_its_figures(run, frame) -> None:
    md = pool_tear_sheet("QDII", run, frame, "VALUE LINE")
    png = base64.b64decode(re.search(r"base64,([^)]+)\)", md).group(1))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width >= 1000 and height > width  # five stacked panels
    assert "value added: VALUE LINE" in md and "PBO" in md and "deflated Sharpe" in md
    assert "| equal weight (monthly) |" in md and "| momentum 20d top-N (monthly) |" in md
    # without an invested fraction the panel is left out, the picture still renders
    eq = run.backtest.equity.iloc[-300:]
    other = tear_sheet_png(eq, {"equal_weight": ("ew", eq * 1.01)}, "x", invested=None)
    assert other[:4] == b"\x89PNG" and int.from_bytes(other[20:24], "big") < height
