"""The data-quality gate: declared checks over raw per-fund records, as pure functions.

Contract
--------
* Every check is declared once in :data:`CHECKS` (name, default severity, whether it quarantines rows,
  what it tests). Checks run *lazily*: all of them run on every fund and every failure is collected in
  a :class:`QualityReport` before any policy decision; :func:`enforce` then raises one
  :class:`~rotation_platform.errors.DataQualityError` naming every blocking finding.
* The raw input is never modified: checks work on copies. A bad row is never dropped silently: it is
  returned in the quarantine table (:data:`QUARANTINE_COLUMNS`: symbol, file, line, date, reason,
  severity, detail and the row's original values) and counted by a finding. Row checks run in the
  declared order, and a row is quarantined by the first one it fails, so per-check finding counts
  equal the quarantine's row counts per reason.
* The clean rows of a fund are its remaining rows sorted by date (unique dates, positive prices,
  consistent OHLC, dates that are sessions of the pool's calendar and not after the as-of date).

Severities
----------
* ``INFO``: worth knowing, nothing is wrong (a split the adjustment removed, no ``amount`` column, a
  few factor steps of a clean factor file that are noise).
* ``WARN``: suspicious but kept (zero-volume sessions, stale closes, a few missing sessions, a noisy
  factor file -- ``adjustment_noise`` --, a fund whose data ended before the panel's last session --
  ``data_ended``: the simulation liquidates it at its last price).
* ``ERROR``: rows were quarantined, or a fund breaks a configured limit (missing or zero-volume
  sessions above their fractions, fewer than ``min_history_sessions`` valid rows -- a recently listed
  fund is kept, its long-window factors are simply NaN), or a move no corporate action explains.
* ``FATAL``: the fund cannot be used at all: its frame breaks the raw schema, or no valid row remains
  (for example every price is non-positive). Fatal findings always raise; ``fail_on="error"`` makes
  ERROR findings raise too.

``data_starts_late`` (INFO) names a fund whose first bar is after the panel's first session (listed later).

Funds without amount and split proposals (decided by the pipeline, findings built here)
---------------------------------------------------------------------------------------
* A fund whose file has no amount on any row (:func:`no_amount_funds`) is ``missing_amount`` INFO, and then,
  by ``data.amount`` (:func:`check_amount`): ``amount_estimated`` WARN per fund (``estimate``),
  ``amount_factors_left_out`` WARN for the pool (``drop_factors``), or ``missing_amount`` FATAL with the one
  line of :func:`amount_required_message` (``require``).
* A unit split the prices show but nothing names
  (:func:`~rotation_platform.data.corporate_actions.propose_splits`) is ``split_proposed`` INFO -- its move
  stays the ``unexplained_jump`` ERROR, whose message points to it -- or, under ``data.splits: apply``,
  ``split_inferred`` WARN (:func:`check_split_proposals`).

Universe policy
---------------
An ERROR finding does not block a pool: it excludes its fund from the universe of the sessions whose
``data.quality.exclusion_window`` (252 sessions by default) holds it, point-in-time (:class:`Universe`,
:func:`universe_exclusions`). The pool's quality gate fails only on a FATAL finding or when fewer than
``pools[].min_funds`` funds remain tradeable at the session
(:func:`rotation_platform.production.fuses.quality_gate`).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import pandas as pd

from rotation_platform.calendars import TradingCalendar
from rotation_platform.config.models import QualityConfig
from rotation_platform.data.corporate_actions import FACTOR_STEP_TOLERANCE, Adjustment, detect_jumps
from rotation_platform.data.sources.base import RAW_COLUMNS, RawPrices
from rotation_platform.errors import DataQualityError

__all__ = [
    "Severity",
    "CheckSpec",
    "CHECKS",
    "CHECKS_BY_NAME",
    "QUARANTINE_COLUMNS",
    "SAMPLE_SIZE",
    "VWAP_TOLERANCE",
    "Finding",
    "QualityReport",
    "FundQuality",
    "QualityResult",
    "empty_quarantine",
    "check_fund",
    "check_prices",
    "check_jumps",
    "check_adjustment",
    "enforce",
    # check names
    "SCHEMA", "MISSING_DATE", "FUTURE_DATE", "AFTER_ASOF", "NON_SESSION_DATE", "MISSING_PRICE",
    "NON_POSITIVE_PRICE", "NEGATIVE_VOLUME", "OHLC_INCONSISTENT", "DUPLICATE_DATE",
    "CONFLICTING_DUPLICATE", "UNSORTED_DATES", "NO_VALID_ROWS", "SHORT_HISTORY", "MISSING_SESSIONS",
    "MISSING_VOLUME", "MISSING_AMOUNT", "ZERO_VOLUME", "ZERO_AMOUNT", "VWAP_OUTSIDE_RANGE", "STALE_PRICE",
    "EXPLAINED_JUMP", "UNEXPLAINED_JUMP", "ACTION_MISMATCH", "ACTION_TABLE_DISAGREES", "ADJUSTMENT_NOISE",
    "DATA_ENDED", "DATA_STARTS_LATE", "AMOUNT_ESTIMATED", "AMOUNT_FACTORS_LEFT_OUT", "SPLIT_PROPOSED",
    "SPLIT_INFERRED",
    "check_adjustment_noise",
    "no_amount_funds",
    "check_amount",
    "amount_required_message",
    "check_split_proposals",
    "check_data_ended",
    "check_data_starts_late",
    "Universe",
    "universe_exclusions",
]


class Severity(IntEnum):
    INFO = 10
    WARN = 20
    ERROR = 30
    FATAL = 40

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class CheckSpec:
    """One declared check: its name, default severity, whether failing rows are quarantined, and what
    it tests."""

    name: str
    severity: Severity
    quarantines: bool
    description: str


SCHEMA = "schema"
MISSING_DATE = "missing_date"
FUTURE_DATE = "future_date"
AFTER_ASOF = "after_asof"
NON_SESSION_DATE = "non_session_date"
MISSING_PRICE = "missing_price"
NON_POSITIVE_PRICE = "non_positive_price"
NEGATIVE_VOLUME = "negative_volume"
OHLC_INCONSISTENT = "ohlc_inconsistent"
DUPLICATE_DATE = "duplicate_date"
CONFLICTING_DUPLICATE = "conflicting_duplicate"
UNSORTED_DATES = "unsorted_dates"
NO_VALID_ROWS = "no_valid_rows"
SHORT_HISTORY = "short_history"
MISSING_SESSIONS = "missing_sessions"
MISSING_VOLUME = "missing_volume"
MISSING_AMOUNT = "missing_amount"
ZERO_VOLUME = "zero_volume"
ZERO_AMOUNT = "zero_amount"
VWAP_OUTSIDE_RANGE = "vwap_outside_range"
STALE_PRICE = "stale_price"
EXPLAINED_JUMP = "explained_jump"
UNEXPLAINED_JUMP = "unexplained_jump"
ACTION_MISMATCH = "action_mismatch"
ACTION_TABLE_DISAGREES = "action_table_disagrees"
ADJUSTMENT_NOISE = "adjustment_noise"
DATA_ENDED = "data_ended"
DATA_STARTS_LATE = "data_starts_late"
AMOUNT_ESTIMATED = "amount_estimated"
AMOUNT_FACTORS_LEFT_OUT = "amount_factors_left_out"
SPLIT_PROPOSED = "split_proposed"
SPLIT_INFERRED = "split_inferred"

_S = Severity
#: Every check, in the order it runs. Row checks (``quarantines=True``) come first, in this order.
CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(SCHEMA, _S.FATAL, False, "the frame has the raw columns (date, open, high, low, close, volume, "
                                       "amount, line) with a datetime date and numeric values"),
    CheckSpec(MISSING_DATE, _S.ERROR, True, "the row has a date"),
    CheckSpec(FUTURE_DATE, _S.ERROR, True, "the date is not after today (the calendar's local date)"),
    CheckSpec(AFTER_ASOF, _S.INFO, True, "the date is not after the as-of date of the load (later rows are "
                                         "kept out of the as-of view)"),
    CheckSpec(NON_SESSION_DATE, _S.ERROR, True, "the date is a session of the pool's calendar"),
    CheckSpec(MISSING_PRICE, _S.ERROR, True, "open, high, low and close are present"),
    CheckSpec(NON_POSITIVE_PRICE, _S.ERROR, True, "open, high, low and close are positive and finite"),
    CheckSpec(NEGATIVE_VOLUME, _S.ERROR, True, "volume and amount are not negative and not infinite"),
    CheckSpec(OHLC_INCONSISTENT, _S.ERROR, True, "low <= open, close <= high"),
    CheckSpec(DUPLICATE_DATE, _S.WARN, True, "each date appears once (identical repeats: the first is kept)"),
    CheckSpec(CONFLICTING_DUPLICATE, _S.ERROR, True, "a repeated date carries identical values (otherwise "
                                                     "every copy is quarantined: none can be trusted)"),
    CheckSpec(UNSORTED_DATES, _S.WARN, False, "rows are in date order in the file (the clean rows are sorted)"),
    CheckSpec(NO_VALID_ROWS, _S.FATAL, False, "at least one valid row remains"),
    CheckSpec(SHORT_HISTORY, _S.ERROR, False, "at least quality.min_history_sessions valid rows"),
    CheckSpec(MISSING_SESSIONS, _S.WARN, False, "every session between the fund's first and last valid date "
                                                "has a row (ERROR above quality.max_missing_fraction)"),
    CheckSpec(MISSING_VOLUME, _S.WARN, False, "volume is present on every valid row"),
    CheckSpec(MISSING_AMOUNT, _S.WARN, False, "amount (turnover) is present (INFO when the source has none; "
                                              "FATAL then under data.amount: require)"),
    CheckSpec(AMOUNT_ESTIMATED, _S.WARN, False, "a fund without any amount gets volume x typical price "
                                                "(data.amount: estimate); WARN because liquidity limits, ADV and "
                                                "the amount factors then rest on an estimate, not on turnover"),
    CheckSpec(AMOUNT_FACTORS_LEFT_OUT, _S.WARN, False, "the amount-based factors are left out of a pool with "
                                                       "funds without any amount (data.amount: drop_factors); WARN "
                                                       "because those funds then have no ADV either (liquidity "
                                                       "rule, capacity)"),
    CheckSpec(ZERO_VOLUME, _S.WARN, False, "volume is positive on every session (ERROR above "
                                           "quality.max_zero_volume_fraction)"),
    CheckSpec(ZERO_AMOUNT, _S.WARN, False, "amount is positive where volume is"),
    CheckSpec(VWAP_OUTSIDE_RANGE, _S.WARN, False, "amount / volume lies within [low, high] (a volume in the "
                                                  "wrong unit, e.g. lots for shares, breaks this)"),
    CheckSpec(STALE_PRICE, _S.WARN, False, "no run of quality.stale_run or more equal closes"),
    CheckSpec(EXPLAINED_JUMP, _S.INFO, False, "a raw close-to-close move beyond pool.jump_threshold removed "
                                              "by the adjustment"),
    CheckSpec(UNEXPLAINED_JUMP, _S.ERROR, False, "no adjusted close-to-close move beyond pool.jump_threshold "
                                                 "without a corporate action"),
    CheckSpec(ACTION_MISMATCH, _S.ERROR, False, "no adjusted move beyond pool.jump_threshold on a row that "
                                                "carries a corporate action (the action does not explain it)"),
    CheckSpec(SPLIT_PROPOSED, _S.INFO, False, "an unexplained move of a unit-split ratio with volume moving "
                                              "inversely is proposed as a split, with the line to add to "
                                              "platform_splits.csv (data.splits: propose; the move stays an "
                                              "unexplained jump, which is the ERROR)"),
    CheckSpec(SPLIT_INFERRED, _S.WARN, False, "a proposed unit split applied as if it were in the splits table "
                                              "(data.splits: apply): the adjustment rests on an inference"),
    CheckSpec(ACTION_TABLE_DISAGREES, _S.WARN, False, "split/dividend tables agree with the factor file (the "
                                                      "factor file is used)"),
    CheckSpec(ADJUSTMENT_NOISE, _S.WARN, False, "the back-adjustment factor steps only on corporate actions (a "
                                                "noisy factor file is WARN; noise steps beyond "
                                                "FACTOR_STEP_TOLERANCE in a clean file are INFO)"),
    CheckSpec(DATA_ENDED, _S.WARN, False, "each fund has bars up to the panel's last session (less than "
                                          "data.ended_after sessions missing at the end) and no configured "
                                          "delisting date (pool.delisted) on or before it"),
    CheckSpec(DATA_STARTS_LATE, _S.INFO, False, "each fund has bars from the panel's first session (the earliest "
                                                "first bar of the pool, or data.start); a fund listed later is "
                                                "not selected before its first bar"),
)
CHECKS_BY_NAME: dict[str, CheckSpec] = {c.name: c for c in CHECKS}

#: at most this many sample dates / rows per finding
SAMPLE_SIZE = 5
#: relative slack around [low, high] for the amount / volume test (rounding of turnover, odd lots)
VWAP_TOLERANCE = 0.05

_VALUES = ("open", "high", "low", "close", "volume", "amount")
_PRICES = ("open", "high", "low", "close")

#: columns of the quarantine table
QUARANTINE_COLUMNS: tuple[str, ...] = ("symbol", "file", "line", "date", "reason", "severity", "detail",
                                       *_VALUES)


def empty_quarantine() -> pd.DataFrame:
    """A quarantine table with no rows and the declared columns and dtypes."""
    return pd.DataFrame({
        "symbol": pd.Series(dtype=object), "file": pd.Series(dtype=object), "line": pd.Series(dtype=np.int64),
        "date": pd.Series(dtype="datetime64[ns]"), "reason": pd.Series(dtype=object),
        "severity": pd.Series(dtype=object), "detail": pd.Series(dtype=object),
        **{c: pd.Series(dtype=np.float64) for c in _VALUES},
    })


def _iso(values: Iterable[object]) -> tuple[str, ...]:
    return tuple(str(pd.Timestamp(v).date()) if pd.notna(v) else "NaT" for v in values)


# -------------------------------------------------------------------------------------------- report
@dataclass(frozen=True)
class Finding:
    """One check's outcome for one fund (``symbol`` None: the whole load)."""

    check: str
    severity: Severity
    symbol: str | None
    message: str
    count: int = 0
    file: str | None = None
    dates: tuple[str, ...] = ()     # a few affected dates (ISO)
    lines: tuple[int, ...] = ()     # a few affected data rows (1-based, as in the file)

    def to_dict(self) -> dict[str, object]:
        return {"check": self.check, "severity": self.severity.name, "symbol": self.symbol, "file": self.file,
                "count": int(self.count), "dates": list(self.dates), "lines": [int(x) for x in self.lines],
                "message": self.message}

    def __str__(self) -> str:
        where = ", ".join(x for x in (self.symbol and f"symbol {self.symbol}",
                                      self.file and f"file {self.file}") if x)
        parts = []
        if self.dates:
            parts.append(", ".join(self.dates))
        if self.lines:
            parts.append("data row(s) " + ", ".join(map(str, self.lines)))
        sample = f" (e.g. {'; '.join(parts)})" if parts else ""
        return f"[{self.severity.name}] {self.check}" + (f" {where}" if where else "") + f": {self.message}{sample}"


