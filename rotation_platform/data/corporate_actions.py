"""Back-adjustment (hfq) of unadjusted prices, and detection of unexplained price jumps.

Pure functions over one fund's *clean* records: a frame with the raw columns (``date, open, high, low,
close, volume, amount``, optionally ``line``) sorted by ``date`` with unique dates and positive closes,
as the quality gate leaves them.

Adjustment contract
-------------------
A per-row cumulative factor ``F`` is built, normalised to ``F = 1`` on the fund's first row, so the
adjusted history starts at the traded price and later prices are scaled so that close-to-close
adjusted returns are total returns:

* ``open, high, low, close`` are multiplied by ``F``; ``volume`` is divided by ``F`` (so that
  adjusted price x adjusted volume still matches ``amount``); ``amount`` is unchanged.
* Method ``hfq_factor``: the vendor's multiplicative factors (``adjusted = close * factor``), carried
  forward onto the price dates; rows before the factor file starts take its first factor, rows after it
  ends its last factor.
* Method ``hfq_factor+actions``: as ``hfq_factor``, and splits or dividends from the tables dated outside
  the factor file's range (after it ends, or before it starts) are chained onto the carried factor.
  Table actions inside the range are not applied twice: they are checked against the factor file's
  step on their row and reported when the two disagree.
* Method ``actions``: no factor file; the factor steps at each split (by the split ratio: one old unit
  becomes ``ratio`` new units) and each cash dividend (by ``1 + cash / close`` on the ex-date, i.e. the
  cash reinvested at the ex-date close). A split and a dividend on the same day combine, the cash
  being per new unit.
* Method ``none``: nothing is known; ``F = 1``.

An action takes effect on the first row dated on or after its (effective) date. Actions on or before
the first row, or after the last row, change nothing and are recorded as ``ignored`` with a reason.

Jump contract
-------------
:func:`detect_jumps` compares consecutive rows. A move beyond ``threshold`` in absolute value is

* ``explained`` when the raw close moved beyond it but the adjusted close did not (an action removed
  it; INFO);
* ``action_mismatch`` when the adjusted close still moves beyond it on a row carrying an action or a
  factor step (the recorded action does not account for the move);
* ``unexplained`` when the adjusted close moves beyond it and no action or factor step is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from rotation_platform.data.sources.base import CorporateActions
from rotation_platform.errors import CorporateActionError

__all__ = [
    "AdjustmentMethod",
    "ADJUSTMENT_METHODS",
    "FACTOR_STEP_TOLERANCE",
    "ACTION_CHECK_TOLERANCE",
    "JUMP_KINDS",
    "Adjustment",
    "factor_on_dates",
    "action_multipliers",
    "compute_adjustment",
    "apply_adjustment",
    "adjust_prices",
    "detect_jumps",
]

AdjustmentMethod = Literal["hfq_factor", "hfq_factor+actions", "actions", "none"]
ADJUSTMENT_METHODS: tuple[str, ...] = ("hfq_factor", "hfq_factor+actions", "actions", "none")

#: a factor change larger than this (in log terms) between two rows counts as a corporate action
FACTOR_STEP_TOLERANCE = 1e-3
#: a table action whose expected step differs from the factor file's step by more than this (log
#: terms) is reported as a disagreement between the two
ACTION_CHECK_TOLERANCE = 0.01

JUMP_KINDS: tuple[str, ...] = ("explained", "action_mismatch", "unexplained")

_EVENT_COLUMNS = ("date", "row_date", "kind", "value", "multiplier", "source", "status", "note")


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({
        "date": pd.Series(dtype="datetime64[ns]"), "row_date": pd.Series(dtype="datetime64[ns]"),
        "kind": pd.Series(dtype=object), "value": pd.Series(dtype=float),
        "multiplier": pd.Series(dtype=float), "source": pd.Series(dtype=object),
        "status": pd.Series(dtype=object), "note": pd.Series(dtype=object),
    })


@dataclass(frozen=True, eq=False)
class Adjustment:
    """How one fund's prices were adjusted.

    ``factor`` is indexed by the fund's row dates (``F``, 1.0 on the first row). ``events`` has one row
    per action considered: ``date`` (effective date), ``row_date`` (the row it applies to, NaT when
    none), ``kind`` (``split``, ``dividend`` or ``factor_step``), ``value`` (ratio, cash or factor
    step), ``multiplier`` (the factor step it implies), ``source`` (``table`` or ``factor``), ``status``
    (``applied``, ``in_factor`` when the factor file already holds it, ``factor_disagrees`` when the
    factor file's step differs from the table, ``ignored``) and ``note``.
    """

    symbol: str
    method: AdjustmentMethod
    factor: pd.Series
    events: pd.DataFrame = field(default_factory=_empty_events)
    notes: tuple[str, ...] = ()
    factor_range: tuple[str, str] | None = None

    @property
    def action_dates(self) -> pd.DatetimeIndex:
        """Row dates carrying an applied action or a factor step (they 'explain' a move)."""
        ev = self.events
        keep = ev["status"].isin(["applied", "in_factor", "factor_disagrees"]) & ev["row_date"].notna()
        return pd.DatetimeIndex(ev.loc[keep, "row_date"].unique()).sort_values()

    @property
    def disagreements(self) -> pd.DataFrame:
        """Table actions whose step the factor file does not show."""
        return self.events[self.events["status"] == "factor_disagrees"].reset_index(drop=True)

    def to_dict(self) -> dict[str, object]:
        """JSON-able summary."""
        ev = self.events
        sizes = ev.groupby(["source", "status"]).size() if len(ev) else pd.Series(dtype=np.int64)
        counts = {f"{source}:{status}": int(v) for (source, status), v in sizes.items()}
        return {
            "symbol": self.symbol,
            "method": self.method,
            "factor_first": float(self.factor.iloc[0]) if len(self.factor) else None,
            "factor_last": float(self.factor.iloc[-1]) if len(self.factor) else None,
            "factor_file_range": list(self.factor_range) if self.factor_range else None,
            "events": counts,
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------------------ factors
def factor_on_dates(dates: pd.DatetimeIndex | pd.Series, factor: pd.Series) -> np.ndarray:
    """Vendor factors carried onto ``dates``: the last factor dated on or before each date; dates before
    the first factor take the first one. Not normalised."""
    if factor.empty:
        raise CorporateActionError("empty back-adjustment factor series", symbol=str(factor.name or ""))
    fac = factor.sort_index()
    f_dates = pd.DatetimeIndex(fac.index).to_numpy(dtype="datetime64[ns]")
    d = pd.DatetimeIndex(dates).to_numpy(dtype="datetime64[ns]")
    pos = np.searchsorted(f_dates, d, side="right") - 1
    return fac.to_numpy(dtype=np.float64)[np.clip(pos, 0, None)]


def _table_events(symbol: str, actions: CorporateActions) -> pd.DataFrame:
    """Splits and dividends of ``symbol`` as one event table (effective date, kind, value)."""
    sp = actions.splits
    dv = actions.dividends
    parts = []
    if len(sp):
        rows = sp[sp["symbol"].astype(str) == symbol]
        parts.append(pd.DataFrame({"date": pd.to_datetime(rows["date"]).astype("datetime64[ns]"),
                                   "kind": "split", "value": rows["ratio"].astype(float)}))
    if len(dv):
        rows = dv[dv["symbol"].astype(str) == symbol]
        parts.append(pd.DataFrame({"date": pd.to_datetime(rows["date"]).astype("datetime64[ns]"),
                                   "kind": "dividend", "value": rows["cash"].astype(float)}))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({"date": pd.Series(dtype="datetime64[ns]"), "kind": pd.Series(dtype=object),
                             "value": pd.Series(dtype=float)})
    events = pd.concat(parts, ignore_index=True)
    bad = events[~np.isfinite(events["value"]) | (events["value"] < 0)
                 | ((events["kind"] == "split") & (events["value"] <= 0)) | events["date"].isna()]
    if len(bad):
        row = bad.iloc[0]
        raise CorporateActionError(f"invalid {row['kind']} value {row['value']!r} (splits need a positive ratio, "
                                   f"dividends a non-negative cash amount)", symbol=symbol, date=row["date"])
    return events.sort_values(["date", "kind"], kind="stable").reset_index(drop=True)


def action_multipliers(dates: pd.DatetimeIndex, close: np.ndarray, events: pd.DataFrame,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions and factor multipliers of table events.

    Returns ``(row, multiplier, status_code)`` per event: ``row`` is the first row dated on or after the
    event (``-1`` when none), ``status_code`` 0 = applicable, 1 = on or before the first row,
    2 = after the last row. Dividends divide by the close of their row; splits multiply by the ratio.
    """
    d = dates.to_numpy(dtype="datetime64[ns]")
    e = events["date"].to_numpy(dtype="datetime64[ns]")
    row = np.searchsorted(d, e, side="left")
    status = np.zeros(len(e), dtype=np.int64)
    status[row <= 0] = 1
    status[row >= len(d)] = 2
    row = np.where(status == 0, row, -1)
    values = events["value"].to_numpy(dtype=np.float64)
    is_split = (events["kind"] == "split").to_numpy()
    safe_close = close[np.clip(row, 0, max(len(d) - 1, 0))] if len(d) else np.ones(len(e))
    multiplier = np.where(is_split, values, 1.0 + values / safe_close)
    # a split and a dividend on the same row: the dividend is per new unit -> the steps multiply
    return row, multiplier, status


def compute_adjustment(symbol: str, frame: pd.DataFrame, actions: CorporateActions) -> Adjustment:
    """The back-adjustment of one fund (see the module contract).

    ``frame`` must be sorted by unique ``date`` with positive ``close`` (the quality gate's clean rows).
    """
    dates = pd.DatetimeIndex(frame["date"]).astype("datetime64[ns]")
    close = frame["close"].to_numpy(dtype=np.float64)
    n = len(dates)
    if n == 0:
        raise CorporateActionError("no rows to adjust", symbol=symbol)
    if not dates.is_monotonic_increasing or not dates.is_unique:
        raise CorporateActionError("rows must be sorted by unique date before adjustment", symbol=symbol)
    table = _table_events(symbol, actions)
    vendor = actions.factors.get(symbol)
    notes: list[str] = []

    row, mult, status = action_multipliers(dates, close, table)
    ev = table.assign(row=row, multiplier=mult, source="table", status="applied", note="")
    ev.loc[status == 1, ["status", "note"]] = ["ignored", "on or before the first price row"]
    ev.loc[status == 2, ["status", "note"]] = ["ignored", "after the last price row"]

    factor_range: tuple[str, str] | None = None
    if vendor is not None and len(vendor):
        fac = vendor.sort_index()
        f_first, f_last = pd.Timestamp(fac.index[0]), pd.Timestamp(fac.index[-1])
        factor_range = (str(f_first.date()), str(f_last.date()))
        base = factor_on_dates(dates, fac)
        base = base / base[0]
        steps = np.ones(n)
        steps[1:] = base[1:] / base[:-1]
        # table actions the factor file covers: compare with its step, do not apply twice
        inside = (ev["status"] == "applied") & (ev["date"] > f_first) & (ev["date"] <= f_last)
        if inside.any():
            r = ev.loc[inside, "row"].to_numpy()
            observed = steps[r]
            # several actions on one row (a split and a dividend) show as one combined step
            expected = ev.loc[inside].groupby("row")["multiplier"].transform("prod").to_numpy()
            agree = np.abs(np.log(observed / expected)) <= ACTION_CHECK_TOLERANCE
            ev.loc[inside, "status"] = np.where(agree, "in_factor", "factor_disagrees")
            ev.loc[inside, "note"] = [("" if ok else f"factor file steps by {o:.6g} on this row, "
                                       f"the table implies {x:.6g}") for ok, o, x in zip(agree, observed, expected)]
        # table actions outside the factor file's range are chained onto it
        extend = ev["status"] == "applied"
        extra = np.ones(n)
        if extend.any():
            np.multiply.at(extra, ev.loc[extend, "row"].to_numpy(), ev.loc[extend, "multiplier"].to_numpy())
            ev.loc[extend, "note"] = "outside the factor file's range; chained onto it"
            notes.append(f"{int(extend.sum())} table action(s) outside the factor file's range "
                         f"{factor_range[0]}..{factor_range[1]} chained onto it")
        factor = base * np.cumprod(extra)
        method: AdjustmentMethod = "hfq_factor+actions" if extend.any() else "hfq_factor"
        if dates[0] < f_first:
            notes.append(f"rows before {factor_range[0]} take the factor file's first factor")
        if dates[-1] > f_last:
            notes.append(f"rows after {factor_range[1]} carry the factor file's last factor")
        # factor steps become events too (they explain moves); skip rows a table action already names
        step_rows = np.flatnonzero(np.abs(np.log(steps)) > FACTOR_STEP_TOLERANCE)
        named = ev.loc[ev["status"].isin(["in_factor", "factor_disagrees"]), "row"].to_numpy(dtype=np.int64)
        step_rows = step_rows[~np.isin(step_rows, named)]
        if len(step_rows):
            ev = pd.concat([ev, pd.DataFrame({
                "date": dates[step_rows], "kind": "factor_step", "value": steps[step_rows], "row": step_rows,
                "multiplier": steps[step_rows], "source": "factor", "status": "in_factor", "note": ""})],
                ignore_index=True)
    else:
        applied = ev["status"] == "applied"
        mult_rows = np.ones(n)
        if applied.any():
            np.multiply.at(mult_rows, ev.loc[applied, "row"].to_numpy(), ev.loc[applied, "multiplier"].to_numpy())
        factor = np.cumprod(mult_rows)
        method = "actions" if applied.any() else "none"

    row_idx = ev["row"].to_numpy(dtype=np.int64) if len(ev) else np.zeros(0, dtype=np.int64)
    row_dates = np.where(row_idx >= 0, dates.to_numpy()[np.clip(row_idx, 0, n - 1)], np.datetime64("NaT"))
    events = pd.DataFrame({
        "date": pd.to_datetime(ev["date"]).astype("datetime64[ns]").to_numpy(),
        "row_date": pd.DatetimeIndex(row_dates).astype("datetime64[ns]"),
        "kind": ev["kind"].astype(object).to_numpy(), "value": ev["value"].astype(float).to_numpy(),
        "multiplier": ev["multiplier"].astype(float).to_numpy(), "source": ev["source"].astype(object).to_numpy(),
        "status": ev["status"].astype(object).to_numpy(), "note": ev["note"].astype(object).to_numpy(),
    }, columns=list(_EVENT_COLUMNS)) if len(ev) else _empty_events()
    events = events.sort_values(["date", "source", "kind"], kind="stable").reset_index(drop=True)
    return Adjustment(symbol=symbol, method=method,
                      factor=pd.Series(factor, index=pd.DatetimeIndex(dates, name="date"), name=symbol),
                      events=events, notes=tuple(notes), factor_range=factor_range)


def apply_adjustment(frame: pd.DataFrame, adjustment: Adjustment) -> pd.DataFrame:
    """A copy of ``frame`` with prices multiplied and volume divided by the adjustment factor."""
    dates = pd.DatetimeIndex(frame["date"])
    if not dates.equals(pd.DatetimeIndex(adjustment.factor.index)):
        raise CorporateActionError("the adjustment was computed for other rows than the frame's",
                                   symbol=adjustment.symbol)
    f = adjustment.factor.to_numpy(dtype=np.float64)
    out = frame.copy()
    for col in ("open", "high", "low", "close"):
        out[col] = frame[col].to_numpy(dtype=np.float64) * f
    out["volume"] = frame["volume"].to_numpy(dtype=np.float64) / f
    return out


def adjust_prices(symbol: str, frame: pd.DataFrame, actions: CorporateActions) -> tuple[pd.DataFrame, Adjustment]:
    """:func:`compute_adjustment` then :func:`apply_adjustment`."""
    adjustment = compute_adjustment(symbol, frame, actions)
    return apply_adjustment(frame, adjustment), adjustment


def detect_jumps(symbol: str, raw: pd.DataFrame, adjusted: pd.DataFrame, adjustment: Adjustment,
                 threshold: float) -> pd.DataFrame:
    """Close-to-close moves beyond ``threshold`` (see the module contract), one row per move.

    Columns: ``symbol, date, prev_date, line, raw_return, adjusted_return, kind, action``.
    """
    dates = pd.DatetimeIndex(adjusted["date"])
    raw_close = raw["close"].to_numpy(dtype=np.float64)
    adj_close = adjusted["close"].to_numpy(dtype=np.float64)
    raw_ret = np.full(len(dates), np.nan)
    adj_ret = np.full(len(dates), np.nan)
    if len(dates) > 1:
        raw_ret[1:] = raw_close[1:] / raw_close[:-1] - 1.0
        adj_ret[1:] = adj_close[1:] / adj_close[:-1] - 1.0
    big_adj = np.abs(adj_ret) > threshold
    big_raw = np.abs(raw_ret) > threshold
    rows = np.flatnonzero(big_adj | big_raw)
    action_dates = adjustment.action_dates
    has_action = dates[rows].isin(action_dates)
    kind = np.where(~big_adj[rows], "explained", np.where(has_action, "action_mismatch", "unexplained"))
    ev = adjustment.events
    described: Mapping[pd.Timestamp, str] = {}
    if len(rows) and len(ev):
        hits = ev[ev["row_date"].isin(dates[rows])]
        described = {d: "; ".join(f"{k} {v:.6g} ({s}, {st})" for k, v, s, st in
                                  zip(g["kind"], g["value"], g["source"], g["status"]))
                     for d, g in hits.groupby("row_date")}
    line = adjusted["line"].to_numpy() if "line" in adjusted else np.full(len(dates), -1)
    prev = np.clip(rows - 1, 0, None)
    return pd.DataFrame({
        "symbol": symbol,
        "date": dates[rows],
        "prev_date": dates[prev],
        "line": line[rows].astype(np.int64),
        "raw_return": raw_ret[rows],
        "adjusted_return": adj_ret[rows],
        "kind": kind.astype(object),
        "action": [described.get(d, "") for d in dates[rows]],
    })
