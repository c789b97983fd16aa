"""What the simulation trades on: raw prices in exchange units, corporate actions, lots and tradeability.

Signals and money are kept apart. Factors and labels read the *adjusted* panel (total-return prices,
comparable across splits and dividends); everything that is an amount of money or a number of shares --
the simulated book, orders, holdings, capacity, the target portfolio -- uses a :class:`Market`:

* ``trade_price[t, i]``: the raw (unadjusted) price orders at ``t`` execute at before slippage -- the
  open or the close of ``t`` as in the files (``backtest.trade_at``); NaN where fund ``i`` has no bar;
* ``mark[t, i]``: the raw close of ``t``, carried over at most ``ended_after`` sessions without a bar
  (a suspension keeps its last price; NaN before the first bar and once the data has ended);
* ``split[t, i]`` and ``dividend[t, i]``: the corporate actions effective at the open of ``t``
  (:class:`~rotation_platform.data.corporate_actions.ActionPanel`): one share held at the close of
  ``t - 1`` becomes ``split`` shares (floored to whole shares, as fund share conversions are), and each
  share then receives ``dividend`` in the pool's currency;
* ``ended[t, i]``: known at the close of ``t - 1``: the fund had no bar for the last ``ended_after``
  sessions through ``t - 1``, or its configured delisting date is on or before ``t``. An ended fund is
  liquidated at its last price at ``t`` and cannot be bought;
* ``out_of_universe[t, i]``: the universe policy for a decision at the close of ``t``
  (:class:`~rotation_platform.data.quality.Universe`): an ERROR finding on data through ``t`` inside
  ``data.quality.exclusion_window``. ``excluded[t, i]`` is the same known at the close of ``t - 1``, for
  the orders of ``t``: an excluded fund cannot be bought or added to, and a holding is sold at the
  rebalance (it keeps its shares between rebalances, like a fund leaving the selection);
* ``lots[i]``: the exchange's board lot of fund ``i`` (buys are whole lots on top of the holding), from
  :func:`pool_lots`: ``pools[].lot_sizes[symbol]``, else ``pools[].lot_size``, else the lot of the pool's
  market (:meth:`~rotation_platform.config.models.PlatformConfig.market`: ``markets.<calendar>.lot_size``,
  else the market's built-in lot -- 100 shares on XSHG/XSHE, 1 on XNYS -- else ``backtest.lot_size``).

Money (trade prices, marks, dividends, and so every value derived from them) is in the pool's currency
(:meth:`~rotation_platform.config.models.PlatformConfig.pool_currency`): CNY for an A-share pool, USD for
a pool on XNYS. Nothing here converts currencies; the cross-pool summary does
(:mod:`rotation_platform.production.summary`).

Without raw prices (:meth:`Market.from_panel`, research on a panel alone) the panel's own prices are
used and no corporate action is applied -- right for a panel without corporate actions, and the
behaviour of a research panel that is already back-adjusted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rotation_platform.config.models import PlatformConfig, StrategyConfig
from rotation_platform.data.panel import PricePanel
from rotation_platform.errors import ResearchError
from rotation_platform.research import nb
from rotation_platform.research.inputs import trade_prices

__all__ = ["Market", "lot_array", "pool_lot_size", "pool_lots",
           "ended_flags", "bars_missing", "Construction", "TREND_FILTERS", "daily_returns",
           "composite_index", "trend_signals", "cluster_representatives"]


def lot_array(symbols: Sequence[str], default: int, per_symbol: Mapping[str, int] | None = None) -> np.ndarray:
    """Board lot per fund: ``per_symbol`` where given, else ``default``."""
    per_symbol = dict(per_symbol or {})
    unknown = sorted(set(per_symbol) - set(symbols))
    if unknown:
        raise ResearchError(f"lot sizes given for funds outside the pool: {unknown}")
    lots = np.array([float(per_symbol.get(s, default)) for s in symbols], dtype=np.float64)
    if (lots < 1).any() or not np.all(lots == np.floor(lots)):
        raise ResearchError(f"board lots must be whole positive share counts, got {lots.tolist()}")
    return lots


def pool_lot_size(config: PlatformConfig, pool: str, symbol: str | None = None) -> int:
    """The board lot (shares) of ``symbol`` in pool ``pool`` -- or the pool's default lot without a symbol:
    ``pools[].lot_sizes[symbol]`` > ``pools[].lot_size`` > ``markets.<calendar>.lot_size`` > the market's
    built-in lot (:data:`~rotation_platform.config.models.MARKET_DEFAULTS`) > ``backtest.lot_size``."""
    p = config.pool(pool)
    if symbol is not None and symbol in p.lot_sizes:
        return int(p.lot_sizes[symbol])
    if p.lot_size is not None:
        return int(p.lot_size)
    return int(config.market(p.calendar).lot_size)


def pool_lots(config: PlatformConfig, pool: str) -> np.ndarray:
    """Board lot per fund of pool ``pool`` in the order of its symbols (:func:`pool_lot_size`): what the
    backtest kernel, the ledger, the target portfolio and the capacity figures trade in."""
    p = config.pool(pool)
    return lot_array(p.symbols, pool_lot_size(config, pool), p.lot_sizes)


def bars_missing(close: np.ndarray) -> np.ndarray:
    """``gap[t, i]``: sessions in a row through ``t`` without a bar (0 where ``t`` has one; before the
    first bar the count runs from the panel's start, which never matters: nothing is held then)."""
    has = np.isfinite(close) & (close > 0)
    n_s, n_f = close.shape
    gap = np.zeros((n_s, n_f), np.int64)
    run = np.zeros(n_f, np.int64)
    for t in range(n_s):
        run = np.where(has[t], 0, run + 1)
        gap[t] = run
    return gap


def ended_flags(sessions: pd.DatetimeIndex, symbols: Sequence[str], close: np.ndarray, ended_after: int,
                delisted: Mapping[str, object] | None = None) -> np.ndarray:
    """``ended[t, i]`` (see the module docstring): known at the close of ``t - 1``."""
    if ended_after < 1:
        raise ResearchError(f"data.ended_after must be at least 1 session, got {ended_after}")
    gap = bars_missing(close)
    ended = np.zeros(close.shape, np.bool_)
    ended[1:] = gap[:-1] >= ended_after
    # a fund that has never had a bar is not "ended": it is not listed yet
    seen = np.maximum.accumulate(np.isfinite(close) & (close > 0), axis=0)
    prev_seen = np.zeros_like(seen)
    prev_seen[1:] = seen[:-1]
    ended &= prev_seen
    for symbol, when in (delisted or {}).items():
        if symbol not in symbols:
            raise ResearchError(f"delisting date given for {symbol}, which is not in the pool")
        i = list(symbols).index(symbol)
        row = int(sessions.searchsorted(pd.Timestamp(when), side="left"))
        ended[row:, i] = True
    return ended


@dataclass(frozen=True, eq=False)
class Market:
    """Raw prices, corporate actions, lots and tradeability of one pool (see the module docstring)."""

    sessions: pd.DatetimeIndex
    symbols: tuple[str, ...]
    trade_price: np.ndarray
    mark: np.ndarray
    close: np.ndarray
    split: np.ndarray
    dividend: np.ndarray
    ended: np.ndarray
    lots: np.ndarray
    reinvest: bool = False
    ended_after: int = 5
    actions: pd.DataFrame | None = None
    delisted: Mapping[str, pd.Timestamp] | None = None
    out_of_universe: np.ndarray | None = None

    def __post_init__(self) -> None:
        # one dtype, layout and writeability for every array the kernels take: a read-only view of a
        # pandas frame would otherwise compile the simulation kernels a second time
        for name, kind in (("trade_price", np.float64), ("mark", np.float64), ("close", np.float64),
                           ("split", np.float64), ("dividend", np.float64), ("ended", np.bool_),
                           ("lots", np.float64)):
            object.__setattr__(self, name, np.require(getattr(self, name), kind, ("C", "W")))
        shape = (len(self.sessions), len(self.symbols))
        out = (np.zeros(shape, np.bool_) if self.out_of_universe is None
               else np.ascontiguousarray(self.out_of_universe, dtype=np.bool_))
        if out.shape != shape:
            raise ResearchError(f"market field out_of_universe has shape {out.shape}, expected {shape}")
        excluded = np.zeros(shape, np.bool_)
        excluded[1:] = out[:-1]
        object.__setattr__(self, "out_of_universe", out)
        object.__setattr__(self, "excluded", np.ascontiguousarray(excluded))
        for name in ("trade_price", "mark", "close", "split", "dividend", "ended"):
            arr = getattr(self, name)
            if arr.shape != shape:
                raise ResearchError(f"market field {name} has shape {arr.shape}, expected {shape}")
        if self.lots.shape != (len(self.symbols),):
            raise ResearchError(f"one board lot per fund is needed ({len(self.symbols)}), got {self.lots.shape}")
        if (self.split <= 0).any() or not np.isfinite(self.split).all():
            raise ResearchError("split ratios must be finite and positive (1.0 where there is none)")
        if (self.dividend < 0).any() or not np.isfinite(self.dividend).all():
            raise ResearchError("dividends must be finite and non-negative (0.0 where there is none)")

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.sessions), len(self.symbols)

    @property
    def has_actions(self) -> bool:
        return bool((self.split != 1.0).any() or (self.dividend != 0.0).any())

    @classmethod
    def build(cls, raw: PricePanel, *, trade_at: str, lots: np.ndarray, split: np.ndarray | None = None,
              dividend: np.ndarray | None = None, ended_after: int = 5,
              delisted: Mapping[str, dt.date | str | pd.Timestamp] | None = None, reinvest: bool = False,
              actions: pd.DataFrame | None = None, out_of_universe: np.ndarray | None = None) -> "Market":
        """A market from a raw (unadjusted) panel and its corporate-action arrays."""
        price = trade_prices(raw, trade_at)  # type: ignore[arg-type]
        close = raw["close"].where(raw["close"] > 0.0)
        mark = np.ascontiguousarray(close.ffill(limit=int(ended_after)).to_numpy(dtype=np.float64))
        close_arr = np.ascontiguousarray(close.to_numpy(dtype=np.float64))
        shape = raw.shape
        split = np.ones(shape) if split is None else np.ascontiguousarray(split, dtype=np.float64)
        dividend = np.zeros(shape) if dividend is None else np.ascontiguousarray(dividend, dtype=np.float64)
        ended = ended_flags(raw.sessions, raw.symbols, close_arr, int(ended_after), delisted)
        gone = {str(k): pd.Timestamp(v) for k, v in (delisted or {}).items()}
        return cls(raw.sessions, tuple(raw.symbols), price, mark, close_arr, split, dividend, ended,
                   np.ascontiguousarray(lots, dtype=np.float64), bool(reinvest), int(ended_after), actions, gone,
                   out_of_universe)

    @classmethod
    def from_panel(cls, panel: PricePanel, *, trade_at: str, lot_size: int = 100, ended_after: int = 5,
                   lots: np.ndarray | None = None) -> "Market":
        """The panel's own prices, no corporate actions (see the module docstring)."""
        lot = np.full(len(panel.symbols), float(lot_size)) if lots is None else lots
        return cls.build(panel, trade_at=trade_at, lots=lot, ended_after=ended_after)

    @classmethod
    def from_prices(cls, prices: object, *, trade_at: str, lots: np.ndarray, ended_after: int = 5,
                    delisted: Mapping[str, object] | None = None, reinvest: bool = False) -> "Market":
        """A market from a loaded pool (:class:`~rotation_platform.data.pipeline.PoolPrices`): its raw
        panel, corporate-action arrays and universe."""
        raw = prices.raw_panel  # type: ignore[attr-defined]
        acts = prices.actions  # type: ignore[attr-defined]
        if tuple(acts.symbols) != tuple(raw.symbols) or not pd.DatetimeIndex(acts.sessions).equals(raw.sessions):
            raise ResearchError("the corporate-action arrays are not aligned with the raw price panel")
        universe = getattr(prices, "universe", None)
        out = None if universe is None else universe.excluded
        return cls.build(raw, trade_at=trade_at, lots=lots, split=acts.split, dividend=acts.dividend,
                         ended_after=ended_after, delisted=delisted, reinvest=reinvest, actions=acts.events,
                         out_of_universe=out)

    def check_aligned(self, panel: PricePanel) -> None:
        if tuple(panel.symbols) != self.symbols or not panel.sessions.equals(self.sessions):
            raise ResearchError("the market (raw prices) and the signal panel cover other sessions or funds")

    def tradeable_next(self, row: int, next_session: object | None = None) -> np.ndarray:
        """Funds a decision at the close of ``row`` may pick for the next session: a bar at ``row`` and
        not ended by the next session (``ended`` of the next row; past the panel's end, a bar at ``row``
        means no gap, so only a delisting dated on or before ``next_session`` ends a fund)."""
        has_bar = np.isfinite(self.close[row]) & (self.close[row] > 0)
        if row + 1 < len(self.sessions):
            return has_bar & ~self.ended[row + 1]
        if next_session is not None and self.delisted:
            nxt = pd.Timestamp(next_session)
            gone = np.array([s in self.delisted and self.delisted[s] <= nxt for s in self.symbols], dtype=bool)
            return has_bar & ~gone
        return has_bar


