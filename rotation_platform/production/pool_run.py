"""One pool's production outputs for a run of trading sessions, computed in one vectorised pass.

A :class:`PoolRun` covers the sessions ``t_1 < ... < t_n`` of a run -- one session for the daily run,
a whole range for a single-run backfill -- and produces, for every one of them, exactly what a daily
run of that session alone produces (the backfill-equals-daily guarantee):

* the adjusted prices are loaded once, as of ``t_n``; every value at ``t`` reads rows ``<= t`` only;
* the factor panel is computed once (factor row ``t`` uses data through ``t - lag``);
* the screen as of ``t`` uses labels realised by ``t``;
* the walk-forward grid is simulated once (its equity at row ``t`` depends on data through ``t``); the
  strategy is re-optimised on ``wfo.reoptimise`` sessions ``r``: the live parameter set chosen at
  the close of ``r`` (best in-sample objective over the ``train_sessions`` ending at ``r``) trades from
  ``r + 1`` until the next re-optimisation; the walk-forward diagnostics as of ``t`` are those of
  the panel cut after ``r(t)``, the latest re-optimisation on or before ``t``;
* the backtest simulates the live choices (the production strategy) once, in real units -- raw
  prices, board lots, splits and dividends applied to the holdings, funds whose data ended liquidated
  (:class:`~rotation_platform.research.market.Market`) -- verified by an independent ledger; metrics
  as of ``t`` use returns through ``t``;
* the target portfolio decided at the close of ``t`` uses the screen as of ``t``, the factor row
  of the next session (data through ``t``) and the book at ``t``: the actual positions of ``t`` when
  they are given (``positions.*``), else the backtest's simulated holdings; it trades only when the
  next session is a rebalance (scheduled, or a new live parameter set);
* the universe of ``t`` (:meth:`PoolRun.universe_at`): the funds the decision at ``t`` may use -- a bar at
  ``t``, data not ended, and no ERROR finding on data through ``t`` inside
  ``data.quality.exclusion_window``; the others are listed with the reason. Fewer than
  ``pools[].min_funds`` of them fail the pool's quality gate at ``t``.

Values for a session therefore never depend on which other sessions share the run. Stored values
carry no wall-clock time; run metadata (with ``generated_at``) is separate.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from rotation_platform import ENGINE_VERSION
from rotation_platform.calendars import get_calendar
from rotation_platform.config.models import PlatformConfig
from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.data.pipeline import PoolPrices, load_pool_prices
from rotation_platform.data.sources import pool_source
from rotation_platform.errors import DataSourceError, ResearchError
from rotation_platform.factors import FactorPanel, compute_cross_section, compute_panel
from rotation_platform.factors.registry import get as get_factor_spec
from rotation_platform.production.cadence import reoptimisation_flags, reoptimisation_rows
from rotation_platform.research import (
    BacktestResult,
    Market,
    adv_frame,
    capacity_by_session,
    capacity_table,
    ScreenResult,
    StrategyContext,
    StrategySpec,
    WFOResult,
    backtest,
    grid_params,
    historical_var,
    monthly_returns,
    objective_matrix,
    performance_metrics,
    target_portfolio,
    walk_forward,
)

from rotation_platform.research.baselines import BASELINES, Baselines, baselines
from rotation_platform.research.market import pool_lots
from rotation_platform.research.baselines import PREFIX as BASELINE_PREFIX
from rotation_platform.research.value_added import sharpe_difference
from rotation_platform.research.wfo import selection_ic

__all__ = ["PoolRun", "FactorFunction", "data_hash_chain"]

#: the momentum baseline's lookback (sessions) and the metrics reported per baseline
BASELINE_MOMENTUM_LOOKBACK = 20
BASELINE_METRICS = ("total_return", "annual_return", "volatility", "sharpe", "max_drawdown", "annual_turnover")

FactorFunction = Callable[[PricePanel], FactorPanel]
METRIC_FIELDS = ("total_return", "annual_return", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
                 "monthly_win_rate", "annual_turnover", "cost_drag")
#: panel metadata that depends on how the run was cut, not on the data: left out of stored values
_RUN_META = ("asof", "end", "through", "generated_at", "files", "quality")


def data_hash_chain(panel: PricePanel) -> list[str]:
    """Per session, a hash of every price row through it (chained, so the hash at ``t`` covers rows
    ``<= t`` and is the same however far the panel extends)."""
    stacked = np.stack([panel[f].to_numpy(dtype=np.float64) for f in PRICE_FIELDS], axis=1)  # (s, fields, funds)
    head = hashlib.sha256(("|".join(panel.symbols) + "#" + ",".join(PRICE_FIELDS)).encode()).digest()
    out = []
    h = head
    for i, day in enumerate(panel.sessions):
        h = hashlib.sha256(h + str(day.date()).encode() + np.ascontiguousarray(stacked[i]).tobytes()).digest()
        out.append(h.hex()[:16])
    return out


def _nan_metrics() -> dict[str, float]:
    return {k: float("nan") for k in METRIC_FIELDS}


class PoolRun:
    """Everything one pool produces for ``sessions`` (see the module docstring).

    ``factor_function`` replaces the factor engine (it must behave like
    ``compute_panel(panel, config.factors)``); the no-lookahead fuse checks whatever is used.
    """

    def __init__(self, config: PlatformConfig, pool: str, sessions: Sequence[object], *,
                 source: Any | None = None, factor_function: FactorFunction | None = None):
        self.config = config
        self.pool = config.pool(pool)
        idx = pd.DatetimeIndex(pd.to_datetime(list(sessions))).normalize().unique().sort_values()
        if idx.empty:
            raise ResearchError(f"pool {pool}: a run needs at least one session")
        self.sessions = idx
        self.through = idx[-1]
        self.calendar = get_calendar(self.pool.calendar)
        self._source = source
        self._factor_function = factor_function
        self._wfo: dict[int, WFOResult] = {}
        self._wfo_parts: dict[int, dict[str, object]] = {}

    # ------------------------------------------------------------------------------------------ data
    @cached_property
    def prices(self) -> PoolPrices:
        source = self._source if self._source is not None else pool_source(self.config, end=self.through.date())
        return load_pool_prices(source, self.pool, self.config.data, asof=self.through.date())

    @cached_property
    def market(self) -> Market:
        """Raw prices, corporate actions, board lots and tradeability: what the book trades on."""
        bt = self.config.backtest
        self.panel  # noqa: B018 - the run's sessions are checked against the data first
        return Market.from_prices(self.prices, trade_at=bt.trade_at,
                                  lots=pool_lots(self.config, self.pool.name),
                                  ended_after=self.config.data.ended_after, delisted=self.pool.delisted,
                                  reinvest=bt.dividends == "reinvest")

    @property
    def currency(self) -> str:
        """The pool's currency (:meth:`PlatformConfig.pool_currency`): capital, prices, cash, orders, equity,
        capacity and commissions of this run are all in it."""
        return self.config.pool_currency(self.pool.name)

    @cached_property
    def panel(self) -> PricePanel:
        panel = self.prices.panel
        missing = self.sessions.difference(panel.sessions)
        if len(missing) == 0:
            close = panel["close"].loc[self.sessions]
            missing = self.sessions[~(close > 0).any(axis=1).to_numpy()]  # a session row where no fund has a bar
        if len(missing):
            have = panel["close"].dropna(how="all")
            last = str(have.index[-1].date()) if len(have) else "no data"
            raise DataSourceError(f"pool {self.pool.name}: no fund has a bar for session(s) "
                                  f"{[str(d.date()) for d in missing[:5]]}{' ...' if len(missing) > 5 else ''} "
                                  f"(the source's data ends {last}); run an earlier session or wait for the data")
        return panel

    @cached_property
    def rows(self) -> np.ndarray:
        """Panel rows of the run's sessions."""
        return np.asarray(self.panel.sessions.get_indexer(self.sessions), dtype=np.int64)

    @cached_property
    def data_hashes(self) -> list[str]:
        return data_hash_chain(self.panel)

    def data_hash(self, session: object) -> str:
        return self.data_hashes[int(self.panel.sessions.get_loc(pd.Timestamp(session)))]

    def stored_meta(self) -> dict[str, object]:
        return {k: v for k, v in self.panel.meta.items() if k not in _RUN_META}

    def price_rows(self) -> PricePanel:
        """The adjusted bars of the run's sessions."""
        frames = {f: self.panel[f].loc[self.sessions] for f in PRICE_FIELDS}
        return PricePanel(frames, {**self.stored_meta(), "pool": self.pool.name})

    def quarantine_by_session(self) -> dict[pd.Timestamp, pd.DataFrame]:
        """The quarantined rows the gate had seen by each session (dated on or before it, or undated);
        rows merely after the run's as-of date are not quarantined data and are left out."""
        q = self.prices.quarantine
        q = q[q["reason"] != "after_asof"] if "reason" in q.columns else q
        dates = pd.to_datetime(q["date"], errors="coerce") if "date" in q.columns else pd.Series(pd.NaT, index=q.index)
        out = {}
        for t in self.sessions:
            keep = dates.isna() | (dates <= t)
            out[t] = q[keep.to_numpy()].reset_index(drop=True)
        return out

    def universe_at(self, session: object) -> dict[str, object]:
        """The universe of the decision at the close of ``session``: ``tradeable`` (symbols with a bar then,
        data not ended, not excluded), ``excluded`` (symbol -> reason: an ERROR finding inside the
        exclusion window), ``ended`` (symbol -> reason: the data ended) and ``no_bar`` (symbols without a
        bar that session: not listed yet or suspended)."""
        t = pd.Timestamp(session)
        row = int(self.panel.sessions.get_loc(t))
        market = self.market
        symbols = tuple(self.panel.symbols)
        nxt = self.calendar.next_session(t)
        can = market.tradeable_next(row, nxt)
        out = market.out_of_universe[row]
        has_bar = np.isfinite(market.close[row]) & (market.close[row] > 0)
        reasons = self.prices.universe.reasons(row)
        bars = np.isfinite(market.close[: row + 1]) & (market.close[: row + 1] > 0)
        seen = bars.any(axis=0)
        gap = np.argmax(bars[::-1], axis=0)  # sessions since the last bar, through the session
        ended: dict[str, str] = {}
        for i, s in enumerate(symbols):
            gone = self.pool.delisted.get(s)
            if gone is not None and pd.Timestamp(gone) <= pd.Timestamp(nxt):
                ended[s] = f"delisted on {gone} (pool.delisted)"
            elif seen[i] and not has_bar[i] and int(gap[i]) >= market.ended_after:
                last = self.panel.sessions[row - int(gap[i])]
                ended[s] = (f"data ended: last bar {last.date()}, no bar on the last {int(gap[i])} "
                            f"session(s), data_ended")
        tradeable = [s for i, s in enumerate(symbols) if can[i] and not out[i]]
        no_bar = [s for i, s in enumerate(symbols) if not has_bar[i] and s not in ended and s not in reasons]
        return {"session": str(t.date()), "tradeable": tradeable, "excluded": reasons, "ended": ended,
                "no_bar": no_bar, "min_funds": int(self.pool.min_funds),
                "exclusion_window": int(self.config.data.quality.exclusion_window)}

    # --------------------------------------------------------------------------------------- factors
    @cached_property
    def factors(self) -> FactorPanel:
        if self._factor_function is not None:
            return self._factor_function(self.panel)
        return compute_panel(self.panel, self.config.factors, price_field=self.config.data.price_field)

    @cached_property
    def coverage(self) -> pd.Series:
        """Per panel session: finite factor values / values that should exist (the fund has a bar at
        ``t - lag`` and each factor's minimum history of its own bars by then)."""
        fp = self.factors
        vals = np.asarray(fp.values)  # (sessions, funds, factors)
        close = self.panel["close"].to_numpy(dtype=np.float64)
        has_bar = np.isfinite(close) & (close > 0)
        bars = np.cumsum(has_bar, axis=0)
        lag = self.config.factors.lag
        bars_lag = np.zeros_like(bars)
        bars_lag[lag:] = bars[:-lag]
        bar_lag = np.zeros_like(has_bar)
        bar_lag[lag:] = has_bar[:-lag]
        need = np.array([max(int(get_factor_spec(n).min_history), 1) for n in fp.names], dtype=np.int64)
        expected = bar_lag[:, :, None] & (bars_lag[:, :, None] >= need[None, None, :])
        have = np.isfinite(vals) & expected
        n_exp = expected.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = np.where(n_exp > 0, have.sum(axis=(1, 2)) / n_exp, np.nan)
        return pd.Series(cov, index=self.panel.sessions, name="coverage")

    def compute_factors(self, panel: PricePanel) -> FactorPanel:
        """The factor function this run uses, on another panel (for the no-lookahead fuse)."""
        if self._factor_function is not None:
            return self._factor_function(panel)
        return compute_panel(panel, self.config.factors, price_field=self.config.data.price_field)

    def factor_frame(self) -> pd.DataFrame:
        """Factor values of the run's sessions: index (session, symbol), one column per factor."""
        fp = self.factors
        vals = np.asarray(fp.values)[self.rows]  # (sessions, funds, factors)
        n_s, n_f, n_k = vals.shape
        index = pd.MultiIndex.from_product([self.sessions, list(self.panel.symbols)], names=["session", "symbol"])
        return pd.DataFrame(vals.reshape(n_s * n_f, n_k).astype(np.float64), index=index, columns=list(fp.names))

    # ----------------------------------------------------------------------------------------- screen
    @cached_property
    def spec(self) -> StrategySpec:
        return StrategySpec(capital=self.pool.capital, screening=self.config.screening, backtest=self.config.backtest,
                            min_obs=self.config.screening.min_obs,
                            selection_horizon=self.config.screening.selection_horizon,
                            strategy=self.config.strategy, defensive=self.pool.defensive,
                            tracks=dict(self.pool.tracks), benchmark=self.pool.benchmark)

    @cached_property
    def ctx(self) -> StrategyContext:
        return StrategyContext(self.factors, self.panel, self.spec, self.market)

    @cached_property
    def screens(self) -> dict[pd.Timestamp, ScreenResult]:
        out = {}
        ranks = (0, *self.ctx.ranks())  # every row ranked once, shared with the walk-forward
        for t, row in zip(self.sessions, self.rows):
            out[t] = self.ctx.screen.screen(int(row), self.config.screening,
                                            selection_horizon=self.screen_horizon(int(row)), ranks=ranks)
        return out

    def screen_horizon(self, row: int) -> int:
        """The selection horizon of the published screen as of ``row``: ``screening.selection_horizon`` when
        it is a number; with ``auto`` the horizon of the live parameter set trading after ``row`` or, before
        the first one, of the grid's shortest cadence."""
        if self.spec.selection_horizon != "auto":
            return int(self.spec.selection_horizon)
        try:
            live_r = self.live_row(row)
        except ResearchError:  # no screen ever selects a factor: the grid cannot start (fuse 3 reports it)
            live_r = None
        if live_r is not None:
            return self.spec.horizon_for(self.params[self.live_choices[live_r]])
        return self.spec.horizon_for(min(p.rebalance_sessions for p in self.params))

    def screen_frame(self) -> pd.DataFrame:
        """Every factor's screen statistics as of each session: index (session, factor)."""
        frames = []
        for t, res in self.screens.items():
            stats = res.stats.copy()
            stats["cluster"] = stats["cluster"].fillna("").astype(str)
            stats["rank"] = stats[f"icir_{res.selection_horizon}"].abs().rank(ascending=False, method="first")
            stats.index = pd.MultiIndex.from_product([[t], stats.index], names=["session", "factor"])
            frames.append(stats)
        return pd.concat(frames, axis=0)

    # ---------------------------------------------------------------------------------- walk-forward
    @cached_property
    def params(self) -> list:
        return grid_params(self.config.wfo.grid)

    @cached_property
    def start_row(self) -> int:
        return self.ctx.grid_start_row(self.params)

    @cached_property
    def grid_equity(self) -> np.ndarray:
        return self.ctx.simulate_grid(self.params, self.start_row)

    @cached_property
    def reopt_rows(self) -> np.ndarray:
        """Per panel row, the row of the latest re-optimisation on or before it."""
        return reoptimisation_rows(self.panel.sessions, self.config.wfo.reoptimise)

    @cached_property
    def live_choices(self) -> dict[int, int]:
        """Re-optimisation row -> index of the parameter set chosen at its close (feasible rows only)."""
        cfg = self.config.wfo
        eq = self.grid_equity
        flags = reoptimisation_flags(self.panel.sessions, cfg.reoptimise)
        ann, rf = int(self.config.backtest.annualisation), float(self.config.backtest.risk_free_rate)
        out: dict[int, int] = {}
        for r in np.flatnonzero(flags):
            lo = int(r) - cfg.train_sessions + 1
            if lo < self.start_row:
                continue
            seg = eq[:, lo: int(r) + 1]
            rets = seg[:, 1:] / seg[:, :-1] - 1.0
            score = objective_matrix(rets, cfg.objective, ann, rf)
            out[int(r)] = int(np.argmax(np.where(np.isfinite(score), score, -np.inf)))
        return out

    def live_row(self, row: int) -> int | None:
        """The re-optimisation row whose choice is in force for trading after the close of ``row``."""
        r = int(self.reopt_rows[row])
        feasible = [x for x in self.live_choices if x <= r]
        return max(feasible) if feasible else None

    @cached_property
    def active(self) -> np.ndarray:
        """Parameter-set index traded at each session: the live choice of the latest re-optimisation
        strictly before it (-1 before the first)."""
        n = self.ctx.n_sessions
        active = np.full(n, -1, np.int64)
        for r, choice in sorted(self.live_choices.items()):
            active[r + 1:] = choice
        return active

    @cached_property
    def _reoptimisations(self) -> list[int]:
        """The re-optimisation rows with a live choice, in order."""
        return sorted(self.live_choices)

    @cached_property
    def _selection_ic_final(self) -> dict[int, dict[str, object]]:
        """Re-optimisation row -> its :meth:`_selection_ic` record once every label of its sessions is
        realised (the same at every later row)."""
        return {}

    def _selection_ic(self, r: int, row: int) -> dict[str, object]:
        """:func:`selection_ic` of the live choice of re-optimisation ``r`` over the sessions it trades
        (``r + 1`` to the next re-optimisation, at most ``row``), from the labels realised by ``row``.
        A record final at ``row`` is kept and returned again (callers copy it before handing it out)."""
        order = self._reoptimisations
        i = bisect.bisect_right(order, r)
        later = order[i] if i < len(order) else None
        hi = min(later, row) if later is not None else row
        p = self.params[self.live_choices[r]]
        realised = later + self.spec.horizon_for(p) if later is not None else None
        final = realised is not None and realised <= row  # every label of its sessions realised
        if final and r in self._selection_ic_final:
            return self._selection_ic_final[r]
        out = selection_ic(self.ctx, p, r, r + 1, later, realised) if final \
            else selection_ic(self.ctx, p, r, r + 1, hi, row)
        rec = {"chosen_at": str(self.panel.sessions[r].date()), "params": p.label, **out,
               "is_ic": _f(out["is_ic"]), "oos_ic": _f(out["oos_ic"])}
        if final:
            self._selection_ic_final[r] = rec
        return rec

    def selection_ic_record(self, row: int) -> dict[str, object]:
        """The selection bias of the screen as seen at ``row``: for the live choice and the one before it,
        the selected factors' in-sample IC at the set's selection horizon beside their IC over the sessions
        the choice traded (labels realised by ``row`` only), and both averaged over every re-optimisation
        on or before ``row`` with an out-of-sample IC."""
        order = self._reoptimisations
        recs = [self._selection_ic(r, row) for r in order[:bisect.bisect_right(order, row)]]
        known = [x for x in recs if x["oos_ic"] is not None and x["is_ic"] is not None]

        def copy(rec: dict[str, object]) -> dict[str, object]:
            return {**rec, "factors": list(rec["factors"])}  # type: ignore[call-overload]

        return {
            "live": copy(recs[-1]) if recs else None,
            "previous": copy(recs[-2]) if len(recs) > 1 else None,
            "n_reoptimisations": len(known),
            "mean_is_ic": _f(np.mean([x["is_ic"] for x in known])) if known else None,
            "mean_oos_ic": _f(np.mean([x["oos_ic"] for x in known])) if known else None,
        }

    def wfo(self, row: int) -> WFOResult:
        r = int(self.reopt_rows[row])
        if r not in self._wfo:
            self._wfo[r] = walk_forward(self.ctx, self.config.wfo, params=self.params, start=self.start_row, end=r,
                                        grid_equity=self.grid_equity)
        return self._wfo[r]

    def wfo_record(self, t: pd.Timestamp) -> dict[str, object]:
        """The walk-forward result in force at session ``t`` (JSON-able)."""
        row = int(self.panel.sessions.get_loc(t))
        r = int(self.reopt_rows[row])
        part = self._wfo_part(row)
        live_r = self.live_row(row)
        live = None
        if live_r is not None:
            p = self.params[self.live_choices[live_r]]
            live = {"params": p.label, **p.as_dict(), "chosen_at": str(self.panel.sessions[live_r].date()),
                    "in_sample_start": str(self.panel.sessions[live_r - self.config.wfo.train_sessions + 1].date())}
        return {
            "pool": self.pool.name,
            "session": str(t.date()),
            "reoptimised_at": str(self.panel.sessions[r].date()),
            "reoptimised_this_session": bool(r == row),
            "cadence": self.config.wfo.reoptimise,
            "objective": part["objective"],
            "grid_size": part["grid_size"],
            "live": live,
            "n_windows": part["n_windows"],
            "oos_start": part["oos_start"],
            "oos_end": part["oos_end"],
            "oos_objective": part["oos_objective"],
            "efficiency": part["efficiency"],
            "rank_stability": part["rank_stability"],
            "pbo": None if part["pbo"] is None else dict(part["pbo"]),  # type: ignore[arg-type]
            "dsr": dict(part["dsr"]),  # type: ignore[arg-type]
            "windows": [dict(x) for x in part["windows"]],  # type: ignore[attr-defined]
            "stability": [dict(x) for x in part["stability"]],  # type: ignore[attr-defined]
            "selection_ic": self.selection_ic_record(row),
        }

    def _wfo_part(self, row: int) -> dict[str, object]:
        """The part of :meth:`wfo_record` that depends only on the re-optimisation in force at ``row``
        (the same for every session until the next one): made once per re-optimisation, copied per
        session (so no session's record shares a mutable piece with another's)."""
        r = int(self.reopt_rows[row])
        part = self._wfo_parts.get(r)
        if part is None:
            res = self.wfo(row)
            windows = res.windows.copy()
            for col in ("is_start", "is_end", "oos_start", "oos_end"):
                windows[col] = windows[col].dt.strftime("%Y-%m-%d")
            stability = res.stability.reset_index()
            stability["mode"] = stability["mode"].astype(str)
            part = {
                "objective": res.objective,
                "grid_size": len(res.params),
                "n_windows": len(windows),
                "oos_start": windows["oos_start"].iloc[0],
                "oos_end": windows["oos_end"].iloc[-1],
                "oos_objective": _f(res.oos_objective_stitched),
                "efficiency": _f(res.efficiency),
                "rank_stability": _f(res.rank_stability),
                "pbo": None if res.pbo is None else {"pbo": _f(res.pbo.pbo), "n_splits": int(res.pbo.n_splits)},
                "dsr": {"dsr": _f(res.dsr.dsr), "sharpe_per_session": _f(res.dsr.sharpe),
                        "sharpe_annualised": _f(res.dsr.sharpe * np.sqrt(self.config.backtest.annualisation)),
                        "sr0_per_session": _f(res.dsr.sr0)},
                "windows": _records(windows),
                "stability": _records(stability),
            }
            self._wfo_parts[r] = part
        return part

    # -------------------------------------------------------------------------------------- backtest
    @cached_property
    def backtest(self) -> BacktestResult:
        if not (self.active >= 0).any():
            raise ResearchError(f"pool {self.pool.name}: no re-optimisation has {self.config.wfo.train_sessions} "
                                f"in-sample sessions by {self.through.date()}; start the sessions later")
        plan = self.ctx.simulate_plan(self.params, self.active)
        return backtest(plan, self.panel, benchmark=self.pool.benchmark)

    def metrics_at(self, row: int) -> dict[str, float]:
        """Strategy, benchmark and risk figures with returns through ``row``."""
        bt = self.backtest
        first = bt.plan.first_trade_row
        out: dict[str, float] = {}
        if first is None or row < first + 1:
            out.update(_nan_metrics())
            out.update({f"benchmark_{k}": float("nan") for k in ("annual_return", "sharpe", "max_drawdown")})
            out.update({"var_95": float("nan"), "cvar_95": float("nan"), "month_to_date": float("nan"),
                        "last_month_return": float("nan"), "max_abs_monthly_return": float("nan"),
                        "live_sessions": 0.0, "mean_invested": float("nan")})
            return out
        ann, rf = int(self.config.backtest.annualisation), float(self.config.backtest.risk_free_rate)
        live = bt.returns.iloc[first: row + 1]
        m = performance_metrics(live, annualisation=ann, risk_free_rate=rf, equity=bt.equity.iloc[: row + 1],
                                traded_value=bt.traded_value.iloc[: row + 1],
                                costs=float(bt.costs.iloc[first: row + 1].sum()))
        b = performance_metrics(bt.benchmark_returns.iloc[first: row + 1], annualisation=ann, risk_free_rate=rf)
        out.update({k: float(getattr(m, k)) for k in METRIC_FIELDS})
        out.update({"benchmark_annual_return": float(b.annual_return), "benchmark_sharpe": float(b.sharpe),
                    "benchmark_max_drawdown": float(b.max_drawdown)})
        var = historical_var(live.iloc[-252:].to_numpy(), levels=(0.95,))
        out["var_95"] = float(var["var"].iloc[0])
        out["cvar_95"] = float(var["cvar"].iloc[0])
        months = monthly_returns(live)
        t = live.index[-1]
        current = months.index[-1].to_period("M") == t.to_period("M")
        out["month_to_date"] = float(months.iloc[-1]) if current else 0.0
        complete = months.iloc[:-1] if len(months) else months
        out["last_month_return"] = float(complete.iloc[-1]) if len(complete) else float("nan")
        out["max_abs_monthly_return"] = float(np.abs(months).max())
        out["live_sessions"] = float(len(live))
        out["mean_invested"] = float(np.nanmean(self._invested[first: row + 1]))  # share of equity in funds
        return out

    def fund_clusters(self, session: object) -> list[tuple[str, ...]]:
        """The pool's clusters of near-identical funds (``strategy.dedup_*``, ``pools[].tracks``) for the
        decision at the close of ``session``, from returns through it; the strategy holds at most one of
        each (the most liquid by ADV)."""
        row = int(self.rows[list(self.sessions).index(pd.Timestamp(session))])
        return self.ctx.construction.clusters(row)

    @cached_property
    def _invested(self) -> np.ndarray:
        """Share of the equity held in funds at each close (the rest is cash)."""
        bt = self.backtest
        value = bt.position_values.sum(axis=1).to_numpy(dtype=np.float64)
        eq = bt.equity.to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(eq > 0, value / eq, np.nan)

    @cached_property
    def baselines(self) -> Baselines:
        """Equal weight (monthly), the benchmark bought and held and 20-session momentum top-N (the live
        parameter set's top_n in force at each session), from the strategy's first trade with its costs,
        lots and corporate actions (:mod:`rotation_platform.research.baselines`)."""
        bt = self.backtest
        first = bt.plan.first_trade_row or 0
        cfg = self.config.backtest
        smallest = min(p.top_n for p in self.params)
        top_n = np.array([self.params[a].top_n if a >= 0 else smallest for a in self.active], dtype=np.int64)
        return baselines(self.market, self.panel, first, init_cash=float(bt.plan.init_cash),
                         commission_rate=cfg.commission_rate, min_commission=cfg.min_commission,
                         slippage_bps=cfg.slippage_bps, benchmark=self.pool.benchmark, top_n=top_n,
                         lookback=BASELINE_MOMENTUM_LOOKBACK)

    def baseline_metrics_at(self, row: int) -> dict[str, float]:
        """Each baseline's equity, return and metrics with returns through ``row`` (the strategy's
        period), and the Sharpe difference strategy - equal weight with its z and one-sided p-value."""
        bt = self.backtest
        first = bt.plan.first_trade_row
        base = self.baselines
        ann, rf = int(self.config.backtest.annualisation), float(self.config.backtest.risk_free_rate)
        out: dict[str, float] = {}
        live = first is not None and row >= first + 1
        for name in BASELINES:
            curve, px = base[name], BASELINE_PREFIX[name]
            out[f"{px}_equity"] = float(curve.equity.iloc[row])
            out[f"{px}_return"] = float(curve.returns.iloc[row])
            m = curve.metrics(first, row, annualisation=ann, risk_free_rate=rf) if live else None
            for k in BASELINE_METRICS:
                out[f"{px}_{k}"] = float(getattr(m, k)) if m is not None else float("nan")
        if live:
            va = sharpe_difference(bt.returns.iloc[first: row + 1].to_numpy(),
                                   base["equal_weight"].returns.iloc[first: row + 1].to_numpy(),
                                   against="equal_weight", annualisation=ann, risk_free_rate=rf)
            out.update({"sharpe_diff": float(va.difference_annualised), "sharpe_diff_z": float(va.z),
                        "sharpe_diff_p": float(va.p_value)})
        else:
            out.update({"sharpe_diff": float("nan"), "sharpe_diff_z": float("nan"), "sharpe_diff_p": float("nan")})
        return out

    def backtest_frame(self) -> pd.DataFrame:
        """One row per session: equity, returns, exposure and the metrics as of that session."""
        bt = self.backtest
        eq = bt.equity
        peak = eq.cummax()
        bench_eq = (1.0 + bt.benchmark_returns).cumprod() * float(bt.plan.init_cash)
        labels = bt.plan.params_by_session()
        rows = []
        for t, row in zip(self.sessions, self.rows):
            row = int(row)
            invested = float(bt.position_values.iloc[row].sum())
            rec = {
                "equity": float(eq.iloc[row]),
                "daily_return": float(bt.returns.iloc[row]),
                "benchmark_return": float(bt.benchmark_returns.iloc[row]),
                "benchmark_equity": float(bench_eq.iloc[row]),
                "drawdown": float(eq.iloc[row] / peak.iloc[row] - 1.0),
                "cash": float(bt.plan.cash[row]),
                "invested_weight": invested / float(eq.iloc[row]) if eq.iloc[row] > 0 else float("nan"),
                "n_holdings": float((bt.positions.iloc[row] > 0).sum()),
                "traded_value": float(bt.traded_value.iloc[row]),
                "costs": float(bt.costs.iloc[row]),
                "dividends": float(bt.dividends.iloc[row]),
                "orders": float((bt.plan.orders[row] != 0).sum()),
                "liquidations": float(bt.plan.liquidated[row].sum()),
                "params": str(labels.iloc[row]),
            }
            rec.update(self.metrics_at(row))
            rec.update(self.baseline_metrics_at(row))
            rows.append(rec)
        return pd.DataFrame(rows, index=pd.DatetimeIndex(self.sessions, name="session"))

    # -------------------------------------------------------------------------------------- capacity
    @cached_property
    def capacity(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The capacity table (session x symbol) and its per-session figures over the whole backtest,
        by the one definition of :mod:`rotation_platform.research.capacity`."""
        bt = self.backtest
        adv = adv_frame(self.panel, self.config.backtest.adv_window)
        table = capacity_table(bt, adv, self.pool.capital)
        return table, capacity_by_session(table, bt.equity, currency=self.currency)

    def capacity_frame(self) -> pd.DataFrame:
        """Holdings at each session of the run against the ADV known before it and the weight cap."""
        table, _ = self.capacity
        return table.loc[pd.IndexSlice[list(self.sessions), :], :]

    def capacity_sessions(self) -> pd.DataFrame:
        """Per session of the run: the capacity figures (max utilisation, capacity in the pool's currency,
        breaches, positions without ADV)."""
        _, by_session = self.capacity
        return by_session.loc[self.sessions]

    # ---------------------------------------------------------------------------------------- target
    def _next_factor_row(self, row: int) -> np.ndarray:
        """Factors of the session after ``row`` from data through ``row``: the panel's next row when it
        has one (computed from the same data), else the engine's cross-section for that session."""
        if row + 1 < self.ctx.n_sessions:
            return np.asarray(self.ctx.values[row + 1])
        nxt = self.calendar.next_session(self.panel.sessions[row])
        index = self.panel.sessions[: row + 1].append(pd.DatetimeIndex([nxt]))
        frames = {f: self.panel[f].iloc[: row + 1].reindex(index) for f in PRICE_FIELDS}
        extended = PricePanel(frames, self.panel.meta)
        if self._factor_function is not None:
            fp = self._factor_function(extended)
            return np.asarray(fp.values)[-1]
        cs = compute_cross_section(extended, len(index) - 1, self.config.factors,
                                   price_field=self.config.data.price_field)
        return np.asarray(cs.values)[0]

    def rebalance_next(self, row: int) -> bool:
        """Whether the strategy trades at the session after ``row``: a scheduled rebalance of the live
        parameter set, or a new live parameter set (the same rule as the simulation kernel)."""
        live_r = self.live_row(row)
        if live_r is None:
            return False
        choice = self.live_choices[live_r]
        cadence = self.params[choice].rebalance_sessions
        return bool((row + 1) % cadence == 0 or int(self.active[row]) != choice)

    def next_rebalance_session(self, row: int) -> pd.Timestamp | None:
        """The next session on or after the one following ``row`` that is a scheduled rebalance of the
        live parameter set (the panel's row numbers continue onto the calendar's later sessions)."""
        live_r = self.live_row(row)
        if live_r is None:
            return None
        cadence = self.params[self.live_choices[live_r]].rebalance_sessions
        if self.rebalance_next(row):
            ahead = 1
        else:
            ahead = 1 + (-(row + 1)) % cadence
        day = self.panel.sessions[row]
        for _ in range(ahead):
            day = self.calendar.next_session(day)
        return pd.Timestamp(day)

    def target_frame(self, positions: Callable[..., object] | None = None) -> pd.DataFrame:
        """The target portfolio decided at the close of each session: index (session, symbol).

        ``positions(pool, session, symbols)`` returns the actual positions of a session (an
        :class:`~rotation_platform.production.positions.ActualPositions`) or None; without them, or for a
        session without a table, the simulated book is used and the ``book`` column says so.
        """
        bt = self.backtest
        symbols = tuple(self.panel.symbols)
        frames = []
        for t, row in zip(self.sessions, self.rows):
            row = int(row)
            live_r = self.live_row(row)
            if live_r is None:
                raise ResearchError(f"pool {self.pool.name}: no live parameter set by {t.date()}")
            params = self.params[self.live_choices[live_r]]
            simulated = bt.plan.shares[row]
            actual = positions(self.pool.name, t, symbols) if positions is not None else None
            if actual is not None:
                holdings, cash = actual.shares_array(symbols), float(actual.cash)
                book, source = "actual", str(actual.source)
            else:
                holdings, cash = simulated, float(bt.plan.cash[row])
                stale = getattr(positions, "latest_before", None)
                hint = stale(self.pool.name, t) if stale is not None else None
                book = "simulated"
                source = ("no actual positions configured" if positions is None else
                          f"no actual positions for {t.date()}" + (f" (latest: {hint}, stale)" if hint else ""))
            rebalance = self.rebalance_next(row)
            tp = target_portfolio(self.ctx, params, decided_at=row, next_factors=self._next_factor_row(row),
                                  holdings=holdings, cash=cash, rebalance=rebalance)
            table = tp.table.copy()
            table["trade_session"] = pd.Timestamp(self.calendar.next_session(t))
            table["trade_session"] = table["trade_session"].astype("datetime64[ns]")
            table["params"] = params.label
            table["scheduled_rebalance"] = bool(tp.scheduled_rebalance)
            table["rebalance"] = bool(rebalance)
            nxt = self.next_rebalance_session(row)
            table["next_rebalance"] = pd.Timestamp(nxt) if nxt is not None else pd.NaT
            table["next_rebalance"] = table["next_rebalance"].astype("datetime64[ns]")
            table["book"] = book
            table["book_source"] = source
            table["simulated_shares"] = simulated
            table["shares_vs_simulated"] = holdings - simulated
            table["equity"] = tp.equity
            table["cash"] = cash
            table["cash_after"] = tp.cash_after
            table["currency"] = self.currency
            table["invested_after"] = float(table["target_value"].sum() / tp.equity) if tp.equity > 0 else float("nan")
            # the universe: funds an ERROR finding inside the exclusion window or the end of their data leaves out
            universe = self.universe_at(t)
            left_out = {**universe["ended"], **universe["excluded"]}  # type: ignore[dict-item]
            table["excluded"] = table["excluded"].to_numpy() | np.array([s in left_out for s in symbols])
            table["excluded_reason"] = [left_out.get(s, "") for s in symbols]
            table.index = pd.MultiIndex.from_product([[t], table.index], names=["session", "symbol"])
            frames.append(table)
        return pd.concat(frames, axis=0)

    # ------------------------------------------------------------------------------------------ meta
    def run_metadata(self, session: object, generated_at: dt.datetime | None = None) -> dict[str, object]:
        """What every published value of ``session`` must carry (the metadata-completeness fuse)."""
        from rotation_platform.config import config_hash

        return {
            "pools_used": [self.pool.name],
            "engine_version": f"{ENGINE_VERSION}/factors-{self.config.factors.set_version}",
            "price_field": self.config.data.price_field,
            "generated_at": (generated_at or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds"),
            "config_hash": config_hash(self.config),
            "data_hash": self.data_hash(session),
            "session": str(pd.Timestamp(session).date()),
        }


def _f(x: object) -> float | None:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    out = []
    for rec in frame.to_dict(orient="records"):
        out.append({k: (_f(v) if isinstance(v, float | np.floating) else
                        int(v) if isinstance(v, np.integer) else
                        bool(v) if isinstance(v, np.bool_) else v) for k, v in rec.items()})
    return out
