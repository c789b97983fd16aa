"""The rotation strategy: composite factor score, top-N with a holding buffer, whole board lots.

Decision rule at a rebalance session ``t`` (timing: :mod:`rotation_platform.research.inputs`)
------------------------------------------------------------------------------------------
1. The screen as of ``t - 1`` (labels realised by ``t - 1``, lookback ``ic_lookback``, at the parameter
   set's selection horizon: :meth:`StrategySpec.horizon_for`) selects up to ``screening.top_k`` factors
   with their signs and ICIRs.
2. Each selected factor's row ``t`` is z-scored across the funds that can trade at ``t`` (and pass the
   optional liquidity filter, see :class:`StrategySpec`); the composite score is the mean of the
   sign-aligned z-scores, equally weighted or weighted by |ICIR|.
3. Held funds ranked within ``top_n + buffer`` stay; free slots go to the best-ranked others. Each chosen
   fund gets ``min(1 / top_n, capital.max_single_weight)`` of the portfolio; what the picks do not hold
   follows ``strategy.cash_policy`` (``pro_rata`` widens the selection to ``ceil(1 / max_single_weight)``
   funds at least), the trend filter (``StrategyParams.trend_filter``) and the volatility target
   (``strategy.target_volatility``), the remainder going to the pool's defensive fund or cash; of the
   funds of a cluster (``strategy.dedup_correlation``, ``pools[].tracks``) only the most liquid is
   eligible (:func:`~rotation_platform.research.nb.construct_weights_nb`,
   :class:`~rotation_platform.research.market.Construction`).
4. Orders execute at session ``t``'s raw trade price (``backtest.trade_at``) in whole board lots (per
   fund, :class:`~rotation_platform.research.market.Market`), sells first, with slippage
   ``backtest.slippage_bps`` and commission ``max(commission_rate * value, min_commission)`` per order.
   Between rebalances nothing trades, but corporate actions change the holdings (splits multiply the
   shares, cash dividends pay cash) and a fund whose data ended is sold at its last price.
5. A fund out of the universe (``Market.excluded``: an ERROR finding on data through ``t - 1`` inside
   ``data.quality.exclusion_window``) is neither scored nor eligible at ``t``: it cannot be bought or
   added to, and a holding is sold at the rebalance like a fund leaving the selection.

Signals (factors, labels, screens) use the adjusted panel; the book (shares, cash, orders, equity) uses
the raw prices of the market, so every share count is an exchange share count.

A session rebalances when its row number is a multiple of ``rebalance_sessions`` (one global schedule,
shared by every run over the same panel) or when the parameter set changes (walk-forward switches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from rotation_platform.config.models import BacktestConfig, CapitalConfig, ScreeningConfig, StrategyConfig
from rotation_platform.data.panel import PricePanel
from rotation_platform.errors import ResearchError
from rotation_platform.research import nb
from rotation_platform.research.inputs import FactorLike, align_factors, session_row
from rotation_platform.research.market import TREND_FILTERS, Construction, Market
from rotation_platform.research.screen import FactorScreen, SelectionPath, resolve_selection_horizon

__all__ = ["StrategyParams", "StrategySpec", "TradePlan", "StrategyContext"]

Weighting = Literal["equal", "ic"]


@dataclass(frozen=True)
class StrategyParams:
    """The tunable parameters of the rotation strategy (one point of the walk-forward grid)."""

    top_n: int
    rebalance_sessions: int
    ic_lookback: int
    weighting: Weighting = "equal"
    buffer: int = 0
    trend_filter: Literal["none", "benchmark_sma", "composite_sign"] = "none"

    def __post_init__(self) -> None:
        problems = []
        if self.top_n < 1:
            problems.append(f"top_n={self.top_n} (needs >= 1)")
        if self.rebalance_sessions < 1:
            problems.append(f"rebalance_sessions={self.rebalance_sessions} (needs >= 1)")
        if self.ic_lookback < 2:
            problems.append(f"ic_lookback={self.ic_lookback} (needs >= 2)")
        if self.weighting not in ("equal", "ic"):
            problems.append(f"weighting={self.weighting!r} (use 'equal' or 'ic')")
        if self.buffer < 0:
            problems.append(f"buffer={self.buffer} (needs >= 0)")
        if self.trend_filter not in TREND_FILTERS:
            problems.append(f"trend_filter={self.trend_filter!r} (use one of {', '.join(TREND_FILTERS)})")
        if problems:
            raise ResearchError("invalid strategy parameters: " + "; ".join(problems))

    @property
    def label(self) -> str:
        suffix = {"none": "", "benchmark_sma": "_tfsma", "composite_sign": "_tfsign"}[self.trend_filter]
        return (f"top{self.top_n}_reb{self.rebalance_sessions}_lb{self.ic_lookback}_"
                f"{self.weighting}_buf{self.buffer}{suffix}")

    def as_dict(self) -> dict[str, object]:
        return {"top_n": self.top_n, "rebalance_sessions": self.rebalance_sessions,
                "ic_lookback": self.ic_lookback, "weighting": self.weighting, "buffer": self.buffer,
                "trend_filter": self.trend_filter}


@dataclass(frozen=True)
class StrategySpec:
    """The fixed parts of a strategy: screening, costs and the pool's capital.

    ``liquidity_filter`` makes a fund eligible at a rebalance session ``t`` only when a position of the
    target weight (``min(1 / top_n, capital.max_single_weight)``) at the book's value then stays within
    ``capital.max_adv_pct`` of its mean daily turnover over the ``adv_window`` sessions before ``t``;
    a fund without turnover data is not eligible, and held funds that fail it are sold at the next
    rebalance. Scores and the screen (ICs) use every fund with a trade price. Both default to
    ``backtest.liquidity_filter`` / ``backtest.adv_window`` (``None``).

    ``selection_horizon`` (default ``screening.selection_horizon``): ``"auto"`` -- each parameter set
    selects on the screening horizon closest to its ``rebalance_sessions`` (:meth:`horizon_for`) -- or
    one of ``screening.horizons`` for every set.
    """

    capital: CapitalConfig
    screening: ScreeningConfig = field(default_factory=ScreeningConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    selection_horizon: int | Literal["auto"] | None = None
    min_obs: int = 5
    min_ic_obs: int | None = None
    liquidity_filter: bool | None = None
    adv_window: int | None = None
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    defensive: str | None = None
    tracks: tuple[tuple[str, str], ...] = ()
    benchmark: str = "equal_weight"

    def __post_init__(self) -> None:
        if isinstance(self.tracks, dict):
            object.__setattr__(self, "tracks", tuple(sorted(self.tracks.items())))
        if self.liquidity_filter is None:
            object.__setattr__(self, "liquidity_filter", bool(self.backtest.liquidity_filter))
        if self.adv_window is None:
            object.__setattr__(self, "adv_window", int(self.backtest.adv_window))
        if self.adv_window < 1:
            raise ResearchError(f"adv_window must be at least 1 session, got {self.adv_window}")
        h = self.selection_horizon
        if h is None:  # follow the configuration (screening.selection_horizon)
            h = self.screening.selection_horizon
            object.__setattr__(self, "selection_horizon", h)
        if h != "auto" and h not in self.screening.horizons:
            raise ResearchError(f"selection_horizon {h} is not among screening.horizons "
                                f"{list(self.screening.horizons)}")

    def horizon_for(self, params: "StrategyParams | int") -> int:
        """The label horizon the screens of ``params`` (or of a cadence in sessions) select on
        (:func:`~rotation_platform.research.screen.resolve_selection_horizon`)."""
        cadence = params if isinstance(params, int | np.integer) else params.rebalance_sessions
        return resolve_selection_horizon(self.selection_horizon, tuple(self.screening.horizons), int(cadence))


@dataclass(frozen=True)
class TradePlan:
    """The orders and path of one simulated strategy run (all arrays sessions x funds, real units).

    ``orders`` are signed share changes (0: no order) executed at ``order_price`` before slippage (the
    raw ``trade_price``, or the last price for the ``liquidated`` sales of funds whose data ended; NaN
    where no order); ``shares`` and ``cash`` are the state after each session's corporate actions and
    orders; ``dividends`` the cash paid on the holdings at each ex-date; ``commission`` and
    ``slippage_cost`` are CNY per order; ``weights`` are the target weights on rebalance sessions (NaN
    elsewhere); ``equity`` is marked at ``market.mark`` (raw closes). ``active`` holds the parameter-set
    index per session (-1: none) into ``params``.
    """

    sessions: pd.DatetimeIndex
    symbols: tuple[str, ...]
    market: Market
    orders: np.ndarray
    order_price: np.ndarray
    liquidated: np.ndarray
    shares: np.ndarray
    dividends: np.ndarray
    commission: np.ndarray
    slippage_cost: np.ndarray
    weights: np.ndarray
    cash: np.ndarray
    equity: np.ndarray
    active: np.ndarray
    params: tuple[StrategyParams, ...]
    init_cash: float
    costs: BacktestConfig

    @property
    def trade_price(self) -> np.ndarray:
        return self.market.trade_price

    @property
    def mark(self) -> np.ndarray:
        return self.market.mark

    @property
    def traded_value(self) -> np.ndarray:
        """|orders| x order price (CNY, before slippage) per session and fund; 0 where no order."""
        return np.where(self.orders != 0.0, np.abs(self.orders) * np.nan_to_num(self.order_price), 0.0)

    @property
    def first_trade_row(self) -> int | None:
        rows = np.flatnonzero((self.orders != 0.0).any(axis=1))
        return int(rows[0]) if rows.size else None

    def equity_series(self) -> pd.Series:
        return pd.Series(self.equity, index=self.sessions, name="equity")

    @property
    def invested(self) -> np.ndarray:
        """Share of the equity held in funds (the rest is cash) at each close, marked at ``market.mark``."""
        value = np.where(self.shares != 0.0, self.shares * np.nan_to_num(self.market.mark), 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.equity > 0, value / self.equity, np.nan)

    def params_by_session(self) -> pd.Series:
        labels = np.array([p.label for p in self.params] + [""], dtype=object)
        return pd.Series(labels[self.active], index=self.sessions, name="params")


class StrategyContext:
    """Everything a pool's strategy runs share: aligned factors, daily ICs, prices, cached selections.

    Build once per pool and factor set; :meth:`run` simulates one parameter set, :meth:`simulate_grid`
    many at once (the walk-forward grid), :meth:`simulate_plan` one run whose parameter set changes
    by session (the stitched walk-forward strategy).
    """

    def __init__(self, factors: FactorLike | tuple[np.ndarray, Sequence[str]], panel: PricePanel, spec: StrategySpec,
                 market: Market | None = None):
        self.panel = panel
        self.spec = spec
        if market is None:
            market = Market.from_panel(panel, trade_at=spec.backtest.trade_at, lot_size=spec.backtest.lot_size)
        market.check_aligned(panel)
        self.market = market
        aligned = align_factors(factors, panel)
        self.screen = FactorScreen(aligned, panel, horizons=tuple(spec.screening.horizons),
                                   trade_at=spec.backtest.trade_at, min_obs=spec.min_obs,
                                   annualisation=spec.backtest.annualisation)
        self.values = aligned.values
        self.universe = self.screen.universe
        self.candidates = self.universe & ~market.ended & ~market.excluded
        self.adv_limit = np.ascontiguousarray(self.position_limit(self.adv()))
        self._ranks: tuple[np.ndarray, np.ndarray] | None = None
        self.construction = Construction(spec.strategy, self.symbols, panel["close"].to_numpy(dtype=np.float64),
                                         benchmark=spec.benchmark, defensive=spec.defensive, tracks=dict(spec.tracks),
                                         annualisation=int(spec.backtest.annualisation))
        self._selections: dict[tuple[int, int], tuple[np.ndarray, SelectionPath]] = {}

    # ------------------------------------------------------------------------------------ basics
    @property
    def sessions(self) -> pd.DatetimeIndex:
        return self.panel.sessions

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self.panel.symbols)

    @property
    def n_sessions(self) -> int:
        return len(self.panel.sessions)

    def adv(self) -> np.ndarray:
        """Mean daily turnover (CNY) over the ``adv_window`` sessions before each session (NaN: none)."""
        amount = self.panel["amount"].where(self.panel["amount"] > 0.0)
        return amount.rolling(self.spec.adv_window, min_periods=1).mean().shift(1).to_numpy(dtype=np.float64)

    def adv_known_at(self, row: int) -> np.ndarray:
        """Mean daily turnover (CNY) of the ``adv_window`` sessions through ``row``: the ADV known at its
        close, for a decision made then (NaN where none)."""
        recent = self.panel["amount"].iloc[max(0, row + 1 - self.spec.adv_window): row + 1]
        return recent.where(recent > 0.0).mean().to_numpy(dtype=np.float64)

    def position_limit(self, adv: np.ndarray) -> np.ndarray:
        """The largest position (CNY) the liquidity rule allows: ``capital.max_adv_pct`` of ``adv`` (0 without
        an ADV), ``inf`` everywhere when the liquidity filter is off (see :class:`StrategySpec`)."""
        if not self.spec.liquidity_filter:
            return np.full(np.shape(adv), np.inf)
        return np.nan_to_num(adv) * self.spec.capital.max_adv_pct

    def liquid(self, position: float | np.ndarray, adv: np.ndarray | None = None) -> np.ndarray:
        """Where a position of ``position`` CNY fits the liquidity rule (:meth:`position_limit`)."""
        return self.position_limit(self.adv() if adv is None else adv) >= position

    def ranks(self) -> tuple[np.ndarray, np.ndarray]:
        """Normalised factor ranks of every row and their row flags (cached), for the selections'
        correlation step."""
        if self._ranks is None:
            self._ranks = self.screen.normalized_ranks(0, self.n_sessions)
        return self._ranks

    # ------------------------------------------------------------------------------------ selections
    def _horizon(self, horizon: int | None) -> int:
        if horizon is not None:
            return int(horizon)
        if self.spec.selection_horizon == "auto":
            raise ResearchError("selection_horizon is auto: pass the horizon of the parameter set "
                                "(StrategySpec.horizon_for(params))")
        return int(self.spec.selection_horizon)

    def selections(self, lookback: int, as_of_rows: np.ndarray, horizon: int | None = None) -> SelectionPath:
        """Selections as of ``as_of_rows`` for one lookback and selection horizon (computed once per row,
        lookback and horizon; ``horizon`` may be left out when the spec fixes one)."""
        h_sel = self._horizon(horizon)
        rows = np.unique(np.asarray(as_of_rows, dtype=np.int64))
        rows = rows[rows >= 0]
        if rows.size == 0:
            k = int(self.spec.screening.top_k)
            return SelectionPath(rows, np.full((0, k), -1, np.int64), np.zeros((0, k)), np.full((0, k), np.nan),
                                 lookback, self.screen.names)
        done_rows, done = self._selections.get((lookback, h_sel), (np.empty(0, np.int64), None))
        missing = np.setdiff1d(rows, done_rows)
        if missing.size:
            new = self.screen.selection_path(missing, self.spec.screening, lookback=lookback,
                                             selection_horizon=h_sel,
                                             min_ic_obs=self.spec.min_ic_obs, ranks=(0, *self.ranks()))
            if done is None:
                all_rows, kept, sign, icir = new.as_of, new.kept, new.sign, new.icir
            else:
                all_rows = np.concatenate([done.as_of, new.as_of])
                kept = np.concatenate([done.kept, new.kept])
                sign = np.concatenate([done.sign, new.sign])
                icir = np.concatenate([done.icir, new.icir])
            order = np.argsort(all_rows, kind="mergesort")
            done = SelectionPath(all_rows[order], kept[order], sign[order], icir[order], lookback, self.screen.names)
            self._selections[(lookback, h_sel)] = (done.as_of, done)
        if done is None:
            raise ResearchError(f"no selection computed for lookback {lookback} at horizon {h_sel}")
        pos = np.searchsorted(done.as_of, rows)
        return SelectionPath(rows, done.kept[pos], done.sign[pos], done.icir[pos], lookback, self.screen.names)

    def scores(self, lookback: int, weighting: Weighting, trade_rows: np.ndarray,
               horizon: int | None = None) -> np.ndarray:
        """Composite scores (sessions x funds) on ``trade_rows`` from the screens as of the row before."""
        rows = np.unique(np.asarray(trade_rows, dtype=np.int64))
        rows = rows[(rows >= 1) & (rows < self.n_sessions)]
        path = self.selections(lookback, rows - 1, horizon)
        if weighting == "ic":
            weight = np.abs(np.nan_to_num(path.icir))
        else:
            weight = np.where(path.kept >= 0, 1.0, 0.0)
        sel_row = np.arange(rows.size, dtype=np.int64)
        return nb.composite_scores_nb(self.values, self.candidates, rows, sel_row, path.kept,
                                      np.ascontiguousarray(path.sign), np.ascontiguousarray(weight))

    def first_signal_row(self, lookbacks: Sequence[int], horizons: Sequence[int] | None = None) -> int:
        """The first session row on which some lookback (at some selection horizon of ``horizons``, by
        default the spec's fixed one) has a selection (as of the row before), searched on a 20-session
        grid and refined inside the first gap that ends with a selection."""
        best = self.n_sessions
        rows = np.arange(1, self.n_sessions, dtype=np.int64)
        hs = [self._horizon(None)] if horizons is None else sorted(set(int(h) for h in horizons))
        for lb, h in ((int(x), h) for x in sorted(set(int(x) for x in lookbacks)) for h in hs):
            probe = rows[rows - 1 >= lb // 2]
            # the selection needs min_ic_obs realised ICs: probe coarse rows, then refine
            coarse = probe[::20]
            path = self.selections(lb, coarse - 1, h)
            hit = np.flatnonzero(path.kept[:, 0] >= 0)
            if hit.size == 0:
                continue
            hi = int(coarse[hit[0]])
            lo = int(coarse[hit[0] - 1]) if hit[0] > 0 else int(probe[0])
            fine = np.arange(lo, hi + 1, dtype=np.int64)
            path = self.selections(lb, fine - 1, h)
            first = fine[np.flatnonzero(path.kept[:, 0] >= 0)[0]]
            best = min(best, int(first))
        if best >= self.n_sessions:
            raise ResearchError("no screen selects any factor on this panel: check screening.min_coverage, "
                                "min_abs_icir and that the factors have values on at least min_obs funds")
        return best

    def grid_start_row(self, params: Sequence[StrategyParams]) -> int:
        """The first row on which the grid's longest lookback has a selection at every selection horizon
        the grid uses (so every parameter set can trade from it)."""
        lb = max(p.ic_lookback for p in params)
        return max(self.first_signal_row([lb], [h]) for h in sorted({self.spec.horizon_for(p) for p in params}))

    # ------------------------------------------------------------------------------------ simulation
    def _rows_for(self, params: Sequence[StrategyParams], start: int, extra: np.ndarray | None = None) -> np.ndarray:
        rows = [np.array([start], np.int64)]
        for c in sorted({p.rebalance_sessions for p in params}):
            first = start + (-start) % c
            rows.append(np.arange(first, self.n_sessions, c, dtype=np.int64))
        if extra is not None:
            rows.append(np.asarray(extra, np.int64))
        return np.unique(np.concatenate(rows))

    def _score_cube(self, params: Sequence[StrategyParams], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = [(p.ic_lookback, self.spec.horizon_for(p), p.weighting) for p in params]
        variants = sorted(set(keys))
        cube = np.empty((len(variants), self.n_sessions, len(self.symbols)))
        for v, (lb, h, w) in enumerate(variants):
            cube[v] = self.scores(lb, w, rows, h)
        index = {key: v for v, key in enumerate(variants)}
        variant = np.array([index[key] for key in keys], dtype=np.int64)
        return cube, variant

    def _param_arrays(self, params: Sequence[StrategyParams]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.array([p.top_n for p in params], np.int64), np.array([p.buffer for p in params], np.int64),
                np.array([p.rebalance_sessions for p in params], np.int64))

    @property
    def trade_price(self) -> np.ndarray:
        """Raw trade prices (the market's)."""
        return self.market.trade_price

    @property
    def mark(self) -> np.ndarray:
        """Raw daily marks (the market's)."""
        return self.market.mark

    def _market_args(self) -> tuple:
        m = self.market
        return (m.trade_price, m.mark, m.split, m.dividend, m.ended, m.excluded, m.lots, self.adv_limit,
                bool(m.reinvest))

    def _cost_args(self) -> tuple[float, float, float, float, float]:
        bt = self.spec.backtest
        cap = self.spec.capital
        return (float(cap.max_single_weight), float(cap.target_capital), float(bt.commission_rate),
                float(bt.min_commission), float(bt.slippage_bps) / 1e4)

    def _construction_args(self, params: Sequence[StrategyParams], rows: np.ndarray) -> tuple:
        """The kernel's portfolio-construction arguments, with the de-duplication filled on ``rows``."""
        c = self.construction
        c.fill_blocked(rows, self.candidates & (self.market.trade_price > 0), self.adv())
        return c.kernel_args(np.array([TREND_FILTERS.index(p.trend_filter) for p in params], np.int64))

    def simulate_grid(self, params: Sequence[StrategyParams], start: int) -> np.ndarray:
        """Equity curves ``(len(params), sessions)`` of every parameter set traded from row ``start``."""
        if not params:
            raise ResearchError("the parameter grid is empty")
        rows = self._rows_for(params, start)
        cube, variant = self._score_cube(params, rows)
        top_n, buffer, cadence = self._param_arrays(params)
        max_w, cash, rate, min_fee, slip = self._cost_args()
        return nb.simulate_grid_nb(*self._market_args(), cube, variant, top_n, buffer, cadence, max_w, cash,
                                   rate, min_fee, slip, int(start), *self._construction_args(params, rows))

    def simulate_plan(self, params: Sequence[StrategyParams], active: np.ndarray) -> TradePlan:
        """One run whose parameter set is ``params[active[t]]`` at session ``t`` (-1: no trading)."""
        active = np.ascontiguousarray(active, dtype=np.int64)
        if active.shape != (self.n_sessions,):
            raise ResearchError(f"active must hold one parameter index per session ({self.n_sessions})")
        if active.max() >= len(params) or active.min() < -1:
            raise ResearchError("active holds an index outside the parameter list")
        live = np.flatnonzero(active >= 0)
        if live.size == 0:
            raise ResearchError("no session has an active parameter set")
        switches = np.flatnonzero(np.diff(np.concatenate([[-1], active])) != 0)
        rows = self._rows_for(params, int(live[0]), extra=switches[active[switches] >= 0])
        cube, variant = self._score_cube(params, rows)
        top_n, buffer, cadence = self._param_arrays(params)
        max_w, cash, rate, min_fee, slip = self._cost_args()
        equity, shares, orders, fees, slip_cost, weights, cash_path, price, divs, liq = nb.simulate_path_nb(
            *self._market_args(), cube, active, variant, top_n, buffer, cadence, max_w, cash, rate, min_fee, slip,
            *self._construction_args(params, rows))
        return TradePlan(self.sessions, self.symbols, self.market, orders, price, liq, shares, divs, fees, slip_cost,
                         weights, cash_path, equity, active, tuple(params), cash, self.spec.backtest)

    def run(self, params: StrategyParams, *, start: object | None = None) -> TradePlan:
        """Simulate one parameter set from ``start`` (a session or row; default the first signal row)."""
        if start is None:
            first = self.first_signal_row([params.ic_lookback], [self.spec.horizon_for(params)])
        else:
            first = session_row(self.sessions, start, what="strategy start")
        active = np.full(self.n_sessions, -1, np.int64)
        active[first:] = 0
        return self.simulate_plan([params], active)

    def selection_at(self, params: StrategyParams, trade_session: object) -> SelectionPath:
        """The factors the strategy scores with at ``trade_session`` (the screen as of the row before)."""
        t = session_row(self.sessions, trade_session, what="trade session")
        if t < 1:
            raise ResearchError("the first session has no screen before it")
        return self.selections(params.ic_lookback, np.array([t - 1]), self.spec.horizon_for(params))