_FINDING_COLUMNS = ("check", "severity", "symbol", "file", "count", "dates", "lines", "message")


@dataclass(frozen=True)
class QualityReport:
    """All findings of one load, and per-fund row statistics.

    ``stats`` maps symbol -> ``rows`` (read), ``quarantined``, ``valid``, ``first``, ``last`` (ISO dates
    of the valid rows, None when none).
    """

    findings: tuple[Finding, ...] = ()
    stats: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    # ------------------------------------------------------------------ combination
    def with_findings(self, findings: Iterable[Finding]) -> "QualityReport":
        return QualityReport(self.findings + tuple(findings), self.stats)

    # ------------------------------------------------------------------ queries
    @property
    def worst_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    @property
    def passed(self) -> bool:
        """True when no finding is ERROR or FATAL."""
        worst = self.worst_severity
        return worst is None or worst < Severity.ERROR

    def blocking(self, fail_on: str = "fatal") -> tuple[Finding, ...]:
        """The findings that make :func:`enforce` raise under ``fail_on`` ("fatal" or "error")."""
        limit = Severity.FATAL if fail_on == "fatal" else Severity.ERROR
        return tuple(f for f in self.findings if f.severity >= limit)

    def select(self, check: str | None = None, symbol: str | None = None,
               min_severity: Severity | None = None) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings
                     if (check is None or f.check == check) and (symbol is None or f.symbol == symbol)
                     and (min_severity is None or f.severity >= min_severity))

    @property
    def counts(self) -> dict[str, int]:
        """Affected items per check (rows, sessions or moves, as each check counts them)."""
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.check] = out.get(f.check, 0) + int(f.count)
        return out

    @property
    def severity_counts(self) -> dict[str, int]:
        """Number of findings per severity."""
        out = {s.name: 0 for s in Severity}
        for f in self.findings:
            out[f.severity.name] += 1
        return out

    # ------------------------------------------------------------------ output
    def to_frame(self) -> pd.DataFrame:
        """One row per finding, worst first."""
        if not self.findings:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in _FINDING_COLUMNS})
        rows = [f.to_dict() for f in self.findings]
        frame = pd.DataFrame(rows, columns=list(_FINDING_COLUMNS))
        frame["severity_rank"] = [int(f.severity) for f in self.findings]
        frame = frame.sort_values(["severity_rank", "check", "symbol"], ascending=[False, True, True], kind="stable")
        return frame.drop(columns="severity_rank").reset_index(drop=True)

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (``json.dumps`` works on it)."""
        worst = self.worst_severity
        return {
            "passed": self.passed,
            "worst_severity": worst.name if worst is not None else None,
            "counts": self.counts,
            "severity_counts": self.severity_counts,
            "findings": [f.to_dict() for f in self.findings],
            "stats": {s: dict(v) for s, v in self.stats.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    def summary(self, max_findings: int = 40) -> str:
        """A readable text summary: totals, counts per check, then the worst findings."""
        rows = sum(int(v.get("rows", 0)) for v in self.stats.values())
        quarantined = sum(int(v.get("quarantined", 0)) for v in self.stats.values())
        worst = self.worst_severity
        lines = [f"data quality: {len(self.stats)} fund(s), {rows} row(s) read, {quarantined} quarantined; "
                 f"worst severity {worst.name if worst is not None else 'none'}; "
                 f"{'passed' if self.passed else 'NOT passed'}"]
        by_check: dict[str, tuple[Severity, int, int]] = {}
        for f in self.findings:
            sev, n_f, n = by_check.get(f.check, (f.severity, 0, 0))
            by_check[f.check] = (max(sev, f.severity), n_f + 1, n + int(f.count))
        for name in [c.name for c in CHECKS if c.name in by_check] + sorted(set(by_check) - set(CHECKS_BY_NAME)):
            sev, n_f, n = by_check[name]
            lines.append(f"  {name:<24} {sev.name:<5} {n_f:>3} fund(s), {n} item(s)")
        ordered = sorted(self.findings, key=lambda f: (-int(f.severity), f.check, f.symbol or ""))
        for f in ordered[:max_findings]:
            lines.append(f"  - {f}")
        if len(ordered) > max_findings:
            lines.append(f"  ... and {len(ordered) - max_findings} more finding(s)")
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class FundQuality:
    """The gate's outcome for one fund: findings, clean rows and quarantined rows."""

    symbol: str
    findings: tuple[Finding, ...]
    clean: pd.DataFrame | None        # None when unusable (FATAL); empty when it has no row by the as-of date
    quarantine: pd.DataFrame
    stats: Mapping[str, object]


