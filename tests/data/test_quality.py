"""The data-quality gate on in-memory records: declared checks, quarantine, report and policy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rotation_platform.calendars import get_calendar
from rotation_platform.config.models import QualityConfig
from rotation_platform.data import quality as q
from rotation_platform.data.sources.base import RawPrices
from rotation_platform.errors import DataQualityError

XSHG = get_calendar("XSHG")
TODAY = "2026-11-20"
SYM = "510300"


def _raw(frame: pd.DataFrame, symbol: str = SYM) -> RawPrices:
    frame = frame.reset_index(drop=True)
    if "line" not in frame:
        frame = frame.assign(line=np.arange(1, len(frame) + 1, dtype=np.int64))
    return RawPrices(symbol=symbol, frame=frame, file=f"/data/{symbol}.csv", layout="plain")


def _check(frame: pd.DataFrame, quality: QualityConfig | None = None, **kw) -> q.FundQuality:
    return q.check_fund(_raw(frame), XSHG, quality or QualityConfig(), today=TODAY, **kw)


def _broken(kit) -> pd.DataFrame:
    """70 rows with one problem of each quarantining kind."""
    f = kit.prices(n=70, seed=7)
    f.loc[3, "date"] = pd.NaT                              # missing_date
    f.loc[5, "close"] = np.nan                             # missing_price
    f.loc[7, ["close", "low"]] = [-1.0, 2.0]               # non-positive AND inconsistent: the first check wins
    f.loc[9, "volume"] = -100.0                            # negative_volume
    f.loc[11, "high"] = f.loc[11, "low"] - 0.01            # ohlc_inconsistent
    f.loc[13, "date"] = pd.Timestamp("2024-01-06")         # a Saturday: non_session_date
    f = pd.concat([f, f.iloc[[20]], f.iloc[[30]].assign(close=f.loc[30, "close"] + 0.001)], ignore_index=True)
    return f


def test_clean_records_pass_untouched(kit) -> None:
    frame = kit.prices(n=70, seed=1)
    fund = _check(frame)
    assert fund.findings == () and fund.quarantine.empty
    pd.testing.assert_frame_equal(fund.clean.drop(columns="line"), frame)
    assert fund.stats == {"rows": 70, "quarantined": 0, "valid": 70, "first": "2024-01-02",
                          "last": str(frame["date"].iloc[-1].date())}


def test_every_bad_row_is_quarantined_once_by_the_first_check_it_fails(kit) -> None:
    frame = _broken(kit)
    before = frame.copy()
    raw = _raw(frame)
    fund = q.check_fund(raw, XSHG, QualityConfig(), today=TODAY)
    pd.testing.assert_frame_equal(raw.frame.drop(columns="line"), before)   # the input is untouched
    reasons = dict(zip(fund.quarantine["line"], fund.quarantine["reason"]))
    assert reasons == {4: q.MISSING_DATE, 6: q.MISSING_PRICE, 8: q.NON_POSITIVE_PRICE, 10: q.NEGATIVE_VOLUME,
                       12: q.OHLC_INCONSISTENT, 14: q.NON_SESSION_DATE, 71: q.DUPLICATE_DATE,
                       31: q.CONFLICTING_DUPLICATE, 72: q.CONFLICTING_DUPLICATE}
    # quarantine and report agree, check by check
    counts = fund.quarantine["reason"].value_counts().to_dict()
    assert counts == {f.check: f.count for f in fund.findings if q.CHECKS_BY_NAME[f.check].quarantines}
    # original values travel with the rows, severity follows the declaration
    row = fund.quarantine.set_index("line").loc[8]
    assert row["close"] == -1.0 and row["low"] == 2.0 and row["severity"] == "ERROR"
    assert row["detail"] == "close -1"
    assert list(fund.quarantine.columns) == list(q.QUARANTINE_COLUMNS)
    # clean rows: sorted, unique, nothing of the quarantined left
    assert fund.clean["date"].is_monotonic_increasing and fund.clean["date"].is_unique
    assert len(fund.clean) + len(fund.quarantine) == len(frame)
    assert not set(fund.clean["line"]) & set(fund.quarantine["line"])


def test_schema_problems_are_fatal(kit) -> None:
    frame = kit.prices(n=70)
    for bad, text in [(frame.drop(columns="amount"), "missing columns ['amount']"),
                      (frame.assign(close=frame["close"].astype(str)), "column 'close' is"),
                      (frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d")), "column 'date' is")]:
        fund = q.check_fund(_raw(bad), XSHG, QualityConfig(), today=TODAY)
        (finding,) = fund.findings
        assert finding.check == q.SCHEMA and finding.severity is q.Severity.FATAL and text in finding.message
        assert fund.clean is None
    fund = q.check_fund(_raw(frame, symbol="OTHER"), XSHG, QualityConfig(), today=TODAY, symbol=SYM)
    assert "labelled 'OTHER'" in fund.findings[0].message


def test_after_asof_rows_are_kept_out_as_info(kit) -> None:
    frame = kit.prices(n=70)
    asof = frame["date"].iloc[59]
    fund = _check(frame, asof=asof)
    (finding,) = fund.findings
    assert finding.check == q.AFTER_ASOF and finding.severity is q.Severity.INFO and finding.count == 10
    assert fund.clean["date"].max() == asof and len(fund.quarantine) == 10


def test_thresholds_come_from_the_config(kit) -> None:
    frame = kit.prices(n=70)
    frame.loc[10:12, ["open", "high", "low", "close"]] = frame.loc[10, "close"]
    frame.loc[30:49, ["volume", "amount"]] = 0.0
    loose = _check(frame, QualityConfig(stale_run=5, max_zero_volume_fraction=0.5))
    strict = _check(frame, QualityConfig(stale_run=3, max_zero_volume_fraction=0.2, min_history_sessions=100))
    assert not [f for f in loose.findings if f.check == q.STALE_PRICE]
    (zero,) = [f for f in loose.findings if f.check == q.ZERO_VOLUME]
    assert zero.severity is q.Severity.WARN and zero.count == 20
    by = {f.check: f for f in strict.findings}
    assert by[q.STALE_PRICE].count == 3 and by[q.STALE_PRICE].lines == (11,)
    assert by[q.ZERO_VOLUME].severity is q.Severity.ERROR
    assert by[q.SHORT_HISTORY].severity is q.Severity.ERROR and by[q.SHORT_HISTORY].count == 70


def test_missing_volume_is_kept_with_a_warning(kit) -> None:
    frame = kit.prices(n=70)
    frame.loc[[4, 6], "volume"] = np.nan
    fund = _check(frame)
    (finding,) = fund.findings
    assert finding.check == q.MISSING_VOLUME and finding.lines == (5, 7) and len(fund.clean) == 70


def test_report_api(kit) -> None:
    result = q.check_prices({SYM: _raw(_broken(kit)), "510500": _raw(kit.prices(n=70, seed=2), "510500")},
                            XSHG, QualityConfig(), today=TODAY)
    report = result.report
    assert set(result.clean) == {SYM, "510500"} and len(result.quarantine) == 9
    assert report.worst_severity is q.Severity.ERROR and not report.passed
    assert report.counts[q.CONFLICTING_DUPLICATE] == 2 and report.severity_counts["ERROR"] >= 6
    frame = report.to_frame()
    assert list(frame.columns) == ["check", "severity", "symbol", "file", "count", "dates", "lines", "message"]
    assert frame["severity"].iloc[0] == "ERROR" and frame["severity"].iloc[-1] in ("WARN", "INFO")
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["passed"] is False and as_dict["stats"][SYM]["quarantined"] == 9
    text = report.summary()
    assert "NOT passed" in text and "ohlc_inconsistent" in text and "/data/510300.csv" in text
    assert json.loads(report.to_json())["worst_severity"] == "ERROR"
    assert report.select(symbol="510500") == ()
    assert q.QualityReport().passed and q.QualityReport().worst_severity is None


def test_enforce_follows_the_policy(kit) -> None:
    report = q.check_prices({SYM: _raw(_broken(kit))}, XSHG, QualityConfig(), today=TODAY).report
    q.enforce(report, "fatal")                                   # ERROR findings only: passes
    with pytest.raises(DataQualityError) as info:
        q.enforce(report, "error")
    err = info.value
    assert err.report is report and err.symbol == SYM and err.file == "/data/510300.csv"
    assert "8 blocking finding(s)" in str(err) and "missing_price" in str(err) and "data row(s) 6" in str(err)
    assert err.date is None               # the first blocking finding is the row without a date (data row 4)
    assert "missing_date" in str(err) and "data row(s) 4" in str(err)
    fatal = q.check_prices({SYM: _raw(kit.prices(n=5).assign(close=0.0))}, XSHG, QualityConfig(),
                           today=TODAY).report
    with pytest.raises(DataQualityError, match="every price is non-positive") as info:
        q.enforce(fatal, "fatal")
    assert info.value.date == "2024-01-02" and "date 2024-01-02" in str(info.value)
    with pytest.raises(ValueError, match="fail_on"):
        q.enforce(report, "warn")


def test_checks_are_declared_once_row_checks_first() -> None:
    names = [c.name for c in q.CHECKS]
    assert len(names) == len(set(names))
    flags = [c.quarantines for c in q.CHECKS[1:]]
    assert flags == sorted(flags, reverse=True)
    constants = {getattr(q, n) for n in q.__all__ if n.isupper() and isinstance(getattr(q, n), str)}
    assert constants == set(names)
