"""Back-adjustment (hfq) of unadjusted prices, factor noise, corporate-action arrays, and jump detection.

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
  ends its last factor. Noise steps of the factor (below) are held flat when ``snap_noise`` is on.
* Method ``hfq_factor+actions``: as ``hfq_factor``, and splits or dividends from the tables dated outside
  the factor file's range (after it ends, or before it starts) are chained onto the carried factor.
  Table actions inside the range are not applied twice: they are checked against the factor file's
  step on their row and reported when the two disagree (``factor_disagrees``: the factor file is used).
* Method ``actions``: no factor file; the factor steps at each split (by the split ratio: one old unit
  becomes ``ratio`` new units) and each cash dividend (by ``1 + cash / close`` on the ex-date, i.e. the
  cash reinvested at the ex-date close). A split and a dividend on the same day combine, the cash
  being per new unit.
* Method ``none``: nothing is known; ``F = 1``.

An action takes effect on the first row dated on or after its (effective) date. Actions on or before
the first row, or after the last row, change nothing and are recorded as ``ignored`` with a reason.

Factor noise
------------
A vendor factor should step only on the few days a year a fund splits or pays cash. Some files step
almost every day (in the real data 510050, 510180, 510300 and 510880: their "hfq" factor is
``adjusted / close`` of an *additive* back-adjustment, ``adjusted = a * close + cumulative cash``, rounded
to 0.001 CNY, so the ratio drifts with the price). Every factor step ``m = F[r] / F[r-1]`` on a row without
a table action is classified (:func:`classify_factor_steps`):

* ``|log m| <= FACTOR_STEP_TOLERANCE``: noise in any file;
* the file is *noisy* when more than ``noise_share`` of its own steps (factor-file rows) move beyond
  FACTOR_STEP_TOLERANCE on days without a table action; in a noisy file ``|log m| <= noise_tolerance``
  is noise;
* with ``additive_noise`` (any file): a step on a day where the vendor's adjusted close moved by exactly
  its recent slope times the raw close's move (the residual cash is under ADDITIVE_RESIDUAL_SHARE of
  what the step would imply, plus the vendor's rounding) is noise: nothing was paid or split, the
  additive adjustment merely re-scaled with the price. Big market days are where this matters.

Rows with a table action are never noise. Noise never becomes a corporate action. With ``snap_noise``
the factor is *snapped*: level ``L`` starts at the first factor, a non-noise step multiplies it, a noise
step leaves it; the adjusted prices use ``L``. Otherwise the vendor factor is used as is.

Corporate-action arrays
-----------------------
:func:`action_events` turns an :class:`Adjustment` into real-money actions and :func:`build_action_panel`
places them on a panel's sessions (:class:`ActionPanel`): ``split[t, i]`` (1.0 where none: one share held
at the close before session ``t`` becomes ``split`` shares at ``t``'s open) and ``dividend[t, i]`` (0.0
where none: CNY per share, per share after the same session's split, paid on ex-date ``t`` to holders at
the previous close). An action sits on the fund's row ``t`` (first row on or after its date).

* Table actions that are applied (method ``actions``; chained outside the factor range) or that the
  factor file also holds (``in_factor``) keep the table's kind and value -- except that a split the
  factor file holds (alone on its row) takes the factor file's step as its ratio: that is the step the
  adjusted prices use, and tables round conversion ratios (``1:0.2803``) that the factor file carries
  to more digits.
* A table action the factor file disagrees with is not an action: the adjusted prices follow the factor
  file, so the actions do too -- the factor's own step on that row, if any, is classified below.
* A non-noise factor step ``m`` not named by the table: a split of ratio ``m`` when ``m > SPLIT_MIN`` or
  ``m < 1`` (a consolidation), otherwise a cash dividend of ``close[r-1] * (1 - 1/m)`` -- the hfq
  convention (the ex-reference price ``close[r-1] - cash`` scaled back to ``close[r-1]``).

One share held through session ``t`` is worth ``split[t] * (close[t] + dividend[t])`` per share held at
``t-1`` (split first, then the cash on every new share). What holds: on a session without an action the
(snapped) adjusted return is the raw return exactly; on a split-only session ``split * close[t] /
close[t-1]`` is the adjusted return exactly (the split's ratio *is* the adjusted step). On a dividend
session the adjusted step reinvests at another price than the holder's cash: for a factor-derived
dividend ``(close[t] + cash) / close[t-1]`` against ``m * close[t] / close[t-1]`` differ by
``cash / close[t-1] * |move| / (1 + move)`` (``move`` the adjusted return), a few 1e-4; a table dividend
adds the table-to-factor difference (at most ACTION_CHECK_TOLERANCE, usually the 0.001 CNY rounding).

Jump contract
-------------
:func:`detect_jumps` compares consecutive rows. A move beyond ``threshold`` in absolute value is

* ``explained`` when the raw close moved beyond it but the adjusted close did not (an action removed
  it; INFO);
* ``action_mismatch`` when the adjusted close still moves beyond it on a row carrying an action or a
  factor step (the recorded action does not account for the move);
* ``unexplained`` when the adjusted close moves beyond it and no action or factor step is recorded
  (noise steps do not count as actions).

Split proposals
---------------
Unadjusted prices show a unit split nobody recorded as an overnight move of ``1 / ratio``. :func:`propose_splits`
finds them: a row without any action or factor step (so a split the tables or the factor file already hold
is never proposed again) whose adjusted close over the previous bar's is within SPLIT_PRICE_TOLERANCE (1%,
widened by the fund's own daily volatility, see the constant) of ``1 / ratio`` for a ratio of SPLIT_RATIOS
(2, 3, 4, 5, 10 and the inverses), AND whose volume moved inversely: the median volume of the
SPLIT_VOLUME_SESSIONS bars from the move on over the median of the bars before lies within a factor of 2 of
``ratio`` and at least a third of the way from 1 to it (log terms). A crash (-20%, or -50% on unchanged
volume) fails one of the two tests. A split on unchanged volume (513500's 1:2 of 2022-03-30 traded 1.1x its
volume) cannot be told from a crash and is not proposed: it stays an unexplained jump for the table.

The proposal names the first bar on the new basis and the line to add to ``platform_splits.csv``
(``code,split_date,split_ratio``, ``split_date`` the last bar on the old basis). With ``data.splits:
apply`` the pipeline adds it to the splits table (:func:`with_inferred_splits`) and adjusts again: the
result is the adjustment the same line in the table gives. The test reads the bars up to the load's as-of
date only (nothing later), and waits for SPLIT_MIN_VOLUME_SESSIONS bars on the new basis: a view as of an
earlier session sees the move unadjusted (an unexplained jump), a later one sees it applied -- as when a
line is added to the table later, the adjusted prices from the split on change once it is known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from rotation_platform.config.models import AdjustmentConfig
from rotation_platform.data.sources.base import CorporateActions
from rotation_platform.errors import CorporateActionError

__all__ = [
    "AdjustmentMethod",
    "ADJUSTMENT_METHODS",
    "FACTOR_STEP_TOLERANCE",
    "ACTION_CHECK_TOLERANCE",
    "SPLIT_MIN",
    "ADDITIVE_MIN_MOVE",
    "ADDITIVE_WINDOW",
    "ADDITIVE_MIN_MOVES",
    "ADDITIVE_RESIDUAL_SHARE",
    "VENDOR_ROUNDING",
    "NOISE_REASONS",
    "JUMP_KINDS",
    "ACTION_KINDS",
    "FactorNoise",
    "Adjustment",
    "ActionPanel",
    "factor_on_dates",
    "action_multipliers",
    "classify_factor_steps",
    "factor_step_action",
    "compute_adjustment",
    "apply_adjustment",
    "adjust_prices",
    "action_events",
    "build_action_panel",
    "detect_jumps",
    "SPLIT_RATIOS",
    "SPLIT_PRICE_TOLERANCE",
    "SPLIT_VOLATILITY_MULTIPLE",
    "SPLIT_VOLATILITY_WINDOW",
    "SPLIT_PRICE_TOLERANCE_MAX",
    "SPLIT_VOLUME_SESSIONS",
    "SPLIT_MIN_VOLUME_SESSIONS",
    "split_ratio_text",
    "propose_splits",
    "with_inferred_splits",
]

AdjustmentMethod = Literal["hfq_factor", "hfq_factor+actions", "actions", "none"]
ADJUSTMENT_METHODS: tuple[str, ...] = ("hfq_factor", "hfq_factor+actions", "actions", "none")

#: a factor change larger than this (in log terms) between two rows counts as a corporate action; at or
#: below it a step is noise in any file (a 0.1% distribution is below what funds pay out at a time, and
#: vendors' rounding of adjusted closes to 0.001 CNY moves a factor by up to ~0.05% at 1 CNY)
FACTOR_STEP_TOLERANCE = 1e-3
#: a table action whose expected step differs from the factor file's step by more than this (log
#: terms) is reported as a disagreement between the two
ACTION_CHECK_TOLERANCE = 0.01

#: A factor-file step no table names is a unit split when it is above this (or below 1, a consolidation),
#: and a cash dividend of ``close[r-1] * (1 - 1/m)`` when it lies in (1, SPLIT_MIN]. Why 1.25: ETF splits
#: are 1:2 or more (the real tables: 1:2, 1:3, 1:4, 1:5, 1:10; up-splits of 1.1454 come from NAV
#: conversions and are in the tables), while a cash dividend above 20% of the price at once is
#: exceptional (the largest in the data, 512690's 0.35 CNY on 2021-12-31, a 27% step, is in the table and
#: keeps its table kind). Below 1 a step cannot be a payout: it is a consolidation.
SPLIT_MIN = 1.25

#: The additive-noise test (see the module contract) estimates the vendor's slope ``d adjusted / d close``
#: from recent rows whose raw close moved by at least this fraction (small moves are dominated by the
#: 0.001 CNY rounding of the vendor's adjusted close) ...
ADDITIVE_MIN_MOVE = 0.01
#: ... as the median over the last this many such rows since the last split-sized step (trailing only, so
#: an as-of view classifies its rows as the full history does) ...
ADDITIVE_WINDOW = 20
#: ... and needs at least this many of them (right after a listing or a split there are too few: the step
#: is then classified by the other rules).
ADDITIVE_MIN_MOVES = 5
#: A step is additive noise when the cash its row's adjusted move leaves unexplained is under this share
#: of the cash the step would imply (``close[r-1] * (1 - 1/m)``) plus the vendor's rounding: on a real
#: payout the two agree (ratio near 1), on an additive re-scaling the residual is 0.
ADDITIVE_RESIDUAL_SHARE = 0.1
#: vendors publish adjusted closes rounded to 0.001 CNY: a day's adjusted move is off by up to this
VENDOR_ROUNDING = 1e-3

#: why a factor step is noise (``""``: not noise)
NOISE_REASONS: tuple[str, ...] = ("tolerance", "noise_tolerance", "additive")

JUMP_KINDS: tuple[str, ...] = ("explained", "action_mismatch", "unexplained")
ACTION_KINDS: tuple[str, ...] = ("split", "dividend")

_EVENT_COLUMNS = ("date", "row_date", "kind", "value", "multiplier", "source", "status", "note")


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({
        "date": pd.Series(dtype="datetime64[ns]"), "row_date": pd.Series(dtype="datetime64[ns]"),
        "kind": pd.Series(dtype=object), "value": pd.Series(dtype=float),
        "multiplier": pd.Series(dtype=float), "source": pd.Series(dtype=object),
        "status": pd.Series(dtype=object), "note": pd.Series(dtype=object),
    })


_ACTION_COLUMNS = ("symbol", "session", "kind", "value", "multiplier", "source", "note")


def _empty_action_events() -> pd.DataFrame:
    return pd.DataFrame({
        "symbol": pd.Series(dtype=object), "session": pd.Series(dtype="datetime64[ns]"),
        "kind": pd.Series(dtype=object), "value": pd.Series(dtype=float), "multiplier": pd.Series(dtype=float),
        "source": pd.Series(dtype=object), "note": pd.Series(dtype=object),
    })


@dataclass(frozen=True, eq=False)
class FactorNoise:
    """How the day-to-day steps of one fund's factor file were classified (module contract, "Factor noise").

    ``step`` and ``reason`` are per price row (aligned with :attr:`Adjustment.factor`): the vendor's step
    ``F[r] / F[r-1]`` (1.0 on the first row) and why it is noise (one of :data:`NOISE_REASONS`, ``""`` when
    it is not noise or the factor did not move). ``share`` is the file-level share of steps beyond
    FACTOR_STEP_TOLERANCE on days without a table action (``file_moves`` of ``file_steps``); the file is
    ``noisy`` when it exceeds ``noise_share``. ``snapped`` tells whether the adjusted prices hold the
    factor flat on noise days.
    """

    noisy: bool
    share: float
    file_steps: int
    file_moves: int
    step: np.ndarray
    reason: np.ndarray
    snapped: bool
    noise_tolerance: float
    noise_share: float

    @property
    def is_noise(self) -> np.ndarray:
        """Per row: the factor moved and the move is noise."""
        return self.reason != ""

    @property
    def days(self) -> int:
        """Rows on which the factor moved by noise."""
        return int(self.is_noise.sum())

    @property
    def beyond_tolerance(self) -> np.ndarray:
        """Per row: a noise step larger than FACTOR_STEP_TOLERANCE."""
        return self.is_noise & (self.reason != "tolerance")

    def counts(self) -> dict[str, int]:
        """Noise rows per reason."""
        return {r: int((self.reason == r).sum()) for r in NOISE_REASONS}

    def largest(self) -> tuple[int, float] | None:
        """Row and step of the largest noise step (by |log step|), None when there is none."""
        if not self.is_noise.any():
            return None
        mag = np.where(self.is_noise, np.abs(np.log(self.step)), -1.0)
        r = int(np.argmax(mag))
        return r, float(self.step[r])

    def to_dict(self) -> dict[str, object]:
        return {"noisy": bool(self.noisy), "share": round(float(self.share), 6), "file_steps": int(self.file_steps),
                "file_moves": int(self.file_moves), "noise_days": self.days, "by_reason": self.counts(),
                "snapped": bool(self.snapped)}


@dataclass(frozen=True, eq=False)
class Adjustment:
    """How one fund's prices were adjusted.

    ``factor`` is indexed by the fund's row dates (``F``, 1.0 on the first row; snapped when noise was
    snapped). ``events`` has one row per action considered: ``date`` (effective date), ``row_date`` (the
    row it applies to, NaT when none), ``kind`` (``split``, ``dividend`` or ``factor_step``), ``value``
    (ratio, cash or factor step), ``multiplier`` (the factor step it implies), ``source`` (``table`` or
    ``factor``), ``status`` (``applied``, ``in_factor`` when the factor file already holds it -- for a
    factor step: a real step of the factor file --, ``factor_disagrees`` when the factor file's step
    differs from the table, ``noise`` for a factor step beyond FACTOR_STEP_TOLERANCE that is noise,
    ``ignored``) and ``note``. ``vendor_factor`` is the factor the vendor's file alone gives (normalised,
    table actions outside its range chained, never snapped; None without a factor file) and ``noise``
    the classification of its steps.
    """

    symbol: str
    method: AdjustmentMethod
    factor: pd.Series
    events: pd.DataFrame = field(default_factory=_empty_events)
    notes: tuple[str, ...] = ()
    factor_range: tuple[str, str] | None = None
    vendor_factor: pd.Series | None = None
    noise: FactorNoise | None = None

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
            "noise": self.noise.to_dict() if self.noise is not None else None,
        }


@dataclass(frozen=True, eq=False)
class ActionPanel:
    """Corporate actions in real-money units on a panel's grid (module contract, "Corporate-action arrays").

    * ``sessions`` / ``symbols``: the price panel's (``split`` and ``dividend`` are ``(S, N)`` float64);
    * ``split[t, i]``: 1.0 where none; one share held at the close before session ``t`` becomes
      ``split[t, i]`` shares at ``t``'s open;
    * ``dividend[t, i]``: 0.0 where none; CNY cash per share (per share after the same session's split),
      paid on ex-date ``t`` to holders at the previous close;
    * ``events``: one row per action -- ``symbol, session, kind`` (``split``/``dividend``), ``value`` (ratio
      or CNY per share), ``multiplier`` (the factor step it stands for), ``source`` (``table``/``factor``),
      ``note``.
    """

    sessions: pd.DatetimeIndex
    symbols: tuple[str, ...]
    split: np.ndarray
    dividend: np.ndarray
    events: pd.DataFrame = field(default_factory=_empty_action_events)

    def __post_init__(self) -> None:
        sessions = pd.DatetimeIndex(self.sessions, name="session").astype("datetime64[ns]")
        symbols = tuple(str(s) for s in self.symbols)
        shape = (len(sessions), len(symbols))
        arrays = {}
        for name in ("split", "dividend"):
            a = np.ascontiguousarray(np.asarray(getattr(self, name), dtype=np.float64))
            if a.shape != shape:
                raise CorporateActionError(f"action panel field {name!r} has shape {a.shape}, the panel is "
                                           f"{shape} (sessions x symbols); give one value per session and "
                                           f"symbol (ActionPanel.empty builds a neutral one)")
            arrays[name] = a
        if not (np.isfinite(arrays["split"]).all() and (arrays["split"] > 0).all()):
            raise CorporateActionError("split ratios must be positive and finite: use 1.0 where there is no "
                                       "split")
        if not (np.isfinite(arrays["dividend"]).all() and (arrays["dividend"] >= 0).all()):
            raise CorporateActionError("dividends must be non-negative and finite CNY per share: use 0.0 where "
                                       "there is none")
        object.__setattr__(self, "sessions", sessions)
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "split", arrays["split"])
        object.__setattr__(self, "dividend", arrays["dividend"])

    @classmethod
    def empty(cls, sessions: pd.DatetimeIndex, symbols: Sequence[str]) -> "ActionPanel":
        """No action anywhere: splits 1.0, dividends 0.0."""
        shape = (len(sessions), len(tuple(symbols)))
        return cls(sessions=pd.DatetimeIndex(sessions), symbols=tuple(symbols), split=np.ones(shape),
                   dividend=np.zeros(shape), events=_empty_action_events())

    @property
    def shape(self) -> tuple[int, int]:
        return self.split.shape

    def frame(self, name: str) -> pd.DataFrame:
        """``split`` or ``dividend`` as a sessions x symbols frame."""
        if name not in ("split", "dividend"):
            raise KeyError(f"unknown action field {name!r}; fields: split, dividend")
        return pd.DataFrame(getattr(self, name), index=self.sessions,
                            columns=pd.Index(self.symbols, name="symbol", dtype=object))


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


def _file_share(vendor: pd.Series, table_dates: np.ndarray) -> tuple[int, int]:
    """(steps, moves): the factor file's own steps, and those beyond FACTOR_STEP_TOLERANCE on file rows
    that carry no table action (the first file row on or after each table date)."""
    f = vendor.to_numpy(dtype=np.float64)
    if len(f) < 2:
        return 0, 0
    big = np.abs(np.log(f[1:] / f[:-1])) > FACTOR_STEP_TOLERANCE
    f_dates = pd.DatetimeIndex(vendor.index).to_numpy(dtype="datetime64[ns]")
    named = np.searchsorted(f_dates, np.asarray(table_dates, dtype="datetime64[ns]"), side="left")
    named = named[(named >= 1) & (named < len(f))] - 1
    big[named] = False
    return len(f) - 1, int(big.sum())


def _additive_explained(close: np.ndarray, vendor_rows: np.ndarray, step: np.ndarray, candidates: np.ndarray,
                        boundary: np.ndarray) -> np.ndarray:
    """Per candidate row: the vendor's adjusted close moved by its trailing slope times the raw close's move
    (the step re-scales an additive adjustment; nothing was paid). See ADDITIVE_* for the parameters."""
    n = len(close)
    out = np.zeros(len(candidates), dtype=bool)
    if n < 2 or not len(candidates):
        return out
    adjusted = close * vendor_rows                      # the vendor's adjusted close (its own scale)
    d_adj = np.r_[np.nan, np.diff(adjusted)]
    d_close = np.r_[np.nan, np.diff(close)]
    prev = np.r_[np.nan, close[:-1]]
    segment = np.cumsum(boundary)
    with np.errstate(invalid="ignore", divide="ignore"):
        qualifying = (np.abs(d_close) >= ADDITIVE_MIN_MOVE * prev) & ~boundary
    qualifying[0] = False
    q_rows = np.flatnonzero(qualifying)
    q_slope = d_adj[q_rows] / d_close[q_rows]
    for k, r in enumerate(candidates):
        hi = int(np.searchsorted(q_rows, r, side="left"))          # qualifying rows strictly before r
        lo = max(0, hi - ADDITIVE_WINDOW)
        window = q_rows[lo:hi]
        slopes = q_slope[lo:hi][segment[window] == segment[r]]
        if len(slopes) < ADDITIVE_MIN_MOVES:
            continue
        slope = float(np.median(slopes))
        if not np.isfinite(slope) or slope <= 0:
            continue
        residual = d_adj[r] / slope - d_close[r]               # cash the adjusted move leaves unexplained
        implied = prev[r] * (1.0 - 1.0 / step[r])                 # cash the step would imply (hfq convention)
        out[k] = abs(residual) <= ADDITIVE_RESIDUAL_SHARE * abs(implied) + VENDOR_ROUNDING / slope
    return out


def classify_factor_steps(dates: pd.DatetimeIndex, close: np.ndarray, vendor: pd.Series,
                          table_rows: np.ndarray, split_rows: np.ndarray, table_dates: np.ndarray,
                          config: AdjustmentConfig | None = None) -> FactorNoise:
    """Classify every step of a vendor factor carried onto a fund's rows (module contract, "Factor noise").

    ``vendor`` is the sorted factor file; ``table_rows`` marks rows carrying a table action inside the
    file's range (never noise), ``split_rows`` rows with a table split (they bound the additive test's
    slope estimate), ``table_dates`` the effective dates of every table action (for the file's share).
    """
    cfg = config if config is not None else AdjustmentConfig()
    n = len(dates)
    on_rows = factor_on_dates(dates, vendor)
    step = np.ones(n)
    step[1:] = on_rows[1:] / on_rows[:-1]
    mag = np.abs(np.log(step))
    file_steps, file_moves = _file_share(vendor, table_dates)
    share = file_moves / file_steps if file_steps else 0.0
    noisy = share > cfg.noise_share
    free = ~np.asarray(table_rows, dtype=bool)
    free[0] = False
    reason = np.full(n, "", dtype=object)
    reason[free & (mag > 0) & (mag <= FACTOR_STEP_TOLERANCE)] = "tolerance"
    if noisy:
        reason[free & (mag > FACTOR_STEP_TOLERANCE) & (mag <= cfg.noise_tolerance)] = "noise_tolerance"
    if cfg.additive_noise:
        boundary = (step > SPLIT_MIN) | (step < 1.0 / SPLIT_MIN) | np.asarray(split_rows, dtype=bool)
        candidates = np.flatnonzero(free & (mag > FACTOR_STEP_TOLERANCE) & (reason == "") & ~boundary)
        explained = _additive_explained(close, on_rows, step, candidates, boundary)
        reason[candidates[explained]] = "additive"
    return FactorNoise(noisy=bool(noisy), share=float(share), file_steps=file_steps, file_moves=file_moves,
                       step=step, reason=reason.astype(object), snapped=bool(cfg.snap_noise),
                       noise_tolerance=float(cfg.noise_tolerance), noise_share=float(cfg.noise_share))


def factor_step_action(step: float, prev_close: float) -> tuple[str, float]:
    """The corporate action a (real, non-noise) factor-file step implies: ``("split", ratio)`` above
    SPLIT_MIN or below 1, else ``("dividend", prev_close * (1 - 1/step))`` (the hfq convention)."""
    if step > SPLIT_MIN or step < 1.0:
        return "split", float(step)
    return "dividend", float(prev_close * (1.0 - 1.0 / step))


def compute_adjustment(symbol: str, frame: pd.DataFrame, actions: CorporateActions,
                       config: AdjustmentConfig | None = None) -> Adjustment:
    """The back-adjustment of one fund (see the module contract).

    ``frame`` must be sorted by unique ``date`` with positive ``close`` (the quality gate's clean rows).
    ``config`` (``data.adjustment``; default :class:`AdjustmentConfig`) sets the noise rules.
    """
    cfg = config if config is not None else AdjustmentConfig()
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
    vendor_factor: np.ndarray | None = None
    noise: FactorNoise | None = None
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
        # noise: which steps are not corporate actions (rows with a table action inside the range never are)
        in_range = ev["status"].isin(["in_factor", "factor_disagrees"])
        table_rows = np.zeros(n, dtype=bool)
        table_rows[ev.loc[in_range, "row"].to_numpy(dtype=np.int64)] = True
        split_rows = np.zeros(n, dtype=bool)
        split_rows[ev.loc[in_range & (ev["kind"] == "split"), "row"].to_numpy(dtype=np.int64)] = True
        noise = classify_factor_steps(dates, close, fac, table_rows, split_rows,
                                      table["date"].to_numpy(dtype="datetime64[ns]"), cfg)
        chained = np.cumprod(extra)
        vendor_factor = base * chained
        if cfg.snap_noise:
            level = np.cumprod(np.where(noise.is_noise, 1.0, steps))
            factor = level * chained
        else:
            factor = vendor_factor
        method: AdjustmentMethod = "hfq_factor+actions" if extend.any() else "hfq_factor"
        if dates[0] < f_first:
            notes.append(f"rows before {factor_range[0]} take the factor file's first factor")
        if dates[-1] > f_last:
            notes.append(f"rows after {factor_range[1]} carry the factor file's last factor")
        if noise.days:
            counts = noise.counts()
            notes.append(f"{noise.days} noise step(s) of the factor file ({counts['tolerance']} within "
                         f"FACTOR_STEP_TOLERANCE, {counts['noise_tolerance']} within noise_tolerance, "
                         f"{counts['additive']} additive); " + ("snapped" if cfg.snap_noise else "applied as is"))
        # real factor steps become events too (they explain moves): beyond FACTOR_STEP_TOLERANCE, not noise,
        # and not on a row whose table action the factor file holds (that action names the step). On a row
        # where the table disagrees the factor file's step is what the adjusted prices use: it is an event.
        mag = np.abs(np.log(steps))
        named = ev.loc[ev["status"] == "in_factor", "row"].to_numpy(dtype=np.int64)
        disagree = ev.loc[ev["status"] == "factor_disagrees", "row"].to_numpy(dtype=np.int64)
        step_rows = np.flatnonzero((mag > FACTOR_STEP_TOLERANCE) & ~noise.is_noise)
        step_rows = step_rows[~np.isin(step_rows, named)]
        noise_rows = np.flatnonzero(noise.beyond_tolerance)
        parts = [ev]
        if len(step_rows):
            parts.append(pd.DataFrame({
                "date": dates[step_rows], "kind": "factor_step", "value": steps[step_rows], "row": step_rows,
                "multiplier": steps[step_rows], "source": "factor", "status": "in_factor",
                "note": np.where(np.isin(step_rows, disagree), "the table's action on this row disagrees; "
                                 "the factor file's step is used", "")}))
        if len(noise_rows):
            why = {"noise_tolerance": "noise: within data.adjustment.noise_tolerance in a noisy factor file",
                   "additive": "noise: the vendor's adjusted close moved in proportion to the raw close "
                               "(additive back-adjustment re-scaling, nothing paid)"}
            parts.append(pd.DataFrame({
                "date": dates[noise_rows], "kind": "factor_step", "value": steps[noise_rows], "row": noise_rows,
                "multiplier": steps[noise_rows], "source": "factor", "status": "noise",
                "note": [why[r] for r in noise.reason[noise_rows]]}))
        if len(parts) > 1:
            ev = pd.concat(parts, ignore_index=True)
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
    index = pd.DatetimeIndex(dates, name="date")
    return Adjustment(symbol=symbol, method=method, factor=pd.Series(factor, index=index, name=symbol),
                      events=events, notes=tuple(notes), factor_range=factor_range,
                      vendor_factor=(pd.Series(vendor_factor, index=index, name=symbol)
                                     if vendor_factor is not None else None), noise=noise)


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


def adjust_prices(symbol: str, frame: pd.DataFrame, actions: CorporateActions,
                  config: AdjustmentConfig | None = None) -> tuple[pd.DataFrame, Adjustment]:
    """:func:`compute_adjustment` then :func:`apply_adjustment`."""
    adjustment = compute_adjustment(symbol, frame, actions, config)
    return apply_adjustment(frame, adjustment), adjustment


# ------------------------------------------------------------------------------- corporate-action arrays
_TABLE_NOTES = {"applied": "from the split/dividend tables", "in_factor": "from the tables; the factor file agrees"}


def action_events(adjustment: Adjustment, close: pd.Series) -> pd.DataFrame:
    """The real-money corporate actions of one fund (module contract, "Corporate-action arrays").

    ``close`` holds the fund's raw closes on (at least) its rows, indexed by date: a factor-derived
    dividend needs the close of the row before its own. Returns one row per action: ``symbol, session,
    kind`` (``split`` or ``dividend``), ``value`` (ratio, or CNY per share after the session's split),
    ``multiplier`` (the factor step it stands for), ``source`` (``table`` or ``factor``) and ``note``.
    """
    ev = adjustment.events
    if ev.empty:
        return _empty_action_events()
    rows_index = pd.DatetimeIndex(adjustment.factor.index)
    closes = pd.Series(np.asarray(close, dtype=np.float64), index=pd.DatetimeIndex(close.index)).reindex(rows_index)
    closes = closes.to_numpy()
    out: list[dict[str, object]] = []
    factor = adjustment.factor.to_numpy(dtype=np.float64)
    table = ev[(ev["source"] == "table") & ev["status"].isin(list(_TABLE_NOTES)) & ev["row_date"].notna()]
    per_row = table.groupby("row_date")["kind"].transform("size") if len(table) else pd.Series(dtype=np.int64)
    for row, alone in zip(table.itertuples(index=False), per_row.to_numpy()):
        note = ("outside the factor file's range; chained onto it" if row.status == "applied"
                and adjustment.method.startswith("hfq_factor") else _TABLE_NOTES[row.status])
        value, multiplier = float(row.value), float(row.multiplier)
        if row.kind == "split" and row.status == "in_factor" and alone == 1:
            # the factor file holds the split: its step is the ratio the adjusted prices use, and it carries
            # more digits than the table (510500's 1:0.2803 of 2015-04-15 is 0.280379 in the factor file)
            r = int(rows_index.get_loc(row.row_date))
            step = float(factor[r] / factor[r - 1])
            if step != value:
                note += f"; table ratio {value:g}, the factor file's step {step:.8g} is used"
            value = multiplier = step
        out.append({"session": row.row_date, "kind": row.kind, "value": value,
                    "multiplier": multiplier, "source": "table", "note": note})
    steps = ev[(ev["source"] == "factor") & (ev["status"] == "in_factor") & ev["row_date"].notna()]
    for row in steps.itertuples(index=False):
        r = int(rows_index.get_loc(row.row_date))
        prev = float(closes[r - 1]) if r >= 1 else float("nan")
        kind, value = factor_step_action(float(row.value), prev)
        if kind == "split":
            why = (f"factor step {row.value:.6g} "
                   + ("above SPLIT_MIN: a unit split" if row.value > SPLIT_MIN else "below 1: a consolidation"))
        else:
            why = (f"factor step {row.value:.6g}: cash = previous close {prev:g} x (1 - 1/step), the hfq "
                   f"convention")
        if row.note:
            why += f"; {row.note}"
        out.append({"session": row.row_date, "kind": kind, "value": value, "multiplier": float(row.value),
                    "source": "factor", "note": why})
    if not out:
        return _empty_action_events()
    frame = pd.DataFrame(out)
    frame.insert(0, "symbol", adjustment.symbol)
    frame["session"] = pd.DatetimeIndex(frame["session"]).astype("datetime64[ns]")
    bad = frame[~np.isfinite(frame["value"].to_numpy(dtype=np.float64))]
    if len(bad):
        raise CorporateActionError(f"the {bad['kind'].iloc[0]} derived from the factor file has no value: no "
                                   f"raw close on the fund's row before it; pass the fund's raw closes on every "
                                   f"row of its adjustment", symbol=adjustment.symbol, date=bad["session"].iloc[0])
    order = frame["kind"].map({"split": 0, "dividend": 1})
    frame = frame.assign(_o=order).sort_values(["session", "_o"], kind="stable").drop(columns="_o")
    return frame[list(_ACTION_COLUMNS)].reset_index(drop=True)


def build_action_panel(sessions: pd.DatetimeIndex, symbols: Sequence[str], adjustments: Mapping[str, Adjustment],
                       closes: Mapping[str, pd.Series]) -> "ActionPanel":
    """Every fund's :func:`action_events` on a panel's ``sessions`` x ``symbols`` grid.

    ``closes[symbol]`` are the fund's raw closes on its rows (see :func:`action_events`); funds without an
    adjustment have no action. Actions dated outside ``sessions`` are left out.
    """
    panel = ActionPanel.empty(sessions, symbols)
    idx, cols = panel.sessions, panel.symbols
    split = panel.split.copy()
    dividend = panel.dividend.copy()
    parts = []
    for j, symbol in enumerate(cols):
        adjustment = adjustments.get(symbol)
        if adjustment is None:
            continue
        events = action_events(adjustment, closes[symbol])
        events = events[events["session"].isin(idx)]
        if events.empty:
            continue
        rows = idx.get_indexer(pd.DatetimeIndex(events["session"]))
        is_split = (events["kind"] == "split").to_numpy()
        values = events["value"].to_numpy(dtype=np.float64)
        np.multiply.at(split[:, j], rows[is_split], values[is_split])
        np.add.at(dividend[:, j], rows[~is_split], values[~is_split])
        parts.append(events)
    frame = (pd.concat(parts, ignore_index=True).sort_values(["session", "symbol"], kind="stable")
             .reset_index(drop=True) if parts else _empty_action_events())
    return ActionPanel(sessions=idx, symbols=cols, split=split, dividend=dividend, events=frame)


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


# ------------------------------------------------------------------------------------ split proposals
#: Unit-split ratios a move is tested against (one old unit becomes ``ratio`` new units: the price moves by
#: ``1 / ratio``): splits 1:2 ... 1:10 and the consolidations 2:1 ... 10:1.
SPLIT_RATIOS: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 10.0, 1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 10)
#: The close-to-previous-close ratio must lie within this (log terms) of ``1 / ratio`` ...
SPLIT_PRICE_TOLERANCE = 0.01
#: ... widened to this many times the fund's own daily volatility (robust: 1.4826 x the median absolute
#: log return of the SPLIT_VOLATILITY_WINDOW bars before, x sqrt(sessions between the two bars) when a
#: suspension lies between them): the split day's close also carries that day's market move (in the real
#: data 512690's 1:2 of 2021-05-17 closed 4% off 0.5, 512010's 1:4 of 2021-06-28 4.3% off 0.25) ...
SPLIT_VOLATILITY_MULTIPLE = 3.0
SPLIT_VOLATILITY_WINDOW = 20
#: ... and never beyond this (about half the log distance between the ratios 4 and 5, so that two ratios
#: never both match)
SPLIT_PRICE_TOLERANCE_MAX = 0.1
#: The volume test compares the median volume of this many bars from the move on with the median of this
#: many bars before it ...
SPLIT_VOLUME_SESSIONS = 5
#: ... and needs at least this many on each side (a move in the last bars of the data waits for them).
SPLIT_MIN_VOLUME_SESSIONS = 3

_PROPOSAL_COLUMNS = ("symbol", "date", "last_old_date", "line", "ratio", "ratio_text", "price_ratio", "deviation",
                     "tolerance", "volume_ratio", "volume_sessions", "table_line")


def _empty_proposals() -> pd.DataFrame:
    return pd.DataFrame({
        "symbol": pd.Series(dtype=object), "date": pd.Series(dtype="datetime64[ns]"),
        "last_old_date": pd.Series(dtype="datetime64[ns]"), "line": pd.Series(dtype=np.int64),
        "ratio": pd.Series(dtype=float), "ratio_text": pd.Series(dtype=object),
        "price_ratio": pd.Series(dtype=float), "deviation": pd.Series(dtype=float),
        "tolerance": pd.Series(dtype=float), "volume_ratio": pd.Series(dtype=float),
        "volume_sessions": pd.Series(dtype=np.int64), "table_line": pd.Series(dtype=object),
    })


def split_ratio_text(ratio: float) -> str:
    """A split ratio as written into ``platform_splits.csv`` (10 significant digits: ``2``, ``0.1``,
    ``0.3333333333``); an applied inferred split uses exactly this value."""
    return f"{float(ratio):.10g}"


def _volume_consistent(volume_ratio: float, ratio: float) -> bool:
    """The volume moved inversely to the price, by about the split ratio: within a factor of 2 of ``ratio``
    and at least a third of the way from 1 to ``ratio`` in log terms (for a 1:2 split a factor of 2 alone
    would reach unchanged volume, which is what a crash looks like)."""
    if not (np.isfinite(volume_ratio) and volume_ratio > 0):
        return False
    share = np.log(volume_ratio) / np.log(ratio)           # 1.0: volume moved by exactly the ratio
    reach = np.log(2.0) / abs(np.log(ratio))                # a factor of 2, in units of the ratio's log
    return bool(max(1.0 / 3.0, 1.0 - reach) <= share <= 1.0 + reach)


def propose_splits(symbol: str, raw: pd.DataFrame, adjusted: pd.DataFrame, adjustment: Adjustment,
                   calendar: object | None = None) -> pd.DataFrame:
    """Unit splits the prices show but no table or factor file names (module contract, "Split proposals").

    ``raw`` / ``adjusted``: the fund's clean rows and their adjusted copy (:func:`apply_adjustment`);
    ``calendar``: the pool's :class:`~rotation_platform.calendars.TradingCalendar` (sessions between two
    bars widen the price tolerance; without it consecutive bars count as consecutive sessions). A row is
    proposed when it carries no corporate action or factor step, its adjusted close over the previous bar's
    is within the tolerance of ``1 / ratio`` for a ratio of :data:`SPLIT_RATIOS`, and the median volume of
    the :data:`SPLIT_VOLUME_SESSIONS` bars from it on over that of the bars before it is consistent with the
    ratio (:func:`_volume_consistent`). Rows are judged on the loaded rows only (nothing after the as-of date).

    Returns one row per proposal: ``symbol, date`` (first bar on the new basis), ``last_old_date`` (the bar
    before: the ``split_date`` of ``platform_splits.csv``), ``line`` (file row), ``ratio`` (new units per old
    unit, as written in ``ratio_text``), ``price_ratio``, ``deviation`` (``|log(price_ratio x ratio)|``),
    ``tolerance``, ``volume_ratio``, ``volume_sessions`` (bars on the shorter side) and ``table_line`` (the
    line ``code,split_date,split_ratio`` to add to ``platform_splits.csv``).
    """
    dates = pd.DatetimeIndex(adjusted["date"])
    n = len(dates)
    if n < SPLIT_MIN_VOLUME_SESSIONS * 2:
        return _empty_proposals()
    close = adjusted["close"].to_numpy(dtype=np.float64)
    volume = adjusted["volume"].to_numpy(dtype=np.float64)
    lines = (adjusted["line"].to_numpy() if "line" in adjusted else np.full(n, -1)).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = np.r_[np.nan, np.diff(np.log(close))]
    log_ratios = np.log(np.asarray(SPLIT_RATIOS))
    dev_all = np.abs(lr[:, None] + log_ratios[None, :])             # |log(price ratio x split ratio)|
    best = np.argmin(np.where(np.isfinite(dev_all), dev_all, np.inf), axis=1)
    dev = dev_all[np.arange(n), best]
    acted = dates.isin(adjustment.action_dates)
    candidates = np.flatnonzero((dev <= SPLIT_PRICE_TOLERANCE_MAX) & ~acted)
    candidates = candidates[candidates >= SPLIT_MIN_VOLUME_SESSIONS]
    rows: list[dict[str, object]] = []
    for t in candidates:
        past = lr[max(1, t - SPLIT_VOLATILITY_WINDOW): t]
        past = past[np.isfinite(past)]
        sigma = 1.4826 * float(np.median(np.abs(past - np.median(past)))) if len(past) >= 5 else 0.0
        gap = 1
        if calendar is not None:
            gap = max(1, len(calendar.sessions(dates[t - 1], dates[t])) - 1)  # type: ignore[attr-defined]
        tol = min(max(SPLIT_PRICE_TOLERANCE, SPLIT_VOLATILITY_MULTIPLE * sigma * np.sqrt(gap)),
                  SPLIT_PRICE_TOLERANCE_MAX)
        if dev[t] > tol:
            continue
        before = volume[max(0, t - SPLIT_VOLUME_SESSIONS): t]
        after = volume[t: t + SPLIT_VOLUME_SESSIONS]
        before = before[np.isfinite(before) & (before > 0)]
        after = after[np.isfinite(after) & (after > 0)]
        if min(len(before), len(after)) < SPLIT_MIN_VOLUME_SESSIONS:
            continue
        ratio = float(SPLIT_RATIOS[best[t]])
        v_ratio = float(np.median(after) / np.median(before))
        if not _volume_consistent(v_ratio, ratio):
            continue
        text = split_ratio_text(ratio)
        last_old = dates[t - 1]
        rows.append({"symbol": symbol, "date": dates[t], "last_old_date": last_old, "line": int(lines[t]),
                     "ratio": float(text), "ratio_text": text, "price_ratio": float(np.exp(lr[t])),
                     "deviation": float(dev[t]), "tolerance": float(tol), "volume_ratio": v_ratio,
                     "volume_sessions": int(min(len(before), len(after))),
                     "table_line": f"{symbol},{last_old.date()},{text}"})
    if not rows:
        return _empty_proposals()
    out = pd.DataFrame(rows, columns=list(_PROPOSAL_COLUMNS))
    out["date"] = pd.DatetimeIndex(out["date"]).astype("datetime64[ns]")
    out["last_old_date"] = pd.DatetimeIndex(out["last_old_date"]).astype("datetime64[ns]")
    return out


def with_inferred_splits(actions: CorporateActions, proposals: pd.DataFrame) -> CorporateActions:
    """``actions`` with the proposed splits added to its splits table (effective on each proposal's first
    bar on the new basis, as :func:`~rotation_platform.data.sources.directory.read_splits_table` reads the
    line ``table_line``)."""
    if proposals.empty:
        return actions
    extra = pd.DataFrame({"symbol": proposals["symbol"].astype(object).to_numpy(),
                          "date": pd.DatetimeIndex(proposals["date"]).astype("datetime64[ns]"),
                          "ratio": proposals["ratio"].astype(np.float64).to_numpy()})
    base = actions.splits
    splits = pd.concat([base, extra], ignore_index=True) if len(base) else extra
    splits = splits.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    return CorporateActions(factors=actions.factors, splits=splits, dividends=actions.dividends)