@dataclass(frozen=True, eq=False)
class QualityResult:
    """The gate's outcome for a load: the report, the clean rows per fund (funds with a FATAL finding
    are absent; a fund with no row on or before the as-of date has an empty frame) and the quarantine
    table."""

    report: QualityReport
    clean: Mapping[str, pd.DataFrame]
    quarantine: pd.DataFrame


# ------------------------------------------------------------------------------------------ checks
def _finding(check: str, symbol: str, file: str | None, message: str, count: int,
             dates: Sequence[object] = (), lines: Sequence[int] = (), severity: Severity | None = None) -> Finding:
    spec = CHECKS_BY_NAME[check]
    return Finding(check=check, severity=severity if severity is not None else spec.severity, symbol=symbol,
                   message=message, count=int(count), file=file, dates=_iso(list(dates)[:SAMPLE_SIZE]),
                   lines=tuple(int(x) for x in list(lines)[:SAMPLE_SIZE]))


def _schema_problems(raw: RawPrices, symbol: str) -> list[str]:
    frame = raw.frame
    problems = []
    if not isinstance(frame, pd.DataFrame):
        return [f"frame is a {type(frame).__name__}, not a DataFrame"]
    missing = [c for c in (*RAW_COLUMNS, "line") if c not in frame.columns]
    if missing:
        problems.append(f"missing columns {missing}")
    if frame.columns.duplicated().any():
        problems.append(f"repeated columns {sorted(set(frame.columns[frame.columns.duplicated()]))}")
    if "date" in frame.columns and not pd.api.types.is_datetime64_dtype(frame["date"].dtype):
        problems.append(f"column 'date' is {frame['date'].dtype}, not a tz-naive datetime64")
    for col in (*_VALUES, "line"):
        if col in frame.columns and not (pd.api.types.is_numeric_dtype(frame[col].dtype)
                                         and not pd.api.types.is_bool_dtype(frame[col].dtype)):
            problems.append(f"column {col!r} is {frame[col].dtype}, not numeric")
    if raw.symbol != symbol:
        problems.append(f"records are labelled {raw.symbol!r} but were returned for {symbol!r}")
    return problems


def _flagged(rows: pd.DataFrame, columns: Sequence[str], bad: Callable[[np.ndarray], np.ndarray],
             show_value: bool = True) -> np.ndarray:
    """Per row, "col value; col value" for the columns where ``bad`` holds (vectorised over rows)."""
    out = pd.Series("", index=rows.index, dtype=object)
    for col in columns:
        values = rows[col].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            hit = bad(values)
        text = col + (" " + pd.Series(values, index=rows.index).map("{:g}".format) if show_value else "")
        piece = pd.Series(np.where(hit, text, ""), index=rows.index, dtype=object)
        sep = np.where((out != "") & hit, "; ", "")
        out = out + sep + piece
    return out.to_numpy(dtype=object)


def _row_detail(check: str, rows: pd.DataFrame, asof: pd.Timestamp | None, today: pd.Timestamp,
                calendar: TradingCalendar) -> np.ndarray:
    """A short reason per quarantined row."""
    n = len(rows)
    if check == NON_SESSION_DATE:
        text = (f"not a {calendar.code} session (" + rows["date"].dt.day_name() + ")").to_numpy(dtype=object)
        early = (rows["date"] < calendar.first_session).to_numpy()
        if early.any():  # the calendar was built from a later start: say so, and which key moves it
            start_key = f"markets.{calendar.code}.calendar_start"
            text[early] = (f"before the first {calendar.code} session of the calendar, "
                           f"{calendar.first_session.date()}: set {start_key} to the first bar's date or earlier")
        return text
    if check == MISSING_PRICE:
        return "missing " + _flagged(rows, _PRICES, np.isnan, show_value=False)
    if check == NON_POSITIVE_PRICE:
        return _flagged(rows, _PRICES, lambda v: ~(np.isfinite(v) & (v > 0)))
    if check == NEGATIVE_VOLUME:
        return _flagged(rows, ("volume", "amount"), lambda v: (v < 0) | np.isinf(v))
    if check == OHLC_INCONSISTENT:
        return _flagged(rows, _PRICES, lambda v: np.ones(len(v), dtype=bool))
    fixed = {
        MISSING_DATE: "no date",
        FUTURE_DATE: f"after today {today.date()}",
        AFTER_ASOF: f"after the as-of date {asof.date() if asof is not None else ''}",
        DUPLICATE_DATE: "identical repeat of an earlier row",
        CONFLICTING_DUPLICATE: "date repeated with different values",
    }
    return np.full(n, fixed.get(check, ""), dtype=object)