# ------------------------------------------------------------------------------------ portfolio construction
#: trend filters in the order of the rows of :attr:`Construction.risk_on`
TREND_FILTERS = ("none", "benchmark_sma", "composite_sign")
#: cash policies as the kernel's codes (:func:`rotation_platform.research.nb.construct_weights_nb`)
CASH_POLICIES = {"cash": nb.POLICY_CASH, "pro_rata": nb.POLICY_PRO_RATA, "defensive": nb.POLICY_DEFENSIVE}


def daily_returns(close: np.ndarray) -> np.ndarray:
    """``close[t] / close[t - 1] - 1`` per fund (NaN where either close is missing or not positive): the
    return known at the close of ``t``."""
    c = np.where(np.isfinite(close) & (close > 0), close, np.nan)
    out = np.full(c.shape, np.nan)
    out[1:] = c[1:] / c[:-1] - 1.0
    return np.ascontiguousarray(out)


def composite_index(rets: np.ndarray) -> np.ndarray:
    """The equal-weight pool rebalanced daily as an index (1.0 at row 0): each row multiplies by one plus
    the mean return of the funds with a return (0 without any)."""
    with np.errstate(invalid="ignore"):
        n = np.isfinite(rets).sum(axis=1)
        mean = np.where(n > 0, np.nansum(rets, axis=1) / np.maximum(n, 1), 0.0)
    mean[0] = 0.0
    return np.cumprod(1.0 + mean)


