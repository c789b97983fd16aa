"""Fixtures of the research-core tests: the real A-share pool, its factors, strategy run and backtest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rotation_platform.config.models import BacktestConfig, CapitalConfig, PoolConfig, PoolKind, ScreeningConfig
from rotation_platform.data.panel import PricePanel
from tests.research.realdata import A_SHARE_WITH_FACTORS, DATA_DIR, build_panel, price_factors


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"real fund data folder {DATA_DIR} is missing; the research tests need ../shared/data/cn_etf")
    return DATA_DIR


@pytest.fixture(scope="session")
def real_panel(data_dir: Path) -> PricePanel:
    return build_panel(data_dir, A_SHARE_WITH_FACTORS, start="2013-01-01")


@pytest.fixture(scope="session")
def real_factors(real_panel: PricePanel) -> tuple[np.ndarray, list[str]]:
    return price_factors(real_panel)


@pytest.fixture(scope="session")
def a_share_pool() -> PoolConfig:
    return PoolConfig(name="A_SHARE", kind=PoolKind.A_SHARE, summary_weight=1.0, benchmark="510300",
                      capital=CapitalConfig(target_capital=7_000_000, max_single_weight=0.25, max_adv_pct=0.05),
                      symbols=A_SHARE_WITH_FACTORS)


@pytest.fixture(scope="session")
def screening() -> ScreeningConfig:
    return ScreeningConfig(horizons=(1, 5, 20), ic_lookback=252, top_k=4, correlation_threshold=0.8)


@pytest.fixture(scope="session")
def costs() -> BacktestConfig:
    return BacktestConfig(trade_at="open")


@pytest.fixture(scope="session")
def spec(a_share_pool: PoolConfig, screening: ScreeningConfig, costs: BacktestConfig):
    from rotation_platform.research import StrategySpec

    return StrategySpec(capital=a_share_pool.capital, screening=screening, backtest=costs, selection_horizon=5)


@pytest.fixture(scope="session")
def context(real_panel: PricePanel, real_factors, spec):
    from rotation_platform.research import StrategyContext

    return StrategyContext(real_factors, real_panel, spec)


@pytest.fixture(scope="session")
def params():
    from rotation_platform.research import StrategyParams

    return StrategyParams(top_n=4, rebalance_sessions=20, ic_lookback=252, weighting="equal", buffer=1)


@pytest.fixture(scope="session")
def plan(context, params):
    return context.run(params)


@pytest.fixture(scope="session")
def result(plan, real_panel: PricePanel, a_share_pool: PoolConfig):
    from rotation_platform.research import backtest

    return backtest(plan, real_panel, benchmark=a_share_pool.benchmark)
