"""Inputs of the research core: factor arrays aligned to a price panel, labels, trade prices.

Timing convention (the whole research core follows it)
-----------------------------------------------------
* Factor row ``t`` is known before trading at session ``t``: it uses data through ``t - 1`` only (the
  factor engine lags its output by one row).
* The label of row ``s`` at horizon ``h`` is the return from the trade price at ``s`` to the trade price
  at ``s + h`` (``trade_at="close"``: ``close[s+h] / close[s] - 1``; ``"open"``: the same with opens). It
  is fully realised at session ``s + h``.
* A screen *as of* session ``t`` uses label rows ``s`` with ``s + h <= t`` and factor rows ``<= t``.
* The target weights traded at session ``t`` come from factor row ``t`` and the screen as of ``t - 1``:
  everything a trade at ``t`` uses was known at the close of ``t - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from rotation_platform.data.panel import PricePanel
from rotation_platform.errors import ResearchError

__all__ = [
    "FactorLike",
    "AlignedFactors",
    "align_factors",
    "trade_prices",
    "mark_prices",
    "forward_returns",
    "session_row",
]

TradeAt = Literal["open", "close"]


@runtime_checkable
class FactorLike(Protocol):
    """Anything shaped like the factor engine's ``FactorPanel``."""

    values: np.ndarray
    names: Sequence[str]
    sessions: Any
    symbols: Sequence[str]


@dataclass(frozen=True)
class AlignedFactors:
    """Factor values on a panel's sessions and symbols: ``values[s, i, k]`` (float64, C-contiguous)."""

    values: np.ndarray
    names: tuple[str, ...]
    sessions: pd.DatetimeIndex
    symbols: tuple[str, ...]

    @property
    def n_factors(self) -> int:
        return len(self.names)


def align_factors(factors: FactorLike | tuple[np.ndarray, Sequence[str]], panel: PricePanel) -> AlignedFactors:
    """Align factor values to ``panel``'s sessions and symbols.

    ``factors`` is an object with ``values`` (sessions x funds x factors), ``names``, ``sessions`` and
    ``symbols`` -- the factor engine's ``FactorPanel`` -- or a ``(values, names)`` pair already shaped like
    the panel. Sessions and symbols of the panel that the factors lack become NaN; symbols of the factors
    outside the panel are dropped (a pool is a subset of the funds).
    """
    if isinstance(factors, tuple):
        values, names = factors
        values = np.asarray(values)
        if values.ndim != 3 or values.shape[:2] != panel.shape:
            raise ResearchError(f"factor values of shape {values.shape} do not match the panel's "
                                f"(sessions, funds) = {panel.shape}; pass an object with sessions/symbols "
                                f"to align by label")
        names = tuple(str(n) for n in names)
        if len(names) != values.shape[2]:
            raise ResearchError(f"{len(names)} factor names for {values.shape[2]} factor columns")
        return AlignedFactors(np.ascontiguousarray(values, dtype=np.float64), names, panel.sessions,
                              tuple(panel.symbols))
    if not isinstance(factors, FactorLike):
        raise ResearchError("factors must have values, names, sessions and symbols (a FactorPanel) "
                            "or be a (values, names) pair")
    values = np.asarray(factors.values)
    names = tuple(str(n) for n in factors.names)
    f_sessions = pd.DatetimeIndex(factors.sessions)
    f_symbols = [str(s) for s in factors.symbols]
    if values.ndim != 3 or values.shape != (len(f_sessions), len(f_symbols), len(names)):
        raise ResearchError(f"factor values of shape {values.shape} disagree with {len(f_sessions)} sessions, "
                            f"{len(f_symbols)} symbols and {len(names)} names")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ResearchError(f"duplicate factor names {dup}")
    row_pos = f_sessions.get_indexer(panel.sessions)
    col_pos = pd.Index(f_symbols).get_indexer(pd.Index(panel.symbols))
    if (row_pos < 0).all():
        raise ResearchError(f"the factor sessions ({f_sessions[0].date()}..{f_sessions[-1].date()}) do not "
                            f"overlap the panel's ({panel.sessions[0].date()}..{panel.sessions[-1].date()})")
    if (col_pos < 0).all():
        raise ResearchError(f"none of the panel's symbols {panel.symbols[:5]}... has factor values")
    if (row_pos >= 0).all() and (col_pos >= 0).all() and values.dtype == np.float64 \
            and np.array_equal(row_pos, np.arange(len(row_pos))) and np.array_equal(col_pos, np.arange(len(col_pos))) \
            and values.shape[:2] == panel.shape:
        out = np.ascontiguousarray(values)
    else:
        out = np.full((len(panel.sessions), len(panel.symbols), len(names)), np.nan)
        rows = np.flatnonzero(row_pos >= 0)
        cols = np.flatnonzero(col_pos >= 0)
        out[np.ix_(rows, cols)] = values[np.ix_(row_pos[rows], col_pos[cols])]
    return AlignedFactors(out, names, panel.sessions, tuple(panel.symbols))


def trade_prices(panel: PricePanel, trade_at: TradeAt) -> np.ndarray:
    """The price orders at each session execute at (open or close); NaN where a fund cannot trade."""
    if trade_at not in ("open", "close"):
        raise ResearchError(f"backtest.trade_at must be 'open' or 'close', got {trade_at!r}")
    price = panel.array(trade_at)
    price = np.where(price > 0.0, price, np.nan)
    return np.ascontiguousarray(price)


def mark_prices(panel: PricePanel) -> np.ndarray:
    """Closes forward-filled over suspensions (NaN before a fund's first close): the daily mark."""
    close = panel["close"].where(panel["close"] > 0.0)
    return np.ascontiguousarray(close.ffill().to_numpy(dtype=np.float64))


def forward_returns(panel: PricePanel, horizons: Sequence[int], trade_at: TradeAt) -> np.ndarray:
    """Labels ``(horizons, sessions, funds)``: trade price at ``s + h`` over trade price at ``s``, minus 1."""
    from rotation_platform.research.nb import forward_returns_nb

    hs = np.asarray(list(horizons), dtype=np.int64)
    if hs.size == 0 or (hs < 1).any():
        raise ResearchError(f"screening.horizons must be positive session counts, got {list(horizons)}")
    return forward_returns_nb(trade_prices(panel, trade_at), hs)


def session_row(sessions: pd.DatetimeIndex, when: object, *, what: str = "session") -> int:
    """Row of the last session on or before ``when`` (an int row is returned as is, when in range)."""
    n = len(sessions)
    if isinstance(when, (int, np.integer)):
        row = int(when)
        if row < 0:
            row += n
        if not 0 <= row < n:
            raise ResearchError(f"{what} row {when} is outside 0..{n - 1}")
        return row
    ts = pd.Timestamp(when)
    row = int(sessions.searchsorted(ts, side="right")) - 1
    if row < 0:
        raise ResearchError(f"{what} {ts.date()} is before the first session {sessions[0].date()}")
    return row