def trend_signals(level: np.ndarray, composite: np.ndarray, window: int) -> np.ndarray:
    """``risk_on[k, t]`` for the trend filter ``TREND_FILTERS[k]`` and a trade at row ``t`` (0 .. sessions,
    the last row being the session after the panel), from data through ``t - 1``:

    * ``none``: always True;
    * ``benchmark_sma``: the benchmark level (``level``, NaN where unknown: the last known level counts)
      at ``t - 1`` is at or above its mean over the ``window`` sessions through ``t - 1``;
    * ``composite_sign``: the equal-weight pool (``composite``) gained or stayed flat over the ``window``
      sessions through ``t - 1``.

    Before ``window`` sessions of history the signal is True: no trend is measured yet, so the filter
    does not act (the strategy trades as without it).
    """
    n_s = level.shape[0]
    out = np.ones((len(TREND_FILTERS), n_s + 1), np.bool_)
    lv = pd.Series(level).ffill()
    sma = lv.rolling(window, min_periods=window).mean().to_numpy()
    lv = lv.to_numpy()
    with np.errstate(invalid="ignore"):
        above = np.where(np.isfinite(sma) & np.isfinite(lv), lv >= sma, True)
    out[1, 1:] = above
    comp = np.asarray(composite, dtype=np.float64)
    sign = np.ones(n_s, np.bool_)
    sign[window:] = comp[window:] >= comp[:-window]
    out[2, 1:] = sign
    return out


