"""Fixtures for the data tests: the shared real data, the cn_etf config, and writers of generated files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rotation_platform.calendars import get_calendar
from rotation_platform.config import load_config
from rotation_platform.config.models import CapitalConfig, DataConfig, PlatformConfig, PoolConfig, PoolKind
from rotation_platform.data.pipeline import PoolPrices, load_pool_prices
from rotation_platform.data.sources.directory import DirectorySource

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data" / "cn_etf"


# --------------------------------------------------------------------------------------- real data
@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real fund data; its absence is a failure, not a skip."""
    if not (SHARED_DATA / "510300.csv").is_file():
        pytest.fail(f"the shared real data is missing: expected the cn_etf folder at {SHARED_DATA} "
                    f"(../shared/data/cn_etf beside the repository, as on developer machines and in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cn_config(shared_data: Path) -> PlatformConfig:
    return load_config(REPO / "configs" / "cn_etf.yaml", env={})


@pytest.fixture(scope="session")
def real_source(shared_data: Path) -> DirectorySource:
    return DirectorySource(shared_data)


@pytest.fixture(scope="session")
def real_pools(cn_config: PlatformConfig, real_source: DirectorySource) -> dict[str, PoolPrices]:
    """Every pool of configs/cn_etf.yaml loaded once for the session."""
    return {pool.name: load_pool_prices(real_source, pool, cn_config.data) for pool in cn_config.pools}


# ---------------------------------------------------------------------------------- generated files
def folder_snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below ``folder`` (to prove reading writes nothing)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def make_prices(n: int = 80, start: str = "2024-01-02", seed: int = 0, level: float = 1.0) -> pd.DataFrame:
    """Clean canonical records on XSHG sessions: prices on the 0.001 tick, volume in whole lots (shares)."""
    sessions = get_calendar("XSHG").sessions(start, "2026-12-31")[:n]
    rng = np.random.default_rng(seed)
    close = np.round(level * np.exp(np.cumsum(rng.normal(0.0, 0.01, n))), 3)
    open_ = np.round(close * (1 + rng.normal(0.0, 0.003, n)), 3)
    high = np.round(np.maximum(open_, close) + 0.005, 3)
    low = np.round(np.minimum(open_, close) - 0.005, 3)
    lots = rng.integers(1_000, 100_000, n).astype(float)
    volume = lots * 100
    amount = np.round(volume * (open_ + high + low + close) / 4, 2)
    return pd.DataFrame({"date": pd.DatetimeIndex(sessions).astype("datetime64[ns]"), "open": open_, "high": high,
                         "low": low, "close": close, "volume": volume, "amount": amount})


def to_layout(frame: pd.DataFrame, layout: str, symbol: str = "510300") -> pd.DataFrame:
    """The canonical records in one of the supported file layouts (dates as ISO text)."""
    day = frame["date"].dt.strftime("%Y-%m-%d")
    lots = frame["volume"] / 100
    if layout == "cn_etf":
        return pd.DataFrame({"trade_date": day, "open": frame["open"], "high": frame["high"], "low": frame["low"],
                             "close": frame["close"], "volume": lots, "amount": frame["amount"],
                             "adjust_factor": 1.0, "source": "finshare", "updated_at": "2026-07-13T11:32:48"})
    if layout == "cn_etf_vendor":
        return pd.DataFrame({"code": f"{symbol}.SH", "trade_date": day, "open_price": frame["open"],
                             "high_price": frame["high"], "low_price": frame["low"], "close_price": frame["close"],
                             "volume": lots, "amount": frame["amount"], "adjust_factor": 1.0, "turnover_rate": 0.5,
                             "market": "sh", "adjustment": "none", "data_source": "eastmoney",
                             "created_at": "2026-04-09 16:48:50", "updated_at": "2026-04-09 16:48:50"})
    if layout == "akshare_em":
        prev = frame["close"].shift(1).fillna(frame["open"])
        return pd.DataFrame({"日期": day, "开盘": frame["open"], "收盘": frame["close"], "最高": frame["high"],
                             "最低": frame["low"], "成交量": lots, "成交额": frame["amount"],
                             "振幅": ((frame["high"] - frame["low"]) / prev * 100).round(2),
                             "涨跌幅": ((frame["close"] / prev - 1) * 100).round(2),
                             "涨跌额": (frame["close"] - prev).round(3), "换手率": 1.23})
    if layout == "plain":
        return pd.DataFrame({"date": day, "open": frame["open"], "high": frame["high"], "low": frame["low"],
                             "close": frame["close"], "volume": frame["volume"], "amount": frame["amount"]})
    raise ValueError(layout)


def write_csv(frame: pd.DataFrame, path: Path, layout: str = "cn_etf", symbol: str | None = None) -> Path:
    to_layout(frame, layout, symbol or path.stem).to_csv(path, index=False, lineterminator="\n")
    return path


def csv_lines(frame: pd.DataFrame, layout: str = "cn_etf", symbol: str = "510300") -> list[str]:
    """The CSV text as lines: [header, data row 1, data row 2, ...]."""
    return to_layout(frame, layout, symbol).to_csv(index=False, lineterminator="\n").splitlines()


def pool_for(symbols: tuple[str, ...], jump_threshold: float = 0.2) -> PoolConfig:
    return PoolConfig(name="TEST", kind=PoolKind.A_SHARE, symbols=symbols, calendar="XSHG", summary_weight=1.0,
                      capital=CapitalConfig(target_capital=1e6, max_single_weight=0.5, max_adv_pct=0.05),
                      jump_threshold=jump_threshold)


def data_config_for(folder: Path, **quality: object) -> DataConfig:
    return DataConfig.model_validate({"source": "directory", "directory": folder, "quality": quality})


class Kit:
    """The helpers above, handed to tests through the ``kit`` fixture."""

    snapshot = staticmethod(folder_snapshot)
    prices = staticmethod(make_prices)
    to_layout = staticmethod(to_layout)
    write_csv = staticmethod(write_csv)
    csv_lines = staticmethod(csv_lines)
    pool = staticmethod(pool_for)
    data_config = staticmethod(data_config_for)


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit
