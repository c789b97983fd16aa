"""Factor screening per pool, point in time.

:class:`FactorScreen` computes the daily rank IC of every factor against forward returns at every
horizon once (:func:`~rotation_platform.research.nb.rank_ic_nb`), then answers screens as of any session
``t`` from the IC rows whose labels were fully realised by ``t`` (``s + h <= t``) and the factor rows
``<= t`` -- see :mod:`rotation_platform.research.inputs` for the timing convention.

Statistics per factor and horizon over the last ``ic_lookback`` realised IC rows
-----------------------------------------------------------------------------
``ic_mean``, ``ic_std`` (ddof=1), ``icir`` = mean / std annualised with ``sqrt(annualisation)``
(Qlib's convention), ``t_stat`` = mean / std * sqrt(n / h) (overlapping h-session labels count as
``n / h`` independent observations), ``hit_rate`` (share of sessions whose IC has the sign of the mean),
``n_obs``. Per factor over the factor rows of the window: ``coverage`` (in-universe fund-sessions with a
value / in-universe fund-sessions), ``rank_autocorr`` (mean Spearman correlation of the factor with its
previous session; ``turnover`` = 1 - it), ``zero_variance`` (no session of the window has two distinct
values). ``decay`` is the mean IC by horizon.

Selection
---------
Eligible factors have coverage >= ``min_coverage``, some variation, at least ``min_ic_obs`` IC
observations at the selection horizon and |ICIR| >= ``min_abs_icir``. They are de-duplicated greedily by
|ICIR|: a factor whose mean cross-sectional rank correlation with a stronger kept factor exceeds
``correlation_threshold`` in absolute value joins that factor's cluster. The first ``top_k`` cluster
leaders are selected with the sign of their mean IC. In the report, every other eligible factor is
placed in the cluster of the first selected factor it duplicates, or in its own (``cluster_size``
counts the members of each selected factor's cluster).

Selection horizon
-----------------
A strategy holds its picks for ``rebalance_sessions`` sessions, so the IC that matters is the one at
that horizon: a factor may rank next-day returns at random and still rank 20-day returns. With
``screening.selection_horizon: auto`` every parameter set selects on the horizon of
``screening.horizons`` closest to its cadence (:func:`resolve_selection_horizon`); a number fixes one
horizon for all. The as-of rule is the same at every horizon: a label row ``s`` at horizon ``h`` enters
a screen as of ``t`` only when ``s + h <= t``, so a longer horizon sees its labels ``h`` sessions late.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from rotation_platform.config.models import ScreeningConfig
from rotation_platform.data.panel import PricePanel
from rotation_platform.errors import ResearchError
from rotation_platform.research import nb
from rotation_platform.research.inputs import (
    AlignedFactors,
    FactorLike,
    align_factors,
    forward_returns,
    session_row,
    trade_prices,
)

__all__ = [
    "ICPanel",
    "SelectedFactor",
    "ScreenResult",
    "SelectionPath",
    "FactorScreen",
    "rank_ic",
    "resolve_selection_horizon",
    "screen_factors",
]


def resolve_selection_horizon(setting: int | str | None, horizons: tuple[int, ...] | list[int],
                              rebalance_sessions: int) -> int:
    """The label horizon a parameter set with cadence ``rebalance_sessions`` selects its factors on.

    ``setting`` is ``screening.selection_horizon``: a number (it must be one of ``horizons``) is used as
    is; ``"auto"`` takes the horizon closest to ``rebalance_sessions``, a tie going to the shorter one.
    The shorter horizon wins a tie because its estimate is better on both counts that matter: a
    lookback of ``n`` sessions holds about ``n / h`` independent ``h``-session labels, and its labels are
    realised ``h`` sessions after their factor row, so the shorter horizon is both less noisy and less
    stale. ``None`` means the first horizon (the screen's historical default).
    """
    hs = tuple(int(h) for h in horizons)
    if not hs:
        raise ResearchError("screening.horizons is empty: list the label horizons in sessions")
    if setting is None:
        return hs[0]
    if setting == "auto":
        c = int(rebalance_sessions)
        return min(hs, key=lambda h: (abs(h - c), h))
    if isinstance(setting, str) and not setting.isdigit():
        raise ResearchError(f"screening.selection_horizon {setting!r} is neither auto nor a number of sessions")
    h = int(setting)
    if h not in hs:
        raise ResearchError(f"screening.selection_horizon {h} is not among screening.horizons {list(hs)}: "
                            f"use auto or add {h} to screening.horizons")
    return h


@dataclass(frozen=True)
class ICPanel:
    """Daily rank ICs: ``ic[s, k, j]`` for session row ``s``, factor ``k``, horizon ``horizons[j]``.

    Row ``s`` of horizon ``h`` is realised at session ``s + h``. ``autocorr``, ``n_valid`` and ``varying``
    are per (session, factor); ``n_universe`` counts the funds with a trade price per session.
    """

    ic: np.ndarray
    autocorr: np.ndarray
    n_valid: np.ndarray
    varying: np.ndarray
    n_universe: np.ndarray
    horizons: tuple[int, ...]
    names: tuple[str, ...]
    sessions: pd.DatetimeIndex

    def frame(self, horizon: int) -> pd.DataFrame:
        """The daily ICs at one horizon as a sessions x factors frame."""
        if horizon not in self.horizons:
            raise ResearchError(f"horizon {horizon} was not computed; horizons: {list(self.horizons)}")
        j = self.horizons.index(horizon)
        return pd.DataFrame(self.ic[:, :, j], index=self.sessions, columns=list(self.names))


def rank_ic(values: np.ndarray, labels: np.ndarray, universe: np.ndarray, *, min_obs: int = 5,
            n_blocks: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Batch rank IC (see :func:`~rotation_platform.research.nb.rank_ic_nb`) with input checks.

    ``values``: (sessions, funds, factors); ``labels``: (horizons, sessions, funds); ``universe``:
    (sessions, funds) bool. ``min_obs`` is the fewest funds a cross-sectional correlation needs (>= 2).
    """
    values = np.ascontiguousarray(values, dtype=np.float64)
    labels = np.ascontiguousarray(labels, dtype=np.float64)
    universe = np.ascontiguousarray(universe, dtype=np.bool_)
    if values.ndim != 3 or labels.ndim != 3 or universe.ndim != 2:
        raise ResearchError("rank_ic needs values (S, N, K), labels (H, S, N) and universe (S, N)")
    if labels.shape[1:] != values.shape[:2] or universe.shape != values.shape[:2]:
        raise ResearchError(f"shapes disagree: values {values.shape}, labels {labels.shape}, "
                            f"universe {universe.shape}")
    if min_obs < 2:
        raise ResearchError(f"min_obs must be at least 2, got {min_obs}")
    if n_blocks is None:
        import numba

        n_blocks = 4 * numba.get_num_threads()
    return nb.rank_ic_nb(values, labels, universe, int(min_obs), int(n_blocks))


@dataclass(frozen=True)
class SelectedFactor:
    name: str
    index: int
    sign: int
    icir: float


@dataclass(frozen=True)
class ScreenResult:
    """One screen of one pool as of one session."""

    as_of: pd.Timestamp
    as_of_row: int
    lookback: int
    horizons: tuple[int, ...]
    selection_horizon: int
    stats: pd.DataFrame
    decay: pd.DataFrame
    selected: tuple[SelectedFactor, ...]

    @property
    def selected_names(self) -> list[str]:
        return [f.name for f in self.selected]

    def summary(self) -> pd.DataFrame:
        """The selected factors with sign, ICIR and the selection-horizon statistics."""
        h = self.selection_horizon
        cols = [f"ic_mean_{h}", f"icir_{h}", f"t_stat_{h}", f"hit_rate_{h}", "coverage", "turnover", "cluster_size"]
        out = self.stats.loc[self.selected_names, cols].copy()
        out.insert(0, "sign", [f.sign for f in self.selected])
        return out


@dataclass(frozen=True)
class SelectionPath:
    """Selections as of many sessions: row ``a`` holds the screen as of session row ``as_of[a]``."""

    as_of: np.ndarray
    kept: np.ndarray
    sign: np.ndarray
    icir: np.ndarray
    lookback: int
    names: tuple[str, ...]

    def at(self, a: int) -> list[SelectedFactor]:
        out = []
        for q in range(self.kept.shape[1]):
            k = int(self.kept[a, q])
            if k < 0:
                break
            out.append(SelectedFactor(self.names[k], k, int(self.sign[a, q]), float(self.icir[a, q])))
        return out


class FactorScreen:
    """Daily rank ICs of a factor set on one pool; screens as of any session.

    Parameters
    ----------
    factors:
        a ``FactorPanel``-like object or ``(values, names)`` shaped like ``panel`` (row ``t`` known
        before trading at ``t``).
    panel:
        the pool's adjusted prices.
    horizons:
        label horizons in sessions.
    trade_at:
        the price labels are measured at (``BacktestConfig.trade_at``).
    min_obs:
        fewest funds a cross-sectional rank correlation needs.
    annualisation:
        sessions per year for ICIR.
    """

    def __init__(self, factors: FactorLike | tuple[np.ndarray, list[str]] | AlignedFactors, panel: PricePanel, *,
                 horizons: tuple[int, ...] = (1, 5, 20), trade_at: Literal["open", "close"] = "close",
                 min_obs: int = 5, annualisation: int = 252):
        self.factors = factors if isinstance(factors, AlignedFactors) else align_factors(factors, panel)
        self.panel = panel
        self.horizons = tuple(int(h) for h in horizons)
        self.trade_at = trade_at
        self.min_obs = int(min_obs)
        self.annualisation = int(annualisation)
        price = trade_prices(panel, trade_at)
        self.universe = np.isfinite(price)
        labels = forward_returns(panel, self.horizons, trade_at)
        ic, autocorr, n_valid, varying = rank_ic(self.factors.values, labels, self.universe, min_obs=self.min_obs)
        self.ic = ICPanel(ic, autocorr, n_valid, varying, self.universe.sum(axis=1).astype(np.int64),
                          self.horizons, self.factors.names, panel.sessions)

    @property
    def sessions(self) -> pd.DatetimeIndex:
        return self.panel.sessions

    @property
    def names(self) -> tuple[str, ...]:
        return self.factors.names

    def _selection_horizon(self, selection_horizon: int | None) -> int:
        h = self.horizons[0] if selection_horizon is None else int(selection_horizon)
        if h not in self.horizons:
            raise ResearchError(f"selection horizon {h} is not among screening.horizons {list(self.horizons)}")
        return h

    def normalized_ranks(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Unit-norm centred ranks ``(factors, rows, funds)`` of rows ``start:stop`` and their row flags
        (for factor correlations; see :func:`~rotation_platform.research.nb.normalized_ranks_nb`)."""
        start = max(int(start), 0)
        stop = min(int(stop), len(self.sessions))
        return nb.normalized_ranks_nb(self.factors.values, self.universe, start, max(stop, start))

    def screen(self, as_of: object, config: ScreeningConfig, *, selection_horizon: int | None = None,
               lookback: int | None = None, min_ic_obs: int | None = None,
               ranks: tuple[int, np.ndarray, np.ndarray] | None = None) -> ScreenResult:
        """The screen as of session ``as_of`` (a date: the last session on or before it; or a row).

        ``lookback`` overrides ``config.ic_lookback``; ``min_ic_obs`` (default ``lookback // 2``) is the
        fewest realised ICs at the selection horizon a factor needs to be eligible. ``ranks`` may pass
        precomputed ``(offset, *normalized_ranks(offset, ...))`` covering the window (screens as of many
        sessions then rank each row once).
        """
        t = session_row(self.sessions, as_of, what="screen as_of")
        lb = int(config.ic_lookback if lookback is None else lookback)
        h_sel = self._selection_horizon(selection_horizon)
        j_sel = self.horizons.index(h_sel)
        min_n = max(2, lb // 2) if min_ic_obs is None else int(min_ic_obs)
        hs = np.asarray(self.horizons, dtype=np.int64)
        n_obs, mean, std, hit, coverage, ac_mean, vary = nb.window_stats_nb(
            self.ic.ic, self.ic.autocorr, self.ic.n_valid, self.ic.varying, self.ic.n_universe, hs, t, lb)
        ann = np.sqrt(self.annualisation)
        with np.errstate(invalid="ignore", divide="ignore"):
            icir = np.where(std > 0, mean / std, np.nan) * ann
            t_stat = np.where(std > 0, mean / std, np.nan) * np.sqrt(n_obs / hs[None, :])
        names = list(self.names)
        data: dict[str, object] = {}
        for j, h in enumerate(self.horizons):
            data[f"ic_mean_{h}"] = mean[:, j]
            data[f"ic_std_{h}"] = std[:, j]
            data[f"icir_{h}"] = icir[:, j]
            data[f"t_stat_{h}"] = t_stat[:, j]
            data[f"hit_rate_{h}"] = hit[:, j]
            data[f"n_obs_{h}"] = n_obs[:, j]
        data["coverage"] = coverage
        data["rank_autocorr"] = ac_mean
        data["turnover"] = 1.0 - ac_mean
        data["zero_variance"] = vary == 0.0
        stats = pd.DataFrame(data, index=pd.Index(names, name="factor"))
        sel_icir = icir[:, j_sel]
        eligible = ((n_obs[:, j_sel] >= min_n) & np.isfinite(sel_icir) & (coverage >= config.min_coverage)
                    & (vary > 0.0) & (np.abs(np.nan_to_num(sel_icir)) >= config.min_abs_icir)
                    & (mean[:, j_sel] != 0.0))
        f_lo = max(t - lb + 1, 0)
        if ranks is None:
            r_lo, r_hi = 0, t + 1 - f_lo
            r, r_ok = self.normalized_ranks(f_lo, t + 1)
        else:
            offset, r, r_ok = ranks
            r_lo, r_hi = f_lo - offset, t + 1 - offset
            if r_lo < 0 or r_hi > r.shape[1]:
                raise ResearchError(f"screen as of row {t}: the given ranks cover rows {offset}.."
                                    f"{offset + r.shape[1] - 1}, the window needs {f_lo}..{t}")
        strength = np.where(eligible, np.abs(np.nan_to_num(sel_icir)), 0.0)
        lazy = np.full((len(strength), len(strength)), np.nan)
        kept, _, _ = nb.select_factors_nb(strength, eligible, r, r_ok, r_lo, r_hi, int(config.top_k),
                                          float(config.correlation_threshold), lazy)
        leader, leader_corr = nb.assign_clusters_nb(eligible, kept, r, r_ok, r_lo, r_hi,
                                                    float(config.correlation_threshold))
        kept_list = [int(k) for k in kept if k >= 0]
        stats["eligible"] = eligible
        stats["cluster"] = [names[leader[k]] if leader[k] >= 0 else None for k in range(len(names))]
        stats["cluster_corr"] = leader_corr
        sizes = pd.Series(leader[leader >= 0]).value_counts()
        stats["cluster_size"] = [int(sizes.get(k, 0)) if leader[k] == k else 0 for k in range(len(names))]
        stats["selected"] = False
        stats.loc[[names[k] for k in kept_list], "selected"] = True
        stats["sign"] = np.where(stats["selected"], np.sign(mean[:, j_sel]), 0).astype(int)
        selected = tuple(SelectedFactor(names[k], k, int(np.sign(mean[k, j_sel])), float(sel_icir[k]))
                         for k in kept_list)
        decay = pd.DataFrame(mean, index=pd.Index(names, name="factor"),
                             columns=pd.Index(list(self.horizons), name="horizon"))
        return ScreenResult(self.sessions[t], t, lb, self.horizons, h_sel, stats, decay, selected)

    def selection_path(self, as_of_rows: np.ndarray, config: ScreeningConfig, *, lookback: int | None = None,
                       selection_horizon: int | None = None, min_ic_obs: int | None = None,
                       ranks: tuple[int, np.ndarray, np.ndarray] | None = None) -> SelectionPath:
        """The selections of :meth:`screen` as of each row of ``as_of_rows`` (-1: none), in one kernel call.

        ``ranks`` may pass precomputed ``(offset, *normalized_ranks(offset, ...))`` covering every window.
        """
        rows = np.ascontiguousarray(as_of_rows, dtype=np.int64)
        lb = int(config.ic_lookback if lookback is None else lookback)
        h_sel = self._selection_horizon(selection_horizon)
        min_n = max(2, lb // 2) if min_ic_obs is None else int(min_ic_obs)
        valid = rows[rows >= 0]
        if ranks is None:
            lo = int(valid.min()) - lb + 1 if valid.size else 0
            hi = int(valid.max()) + 1 if valid.size else 0
            offset = max(lo, 0)
            r, r_ok = self.normalized_ranks(offset, hi)
        else:
            offset, r, r_ok = ranks
            if valid.size and (int(valid.min()) - lb + 1 < offset and offset > 0
                               or int(valid.max()) + 1 > offset + r.shape[1]):
                raise ResearchError("precomputed ranks do not cover every screening window")
        kept, sign, icir = nb.selection_path_nb(
            self.ic.ic, self.ic.n_valid, self.ic.varying, self.ic.n_universe, r, r_ok, int(offset), h_sel, rows, lb,
            min_n, float(config.min_coverage), float(config.min_abs_icir), float(np.sqrt(self.annualisation)),
            int(config.top_k), float(config.correlation_threshold), self.horizons.index(h_sel))
        return SelectionPath(rows, kept, sign, icir, lb, self.names)


def screen_factors(factors: FactorLike | tuple[np.ndarray, list[str]], panel: PricePanel, as_of: object,
                   config: ScreeningConfig, *, trade_at: Literal["open", "close"] = "close",
                   selection_horizon: int | None = None, min_obs: int = 5, annualisation: int = 252) -> ScreenResult:
    """One screen of one pool as of ``as_of`` (see :class:`FactorScreen`).

    Without ``selection_horizon`` a numeric ``config.selection_horizon`` is used, else (``auto``: no cadence
    to match) the first of ``config.horizons``.
    """
    if selection_horizon is None and config.selection_horizon != "auto":
        selection_horizon = int(config.selection_horizon)
    fs = FactorScreen(factors, panel, horizons=tuple(config.horizons), trade_at=trade_at, min_obs=min_obs,
                      annualisation=annualisation)
    return fs.screen(as_of, config, selection_horizon=selection_horizon)