def cluster_representatives(labels: np.ndarray, candidates: np.ndarray, adv: np.ndarray) -> np.ndarray:
    """``blocked[i]``: fund ``i`` is in a cluster (``labels``, see :func:`nb.correlation_clusters_nb`) with
    a more liquid candidate -- the cluster's representative is its candidate with the highest ADV (NaN: the
    least liquid; ties: the first column); non-candidates never represent a cluster."""
    n_f = labels.shape[0]
    blocked = np.zeros(n_f, np.bool_)
    liq = np.where(np.isfinite(adv), adv, -np.inf)
    for lab in np.unique(labels):
        members = np.flatnonzero(labels == lab)
        if members.size < 2:
            continue
        cand = members[candidates[members]]
        if cand.size == 0:
            continue
        rep = cand[np.argmax(liq[cand])]
        blocked[members[members != rep]] = True
    return blocked


class Construction:
    """The portfolio-construction inputs of one pool (``strategy:`` of the configuration).

    Built once per strategy context: the daily returns of the signal panel (adjusted closes, for the
    volatility target and the de-duplication), the trend signals of every filter, the defensive fund, the
    ``tracks`` groups, and a cache of the fund clusters by the last row of returns they use.
    """

    def __init__(self, config: StrategyConfig, symbols: Sequence[str], close: np.ndarray, *,
                 benchmark: str = "equal_weight", defensive: str | None = None,
                 tracks: Mapping[str, str] | None = None, annualisation: int = 252):
        symbols = tuple(symbols)
        self.config = config
        self.symbols = symbols
        self.annualisation = int(annualisation)
        self.rets = daily_returns(np.asarray(close, dtype=np.float64))
        self.composite = composite_index(self.rets)
        if benchmark == "equal_weight":
            level = self.composite
        elif benchmark in symbols:
            level = np.asarray(close, dtype=np.float64)[:, symbols.index(benchmark)]
            level = np.where(level > 0, level, np.nan)
        else:
            raise ResearchError(f"benchmark {benchmark!r} is neither 'equal_weight' nor a symbol of the pool")
        self.risk_on = trend_signals(level, self.composite, int(config.trend_window))
        if defensive is not None and defensive not in symbols:
            raise ResearchError(f"defensive fund {defensive!r} is not a symbol of the pool {list(symbols)}")
        self.defensive = symbols.index(defensive) if defensive is not None else -1
        self.policy = CASH_POLICIES[config.cash_policy]
        if self.policy == nb.POLICY_DEFENSIVE and self.defensive < 0:
            raise ResearchError("strategy.cash_policy is 'defensive' but the pool has no defensive fund: set "
                                "pools[].defensive or choose cash_policy pro_rata or cash")
        tracks = dict(tracks or {})
        unknown = sorted(set(tracks) - set(symbols))
        if unknown:
            raise ResearchError(f"tracks names funds outside the pool: {unknown}")
        index_ids = {name: k for k, name in enumerate(sorted(set(tracks.values())))}
        self.group = np.array([index_ids[tracks[s]] if s in tracks else -1 for s in symbols], np.int64)
        n_s, n_f = self.rets.shape
        self._labels = np.tile(np.arange(n_f, dtype=np.int64), (n_s, 1))
        self._done = np.zeros(n_s, np.bool_)
        self.blocked = np.zeros((n_s, n_f), np.bool_)
        self._blocked_done = np.zeros(n_s, np.bool_)

    @property
    def dedup(self) -> bool:
        return self.config.dedup_correlation is not None or bool((self.group >= 0).any())

    def clusters_through(self, end_rows: np.ndarray) -> np.ndarray:
        """Cluster labels ``(len(end_rows), funds)`` from the returns through each row (cached)."""
        ends = np.asarray(end_rows, dtype=np.int64)
        todo = np.unique(ends[(ends >= 0) & ~self._done[np.clip(ends, 0, None)]])
        if todo.size and self.dedup:
            c = self.config
            thr = float(c.dedup_correlation) if c.dedup_correlation is not None else 2.0  # > 1: no correlation link
            self._labels[todo] = nb.correlation_clusters_nb(self.rets, todo, int(c.dedup_window), thr,
                                                            max(int(c.dedup_window) // 2, 3), self.group)
        self._done[todo] = True
        n_f = self.rets.shape[1]
        return np.array([self._labels[e] if e >= 0 else np.arange(n_f) for e in ends], dtype=np.int64).reshape(
            len(ends), n_f)

    def clusters(self, end_row: int) -> list[tuple[str, ...]]:
        """The clusters of more than one fund, from the returns through ``end_row`` (for a decision at its
        close), each a tuple of symbols in pool order."""
        labels = self.clusters_through(np.array([end_row]))[0]
        out = []
        for lab in np.unique(labels):
            members = np.flatnonzero(labels == lab)
            if members.size > 1:
                out.append(tuple(self.symbols[i] for i in members))
        return out

    def blocked_at(self, end_row: int, candidates: np.ndarray, adv: np.ndarray) -> np.ndarray:
        """Funds a more liquid member of their cluster keeps out of a decision whose returns end at
        ``end_row`` (``candidates`` and ``adv`` as known then; the defensive fund never represents)."""
        if not self.dedup or end_row < 0:
            return np.zeros(len(self.symbols), np.bool_)
        cand = np.asarray(candidates, np.bool_).copy()
        if self.defensive >= 0:
            cand[self.defensive] = False
        return cluster_representatives(self.clusters_through(np.array([end_row]))[0], cand, adv)

    def fill_blocked(self, trade_rows: np.ndarray, candidates: np.ndarray, adv: np.ndarray) -> np.ndarray:
        """Fill :attr:`blocked` on the trade rows (returns through the row before; ``candidates`` and ``adv``
        are sessions x funds, by trade row) and return it."""
        rows = np.unique(np.asarray(trade_rows, dtype=np.int64))
        rows = rows[(rows >= 1) & (rows < self.rets.shape[0])]
        rows = rows[~self._blocked_done[rows]]
        if rows.size and self.dedup:
            self.clusters_through(rows - 1)
            for t in rows:
                self.blocked[t] = self.blocked_at(int(t) - 1, candidates[t], adv[t])
        self._blocked_done[rows] = True
        return self.blocked

    def kernel_args(self, trend: np.ndarray) -> tuple:
        """The construction arguments of :func:`nb.simulate_path_nb` / :func:`nb.simulate_grid_nb` after
        ``start``/``slippage``: returns, blocked, risk_on, trend rows, policy, defensive, target_vol,
        vol_window, annualisation."""
        c = self.config
        n_s = self.rets.shape[0]
        return (self.rets, self.blocked, np.ascontiguousarray(self.risk_on[:, :n_s]),
                np.ascontiguousarray(trend, dtype=np.int64), int(self.policy), int(self.defensive),
                float(c.target_volatility or 0.0), int(c.vol_window), int(self.annualisation))
