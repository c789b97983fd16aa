"""Load one pool's prices: raw records -> quality gate -> back-adjustment -> jump check -> panels.

The same steps run for every :class:`~rotation_platform.data.sources.base.PriceSource`:

1. ``source.read(pool.symbols)`` -- raw records, kept untouched in :attr:`PoolPrices.raw`;
2. the quality gate (:func:`rotation_platform.data.quality.check_prices`) on copies: findings and
   quarantined rows; then ``data.amount`` for the funds whose files have no amount on any row
   (:func:`rotation_platform.data.quality.no_amount_funds`): ``estimate`` fills their clean rows' amount
   with volume x typical price (:func:`estimate_amount`; ``meta["amount_estimated"]`` lists them, WARN
   ``amount_estimated``), ``drop_factors`` keeps it NaN and lists the amount-based factors in
   ``meta["amount_factors_left_out"]`` (the factor engine leaves them out and counts bars without amount;
   INFO ``amount_factors_left_out``), ``require`` fails the load with one line naming the funds and both
   settings (a fund with only some amounts keeps its ``missing_amount`` finding either way);
3. back-adjustment of each fund's clean rows from ``source.corporate_actions`` (hfq factors, else the
   split and dividend tables; factor noise classified and, with ``data.adjustment.snap_noise``, snapped;
   see :mod:`rotation_platform.data.corporate_actions`); split proposals
   (:func:`~rotation_platform.data.corporate_actions.propose_splits`): ``data.splits: propose`` reports them
   (``split_proposed``, the jump stays unexplained), ``apply`` adjusts again with them added to the splits
   table (WARN ``split_inferred``); ``meta["splits"]`` lists them;
4. the jump check on the adjusted closes (``pool.jump_threshold``), the factor/table cross-check and the
   factor-noise report (``adjustment_noise``);
5. the policy (``data.quality.fail_on``): fatal findings always raise
   :class:`~rotation_platform.errors.DataQualityError` (with the full report attached), ERROR findings
   raise too under ``fail_on="error"``;
6. the panels on the pool calendar's sessions from the earliest first date among the funds (or
   ``data.start`` when later) through ``asof`` (or the last date of any fund); sessions without a row
   are NaN. Three views share those sessions and symbols and the same clean rows:

   * ``panel``: adjusted prices (for signals): ``raw x factor``, volume ``/ factor``;
   * ``raw_panel``: the clean rows unadjusted -- open/high/low/close exactly as in the files, volume in
     shares, amount in CNY (for orders and the simulation in real money); NaN exactly where ``panel``
     is; ``meta["adjusted"]`` is False;
   * ``actions``: the corporate actions in real-money units on the same grid
     (:class:`~rotation_platform.data.corporate_actions.ActionPanel`: splits multiply shares, cash
     dividends pay cash);
7. the data-ended check (``data_ended``, WARN) once the panel's last session is known: a fund whose last
   clean bar is ``data.ended_after`` or more sessions before it, or that has a delisting date in
   ``pool.delisted`` on or before it, is liquidated at its last price by the simulation and not selected
   afterwards (:attr:`PoolPrices.ended`); and the starts-late check (``data_starts_late``, INFO): a fund
   whose first bar is after the panel's first session;
8. the universe (:attr:`PoolPrices.universe`, :func:`rotation_platform.data.quality.universe_exclusions`):
   per session, the funds an ERROR finding inside ``data.quality.exclusion_window`` leaves out of that
   session's decision (point-in-time). ERROR findings do not block the pool by themselves: the pool's
   quality gate fails only when fewer than ``pools[].min_funds`` funds remain tradeable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rotation_platform.calendars import get_calendar
from rotation_platform.config.models import DataConfig, PoolConfig
from rotation_platform.data.corporate_actions import (
    ActionPanel,
    Adjustment,
    apply_adjustment,
    build_action_panel,
    compute_adjustment,
    detect_jumps,
    propose_splits,
    with_inferred_splits,
)
from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.data.quality import (
    DATA_ENDED,
    Finding,
    QualityReport,
    Universe,
    check_adjustment,
    check_amount,
    check_data_ended,
    check_data_starts_late,
    check_jumps,
    MISSING_AMOUNT,
    Severity,
    amount_required_message,
    check_prices,
    check_split_proposals,
    enforce,
    no_amount_funds,
    universe_exclusions,
)
from rotation_platform.data.sources.base import CorporateActions, PriceSource, RawPrices
from rotation_platform.errors import DataQualityError, DataSourceError

__all__ = ["PoolPrices", "load_pool_prices", "estimate_amount"]


@dataclass(frozen=True, eq=False)
class PoolPrices:
    """A loaded pool: the adjusted and raw panels, the corporate actions, and everything to audit them.

    * ``panel``: adjusted prices (sessions x funds, see :class:`PricePanel`), for signals;
    * ``report``: every quality finding of the load;
    * ``quarantine``: the rows kept out of the panel, with reasons and original values;
    * ``raw``: the source's records exactly as read;
    * ``adjustments``: per fund, how its prices were adjusted (``panel = raw_panel x factor``);
    * ``raw_panel``: the same clean rows unadjusted, on ``panel``'s sessions and symbols (NaN where it is
      NaN), ``meta["adjusted"]`` False -- prices in real money for orders and the simulation;
    * ``actions``: splits and cash dividends on the same grid
      (:class:`~rotation_platform.data.corporate_actions.ActionPanel`).

    * ``universe``: per session, the funds left out of that session's decision by an ERROR finding
      inside ``data.quality.exclusion_window`` (:class:`~rotation_platform.data.quality.Universe`).

    ``raw_panel``, ``actions`` and ``universe`` are always set after construction: when a caller builds a
    ``PoolPrices`` from the first five fields only, the first two are derived from ``panel`` and
    ``adjustments`` and the universe excludes nothing.
    """

    panel: PricePanel
    report: QualityReport
    quarantine: pd.DataFrame
    raw: Mapping[str, RawPrices]
    adjustments: Mapping[str, Adjustment]
    raw_panel: PricePanel = None  # type: ignore[assignment]   # derived in __post_init__ when not given
    actions: ActionPanel = None  # type: ignore[assignment]     # derived in __post_init__ when not given
    universe: Universe = None  # type: ignore[assignment]       # no exclusion when not given

    def __post_init__(self) -> None:
        if self.raw_panel is None:
            object.__setattr__(self, "raw_panel", _unadjusted(self.panel, self.adjustments))
        if self.actions is None:
            close = self.raw_panel["close"]
            closes = {s: close[s].dropna() for s in self.panel.symbols}
            object.__setattr__(self, "actions", build_action_panel(self.panel.sessions, self.panel.symbols,
                                                                   self.adjustments, closes))
        if self.universe is None:
            object.__setattr__(self, "universe", Universe.empty(self.panel.sessions, self.panel.symbols, 1))

    @property
    def methods(self) -> dict[str, str]:
        """Adjustment method per fund."""
        return {s: a.method for s, a in self.adjustments.items()}

    @property
    def ended(self) -> dict[str, pd.Timestamp]:
        """Funds whose data ended (the ``data_ended`` findings): symbol -> date of the last bar it can be
        traded on (the simulation liquidates it at that bar's price and does not select it afterwards)."""
        return {f.symbol: pd.Timestamp(f.dates[0]) for f in self.report.select(DATA_ENDED)
                if f.symbol is not None and f.dates}


def _unadjusted(panel: PricePanel, adjustments: Mapping[str, Adjustment]) -> PricePanel:
    """The raw view of an adjusted panel: prices divided and volume multiplied by each fund's factor."""
    frames = {name: panel[name].copy() for name in PRICE_FIELDS}
    for symbol in panel.symbols:
        adjustment = adjustments.get(symbol)
        if adjustment is None:
            continue
        f = adjustment.factor.reindex(panel.sessions).to_numpy(dtype=np.float64)
        for name in ("open", "high", "low", "close"):
            frames[name][symbol] = frames[name][symbol].to_numpy() / f
        frames["volume"][symbol] = frames["volume"][symbol].to_numpy() * f
    return PricePanel(frames, {**panel.meta, "adjusted": False})


def _has_actions(actions: CorporateActions) -> bool:
    """True when the source knows any factor, split or dividend (the prices then go through adjustment)."""
    return bool(len(actions.factors)) or len(actions.splits) > 0 or len(actions.dividends) > 0


def estimate_amount(clean: pd.DataFrame) -> pd.DataFrame:
    """A copy of a fund's clean raw rows with ``amount`` = volume x typical price ``(high + low + close) / 3``
    (raw prices, volume in shares: CNY turnover as if every share traded at the typical price; NaN where the
    volume is)."""
    out = clean.copy()
    typical = (clean["high"].to_numpy(dtype=np.float64) + clean["low"].to_numpy(dtype=np.float64)
               + clean["close"].to_numpy(dtype=np.float64)) / 3.0
    out["amount"] = clean["volume"].to_numpy(dtype=np.float64) * typical
    return out


def load_pool_prices(source: PriceSource, pool: PoolConfig, data_cfg: DataConfig,
                     asof: dt.date | str | pd.Timestamp | None = None, *,
                     today: dt.date | str | pd.Timestamp | None = None) -> PoolPrices:
    """Load, check, adjust and align the pool's funds (see the module docstring).

    ``asof`` ends the view: rows after it are quarantined as ``after_asof`` (INFO), a fund listed later
    is an all-NaN column, and the panel ends on the last session on or before it. ``today`` (default:
    the calendar's current local date) bounds real dates: rows after it are ``future_date`` errors.
    """
    calendar = get_calendar(pool.calendar)
    symbols = list(pool.symbols)
    raw = dict(source.read(symbols))
    lacking = [s for s in symbols if s not in raw]
    if lacking:
        raise DataSourceError(f"source {source.name!r} returned no records for {lacking} of pool {pool.name}")
    quality = data_cfg.quality
    result = check_prices({s: raw[s] for s in symbols}, calendar, quality, asof=asof, today=today)
    actions = source.corporate_actions(symbols)
    files = {s: raw[s].file for s in symbols}

    # funds without any amount: data.amount decides (estimate / drop_factors / require)
    no_amount = [s for s in no_amount_funds(raw, symbols) if s in result.clean]
    rows = {s: int(len(result.clean[s])) for s in no_amount}
    left_out: list[str] = []
    estimated: list[str] = []
    if no_amount and data_cfg.amount == "drop_factors":
        from rotation_platform.factors.registry import AMOUNT_FACTORS

        left_out = list(AMOUNT_FACTORS)
    clean_rows = dict(result.clean)
    if no_amount and data_cfg.amount == "estimate":
        for s in no_amount:
            clean_rows[s] = estimate_amount(clean_rows[s])
        estimated = list(no_amount)
    amount_findings = check_amount(no_amount, files, rows, data_cfg.amount, pool.name, left_out)

    provenance = dict(source.describe())
    factor_files = set(provenance.get("factor_files") or ())

    adjusted: dict[str, pd.DataFrame] = {}
    unadjusted: dict[str, pd.DataFrame] = {}
    adjustments: dict[str, Adjustment] = {}
    extra: list[Finding] = []
    jumps: dict[str, pd.DataFrame] = {}
    proposed: dict[str, list[dict[str, object]]] = {}
    for symbol in symbols:
        clean = clean_rows.get(symbol)
        if clean is None or clean.empty:
            continue
        adjustment = compute_adjustment(symbol, clean, actions, data_cfg.adjustment)
        frame = apply_adjustment(clean, adjustment)
        proposals = propose_splits(symbol, clean, frame, adjustment, calendar)
        if len(proposals) and data_cfg.splits == "apply":
            adjustment = compute_adjustment(symbol, clean, with_inferred_splits(actions, proposals),
                                            data_cfg.adjustment)
            frame = apply_adjustment(clean, adjustment)
        adjustments[symbol] = adjustment
        adjusted[symbol] = frame
        unadjusted[symbol] = clean
        factor_file = f"{symbol}_hfq_factor.csv"
        extra.extend(check_adjustment(adjustment, raw[symbol].file,
                                      factor_file if factor_file in factor_files else None))
        jumps[symbol] = detect_jumps(symbol, clean, frame, adjustment, pool.jump_threshold)
        extra.extend(check_jumps(symbol, clean, frame, adjustment, pool.jump_threshold, raw[symbol].file,
                                 jumps=jumps[symbol], proposals=proposals))
        extra.extend(check_split_proposals(symbol, proposals, raw[symbol].file, data_cfg.splits, adjustment))
        if len(proposals):
            proposed[symbol] = [{"date": str(pd.Timestamp(r.date).date()), "ratio": float(r.ratio),
                                 "line": str(r.table_line)} for r in proposals.itertuples(index=False)]
    report = result.report
    if data_cfg.amount == "require" and no_amount:
        # the fund's INFO missing_amount becomes the FATAL one that names the settings
        report = QualityReport(tuple(f for f in report.findings if not (
            f.check == MISSING_AMOUNT and f.symbol in no_amount and f.severity == Severity.INFO)), report.stats)
    report = report.with_findings(amount_findings + extra)
    blocking = report.blocking(quality.fail_on)
    if no_amount and data_cfg.amount == "require" and all(
            f.check == MISSING_AMOUNT and f.symbol in no_amount for f in blocking):
        raise DataQualityError(amount_required_message(no_amount, files, pool.name), report=report,
                               file=files.get(no_amount[0]), symbol=no_amount[0])
    enforce(report, quality.fail_on)
    if not adjusted:
        raise DataQualityError(f"no fund of pool {pool.name} has a valid row"
                               + (f" on or before the as-of date {pd.Timestamp(asof).date()}" if asof is not None
                                  else ""), report=report, date=asof)

    firsts = [f["date"].iloc[0] for f in adjusted.values()]
    lasts = [f["date"].iloc[-1] for f in adjusted.values()]
    start = min(firsts)
    if data_cfg.start is not None:
        start = max(start, pd.Timestamp(data_cfg.start))
    end = pd.Timestamp(asof).normalize() if asof is not None else max(lasts)
    sessions = calendar.sessions(start, end) if end >= start else pd.DatetimeIndex([], name="session")
    sessions = pd.DatetimeIndex(sessions.astype("datetime64[ns]"), name="session")

    frames = _frames(adjusted, symbols, sessions)
    raw_frames = _frames(unadjusted, symbols, sessions)

    # data ended: a fund's last clean bar well before the panel's last session, or a delisting date
    closes = {s: pd.Series(f["close"].to_numpy(dtype=np.float64), index=pd.DatetimeIndex(f["date"]))
              for s, f in unadjusted.items()}
    in_view = {s: c.loc[:sessions[-1]] if len(sessions) else c.iloc[:0] for s, c in closes.items()}
    ended = check_data_ended({s: in_view[s] for s in symbols if s in in_view}, sessions, data_cfg.ended_after,
                             pool.delisted, {s: raw[s].file for s in symbols}, calendar.code)
    late = check_data_starts_late({s: pd.Timestamp(adjusted[s]["date"].iloc[0]) for s in symbols if s in adjusted},
                                  sessions, {s: raw[s].file for s in symbols}, calendar.code)
    report = report.with_findings(ended + late)
    in_asof = {s: f[f["date"] <= sessions[-1]] if len(sessions) else f.iloc[:0] for s, f in unadjusted.items()}
    universe = universe_exclusions(sessions, symbols, calendar, quality, clean=in_asof,
                                   quarantine=result.quarantine, raw=raw, jumps=jumps, findings=report.findings)
    last_out = universe.reasons(len(sessions) - 1) if len(sessions) else {}

    meta: dict[str, object] = {
        **provenance,
        "source": provenance.get("source", source.name),
        "synthetic": bool(provenance.get("synthetic", source.synthetic)),
        "files": {s: {"file": Path(raw[s].file).name if raw[s].file else None, "layout": raw[s].layout,
                      "rows": int(len(raw[s].frame)), "sha256": raw[s].meta.get("sha256")} for s in symbols},
        "pool": pool.name,
        "calendar": calendar.code,
        "adjusted": _has_actions(actions),
        "adjustment": {s: a.method for s, a in adjustments.items()},
        "asof": None if asof is None else str(pd.Timestamp(asof).date()),
        "start": str(sessions[0].date()) if len(sessions) else None,
        "end": str(sessions[-1].date()) if len(sessions) else None,
        "quality": {"passed": report.passed,
                    "worst_severity": report.worst_severity.name if report.worst_severity is not None else None,
                    "counts": report.counts, "quarantined_rows": int(len(result.quarantine))},
        "universe": {"exclusion_window": int(quality.exclusion_window), "excluded": last_out},
        "amount_estimated": estimated,
        "amount_factors_left_out": left_out,
        "amount": {"setting": data_cfg.amount, "without_amount": list(no_amount), "estimated": estimated,
                   "factors_left_out": len(left_out)},
        "splits": {"setting": data_cfg.splits, "proposed": proposed},
    }
    panel = PricePanel(frames, meta)
    raw_panel = PricePanel(raw_frames, {**meta, "adjusted": False})
    action_panel = build_action_panel(sessions, symbols, adjustments, closes)
    return PoolPrices(panel=panel, report=report, quarantine=result.quarantine, raw=raw, adjustments=adjustments,
                      raw_panel=raw_panel, actions=action_panel, universe=universe)


def _frames(per_fund: Mapping[str, pd.DataFrame], symbols: list[str], sessions: pd.DatetimeIndex
            ) -> dict[str, pd.DataFrame]:
    """Per-fund row frames as one sessions x symbols frame per field (NaN where a fund has no row)."""
    frames: dict[str, pd.DataFrame] = {}
    for name in PRICE_FIELDS:
        columns = {}
        for symbol in symbols:
            if symbol in per_fund:
                fund = per_fund[symbol]
                series = pd.Series(fund[name].to_numpy(dtype=np.float64), index=pd.DatetimeIndex(fund["date"]))
                columns[symbol] = series.reindex(sessions)
            else:
                columns[symbol] = pd.Series(np.nan, index=sessions)
        frames[name] = pd.DataFrame(columns, index=sessions, columns=symbols)
    return frames
