"""Load one pool's prices: raw records -> quality gate -> back-adjustment -> jump check -> panel.

The same steps run for every :class:`~rotation_platform.data.sources.base.PriceSource`:

1. ``source.read(pool.symbols)`` -- raw records, kept untouched in :attr:`PoolPrices.raw`;
2. the quality gate (:func:`rotation_platform.data.quality.check_prices`) on copies: findings and
   quarantined rows;
3. back-adjustment of each fund's clean rows from ``source.corporate_actions`` (hfq factors, else the
   split and dividend tables; see :mod:`rotation_platform.data.corporate_actions`);
4. the jump check on the adjusted closes (``pool.jump_threshold``) and the factor/table cross-check;
5. the policy (``data.quality.fail_on``): fatal findings always raise
   :class:`~rotation_platform.errors.DataQualityError` (with the full report attached), ERROR findings
   raise too under ``fail_on="error"``;
6. the panel on the pool calendar's sessions from the earliest first date among the funds (or
   ``data.start`` when later) through ``asof`` (or the last date of any fund); sessions without a row
   are NaN.
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
from rotation_platform.data.corporate_actions import Adjustment, apply_adjustment, compute_adjustment
from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.data.quality import (
    Finding,
    QualityReport,
    check_adjustment,
    check_jumps,
    check_prices,
    enforce,
)
from rotation_platform.data.sources.base import CorporateActions, PriceSource, RawPrices
from rotation_platform.errors import DataQualityError, DataSourceError

__all__ = ["PoolPrices", "load_pool_prices"]


@dataclass(frozen=True, eq=False)
class PoolPrices:
    """A loaded pool: the adjusted panel and everything needed to audit it.

    * ``panel``: adjusted prices (sessions x funds, see :class:`PricePanel`);
    * ``report``: every quality finding of the load;
    * ``quarantine``: the rows kept out of the panel, with reasons and original values;
    * ``raw``: the source's records exactly as read;
    * ``adjustments``: per fund, how its prices were adjusted.
    """

    panel: PricePanel
    report: QualityReport
    quarantine: pd.DataFrame
    raw: Mapping[str, RawPrices]
    adjustments: Mapping[str, Adjustment]

    @property
    def methods(self) -> dict[str, str]:
        """Adjustment method per fund."""
        return {s: a.method for s, a in self.adjustments.items()}


def _has_actions(actions: CorporateActions) -> bool:
    """True when the source knows any factor, split or dividend (the prices then go through adjustment)."""
    return bool(len(actions.factors)) or len(actions.splits) > 0 or len(actions.dividends) > 0


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

    adjusted: dict[str, pd.DataFrame] = {}
    adjustments: dict[str, Adjustment] = {}
    extra: list[Finding] = []
    for symbol in symbols:
        clean = result.clean.get(symbol)
        if clean is None or clean.empty:
            continue
        adjustment = compute_adjustment(symbol, clean, actions)
        frame = apply_adjustment(clean, adjustment)
        adjustments[symbol] = adjustment
        adjusted[symbol] = frame
        extra.extend(check_adjustment(adjustment, raw[symbol].file))
        extra.extend(check_jumps(symbol, clean, frame, adjustment, pool.jump_threshold, raw[symbol].file))
    report = result.report.with_findings(extra)
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

    frames: dict[str, pd.DataFrame] = {}
    for name in PRICE_FIELDS:
        columns = {}
        for symbol in symbols:
            if symbol in adjusted:
                fund = adjusted[symbol]
                series = pd.Series(fund[name].to_numpy(dtype=np.float64),
                                   index=pd.DatetimeIndex(fund["date"]))
                columns[symbol] = series.reindex(sessions)
            else:
                columns[symbol] = pd.Series(np.nan, index=sessions)
        frames[name] = pd.DataFrame(columns, index=sessions, columns=symbols)

    provenance = dict(source.describe())
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
    }
    panel = PricePanel(frames, meta)
    return PoolPrices(panel=panel, report=report, quarantine=result.quarantine, raw=raw, adjustments=adjustments)