def check_fund(raw: RawPrices, calendar: TradingCalendar, quality: QualityConfig, *,
               asof: dt.date | str | pd.Timestamp | None = None,
               today: dt.date | str | pd.Timestamp | None = None, symbol: str | None = None) -> FundQuality:
    """Run every row and series check on one fund's raw records (which stay untouched).

    ``today`` (default: the current date in the calendar's time zone) bounds real dates; ``asof``
    (default: no bound) bounds the view -- rows after it are quarantined as ``after_asof`` (INFO).
    """
    symbol = raw.symbol if symbol is None else symbol
    file = raw.file
    today_ts = (pd.Timestamp.now(tz=calendar.tz).tz_localize(None).normalize() if today is None
                else pd.Timestamp(today).normalize())
    asof_ts = None if asof is None else pd.Timestamp(asof).normalize()
    problems = _schema_problems(raw, symbol)
    n_rows = len(raw.frame) if isinstance(raw.frame, pd.DataFrame) else 0
    if problems:
        f = _finding(SCHEMA, symbol, file, "unusable records: " + "; ".join(problems), n_rows)
        stats = {"rows": n_rows, "quarantined": 0, "valid": 0, "first": None, "last": None}
        return FundQuality(symbol, (f,), None, empty_quarantine(), stats)

    frame = raw.frame[[*RAW_COLUMNS, "line"]].copy()
    frame["date"] = frame["date"].astype("datetime64[ns]")
    for col in _VALUES:
        frame[col] = frame[col].astype(np.float64)
    frame = frame.reset_index(drop=True)
    n = len(frame)
    date = frame["date"]
    prices = frame[list(_PRICES)].to_numpy(dtype=np.float64)
    o, h, lo, c = prices.T
    vol = frame["volume"].to_numpy(dtype=np.float64)
    amt = frame["amount"].to_numpy(dtype=np.float64)

    valid_dates = date.dropna()
    if len(valid_dates):
        sessions = calendar.sessions(valid_dates.min(), valid_dates.max())
        is_session = date.isin(sessions).to_numpy()
    else:
        is_session = np.zeros(n, dtype=bool)
    with np.errstate(invalid="ignore"):
        masks: list[tuple[str, np.ndarray]] = [
            (MISSING_DATE, date.isna().to_numpy()),
            (FUTURE_DATE, (date > today_ts).to_numpy()),
            (AFTER_ASOF, (date > asof_ts).to_numpy() if asof_ts is not None else np.zeros(n, dtype=bool)),
            (NON_SESSION_DATE, ~is_session),
            (MISSING_PRICE, np.isnan(prices).any(axis=1)),
            (NON_POSITIVE_PRICE, ~(np.isfinite(prices) & (prices > 0)).all(axis=1)),
            (NEGATIVE_VOLUME, (vol < 0) | np.isinf(vol) | (amt < 0) | np.isinf(amt)),
            (OHLC_INCONSISTENT, (lo > o) | (lo > c) | (h < o) | (h < c) | (lo > h)),
        ]

    remaining = np.ones(n, dtype=bool)
    reason = np.full(n, None, dtype=object)
    findings: list[Finding] = []
    messages = {
        MISSING_DATE: "no date",
        FUTURE_DATE: f"dated after today ({today_ts.date()})",
        AFTER_ASOF: f"dated after the as-of date {asof_ts.date() if asof_ts is not None else ''} "
                    f"(kept out of the as-of view)",
        NON_SESSION_DATE: f"dated on days that are not {calendar.code} sessions",
        MISSING_PRICE: "a missing open, high, low or close",
        NON_POSITIVE_PRICE: "a zero, negative or infinite price",
        NEGATIVE_VOLUME: "a negative or infinite volume or amount",
        OHLC_INCONSISTENT: "low <= open, close <= high does not hold",
        DUPLICATE_DATE: "identical repeat of an earlier row (the first copy is kept)",
        CONFLICTING_DUPLICATE: "a repeated date with different values (every copy is quarantined)",
    }

    def _hit(check: str, mask: np.ndarray) -> None:
        hit = mask & remaining
        k = int(hit.sum())
        if not k:
            return
        idx = np.flatnonzero(hit)
        reason[idx] = check
        remaining[idx] = False
        findings.append(_finding(check, symbol, file, f"{k} row(s) quarantined: {messages[check]}", k,
                                 date.iloc[idx].dropna(), frame["line"].iloc[idx]))

    for check, mask in masks:
        _hit(check, mask)
    # duplicates among the rows still standing
    rem = frame[remaining]
    identical = np.zeros(n, dtype=bool)
    identical[rem.index[rem.duplicated(["date", *_VALUES], keep="first").to_numpy()]] = True
    _hit(DUPLICATE_DATE, identical)
    rem = frame[remaining]
    conflicting = np.zeros(n, dtype=bool)
    conflicting[rem.index[rem.duplicated("date", keep=False).to_numpy()]] = True
    _hit(CONFLICTING_DUPLICATE, conflicting)

    # quarantine table
    q_idx = np.flatnonzero(~remaining)
    if len(q_idx):
        q = frame.iloc[q_idx]
        reasons = reason[q_idx]
        detail = np.empty(len(q_idx), dtype=object)
        for check in dict.fromkeys(reasons):
            sel = reasons == check
            detail[sel] = _row_detail(check, q[sel], asof_ts, today_ts, calendar)
        quarantine = pd.DataFrame({
            "symbol": symbol, "file": file, "line": q["line"].to_numpy(dtype=np.int64),
            "date": q["date"].to_numpy(), "reason": reasons.astype(object),
            "severity": [CHECKS_BY_NAME[r].severity.name for r in reasons], "detail": detail,
            **{col: q[col].to_numpy() for col in _VALUES},
        }, columns=list(QUARANTINE_COLUMNS))
    else:
        quarantine = empty_quarantine()

    kept = frame[remaining]
    dates_kept = kept["date"].to_numpy()
    if len(kept) > 1 and (np.diff(dates_kept) < np.timedelta64(0)).any():
        back = np.flatnonzero(np.diff(dates_kept) < np.timedelta64(0)) + 1
        if len(back) == len(kept) - 1:
            # every row before the one above it: a newest-first file (Alpha Vantage's order), not disorder
            findings.append(_finding(UNSORTED_DATES, symbol, file,
                                     f"the file lists its {len(kept)} rows newest first; they are read oldest first",
                                     0, severity=Severity.INFO))
        else:
            findings.append(_finding(UNSORTED_DATES, symbol, file,
                                     f"{len(back)} row(s) dated before the row above them; the clean rows are sorted",
                                     len(back), kept["date"].iloc[back], kept["line"].iloc[back]))
    clean = kept.sort_values("date", kind="stable").reset_index(drop=True)
    stats = {"rows": n, "quarantined": int(len(q_idx)), "valid": int(len(clean)),
             "first": str(clean["date"].iloc[0].date()) if len(clean) else None,
             "last": str(clean["date"].iloc[-1].date()) if len(clean) else None}

    if clean.empty and n and (quarantine["reason"] == AFTER_ASOF).all():
        # not listed yet at the as-of date: nothing is wrong, the fund is simply absent from the view
        return FundQuality(symbol, tuple(findings), clean, quarantine, stats)
    if clean.empty:
        if n == 0:
            msg = "the file has no data rows"
        else:
            why = quarantine["reason"].value_counts()
            msg = (f"no valid row: all {n} row(s) quarantined ("
                   + ", ".join(f"{k} {v}" for k, v in why.items()) + ")")
            if (why.index == NON_POSITIVE_PRICE).all():
                msg += "; every price is non-positive"
        findings.append(_finding(NO_VALID_ROWS, symbol, file, msg, n, quarantine["date"].dropna(),
                                 quarantine["line"]))
        return FundQuality(symbol, tuple(findings), None, quarantine, stats)

    findings.extend(_series_findings(symbol, file, clean, calendar, quality))
    return FundQuality(symbol, tuple(findings), clean, quarantine, stats)


