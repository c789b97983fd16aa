"""Performance metrics of daily return series.

Definitions (``ann`` = ``BacktestConfig.annualisation`` sessions a year, ``rf`` = the annual risk-free rate,
``rf_d = rf / ann`` per session):

* ``total_return`` = prod(1 + r) - 1; ``annual_return`` = (1 + total) ** (ann / n) - 1 (n sessions).
* ``volatility`` = std(r, ddof=1) * sqrt(ann); ``sharpe`` = mean(r - rf_d) / std(r, ddof=1) * sqrt(ann).
* ``sortino`` = mean(r - rf_d) * ann / (sqrt(mean(min(r - rf_d, 0) ** 2)) * sqrt(ann)).
* ``max_drawdown`` (negative) of the compounded curve, with its peak (start), trough and recovery
  (first session back at the peak; NaT while not recovered); ``calmar`` = annual_return / |max_drawdown|.
* ``monthly_win_rate`` = share of calendar months whose compounded return is positive.
* ``annual_turnover`` = sum(|traded value|) / 2 / mean(equity) * ann / n (one-way, times a year).
* ``total_costs`` (CNY) and ``cost_drag`` = total_costs / mean(equity) * ann / n (a fraction a year).

These match vectorbt's returns accessor (``sharpe_ratio``, ``sortino_ratio``, ``annualized_return``,
``max_drawdown``, ``calmar_ratio``) for the same ``ann``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from rotation_platform.config.models import FuseThresholds
from rotation_platform.errors import ResearchError

__all__ = [
    "PerformanceMetrics",
    "Drawdown",
    "performance_metrics",
    "max_drawdown",
    "monthly_returns",
    "objective_matrix",
    "fuse_checks",
]


@dataclass(frozen=True)
class Drawdown:
    depth: float
    start: pd.Timestamp | None
    trough: pd.Timestamp | None
    recovery: pd.Timestamp | None


@dataclass(frozen=True)
class PerformanceMetrics:
    start: pd.Timestamp
    end: pd.Timestamp
    n_sessions: int
    total_return: float
    annual_return: float
    volatility: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    drawdown_start: pd.Timestamp | None
    drawdown_trough: pd.Timestamp | None
    drawdown_recovery: pd.Timestamp | None
    monthly_win_rate: float
    annual_turnover: float
    total_costs: float
    cost_drag: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def max_drawdown(returns: pd.Series) -> Drawdown:
    """The deepest peak-to-trough fall of the compounded curve of ``returns`` (starting at 1)."""
    r = returns.to_numpy(dtype=np.float64)
    if r.size == 0:
        return Drawdown(0.0, None, None, None)
    curve = np.cumprod(1.0 + r)
    wealth = np.concatenate([[1.0], curve])
    peak = np.maximum.accumulate(wealth)
    dd = wealth / peak - 1.0
    trough = int(np.argmin(dd))
    depth = float(dd[trough])
    if depth >= 0.0:
        return Drawdown(0.0, None, None, None)
    peak_pos = int(np.flatnonzero(wealth[: trough + 1] == peak[trough])[-1])
    rec = np.flatnonzero(wealth[trough:] >= peak[trough])
    idx = returns.index
    # wealth[0] is the start before the first return: it maps to the session before idx[0]
    start = idx[peak_pos - 1] if peak_pos > 0 else idx[0]
    recovery = idx[trough + int(rec[0]) - 1] if rec.size else None
    return Drawdown(depth, start, idx[trough - 1], recovery)


def monthly_returns(returns: pd.Series) -> pd.Series:
    """Compounded return per calendar month (index: month-end timestamps of the sessions' months)."""
    if returns.empty:
        return returns.copy()
    periods = returns.index.to_period("M")
    out = (1.0 + returns).groupby(periods).prod() - 1.0
    out.index = out.index.to_timestamp(how="end").normalize()
    return out


def performance_metrics(returns: pd.Series, *, annualisation: int = 252, risk_free_rate: float = 0.0,
                        equity: pd.Series | None = None, traded_value: pd.Series | None = None,
                        costs: float = 0.0) -> PerformanceMetrics:
    """All metrics of one daily return series (see the module docstring for the definitions)."""
    r = returns.dropna()
    if r.size < 2:
        raise ResearchError(f"performance metrics need at least two returns, got {r.size}")
    ann = float(annualisation)
    n = r.size
    x = r.to_numpy(dtype=np.float64)
    excess = x - risk_free_rate / ann
    total = float(np.prod(1.0 + x) - 1.0)
    annual = float((1.0 + total) ** (ann / n) - 1.0) if total > -1.0 else -1.0
    sd = float(np.std(x, ddof=1))
    vol = sd * np.sqrt(ann)
    sharpe = float(excess.mean() / sd * np.sqrt(ann)) if sd > 0 else np.nan
    downside = float(np.sqrt(np.mean(np.minimum(excess, 0.0) ** 2)) * np.sqrt(ann))
    sortino = float(excess.mean() * ann / downside) if downside > 0 else np.inf
    dd = max_drawdown(r)
    calmar = float(annual / abs(dd.depth)) if dd.depth < 0 else np.inf
    months = monthly_returns(r)
    win = float((months > 0).mean()) if months.size else np.nan
    if equity is not None:
        mean_eq = float(equity.reindex(r.index).mean())
    else:
        mean_eq = np.nan
    if traded_value is not None and np.isfinite(mean_eq) and mean_eq > 0:
        turnover = float(traded_value.reindex(r.index).fillna(0.0).abs().sum() / 2.0 / mean_eq * ann / n)
    else:
        turnover = 0.0
    drag = float(costs / mean_eq * ann / n) if np.isfinite(mean_eq) and mean_eq > 0 else 0.0
    return PerformanceMetrics(r.index[0], r.index[-1], n, total, annual, vol, sharpe, sortino, calmar, dd.depth,
                              dd.start, dd.trough, dd.recovery, win, turnover, float(costs), drag)


def objective_matrix(returns: np.ndarray, objective: str, annualisation: int = 252,
                     risk_free_rate: float = 0.0) -> np.ndarray:
    """The objective of each row of ``returns`` (rows: parameter sets, columns: sessions), vectorised.

    ``objective``: ``sharpe``, ``sortino``, ``calmar`` or ``annual_return`` as defined above. A row
    without variation has a NaN Sharpe/Sortino.
    """
    x = np.asarray(returns, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ResearchError("objective_matrix needs a (sets, sessions) array with at least two sessions")
    ann = float(annualisation)
    n = x.shape[1]
    excess = x - risk_free_rate / ann
    with np.errstate(invalid="ignore", divide="ignore"):
        if objective == "sharpe":
            sd = x.std(axis=1, ddof=1)
            return np.where(sd > 0, excess.mean(axis=1) / sd * np.sqrt(ann), np.nan)
        if objective == "sortino":
            down = np.sqrt(np.mean(np.minimum(excess, 0.0) ** 2, axis=1)) * np.sqrt(ann)
            return np.where(down > 0, excess.mean(axis=1) * ann / down, np.nan)
        wealth = np.cumprod(1.0 + x, axis=1)
        total = wealth[:, -1] - 1.0
        annual = np.where(total > -1.0, np.abs(1.0 + total) ** (ann / n) - 1.0, -1.0)
        if objective == "annual_return":
            return annual
        if objective == "calmar":
            full = np.concatenate([np.ones((x.shape[0], 1)), wealth], axis=1)
            dd = (full / np.maximum.accumulate(full, axis=1) - 1.0).min(axis=1)
            return np.where(dd < 0, annual / np.abs(dd), np.nan)
    raise ResearchError(f"unknown objective {objective!r}; use sharpe, sortino, calmar or annual_return")


def fuse_checks(metrics: PerformanceMetrics, fuses: FuseThresholds) -> pd.DataFrame:
    """The backtest thresholds of ``FuseThresholds`` against the metrics: value, threshold, passed."""
    rows = [
        ("annual_return", metrics.annual_return, fuses.min_annual_return, metrics.annual_return >= fuses.min_annual_return),
        ("max_drawdown", metrics.max_drawdown, fuses.max_drawdown, metrics.max_drawdown >= fuses.max_drawdown),
        ("sharpe", metrics.sharpe, fuses.min_sharpe, metrics.sharpe >= fuses.min_sharpe),
        ("monthly_win_rate", metrics.monthly_win_rate, fuses.min_monthly_win_rate,
         metrics.monthly_win_rate >= fuses.min_monthly_win_rate),
        ("annual_turnover", metrics.annual_turnover, fuses.max_annual_turnover,
         metrics.annual_turnover <= fuses.max_annual_turnover),
    ]
    return pd.DataFrame(rows, columns=["metric", "value", "threshold", "passed"]).set_index("metric")
