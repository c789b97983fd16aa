"""Walk-forward optimisation of the rotation strategy.

Windows (session rows, inclusive)
---------------------------------
* rolling: in-sample ``[a, a + train - 1]``, then ``embargo`` sessions skipped, then out-of-sample
  ``[a + train + embargo, ... + test - 1]``; the next window starts ``test`` sessions later, so the
  out-of-sample windows tile the sample without gaps or overlap.
* expanding: the in-sample window always starts at the first row and grows by ``test`` each window.

Point in time
-------------
Every parameter set of the grid is simulated once over the whole panel from ``start``
(:meth:`StrategyContext.simulate_grid`, one numba call for the whole grid). The in-sample objective of a
window uses that equity through the window's last in-sample session only, which depends on prices and
factor rows through that session only (screens as of earlier sessions, trades at earlier or equal
sessions): the choice made at the end of a window never sees a later price. The stitched out-of-sample
strategy is then simulated as one portfolio whose parameter set switches at each out-of-sample window's
first session (with a rebalance there), paying the switching trades.

Selection bias
--------------
Each window's table row also carries the selection horizon of the chosen set and the IC of the
factors its screen as of the window's last in-sample session selected (:func:`selection_ic`): their
mean sign-aligned rank IC at that horizon over the screen's own lookback (``is_ic``, what selected
them) and over the out-of-sample window's label rows (``oos_ic``), counting only labels realised by the
end of the sample (``s + h <= end``). A wide gap between the two is the selection bias of the screen.

Diagnostics: WFO efficiency (mean out-of-sample over mean in-sample objective of the chosen sets),
parameter stability across windows, PBO by CSCV over the grid's returns from ``start`` (None for a
one-set grid), and the deflated Sharpe ratio of
the stitched out-of-sample returns with ``N`` = grid size and the variance of the grid's out-of-sample
Sharpe ratios.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
import pandas as pd
from scipy import stats

from rotation_platform.config.models import WFOConfig, WFOGrid
from rotation_platform.errors import ResearchError
from rotation_platform.research.metrics import objective_matrix
from rotation_platform.research.overfitting import DSRResult, PBOResult, deflated_sharpe_ratio, pbo_cscv
from rotation_platform.research.strategy import StrategyContext, StrategyParams, TradePlan

__all__ = ["Window", "WFOResult", "grid_params", "selection_ic", "split_windows", "walk_forward"]


@dataclass(frozen=True)
class Window:
    """One walk-forward window in session rows (inclusive bounds)."""

    index: int
    is_start: int
    is_end: int
    oos_start: int
    oos_end: int


def grid_params(grid: WFOGrid) -> list[StrategyParams]:
    """Every combination of the grid, in a fixed order."""
    filters = tuple(getattr(grid, "trend_filter", ("none",)) or ("none",))
    return [StrategyParams(top_n=n, rebalance_sessions=r, ic_lookback=lb, weighting=w, buffer=b, trend_filter=tf)
            for n, r, lb, w, b, tf in product(grid.top_n, grid.rebalance_sessions, grid.ic_lookback, grid.weighting,
                                              grid.buffer, filters)]


def split_windows(n_sessions: int, start: int, *, train: int, test: int, embargo: int,
                  kind: str = "rolling") -> list[Window]:
    """Walk-forward windows over rows ``start..n_sessions-1`` (see the module docstring)."""
    if kind not in ("rolling", "expanding"):
        raise ResearchError(f"wfo.splitter must be 'rolling' or 'expanding', got {kind!r}")
    if train < 2 or test < 1 or embargo < 0:
        raise ResearchError(f"invalid window sizes train={train}, test={test}, embargo={embargo}")
    out: list[Window] = []
    j = 0
    while True:
        if kind == "rolling":
            is_start = start + j * test
            is_end = is_start + train - 1
        else:
            is_start = start
            is_end = start + train - 1 + j * test
        oos_start = is_end + 1 + embargo
        if oos_start > n_sessions - 1:
            break
        out.append(Window(j, is_start, is_end, oos_start, min(oos_start + test - 1, n_sessions - 1)))
        j += 1
    return out


@dataclass(frozen=True)
class WFOResult:
    """The outcome of :func:`walk_forward`."""

    windows: pd.DataFrame
    params: tuple[StrategyParams, ...]
    grid: pd.DataFrame
    is_objective: np.ndarray
    oos_objective: np.ndarray
    chosen: np.ndarray
    oos_returns: pd.Series
    oos_equity: pd.Series
    oos_objective_stitched: float
    efficiency: float
    stability: pd.DataFrame
    rank_stability: float
    pbo: PBOResult | None
    dsr: DSRResult
    plan: TradePlan
    objective: str

    def choice_at(self, session: object) -> StrategyParams | None:
        """The parameter set chosen by the last window whose in-sample period ended on or before ``session``."""
        ts = pd.Timestamp(session)
        done = self.windows[self.windows["is_end"] <= ts]
        if done.empty:
            return None
        return self.params[int(self.chosen[int(done.index[-1])])]


def selection_ic(ctx: StrategyContext, params: StrategyParams, as_of: int, oos_start: int, oos_end: int,
                 known_at: int) -> dict[str, object]:
    """In-sample and out-of-sample IC of the factors ``params``' screen as of row ``as_of`` selects.

    At the set's selection horizon ``h``: ``is_ic`` is the selected factors' mean sign-aligned rank IC over
    the label rows the screen used (``[as_of - h - lookback + 1, as_of - h]``), ``oos_ic`` the same over
    the label rows ``[oos_start, oos_end]`` realised by ``known_at`` (``s + h <= known_at``; NaN before any
    is), ``oos_sessions`` how many of those rows entered it. Each factor's mean is taken over its finite
    ICs, then the factors are averaged with equal weight.
    """
    h = ctx.spec.horizon_for(params)
    j = ctx.screen.horizons.index(h)
    ic = ctx.screen.ic.ic
    n_s = ic.shape[0]
    path = ctx.selections(params.ic_lookback, np.array([as_of], np.int64), h)
    chosen = path.at(0) if path.kept.shape[0] else []
    out: dict[str, object] = {"selection_horizon": h, "n_selected": len(chosen), "factors": [f.name for f in chosen],
                              "is_ic": float("nan"), "oos_ic": float("nan"), "oos_sessions": 0}
    if not chosen:
        return out
    k = np.array([f.index for f in chosen], np.int64)
    sign = np.array([f.sign for f in chosen], np.float64)

    def mean_ic(lo: int, hi: int) -> tuple[float, int]:
        lo, hi = max(lo, 0), min(hi, n_s - 1)
        if hi < lo:
            return float("nan"), 0
        block = ic[lo: hi + 1, k, j] * sign[None, :]
        ok = np.isfinite(block)
        n = ok.sum(axis=0)
        if not n.any():
            return float("nan"), 0
        per = np.where(n > 0, np.where(ok, block, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
        return float(np.nanmean(per)), int(ok.any(axis=1).sum())

    out["is_ic"] = mean_ic(as_of - h - params.ic_lookback + 1, as_of - h)[0]
    out["oos_ic"], out["oos_sessions"] = mean_ic(oos_start, min(oos_end, known_at - h))
    return out


def _stability(params: list[StrategyParams], chosen: np.ndarray) -> pd.DataFrame:
    rows = []
    for name in ("top_n", "rebalance_sessions", "ic_lookback", "weighting", "buffer", "trend_filter"):
        vals = pd.Series([getattr(params[c], name) for c in chosen])
        counts = vals.value_counts()
        changes = int((vals != vals.shift()).iloc[1:].sum()) if len(vals) > 1 else 0
        rows.append({"parameter": name, "mode": counts.index[0], "mode_share": float(counts.iloc[0] / len(vals)),
                     "n_distinct": int(counts.size),
                     "change_rate": changes / (len(vals) - 1) if len(vals) > 1 else 0.0})
    return pd.DataFrame(rows).set_index("parameter")


def walk_forward(ctx: StrategyContext, config: WFOConfig, *, params: list[StrategyParams] | None = None,
                 start: int | None = None, pbo_blocks: int = 16, end: int | None = None,
                 grid_equity: np.ndarray | None = None) -> WFOResult:
    """Walk-forward optimisation of ``ctx``'s strategy over ``config.grid`` (or ``params``).

    ``start`` (a row) is where the grid starts trading and the first in-sample window begins; by default
    the first session on which the longest lookback of the grid has a screen at every selection horizon
    the grid uses (:meth:`StrategyContext.grid_start_row`). ``end`` (a row, default the
    last) ends the sample: the result is the one of a panel cut after ``end`` -- every later row is
    ignored -- so one context serves re-optimisations as of many sessions. ``grid_equity`` may pass
    ``ctx.simulate_grid(params, start)`` computed once for all of them (it is causal: row ``t`` of it
    depends on data through ``t`` only).
    """
    plist = grid_params(config.grid) if params is None else list(params)
    if not plist:
        raise ResearchError("wfo.grid is empty")
    if start is None:
        start = ctx.grid_start_row(plist)
    n_use = ctx.n_sessions if end is None else int(end) + 1
    if not 0 < n_use <= ctx.n_sessions:
        raise ResearchError(f"walk-forward end row {end} is outside the panel ({ctx.n_sessions} sessions)")
    windows = split_windows(n_use, int(start), train=config.train_sessions, test=config.test_sessions,
                            embargo=config.embargo_sessions, kind=config.splitter)
    if not windows:
        raise ResearchError(f"no walk-forward window fits: {max(n_use - start, 0)} sessions from "
                            f"{ctx.sessions[min(start, n_use - 1)].date()} but train {config.train_sessions} + embargo "
                            f"{config.embargo_sessions} + test sessions are needed; shorten wfo.train_sessions")
    ann = int(ctx.spec.backtest.annualisation)
    rf = float(ctx.spec.backtest.risk_free_rate)
    if grid_equity is None:
        grid_equity = ctx.simulate_grid(plist, int(start))
    elif grid_equity.shape != (len(plist), ctx.n_sessions):
        raise ResearchError(f"grid_equity must be (sets, sessions) = ({len(plist)}, {ctx.n_sessions})")
    equity = grid_equity[:, :n_use]
    rets = np.zeros_like(equity)
    rets[:, 1:] = equity[:, 1:] / equity[:, :-1] - 1.0
    n_w, n_p = len(windows), len(plist)
    is_obj = np.full((n_w, n_p), np.nan)
    oos_obj = np.full((n_w, n_p), np.nan)
    chosen = np.zeros(n_w, np.int64)
    for w in windows:
        is_obj[w.index] = objective_matrix(rets[:, w.is_start + 1: w.is_end + 1], config.objective, ann, rf)
        oos_obj[w.index] = objective_matrix(rets[:, w.oos_start: w.oos_end + 1], config.objective, ann, rf) \
            if w.oos_end > w.oos_start else np.nan
        score = np.where(np.isfinite(is_obj[w.index]), is_obj[w.index], -np.inf)
        chosen[w.index] = int(np.argmax(score))
    active = np.full(ctx.n_sessions, -1, np.int64)
    for w in windows:
        active[w.oos_start: w.oos_end + 1] = chosen[w.index]
    plan = ctx.simulate_plan(plist, active)
    sessions = ctx.sessions
    first_oos, last_oos = windows[0].oos_start, windows[-1].oos_end
    eq = pd.Series(plan.equity, index=sessions)
    oos_rets = (eq / eq.shift(1) - 1.0).iloc[first_oos: last_oos + 1].rename("oos_returns")
    oos_equity = eq.iloc[first_oos - 1: last_oos + 1].rename("oos_equity")
    stitched_w = []
    for w in windows:
        seg = oos_rets.iloc[w.oos_start - first_oos: w.oos_end - first_oos + 1].to_numpy()[None, :]
        stitched_w.append(float(objective_matrix(seg, config.objective, ann, rf)[0]) if seg.shape[1] > 1 else np.nan)
    is_chosen = is_obj[np.arange(n_w), chosen]
    sel_ic = [selection_ic(ctx, plist[chosen[w.index]], w.is_end, w.oos_start, w.oos_end, n_use - 1)
              for w in windows]
    table = pd.DataFrame({
        "is_start": sessions[[w.is_start for w in windows]], "is_end": sessions[[w.is_end for w in windows]],
        "oos_start": sessions[[w.oos_start for w in windows]], "oos_end": sessions[[w.oos_end for w in windows]],
        "params": [plist[c].label for c in chosen],
        **{k: [getattr(plist[c], k) for c in chosen] for k in ("top_n", "rebalance_sessions", "ic_lookback",
                                                               "weighting", "buffer")},
        "selection_horizon": [int(x["selection_horizon"]) for x in sel_ic],
        "is_ic": [float(x["is_ic"]) for x in sel_ic], "oos_ic": [float(x["oos_ic"]) for x in sel_ic],
        "oos_ic_sessions": [int(x["oos_sessions"]) for x in sel_ic],
        "is_objective": is_chosen, "oos_objective": stitched_w,
        "oos_return": [float(np.prod(1.0 + oos_rets.iloc[w.oos_start - first_oos: w.oos_end - first_oos + 1]) - 1.0)
                       for w in windows],
    })
    with np.errstate(invalid="ignore", divide="ignore"):
        table["efficiency"] = np.where(np.abs(is_chosen) > 0, np.asarray(stitched_w) / is_chosen, np.nan)
    mean_is = float(np.nanmean(is_chosen))
    mean_oos = float(np.nanmean(stitched_w))
    efficiency = mean_oos / mean_is if mean_is != 0 and np.isfinite(mean_is) else float("nan")
    stitched_obj = float(objective_matrix(oos_rets.to_numpy()[None, :], config.objective, ann, rf)[0])
    rank_corrs = []
    for a in range(n_w - 1):
        x, y = is_obj[a], is_obj[a + 1]
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() > 2 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
            rank_corrs.append(stats.spearmanr(x[ok], y[ok])[0])
    rank_stability = float(np.mean(rank_corrs)) if rank_corrs else float("nan")
    pbo = pbo_cscv(rets[:, start + 1:].T, n_blocks=pbo_blocks) if n_p > 1 else None
    oos_block = rets[:, first_oos: last_oos + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = oos_block.std(axis=1, ddof=1)
        grid_sr = np.where(sd > 0, oos_block.mean(axis=1) / sd, np.nan)
    var_sr = float(np.nanvar(grid_sr, ddof=1)) if np.isfinite(grid_sr).sum() > 1 else 0.0
    dsr = deflated_sharpe_ratio(oos_rets.to_numpy(), n_trials=n_p, sharpe_variance=var_sr)
    grid = pd.DataFrame([p.as_dict() for p in plist], index=pd.Index([p.label for p in plist], name="params"))
    return WFOResult(table, tuple(plist), grid, is_obj, oos_obj, chosen, oos_rets, oos_equity, stitched_obj,
                     efficiency, _stability(plist, chosen), rank_stability, pbo, dsr, plan, config.objective)
