"""Research core: factor screening, the rotation strategy in real units (raw prices, board lots,
corporate actions), walk-forward optimisation, the ledger-verified backtest and its analyses (attribution, capacity, risk) and the next session's target portfolio.

Timing convention: factor row ``t`` uses data through ``t - 1``; the label of row ``s`` at horizon ``h``
is the trade-price return from ``s`` to ``s + h`` and is known at ``s + h``; a screen as of ``t`` uses
labels with ``s + h <= t``; the orders traded at session ``t`` use factor row ``t`` and the screen as of
``t - 1``. See :mod:`rotation_platform.research.inputs`.

Pure library code: no Dagster here.
"""

from rotation_platform.research.attribution import (
    MonthAttribution,
    daily_pnl_components,
    extreme_months,
    monthly_attribution,
)
from rotation_platform.research.backtest import BacktestResult, backtest, benchmark_returns, vectorbt_orders
from rotation_platform.research.baselines import BASELINES, BaselineCurve, Baselines, baselines
from rotation_platform.research.value_added import ValueAdded, sharpe_difference
from rotation_platform.research.capacity import (
    CapacityReport,
    adv_frame,
    capacity_by_session,
    capacity_report,
    capacity_table,
)
from rotation_platform.research.inputs import (
    AlignedFactors,
    FactorLike,
    align_factors,
    forward_returns,
    mark_prices,
    trade_prices,
)
from rotation_platform.research.ledger import Ledger, compare_with_plan, replay_ledger
from rotation_platform.research.market import Market, lot_array
from rotation_platform.research.metrics import (
    Drawdown,
    PerformanceMetrics,
    fuse_checks,
    max_drawdown,
    monthly_returns,
    objective_matrix,
    performance_metrics,
)
from rotation_platform.research.overfitting import (
    DSRResult,
    PBOResult,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    pbo_cscv,
    probabilistic_sharpe_ratio,
)
from rotation_platform.research.risk import RiskReport, historical_var, risk_report
from rotation_platform.research.screen import (
    FactorScreen,
    ICPanel,
    ScreenResult,
    SelectedFactor,
    SelectionPath,
    rank_ic,
    screen_factors,
)
from rotation_platform.research.strategy import StrategyContext, StrategyParams, StrategySpec, TradePlan
from rotation_platform.research.target import TargetPortfolio, target_portfolio
from rotation_platform.research.wfo import WFOResult, Window, grid_params, split_windows, walk_forward

__all__ = [
    # inputs
    "FactorLike",
    "AlignedFactors",
    "align_factors",
    "trade_prices",
    "mark_prices",
    "forward_returns",
    # screening
    "ICPanel",
    "FactorScreen",
    "ScreenResult",
    "SelectedFactor",
    "SelectionPath",
    "rank_ic",
    "screen_factors",
    # market (real units)
    "Market",
    "lot_array",
    # strategy
    "StrategyParams",
    "StrategySpec",
    "StrategyContext",
    "TradePlan",
    # walk-forward and overfitting
    "Window",
    "WFOResult",
    "grid_params",
    "split_windows",
    "walk_forward",
    "PBOResult",
    "DSRResult",
    "pbo_cscv",
    "expected_max_sharpe",
    "probabilistic_sharpe_ratio",
    "deflated_sharpe_ratio",
    # backtest and metrics
    "BacktestResult",
    "backtest",
    "benchmark_returns",
    "vectorbt_orders",
    "Ledger",
    "replay_ledger",
    "compare_with_plan",
    "PerformanceMetrics",
    "Drawdown",
    "performance_metrics",
    "max_drawdown",
    "monthly_returns",
    "objective_matrix",
    "fuse_checks",
    # analyses
    "MonthAttribution",
    "daily_pnl_components",
    "monthly_attribution",
    "extreme_months",
    "CapacityReport",
    "capacity_report",
    "adv_frame",
    "capacity_table",
    "capacity_by_session",
    "RiskReport",
    "historical_var",
    "risk_report",
    "TargetPortfolio",
    "target_portfolio",
    # baselines and the value-added test
    "BASELINES",
    "BaselineCurve",
    "Baselines",
    "baselines",
    "ValueAdded",
    "sharpe_difference",
]