def _runs(equal_to_previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start positions and lengths of runs of rows equal to the row before them (run includes that row)."""
    n = len(equal_to_previous)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts_new = ~equal_to_previous
    starts_new[0] = True
    run_start = np.flatnonzero(starts_new)
    run_len = np.diff(np.append(run_start, n))
    return run_start, run_len


def _series_findings(symbol: str, file: str | None, clean: pd.DataFrame, calendar: TradingCalendar,
                     quality: QualityConfig) -> list[Finding]:
    out: list[Finding] = []
    dates = pd.DatetimeIndex(clean["date"])
    lines = clean["line"].to_numpy()
    n = len(clean)
    close = clean["close"].to_numpy()
    vol = clean["volume"].to_numpy()
    amt = clean["amount"].to_numpy()
    low = clean["low"].to_numpy()
    high = clean["high"].to_numpy()

    if n < quality.min_history_sessions:
        out.append(_finding(SHORT_HISTORY, symbol, file,
                            f"only {n} valid row(s) ({dates[0].date()}..{dates[-1].date()}); "
                            f"quality.min_history_sessions is {quality.min_history_sessions}", n,
                            [dates[0], dates[-1]]))

    expected = calendar.sessions(dates[0], dates[-1])
    missing = expected.difference(dates)
    if len(missing):
        frac = len(missing) / max(len(expected), 1)
        over = frac > quality.max_missing_fraction
        out.append(_finding(
            MISSING_SESSIONS, symbol, file,
            f"{len(missing)} of {len(expected)} {calendar.code} sessions between {dates[0].date()} and "
            f"{dates[-1].date()} have no row ({frac:.1%}; limit quality.max_missing_fraction "
            f"{quality.max_missing_fraction:.1%})", len(missing), missing,
            severity=Severity.ERROR if over else Severity.WARN))

    nan_vol = np.isnan(vol)
    if nan_vol.any():
        idx = np.flatnonzero(nan_vol)
        out.append(_finding(MISSING_VOLUME, symbol, file, f"{len(idx)} valid row(s) without a volume", len(idx),
                            dates[idx], lines[idx]))
    nan_amt = np.isnan(amt)
    if nan_amt.all():
        out.append(_finding(MISSING_AMOUNT, symbol, file, "the source gives no amount (turnover) on any row; "
                            "data.amount decides (estimate: volume x typical price, drop_factors: the amount "
                            "factors left out, require: the load fails)", n, severity=Severity.INFO))
    elif nan_amt.any():
        idx = np.flatnonzero(nan_amt)
        out.append(_finding(MISSING_AMOUNT, symbol, file, f"{len(idx)} valid row(s) without an amount", len(idx),
                            dates[idx], lines[idx]))

    zero_vol = vol == 0
    if zero_vol.any():
        idx = np.flatnonzero(zero_vol)
        frac = len(idx) / n
        over = frac > quality.max_zero_volume_fraction
        out.append(_finding(ZERO_VOLUME, symbol, file,
                            f"{len(idx)} session(s) with zero volume ({frac:.1%}; limit "
                            f"quality.max_zero_volume_fraction {quality.max_zero_volume_fraction:.1%})", len(idx),
                            dates[idx], lines[idx], severity=Severity.ERROR if over else Severity.WARN))
    zero_amt = (amt == 0) & (vol > 0)
    if zero_amt.any():
        idx = np.flatnonzero(zero_amt)
        out.append(_finding(ZERO_AMOUNT, symbol, file, f"{len(idx)} session(s) with volume but zero amount "
                            f"(turnover in CNY unknown)", len(idx), dates[idx], lines[idx]))
    with np.errstate(divide="ignore", invalid="ignore"):
        vwap = amt / vol
        usable = (vol > 0) & (amt > 0)
        outside = usable & ((vwap < low * (1 - VWAP_TOLERANCE)) | (vwap > high * (1 + VWAP_TOLERANCE)))
    if outside.any():
        idx = np.flatnonzero(outside)
        ratio = np.median(vwap[idx] / close[idx])
        out.append(_finding(VWAP_OUTSIDE_RANGE, symbol, file,
                            f"{len(idx)} of {int(usable.sum())} session(s) where amount / volume lies outside "
                            f"[low, high] by more than {VWAP_TOLERANCE:.0%} (median amount / volume / close "
                            f"{ratio:.4g}; a ratio near 100 or 0.01 means volume is in the wrong unit)", len(idx),
                            dates[idx], lines[idx]))

    same = np.zeros(n, dtype=bool)
    same[1:] = close[1:] == close[:-1]
    start, length = _runs(same)
    stale = length >= quality.stale_run
    if stale.any():
        s, ln = start[stale], length[stale]
        longest = int(np.argmax(ln))
        out.append(_finding(STALE_PRICE, symbol, file,
                            f"{len(s)} run(s) of {quality.stale_run} or more equal closes ({int(ln.sum())} rows; "
                            f"longest {int(ln[longest])} from {dates[s[longest]].date()})", int(ln.sum()),
                            dates[s], lines[s]))
    return out


def check_prices(raw: Mapping[str, RawPrices], calendar: TradingCalendar, quality: QualityConfig, *,
                 asof: dt.date | str | pd.Timestamp | None = None,
                 today: dt.date | str | pd.Timestamp | None = None) -> QualityResult:
    """Run :func:`check_fund` on every fund and combine (no policy applied; see :func:`enforce`)."""
    findings: list[Finding] = []
    clean: dict[str, pd.DataFrame] = {}
    quarantines: list[pd.DataFrame] = []
    stats: dict[str, Mapping[str, object]] = {}
    for symbol, records in raw.items():
        fund = check_fund(records, calendar, quality, asof=asof, today=today, symbol=symbol)
        findings.extend(fund.findings)
        stats[symbol] = fund.stats
        if fund.clean is not None:
            clean[symbol] = fund.clean
        if len(fund.quarantine):
            quarantines.append(fund.quarantine)
    quarantine = (pd.concat(quarantines, ignore_index=True) if quarantines else empty_quarantine())
    return QualityResult(QualityReport(tuple(findings), stats), clean, quarantine)


def check_jumps(symbol: str, clean: pd.DataFrame, adjusted: pd.DataFrame, adjustment: Adjustment,
                threshold: float, file: str | None = None, jumps: pd.DataFrame | None = None,
                proposals: pd.DataFrame | None = None) -> list[Finding]:
    """Findings for close-to-close moves beyond ``threshold`` (see
    :func:`rotation_platform.data.corporate_actions.detect_jumps`; ``jumps``: its result when the caller
    has it already). An unexplained move that :func:`~rotation_platform.data.corporate_actions.propose_splits`
    proposes as a split (``proposals``) says so and points to the ``split_proposed`` finding."""
    if jumps is None:
        jumps = detect_jumps(symbol, clean, adjusted, adjustment, threshold)
    out: list[Finding] = []
    labels = {"explained": EXPLAINED_JUMP, "unexplained": UNEXPLAINED_JUMP, "action_mismatch": ACTION_MISMATCH}
    for kind, check in labels.items():
        rows = jumps[jumps["kind"] == kind]
        if rows.empty:
            continue
        proposed = ({pd.Timestamp(d): (r, line) for d, r, line in
                     zip(proposals["date"], proposals["ratio_text"], proposals["table_line"])}
                    if proposals is not None and len(proposals) and kind == "unexplained" else {})

        def _pointer(day: pd.Timestamp) -> str:
            if day not in proposed:
                return ""
            ratio, line = proposed[day]
            return (f" [looks like a 1:{ratio} unit split, see the split_proposed finding: add '{line}' to "
                    f"platform_splits.csv or set data.splits: apply]")

        moves = "; ".join(
            f"{d.date()} (from {p.date()}): raw {r:+.1%}, adjusted {a:+.1%}" + (f" [{act}]" if act else "")
            + _pointer(pd.Timestamp(d))
            for d, p, r, a, act in zip(rows["date"], rows["prev_date"], rows["raw_return"],
                                       rows["adjusted_return"], rows["action"]))
        text = {"explained": f"{len(rows)} raw move(s) beyond {threshold:.0%} removed by the "
                             f"{adjustment.method} adjustment: {moves}",
                "unexplained": f"{len(rows)} adjusted move(s) beyond {threshold:.0%} with no corporate action: "
                               f"{moves}",
                "action_mismatch": f"{len(rows)} adjusted move(s) beyond {threshold:.0%} on rows with a corporate "
                                   f"action that does not account for them: {moves}"}[kind]
        out.append(_finding(check, symbol, file, text, len(rows), rows["date"], rows["line"]))
    return out


def check_adjustment(adjustment: Adjustment, file: str | None = None, factor_file: str | None = None
                     ) -> list[Finding]:
    """Findings on a fund's adjustment: split/dividend tables that disagree with the factor file (the
    factor file is used), and factor-file noise (:func:`check_adjustment_noise`)."""
    out: list[Finding] = []
    dis = adjustment.disagreements
    if not dis.empty:
        text = "; ".join(f"{k} {v:g} effective {d.date()}: {note}" for k, v, d, note in
                         zip(dis["kind"], dis["value"], dis["date"], dis["note"]))
        out.append(_finding(ACTION_TABLE_DISAGREES, adjustment.symbol, file,
                            f"{len(dis)} table action(s) the factor file does not show (factor file used): "
                            f"{text}", len(dis), dis["row_date"].dropna()))
    out.extend(check_adjustment_noise(adjustment, file, factor_file))
    return out


def check_adjustment_noise(adjustment: Adjustment, file: str | None = None, factor_file: str | None = None
                           ) -> list[Finding]:
    """The ``adjustment_noise`` finding of one fund (see
    :mod:`rotation_platform.data.corporate_actions`, "Factor noise").

    WARN when the factor file is noisy; INFO when it is not but steps beyond FACTOR_STEP_TOLERANCE were
    still found to be noise (the additive test); nothing otherwise. ``count`` is the number of days with
    noise; ``dates`` are the days of the largest noise steps.
    """
    noise = adjustment.noise
    if noise is None or not noise.days:
        return []
    beyond = noise.beyond_tolerance
    if not noise.noisy and not beyond.any():
        return []
    dates = pd.DatetimeIndex(adjustment.factor.index)
    counts = noise.counts()
    largest = noise.largest()
    assert largest is not None
    r_max, step_max = largest
    mag = np.where(noise.is_noise, np.abs(np.log(noise.step)), -1.0)
    top = np.argsort(-mag, kind="stable")[:SAMPLE_SIZE]
    name = factor_file or f"the factor series of {adjustment.symbol}"
    head = (f"factor file {name} is noisy: {noise.file_moves} of its {noise.file_steps} steps "
            f"({noise.share:.1%}) move by more than FACTOR_STEP_TOLERANCE ({FACTOR_STEP_TOLERANCE:.1%}) on days "
            f"without a table action, above data.adjustment.noise_share ({noise.noise_share:.0%})"
            if noise.noisy else
            f"factor file {name} is not noisy ({noise.share:.1%} of its steps move without a table action) but "
            f"{int(beyond.sum())} step(s) beyond FACTOR_STEP_TOLERANCE follow the raw close (additive "
            f"back-adjustment re-scaling on big-move days, nothing paid)")
    detail = (f"{noise.days} day(s) with noise: {counts['tolerance']} at or below FACTOR_STEP_TOLERANCE, "
              f"{counts['noise_tolerance']} within data.adjustment.noise_tolerance ({noise.noise_tolerance:.1%}), "
              f"{counts['additive']} larger step(s) where the vendor's adjusted close moved in proportion to "
              f"the raw close; largest noise step {np.log(step_max):+.2%} (log) on {dates[r_max].date()}")
    real = int(((np.abs(np.log(noise.step)) > FACTOR_STEP_TOLERANCE) & ~noise.is_noise).sum())
    action = (f"data.adjustment.snap_noise is on: the factor is held at its last level on those {noise.days} "
              f"day(s) (snapped), {real} real step(s) kept; noise is never a corporate action"
              if noise.snapped else
              f"data.adjustment.snap_noise is off: the vendor factor is applied as is (its noise moves the "
              f"adjusted prices on {noise.days} day(s)); noise is still never a corporate action")
    return [_finding(ADJUSTMENT_NOISE, adjustment.symbol, file, f"{head}; {detail}; {action}", noise.days,
                     dates[top[mag[top] >= 0]], severity=None if noise.noisy else Severity.INFO)]


def check_data_ended(closes: Mapping[str, pd.Series], sessions: pd.DatetimeIndex, ended_after: int,
                     delisted: Mapping[str, dt.date] | None = None,
                     files: Mapping[str, str | None] | None = None, calendar: str = "") -> list[Finding]:
    """``data_ended`` findings: funds whose data ends before the panel's last session.

    ``closes[symbol]`` are the fund's clean raw closes by date (funds with none are not listed yet and
    are skipped); ``sessions`` the panel's sessions (pool calendar). A fund is flagged when its last bar
    is at least ``ended_after`` sessions before the last session, or when ``delisted`` gives it a date on
    or before the last session (its last bar is then the last one on or before that date). The finding's
    date is that last bar; its count the panel sessions after it (on which the fund cannot be held).
    """
    delisted = dict(delisted or {})
    files = dict(files or {})
    if not len(sessions):
        return []
    end = pd.Timestamp(sessions[-1])
    out: list[Finding] = []
    for symbol, close in closes.items():
        close = close.dropna()
        if close.empty:
            continue
        d = delisted.get(symbol)
        d_ts = pd.Timestamp(d) if d is not None else None
        by_date = d_ts is not None and d_ts <= end
        upto = close.loc[:d_ts] if by_date else close
        last_bar = pd.Timestamp(upto.index[-1]) if len(upto) else None
        gap = int((sessions > pd.Timestamp(close.index[-1])).sum())
        if not by_date and gap < ended_after:
            continue
        where = f"{calendar} " if calendar else ""
        file = files.get(symbol)
        label = f"fund {symbol} ({Path(file).name if file else 'no file'})"
        if by_date:
            why = f"delisted on {d_ts.date()} (pool.delisted)"
            later = int((close.index > d_ts).sum())
            if later:
                why += f"; its {later} bar(s) after that date are kept in the panel but never traded"
        else:
            why = (f"no bar on the last {gap} {where}session(s) through the panel's last session {end.date()} "
                   f"(data.ended_after is {ended_after})")
        if last_bar is None:
            text = (f"{label}: data ended -- {why}; it has no bar on or "
                    f"before that date, so it is never held")
            bar_dates: list[object] = [d_ts]
        else:
            text = (f"{label}: data ended -- last bar "
                    f"{last_bar.date()} (close {float(upto.iloc[-1]):g}), {why}; the simulation liquidates it "
                    f"at its last price and does not select it afterwards")
            bar_dates = [last_bar]
        untraded = int((sessions > (last_bar if last_bar is not None else d_ts)).sum())
        out.append(_finding(DATA_ENDED, symbol, files.get(symbol), text, untraded, bar_dates))
    return out


def check_data_starts_late(firsts: Mapping[str, pd.Timestamp], sessions: pd.DatetimeIndex,
                           files: Mapping[str, str | None] | None = None, calendar: str = "") -> list[Finding]:
    """``data_starts_late`` findings (INFO): funds whose first clean bar (``firsts[symbol]``) is after the
    panel's first session -- a fund listed later than the others, or than ``data.start``. The finding's
    date is that first bar; its count the panel sessions before it (on which the fund cannot be held)."""
    files = dict(files or {})
    if not len(sessions):
        return []
    start = pd.Timestamp(sessions[0])
    where = f"{calendar} " if calendar else ""
    out: list[Finding] = []
    for symbol, first in firsts.items():
        first = pd.Timestamp(first)
        if first <= start:
            continue
        before = int((sessions < first).sum())
        file = files.get(symbol)
        label = f"fund {symbol} ({Path(file).name if file else 'no file'})"
        text = (f"{label}: data starts late -- first bar {first.date()}, {before} {where}session(s) after the "
                f"panel's first session {start.date()} (the earliest first bar of the pool's funds, or data.start); "
                f"it cannot be selected before its first bar (a fund listed later is not an error)")
        out.append(_finding(DATA_STARTS_LATE, symbol, file, text, before, [first]))
    return out


# -------------------------------------------------------------------------------------- universe
#: checks whose ERROR is a limit on a share of sessions or rows: judged per session over the window
_WINDOWED = (SHORT_HISTORY, MISSING_SESSIONS, ZERO_VOLUME)
_ROW_CHECKS = tuple(c.name for c in CHECKS if c.quarantines)
_EVERY = -(10 ** 9)  # the row of an event that concerns every session (nothing dates it)


@dataclass(frozen=True, eq=False)
class Universe:
    """Which funds the decision at the close of each panel session may use (the universe policy).

    ``excluded[t, i]`` is True when fund ``i`` has an ERROR finding on data through session ``t`` inside
    the ``window`` sessions ending at ``t`` (``data.quality.exclusion_window``):

    * a quarantined ERROR row (missing or non-positive price, broken OHLC, a date off the calendar, a
      conflicting duplicate ...) dated in the window -- a row without a date is placed at the date of the
      last dated line before it in its file;
    * an unexplained jump or a jump a corporate action does not explain, dated in the window;
    * a limit broken over the window: more than ``quality.max_missing_fraction`` of the sessions between
      the fund's first bar and its last bar through ``t`` without a row, more than
      ``quality.max_zero_volume_fraction`` of its rows with zero volume, or fewer than
      ``quality.min_history_sessions`` valid rows through ``t``.

    Everything is point-in-time: the exclusion at ``t`` reads rows dated ``<= t`` only, so data after ``t``
    never changes it. An excluded fund cannot be bought or added to; a holding is sold at the next
    rebalance, like a fund leaving the selection. Older findings (before the window) do not exclude.
    """

    sessions: pd.DatetimeIndex
    symbols: tuple[str, ...]
    window: int
    excluded: np.ndarray
    detail: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    @classmethod
    def empty(cls, sessions: pd.DatetimeIndex, symbols: Sequence[str], window: int) -> "Universe":
        return cls(sessions, tuple(symbols), int(window), np.zeros((len(sessions), len(symbols)), np.bool_))

    def reasons(self, row: int) -> dict[str, str]:
        """Excluded fund -> why, for the decision at the close of panel row ``row``."""
        out: dict[str, str] = {}
        day = self.sessions[row].date()
        for i in np.flatnonzero(self.excluded[row]):
            symbol = self.symbols[i]
            d = self.detail.get(symbol, {})
            parts = []
            ev_rows = np.asarray(d.get("event_rows", ()), dtype=np.int64)
            texts = list(d.get("event_texts", ()))
            inside = np.flatnonzero(((ev_rows <= row) & (ev_rows > row - self.window)) | (ev_rows == _EVERY))
            if inside.size:
                latest = inside[::-1][:3]
                parts.append("; ".join(texts[k] for k in latest)
                             + (f" (+{inside.size - 3} more)" if inside.size > 3 else ""))
            for key in ("short", "missing", "zero"):
                flags = d.get(key)
                if flags is not None and flags[row]:
                    parts.append(d[f"{key}_text"](row))  # type: ignore[operator]
            out[symbol] = (f"ERROR finding(s) in the {self.window} sessions through {day} "
                           f"(data.quality.exclusion_window): " + "; ".join(parts))
        return out


def universe_exclusions(sessions: pd.DatetimeIndex, symbols: Sequence[str], calendar: TradingCalendar,
                        quality: QualityConfig, *, clean: Mapping[str, pd.DataFrame],
                        quarantine: pd.DataFrame, raw: Mapping[str, RawPrices] | None = None,
                        jumps: Mapping[str, pd.DataFrame] | None = None,
                        findings: Iterable[Finding] = ()) -> Universe:
    """The :class:`Universe` of a loaded pool (see its docstring for the rules).

    ``clean``: each fund's clean rows (date, volume, ...); ``quarantine``: the quarantine table;
    ``raw``: the raw records (to place undated rows by their line); ``jumps``: per fund the
    :func:`~rotation_platform.data.corporate_actions.detect_jumps` table; ``findings``: the load's other
    findings -- an ERROR finding of another check is an event on its dates (on every session when it has
    none).
    """
    window = int(quality.exclusion_window)
    symbols = tuple(symbols)
    n_s, n_f = len(sessions), len(symbols)
    uni = Universe.empty(sessions, symbols, window)
    if n_s == 0:
        return uni
    excluded = uni.excluded
    detail: dict[str, dict[str, object]] = {}
    start = pd.Timestamp(sessions[0])
    rows = np.arange(n_s)

    def row_of(day: pd.Timestamp) -> int:
        """The panel row where data dated ``day`` is first seen (the session on or after it; negative before
        the panel's first session, counted in sessions of the calendar)."""
        if day >= start:
            return int(sessions.searchsorted(day, side="left"))
        return -len(calendar.sessions(day, start - pd.Timedelta(days=1))) or -1

    events: dict[str, list[tuple[int, str]]] = {s: [] for s in symbols}
    q = quarantine[quarantine["severity"].astype(str).isin([s.name for s in Severity if s >= Severity.ERROR])]
    for rec in q.itertuples(index=False):
        symbol = str(rec.symbol)
        if symbol not in events:
            continue
        day = pd.Timestamp(rec.date) if pd.notna(rec.date) else None
        where = f"data row {int(rec.line)}" if pd.notna(rec.line) else "no data row"
        if day is None:
            frame = raw[symbol].frame if raw is not None and symbol in raw else None
            day = None
            if frame is not None and len(frame):
                known = frame[frame["date"].notna()]
                before = known[known["line"] < rec.line]
                if len(before):
                    day = pd.Timestamp(before["date"].iloc[-1])
                elif len(known):
                    day = pd.Timestamp(known["date"].min())
            text = f"{rec.reason} ({where}, undated: placed at {day.date() if day is not None else 'every session'})"
            events[symbol].append((row_of(day) if day is not None else _EVERY, text))
            if day is None:  # nothing to place it by: it concerns every session
                excluded[:, symbols.index(symbol)] = True
            continue
        events[symbol].append((row_of(day), f"{rec.reason} on {day.date()} ({where})"))
    for symbol, table in (jumps or {}).items():
        if symbol not in events or table is None or table.empty:
            continue
        for kind, check in (("unexplained", UNEXPLAINED_JUMP), ("action_mismatch", ACTION_MISMATCH)):
            if CHECKS_BY_NAME[check].severity < Severity.ERROR:
                continue
            for day, ret in zip(table.loc[table["kind"] == kind, "date"],
                                table.loc[table["kind"] == kind, "adjusted_return"]):
                events[symbol].append((row_of(pd.Timestamp(day)),
                                       f"{check} on {pd.Timestamp(day).date()} (adjusted {ret:+.1%})"))
    handled = set(_ROW_CHECKS) | set(_WINDOWED) | {UNEXPLAINED_JUMP, ACTION_MISMATCH}
    for f in findings:
        if f.symbol not in events or f.severity < Severity.ERROR or f.check in handled:
            continue
        if f.dates:
            for d in f.dates:
                events[f.symbol].append((row_of(pd.Timestamp(d)), f"{f.check} on {d}"))
        else:
            excluded[:, symbols.index(f.symbol)] = True
            events[f.symbol].append((_EVERY, f"{f.check} (undated: every session): {f.message}"))

    for i, symbol in enumerate(symbols):
        d: dict[str, object] = {}
        ev = sorted(events[symbol])
        ev_rows = np.array([r for r, _ in ev], dtype=np.int64)
        d["event_rows"], d["event_texts"] = ev_rows, [t for _, t in ev]
        for r in ev_rows:
            if r >= n_s:
                continue
            lo = max(int(r), 0)
            hi = min(int(r) + window, n_s)  # rows t with r <= t < r + window
            if hi > lo:
                excluded[lo:hi, i] = True
        fund = clean.get(symbol)
        if fund is not None and len(fund):
            dates = pd.DatetimeIndex(fund["date"])
            through = dates.searchsorted(sessions, side="right")  # valid rows dated <= t
            short = (through > 0) & (through < quality.min_history_sessions)
            has = sessions.isin(dates)
            vol = pd.Series(fund["volume"].to_numpy(dtype=np.float64), index=dates).reindex(sessions).to_numpy()
            zero = has & (vol == 0)
            cum_has = np.concatenate([[0], np.cumsum(has)])
            cum_zero = np.concatenate([[0], np.cumsum(zero)])
            first_row = int(np.argmax(has)) if has.any() else n_s
            if len(dates) and dates[0] < start:
                first_row = 0
            last = np.where(has, rows, -1)
            last = np.maximum.accumulate(last)  # last row with a bar, through t
            lo = np.maximum(rows - window + 1, first_row)
            expected = np.where(last >= lo, last - lo + 1, 0)
            have = np.where(last >= lo, cum_has[np.maximum(last, 0) + 1] - cum_has[lo], 0)
            n_missing = expected - have
            with np.errstate(invalid="ignore", divide="ignore"):
                miss_frac = np.where(expected > 0, n_missing / np.maximum(expected, 1), 0.0)
            missing = (expected > 0) & (miss_frac > quality.max_missing_fraction)
            w_lo = np.maximum(rows - window + 1, 0)
            n_rows = cum_has[rows + 1] - cum_has[w_lo]
            n_zero = cum_zero[rows + 1] - cum_zero[w_lo]
            with np.errstate(invalid="ignore", divide="ignore"):
                zero_frac = np.where(n_rows > 0, n_zero / np.maximum(n_rows, 1), 0.0)
            zeros = (n_rows > 0) & (zero_frac > quality.max_zero_volume_fraction)
            excluded[:, i] |= short | missing | zeros
            d["short"], d["missing"], d["zero"] = short, missing, zeros
            d["short_text"] = (lambda t, through=through: f"{SHORT_HISTORY}: only {int(through[t])} valid row(s) "
                               f"through {sessions[t].date()} (quality.min_history_sessions "
                               f"{quality.min_history_sessions})")
            d["missing_text"] = (lambda t, m=n_missing, e=expected, fr=miss_frac: f"{MISSING_SESSIONS}: {int(m[t])} of "
                                 f"{int(e[t])} {calendar.code} session(s) in the window have no row ({fr[t]:.1%}; "
                                 f"limit quality.max_missing_fraction {quality.max_missing_fraction:.1%})")
            d["zero_text"] = (lambda t, z=n_zero, n=n_rows, fr=zero_frac: f"{ZERO_VOLUME}: {int(z[t])} of {int(n[t])} "
                              f"row(s) in the window with zero volume ({fr[t]:.1%}; limit "
                              f"quality.max_zero_volume_fraction {quality.max_zero_volume_fraction:.1%})")
        detail[symbol] = d
    return Universe(sessions, symbols, window, excluded, detail)


def enforce(report: QualityReport, fail_on: str = "fatal") -> None:
    """Raise :class:`DataQualityError` when the report holds blocking findings under ``fail_on``.

    The message lists every blocking finding; ``file``, ``symbol`` and ``date`` name the first.
    """
    if fail_on not in ("fatal", "error"):
        raise ValueError(f"fail_on must be 'fatal' or 'error', got {fail_on!r}")
    blocking = report.blocking(fail_on)
    if not blocking:
        return
    first = blocking[0]
    listed = "\n".join(f"  - {f}" for f in blocking[:50])
    more = f"\n  ... and {len(blocking) - 50} more" if len(blocking) > 50 else ""
    raise DataQualityError(
        f"data-quality gate failed (fail_on={fail_on!r}): {len(blocking)} blocking finding(s):\n{listed}{more}",
        report=report, file=first.file, symbol=first.symbol, date=first.dates[0] if first.dates else None)


# ----------------------------------------------------------------------------------- amount and splits
def _file_name(file: str | None) -> str:
    return Path(file).name if file else "no file"


def no_amount_funds(raw: Mapping[str, RawPrices], symbols: Iterable[str]) -> list[str]:
    """The funds among ``symbols`` whose records have rows but no amount on any of them (the column is
    missing or empty in the file). Judged on the whole file, not on the rows of an as-of view, so that
    every view of the same files treats a fund the same way; a fund with some amounts is not listed (its
    rows without one keep the ``missing_amount`` finding)."""
    out = []
    for s in symbols:
        rec = raw.get(s)
        frame = rec.frame if rec is not None else None
        if not isinstance(frame, pd.DataFrame) or "amount" not in frame.columns or not len(frame):
            continue
        values = pd.to_numeric(frame["amount"], errors="coerce")
        if values.isna().all():
            out.append(s)
    return out


def amount_required_message(funds: Sequence[str], files: Mapping[str, str | None], pool: str) -> str:
    """The one line of a load that fails under ``data.amount: require``."""
    named = ", ".join(f"{s} ({_file_name(files.get(s))})" for s in funds)
    return (f"pool {pool}: no amount column in the files of {len(funds)} fund(s): {named}; data.amount is "
            f"require -- set data.amount: estimate (amount = volume x typical price, marked estimated) or "
            f"data.amount: drop_factors (the amount-based factors left out)")


def check_amount(funds: Sequence[str], files: Mapping[str, str | None], rows: Mapping[str, int], setting: str,
                 pool: str, factors: Sequence[str] = ()) -> list[Finding]:
    """The findings of ``data.amount`` for the funds without any amount (:func:`no_amount_funds`).

    * ``estimate``: one ``amount_estimated`` finding per fund (WARN: what uses turnover -- the amount
      factors, ADV, capacity and liquidity limits -- then rests on volume x typical price, which is close to
      the real turnover of a liquid fund but not it; a reader must see that, the numbers alone do not say
      it);
    * ``drop_factors``: one ``amount_factors_left_out`` finding for the pool naming the funds and the
      ``factors`` left out (WARN although nothing is invented: those funds have no ADV either, so the
      liquidity rule ``backtest.liquidity_filter`` never buys them and capacity names them as positions
      without ADV);
    * ``require``: one FATAL ``missing_amount`` finding per fund (:func:`amount_required_message`).
    """
    if not funds:
        return []
    if setting == "estimate":
        return [_finding(AMOUNT_ESTIMATED, s, files.get(s),
                         f"no amount column in {_file_name(files.get(s))}: amount (turnover) estimated as volume x "
                         f"typical price (high+low+close)/3 on the raw prices for its {int(rows.get(s, 0))} row(s) "
                         f"(data.amount: estimate); the amount factors, ADV and capacity of this fund use the "
                         f"estimate (panel meta amount_estimated); set data.amount: drop_factors to leave the "
                         f"amount factors out instead, or give files with an amount column", int(rows.get(s, 0)))
                for s in funds]
    if setting == "drop_factors":
        named = ", ".join(f"{s} ({_file_name(files.get(s))})" for s in funds)
        shown = ", ".join(factors[:6]) + (f" and {len(factors) - 6} more" if len(factors) > 6 else "")
        return [Finding(AMOUNT_FACTORS_LEFT_OUT, CHECKS_BY_NAME[AMOUNT_FACTORS_LEFT_OUT].severity, None,
                        f"no amount column in the files of {len(funds)} fund(s) of pool {pool}: {named}; "
                        f"data.amount: drop_factors leaves the {len(factors)} amount-based factor(s) out of the "
                        f"pool ({shown}) and its bars count without amount; those funds have no ADV either: with "
                        f"backtest.liquidity_filter on they are never bought; set data.amount: estimate to keep "
                        f"the factors and an ADV from estimated turnover", len(factors))]
    if setting == "require":
        line = amount_required_message(funds, files, pool)
        return [_finding(MISSING_AMOUNT, s, files.get(s), line, int(rows.get(s, 0)), severity=Severity.FATAL)
                for s in funds]
    raise ValueError(f"data.amount must be estimate, drop_factors or require, got {setting!r}")


def check_split_proposals(symbol: str, proposals: pd.DataFrame, file: str | None = None, setting: str = "propose",
                          adjustment: Adjustment | None = None) -> list[Finding]:
    """The findings of a fund's split proposals
    (:func:`~rotation_platform.data.corporate_actions.propose_splits`).

    ``propose``: one ``split_proposed`` finding (INFO; the move itself stays an ``unexplained_jump`` ERROR,
    whose message points here) naming each proposal's first session on the new basis, its ratio, the
    evidence and the exact line to add to ``platform_splits.csv``. ``apply``: one ``split_inferred`` finding
    (WARN) for the proposals ``adjustment`` (the fund's adjustment after adding them) applied; a proposal the
    adjustment could not apply (a factor file covering that date without a step: the factor file is used) is
    reported as a proposal, with the reason.
    """
    if proposals is None or proposals.empty:
        return []
    applied: set[pd.Timestamp] = set()
    if setting == "apply" and adjustment is not None:
        ev = adjustment.events
        ok = ev[(ev["kind"] == "split") & (ev["source"] == "table") & (ev["status"] == "applied")]
        applied = {pd.Timestamp(d) for d in ok["row_date"].dropna()}

    def evidence(rec) -> str:  # noqa: ANN001 - a row of the proposals table
        return (f"{pd.Timestamp(rec.date).date()} (first session on the new basis; last on the old "
                f"{pd.Timestamp(rec.last_old_date).date()}): close {rec.price_ratio:.4g}x the previous, within "
                f"{rec.tolerance:.1%} of 1/{rec.ratio_text} (off by {rec.deviation:.2%}), volume "
                f"{rec.volume_ratio:.2f}x "
                f"(median of {int(rec.volume_sessions)} session(s) after vs before) -- a 1:{rec.ratio_text} unit "
                f"split (one unit became {rec.ratio_text})")

    out: list[Finding] = []
    recs = list(proposals.itertuples(index=False))
    done = [r for r in recs if pd.Timestamp(r.date) in applied]
    pending = [r for r in recs if pd.Timestamp(r.date) not in applied]
    if done:
        text = "; ".join(f"{evidence(r)}; applied as the line '{r.table_line}' of platform_splits.csv would be"
                         for r in done)
        out.append(_finding(SPLIT_INFERRED, symbol, file,
                            f"{len(done)} unit split(s) inferred from the prices and applied (data.splits: apply): "
                            f"{text}; prices before are back-adjusted and holdings multiply by the ratio on that "
                            f"session; add the line(s) to platform_splits.csv to make them facts",
                            len(done), [r.date for r in done], [r.line for r in done]))
    if pending:
        why = ("data.splits: apply could not apply it: the factor file covers that date and shows no step (the "
               "factor file is used; correct it or remove it)" if setting == "apply" else
               "nothing is applied (data.splits: propose) and the move stays an unexplained jump")
        text = "; ".join(f"{evidence(r)}; add the line '{r.table_line}' to platform_splits.csv (columns "
                         f"code,split_date,split_ratio)" for r in pending)
        out.append(_finding(SPLIT_PROPOSED, symbol, file,
                            f"{len(pending)} unit split(s) proposed: {text}; {why}; or set data.splits: apply",
                            len(pending), [r.date for r in pending], [r.line for r in pending]))
    return out
