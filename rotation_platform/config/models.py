"""Declared configuration models (pydantic v2, frozen, ``extra="forbid"``).

YAML in ``configs/`` is the source of truth for research parameters; :mod:`.loader` reads it, applies
``ROTATION_*`` environment overrides and fills secrets from the environment only. Fields typed
:class:`~pydantic.SecretStr` are secrets: they may never appear in YAML and never print.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

__all__ = [
    "PoolKind",
    "CapitalConfig",
    "PoolConfig",
    "DataConfig",
    "AkshareConfig",
    "AdjustmentConfig",
    "QualityConfig",
    "SyntheticConfig",
    "FactorConfig",
    "ScreeningConfig",
    "WFOGrid",
    "WFOConfig",
    "BacktestConfig",
    "StrategyConfig",
    "FuseThresholds",
    "StorageConfig",
    "DingTalkConfig",
    "EmailConfig",
    "NotificationConfig",
    "OrchestrationConfig",
    "PositionsConfig",
    "MarketConfig",
    "SummaryConfig",
    "MARKET_DEFAULTS",
    "ResolvedMarket",
    "PlatformConfig",
]

SYMBOL_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._-]{1,15}$"
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,31}$"

Fraction = Annotated[float, Field(gt=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class PoolKind(str, Enum):
    A_SHARE = "A_SHARE"
    QDII = "QDII"
    OTHER = "OTHER"


class CapitalConfig(_Model):
    """Capital constraints of one pool."""

    target_capital: float = Field(gt=0, description="capital deployed in the pool, in the pool's currency "
                                                             "(pools[].currency: CNY for an A-share pool, USD on XNYS)")
    max_single_weight: Fraction = Field(description="largest weight of one fund")
    max_adv_pct: Fraction = Field(description="largest position as a fraction of 20-session ADV (0.05 = 5%)")


class PoolConfig(_Model):
    """One pool of funds traded together."""

    name: str = Field(pattern=NAME_PATTERN)
    kind: PoolKind
    symbols: tuple[Annotated[str, Field(pattern=SYMBOL_PATTERN)], ...] = Field(min_length=2)
    calendar: str = Field(default="XSHG", description="exchange_calendars code, e.g. XSHG")
    summary_weight: float = Field(ge=0.0, le=1.0, description="weight in the combined summary")
    capital: CapitalConfig
    benchmark: str = Field(default="equal_weight", description="a symbol of the pool or 'equal_weight'")
    jump_threshold: float = Field(default=0.20, gt=0.0, lt=10.0,
                                  description="a close-to-close move beyond this with no corporate "
                                              "action is an unexplained jump")
    lot_size: PositiveInt | None = Field(default=None, description="board lot of the pool's funds, shares "
                                                                   "(default: its market's, markets.<calendar>."
                                                                   "lot_size, e.g. 100 on XSHG, 1 on XNYS)")
    lot_sizes: dict[Annotated[str, Field(pattern=SYMBOL_PATTERN)], PositiveInt] = Field(
        default_factory=dict, description="board lot per fund where it differs from the pool's")
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = Field(
        default=None, description="ISO 4217 code of the pool's prices (default: its market's, markets.<calendar>)")
    delisted: dict[Annotated[str, Field(pattern=SYMBOL_PATTERN)], dt.date] = Field(
        default_factory=dict, description="fund -> delisting date: from it on the fund's data counts as ended "
                                          "(liquidated at its last price, not selected afterwards)")
    min_funds: PositiveInt = Field(
        default=2, description="fewest tradeable funds (a bar, data not ended, not excluded by an ERROR finding) "
                               "the pool needs at a session; fewer blocks the pool's quality gate (a rotation "
                               "needs at least two funds to choose between)")
    defensive: Annotated[str, Field(pattern=SYMBOL_PATTERN)] | None = Field(
        default=None, description="a bond or money-market fund of the pool that takes what the strategy does not "
                                  "invest in its picks (strategy.cash_policy, target_volatility, trend_filter); never "
                                  "a pick of the rotation itself")
    tracks: dict[Annotated[str, Field(pattern=SYMBOL_PATTERN)], Annotated[str, Field(min_length=1)]] = Field(
        default_factory=dict, description="fund -> the index it tracks; funds tracking the same index are one "
                                          "cluster of the de-duplication (strategy.dedup_correlation)")

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, v: str) -> str:
        import exchange_calendars as xcals

        if v not in xcals.get_calendar_names(include_aliases=True):
            raise ValueError(f"unknown exchange calendar {v!r}; use an exchange_calendars code such as XSHG")
        return v

    @field_validator("symbols")
    @classmethod
    def _unique_symbols(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        dup = [s for s in v if s in seen or seen.add(s)]  # type: ignore[func-returns-value]
        if dup:
            raise ValueError(f"duplicate symbols: {sorted(set(dup))}")
        return v

    @field_validator("delisted")
    @classmethod
    def _delisted_known(cls, v: dict[str, dt.date], info: ValidationInfo) -> dict[str, dt.date]:
        symbols = info.data.get("symbols")
        if symbols is None:       # the symbols failed validation; that error is reported already
            return v
        unknown = [s for s in v if s not in symbols]
        if unknown:
            pool = info.data.get("name", "")
            raise ValueError(f"{', '.join(repr(s) for s in unknown)} {'is' if len(unknown) == 1 else 'are'} not "
                             f"a symbol of pool {pool}; a delisting date can only be given for a fund in 'symbols'")
        return v

    @model_validator(mode="after")
    def _benchmark_known(self) -> "PoolConfig":
        if self.benchmark != "equal_weight" and self.benchmark not in self.symbols:
            raise ValueError(f"benchmark {self.benchmark!r} is neither 'equal_weight' nor a symbol of the pool")
        return self

    @model_validator(mode="after")
    def _min_funds_possible(self) -> "PoolConfig":
        if self.min_funds > len(self.symbols):
            raise ValueError(f"min_funds {self.min_funds} is more than the {len(self.symbols)} symbols of pool "
                             f"{self.name}; set pools[{self.name}].min_funds to at most {len(self.symbols)}")
        return self

    @model_validator(mode="after")
    def _defensive_known(self) -> "PoolConfig":
        if self.defensive is not None and self.defensive not in self.symbols:
            raise ValueError(f"pools[{self.name}].defensive {self.defensive!r} is not a symbol of the pool; name one "
                             f"of its funds (a bond or money-market ETF) or leave it out")
        unknown = sorted(set(self.tracks) - set(self.symbols))
        if unknown:
            raise ValueError(f"pools[{self.name}].tracks names funds that are not in the pool: {unknown}")
        return self

    @model_validator(mode="after")
    def _lot_sizes_known(self) -> "PoolConfig":
        unknown = sorted(set(self.lot_sizes) - set(self.symbols))
        if unknown:
            raise ValueError(f"lot_sizes names funds that are not in the pool: {unknown}")
        return self


class SyntheticConfig(_Model):
    seed: int = Field(default=20240101, ge=0)
    start: dt.date = dt.date(2014, 1, 2)
    end: dt.date | None = Field(default=None, description="last session; default: the last completed session")
    late_listing_fraction: float = Field(default=0.2, ge=0.0, le=0.9)


class QualityConfig(_Model):
    stale_run: int = Field(default=5, ge=2, description="N equal closes in a row is a stale-price finding")
    max_missing_fraction: float = Field(default=0.05, ge=0.0, le=1.0,
                                        description="missing sessions above this fraction are an ERROR")
    max_zero_volume_fraction: float = Field(default=0.2, ge=0.0, le=1.0)
    min_history_sessions: int = Field(default=60, ge=1)
    exclusion_window: PositiveInt = Field(
        default=252,
        description="sessions ending at t in which an ERROR finding of a fund leaves it out of the universe of "
                    "the decision at t (one year: the longest IC lookback of screening / wfo.grid and more than "
                    "the longest rolling window of the factor engine, 250); older findings do not exclude")
    fail_on: Literal["fatal", "error"] = Field(
        default="fatal", description="'fatal': only fatal findings raise; 'error': ERROR findings raise too")


class AdjustmentConfig(_Model):
    """How vendor back-adjustment factors are read (see :mod:`rotation_platform.data.corporate_actions`)."""

    noise_tolerance: float = Field(
        default=0.01, gt=0.0, lt=0.2,
        description="in a noisy factor file, a step up to this (|log step|) on a day without a table action is "
                    "noise, not a corporate action")
    noise_share: float = Field(
        default=0.2, ge=0.0, le=1.0,
        description="a factor file is noisy when more than this share of its steps move beyond "
                    "FACTOR_STEP_TOLERANCE on days without a table action (real actions happen a few times a year)")
    snap_noise: bool = Field(
        default=True,
        description="hold the factor at its last level on noise days (noise is not a total return and would leak "
                    "fake returns into the signals); false applies the vendor factor as is (still reported)")
    additive_noise: bool = Field(
        default=True,
        description="also count as noise a factor step on a day without a table action when the vendor's "
                    "adjusted close moved exactly in proportion to the raw close (additive back-adjustment: the "
                    "multiplicative factor then moves with the price although nothing was paid or split)")


class AkshareConfig(_Model):
    """The live source ``data.source: akshare``: eastmoney's daily ETF history, the endpoint akshare's
    ``fund_etf_hist_em`` calls, fetched into the drop folder ``data.directory`` (docs/live-data.md)."""

    base_url: str = Field(default="https://push2his.eastmoney.com/api/qt/stock/kline/get",
                          pattern=r"^https?://[^\s/]+(/\S*)?$",
                          description="kline endpoint (http or https URL); the default is eastmoney's, as in akshare")
    timeout_seconds: float = Field(default=15.0, gt=0.0, le=600.0,
                                   description="seconds to wait for each response (akshare uses 15)")
    retries: int = Field(default=3, ge=0, le=20,
                         description="further attempts after a 5xx/429 answer, a timeout or a refused connection")
    backoff_seconds: float = Field(default=1.0, ge=0.0, le=600.0,
                                   description="wait before the first retry; each further retry waits twice as long")
    max_backoff_seconds: float = Field(default=60.0, ge=0.0, le=3600.0, description="longest wait between attempts")
    min_interval_seconds: float = Field(default=0.5, ge=0.0, le=600.0,
                                        description="shortest time between two requests to the server (rate limit)")
    overlap_sessions: int = Field(default=5, ge=1, le=250,
                                  description="last bars already in a file that are fetched again and compared "
                                              "(a changed bar is reported as a restatement, never overwritten)")
    start: dt.date | None = Field(default=None, description="first day fetched for a fund without a file "
                                                            "(default: data.start, else the fund's first bar)")
    factors: bool = Field(default=True, description="also fetch back-adjusted closes (fqt=2) and keep "
                                                    "<symbol>_hfq_factor.csv up to date (corporate actions)")
    restatement_tolerance: float = Field(default=1e-6, ge=0.0, lt=0.1,
                                         description="relative difference above which a re-fetched value counts "
                                                     "as changed")


class DataConfig(_Model):
    source: Literal["synthetic", "directory", "akshare"] = Field(
        default="synthetic", description="synthetic: generated prices; directory: the files of data.directory; "
                                         "akshare: fetch the missing sessions into data.directory, then read it")
    directory: Path | None = Field(default=None, description="folder of per-fund CSV/Parquet files (the drop "
                                                             "folder the akshare source writes into)")
    history: Literal["source", "store"] = Field(
        default="source",
        description="where pools read their price history: 'source' reads data.source directly on every run; "
                    "'store' reads the market store (storage.backend), which the market_data asset fills from "
                    "data.source (docs/market-data.md)")
    price_field: Literal["close", "open"] = "close"
    start: dt.date | None = None
    synthetic: SyntheticConfig = SyntheticConfig()
    quality: QualityConfig = QualityConfig()
    adjustment: AdjustmentConfig = AdjustmentConfig()
    akshare: AkshareConfig = AkshareConfig()
    ended_after: PositiveInt = Field(
        default=5, description="sessions of the pool calendar without a bar, before the panel's last session, "
                               "after which a fund's data counts as ended")
    amount: Literal["estimate", "drop_factors", "require"] = Field(
        default="estimate",
        description="a fund whose files have no amount (turnover) at all: 'estimate' fills it with volume x "
                    "typical price (high+low+close)/3 and marks it estimated (panel meta amount_estimated, finding "
                    "amount_estimated); 'drop_factors' leaves the amount-based factors out of the pool and counts "
                    "bars without amount; 'require' fails the load naming the funds")
    splits: Literal["propose", "apply"] = Field(
        default="propose",
        description="an unexplained overnight move of a split ratio (2, 3, 4, 5, 10 or an inverse) with volume "
                    "moving inversely: 'propose' reports it (finding split_proposed, with the line to add to "
                    "platform_splits.csv) and it stays an unexplained jump; 'apply' applies it as if it were in the "
                    "splits table (WARN finding split_inferred)")
    volume_unit: dict[Annotated[str, Field(pattern=SYMBOL_PATTERN)],
                      Literal["shares", "lots"] | PositiveInt] = Field(
        default_factory=dict,
        description="shares one unit of a price file's volume column stands for, where the layout's own unit "
                    "(lots of 100 for cn_etf, cn_etf_vendor and akshare_em; shares for tdx, yahoo, alpha_vantage "
                    "and plain) is wrong: keys are a fund symbol, a layout name or 'default' (the first that "
                    "applies wins, in that order); values 'shares', 'lots' (100) or a whole number of shares")
    symbol_map: dict[str, Annotated[str, Field(pattern=SYMBOL_PATTERN)]] = Field(
        default_factory=dict,
        description="price file name (or name without extension) -> the fund symbol it holds, for files whose "
                    "names do not say it (sh510300.csv, 510300.SH.csv, SH#510300.txt and SPY.csv need no entry)")

    @model_validator(mode="after")
    def _directory_needed(self) -> "DataConfig":
        if self.source == "directory" and self.directory is None:
            raise ValueError("source 'directory' needs 'directory' (a folder of per-fund price files)")
        if self.source == "akshare" and self.directory is None:
            raise ValueError("source 'akshare' needs 'directory': the drop folder the fetched <symbol>.csv files "
                             "are written to and read from")
        return self


class FactorConfig(_Model):
    set_version: str = "1"
    lag: PositiveInt = Field(default=1, description="a value at session t uses data through t-lag")
    dtype: Literal["float64", "float32"] = "float64"
    families: tuple[str, ...] | Literal["all"] = "all"
    min_coverage: Fraction = 0.8


class ScreeningConfig(_Model):
    horizons: tuple[PositiveInt, ...] = Field(default=(1, 5, 10, 20), min_length=1,
                                              description="label horizons; one per wfo.grid.rebalance_sessions")
    ic_lookback: PositiveInt = Field(default=252, description="sessions of IC history per screen")
    top_k: PositiveInt = 10
    correlation_threshold: Fraction = 0.8
    min_abs_icir: float = Field(default=0.0, ge=0.0)
    min_coverage: Fraction = 0.8
    min_obs: int = Field(default=5, ge=3, description="fewest funds a cross-sectional rank IC needs")
    selection_horizon: Literal["auto"] | PositiveInt = Field(
        default="auto", description="label horizon the screen selects on: auto (the horizon of screening.horizons "
                                    "closest to each parameter set's rebalance_sessions) or one of screening.horizons")

    @model_validator(mode="after")
    def _selection_horizon_computed(self) -> "ScreeningConfig":
        h = self.selection_horizon
        if h != "auto" and h not in self.horizons:
            raise ValueError(f"screening.selection_horizon {h} is not among screening.horizons "
                             f"{list(self.horizons)}: use auto or add {h} to screening.horizons")
        return self


class WFOGrid(_Model):
    top_n: tuple[PositiveInt, ...] = (2, 3, 4, 5)
    rebalance_sessions: tuple[PositiveInt, ...] = (5, 10, 20)
    ic_lookback: tuple[PositiveInt, ...] = (60, 120, 252)
    weighting: tuple[Literal["equal", "ic"], ...] = ("equal", "ic")
    buffer: tuple[Annotated[int, Field(ge=0)], ...] = (0, 1)
    trend_filter: tuple[Literal["none", "benchmark_sma", "composite_sign"], ...] = Field(
        default=("none",), min_length=1, description="trend filters the grid tries; left out: "
                                                    "[strategy.trend_filter]")


class WFOConfig(_Model):
    splitter: Literal["rolling", "expanding"] = "rolling"
    train_sessions: PositiveInt = 504
    test_sessions: PositiveInt = 63
    embargo_sessions: Annotated[int, Field(ge=0)] = 20
    objective: Literal["sharpe", "sortino", "calmar", "annual_return"] = "sharpe"
    reoptimise: Literal["daily", "weekly", "monthly", "quarterly"] = "monthly"
    grid: WFOGrid = WFOGrid()

    @model_validator(mode="after")
    def _embargo_fits(self) -> "WFOConfig":
        if self.embargo_sessions >= self.train_sessions:
            raise ValueError("embargo_sessions must be smaller than train_sessions")
        return self


class BacktestConfig(_Model):
    commission_rate: float = Field(default=0.0002, ge=0.0, lt=0.05, description="fraction of traded value")
    min_commission: float = Field(default=5.0, ge=0.0, description="per order, in the currency of the pool traded")
    slippage_bps: float = Field(default=5.0, ge=0.0, lt=1000.0)
    lot_size: PositiveInt = Field(default=100, description="board lot, shares, of a market without a built-in one "
                                                           "(markets.<CODE>.lot_size, a pool's lot_size and lot_sizes "
                                                           "override it)")
    trade_at: Literal["open", "close"] = "open"
    risk_free_rate: float = Field(default=0.0, ge=-0.1, le=0.5)
    annualisation: PositiveInt = 252
    dividends: Literal["cash", "reinvest"] = Field(
        default="cash", description="cash dividends arrive as cash on the ex-date, or buy whole shares there")
    liquidity_filter: bool = Field(
        default=True, description="a fund is eligible at a rebalance only when a position of the target weight "
                                  "at the book's value is within the pool's capital.max_adv_pct of its ADV")
    adv_window: PositiveInt = Field(default=20, description="sessions of the average daily turnover (ADV)")


class StrategyConfig(_Model):
    """Portfolio construction of every pool (see :func:`rotation_platform.research.nb.construct_weights_nb`)."""

    cash_policy: Literal["pro_rata", "defensive", "cash"] = Field(
        default="pro_rata",
        description="what happens to the book the picks cannot hold when top_n x capital.max_single_weight < 1 or "
                    "fewer funds are eligible: pro_rata widens the selection to the next-ranked funds "
                    "(ceil(1 / max_single_weight) picks at least) and gives the picks equal weights up to the cap; "
                    "defensive puts the remainder in pools[].defensive; cash keeps it in cash")
    target_volatility: float | None = Field(
        default=None, gt=0.0, le=2.0,
        description="annualised volatility target of the picks (0.15 = 15%); the picks are scaled by "
                    "min(1, target / ex-ante vol), the rest goes to pools[].defensive or cash; null: off")
    vol_window: int = Field(default=60, ge=4, description="sessions of daily returns of the ex-ante covariance "
                                                          "(the window fuse 4 measures with)")
    trend_filter: Literal["none", "benchmark_sma", "composite_sign"] = Field(
        default="none", description="the pool's trend signal: benchmark_sma (the pool's benchmark above its "
                                    "trend_window-session average), composite_sign (the equal-weight pool's "
                                    "trend_window-session return >= 0); negative: the book goes to "
                                    "pools[].defensive (or cash); wfo.grid.trend_filter varies it")
    trend_window: int = Field(default=200, ge=2, description="sessions of the trend filter")
    dedup_correlation: float | None = Field(
        default=0.98, gt=0.0, le=1.0,
        description="funds whose daily returns correlate above this over dedup_window sessions (or that track the "
                    "same pools[].tracks index) form a cluster; the strategy holds only its most liquid fund; "
                    "null: only pools[].tracks clusters")
    dedup_window: int = Field(default=250, ge=20, description="trailing sessions of the de-duplication correlation")


class FuseThresholds(_Model):
    min_annual_return: float = 0.08
    max_drawdown: float = Field(default=-0.30, le=0.0, description="the worst drawdown allowed (negative)")
    min_sharpe: float = 0.5
    min_monthly_win_rate: float = Field(default=0.45, ge=0.0, le=1.0)
    max_annual_turnover: float = Field(default=10.0, gt=0.0)
    min_coverage: float = Field(default=0.80, ge=0.0, le=1.0)
    max_coverage_drop: float = Field(default=0.10, ge=0.0, le=1.0)
    min_effective_factors: PositiveInt = 8
    max_target_volatility: float = Field(default=0.60, gt=0.0, description="ex-ante annual volatility of a target")
    max_abs_monthly_return: float = Field(default=0.50, gt=0.0, description="a month beyond +-this is bad data")
    max_flat_factor_share: Fraction = Field(default=0.5, description="share of factors flat across funds")


class StorageConfig(_Model):
    backend: Literal["local", "influxdb", "mysql"] = "local"
    data_dir: Path = Path("data")
    redis_cache: bool = False
    influx_url: str = "http://127.0.0.1:8086"
    influx_database: str = Field(default="rotation", pattern=NAME_PATTERN)
    influx_username: str | None = None
    mysql_url: str = Field(default="mysql+pymysql://root@127.0.0.1:3306/test",
                           description="SQLAlchemy URL without password")
    redis_url: str = "redis://127.0.0.1:6379/0"
    # secrets: environment only
    influx_token: SecretStr | None = None
    influx_password: SecretStr | None = None
    mysql_password: SecretStr | None = None
    redis_password: SecretStr | None = None

    @field_validator("mysql_url", "redis_url", "influx_url")
    @classmethod
    def _no_password_in_url(cls, v: str) -> str:
        from urllib.parse import urlsplit

        if urlsplit(v).password:
            raise ValueError("URL carries a password; put it in the environment variable instead")
        return v


class DingTalkConfig(_Model):
    enabled: bool = False
    keyword: str = Field(default="rotation", description="DingTalk robot security keyword")
    webhook: SecretStr | None = None
    secret: SecretStr | None = None

    @field_validator("webhook")
    @classmethod
    def _web_url(cls, v: SecretStr | None) -> SecretStr | None:
        from urllib.parse import urlsplit

        url = urlsplit(v.get_secret_value()) if v is not None and v.get_secret_value() else None  # "": unset
        if url is not None and (url.scheme not in ("https", "http") or not url.hostname):
            # the value is a secret (it carries the robot's token): only its scheme is named
            raise ValueError(f"must be an http(s) URL of the DingTalk robot, not a {url.scheme or 'relative'!r} "
                             "address")
        return v


class EmailConfig(_Model):
    enabled: bool = False
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = Field(default=True, description="upgrade the connection with STARTTLS before logging in "
                                                       "or sending (false only for a trusted local relay)")
    sender: str = "rotation@localhost"
    recipients: tuple[str, ...] = ()
    username: str | None = None
    password: SecretStr | None = None

    @model_validator(mode="after")
    def _recipients_when_enabled(self) -> "EmailConfig":
        if self.enabled and not self.recipients:
            raise ValueError("email is enabled but has no recipients")
        return self


class NotificationConfig(_Model):
    on_success: bool = True
    on_failure: bool = True
    dingtalk: DingTalkConfig = DingTalkConfig()
    email: EmailConfig = EmailConfig()


class CeleryConfig(_Model):
    """Where the Celery executor sends steps (``orchestration.executor: celery``, docs/executors.md)."""

    broker: str = Field(default="amqp://guest:guest@127.0.0.1:5672//",
                        description="broker URL (RabbitMQ); only RabbitMQ's well-known guest password may appear in "
                                    "it, any other comes from ROTATION_ORCHESTRATION__CELERY__BROKER_PASSWORD")
    backend: str = Field(default="redis://127.0.0.1:6379/1",
                         description="result backend URL (Redis), without password (see backend_password)")
    queue: str = Field(default="dagster", pattern=r"^[A-Za-z0-9_.-]+$",
                       description="the queue the steps are sent to; workers consume it (-q)")
    # secrets: environment only
    broker_password: SecretStr | None = None
    backend_password: SecretStr | None = None

    @field_validator("broker", "backend")
    @classmethod
    def _no_secret_in_url(cls, v: str) -> str:
        from urllib.parse import urlsplit

        if urlsplit(v).password not in (None, "guest"):
            raise ValueError("URL carries a password; put it in the environment variable instead "
                             "(ROTATION_ORCHESTRATION__CELERY__BROKER_PASSWORD / __BACKEND_PASSWORD)")
        return v


class OrchestrationConfig(_Model):
    # how steps are executed, not what they compute: left out of the dump (exclude=True) and so of the config
    # hash every value records, so a run stores the same bytes on every executor
    executor: Literal["in_process", "multiprocess", "celery"] = Field(
        default="in_process", exclude=True,
        description="how a run executes its steps: in one process, one process per step (max_concurrent at a "
                    "time) or on Celery workers (docs/executors.md)")
    max_concurrent: PositiveInt | None = Field(
        default=None, exclude=True, description="multiprocess: steps at once (default: the number of CPUs)")
    celery: CeleryConfig = Field(default=CeleryConfig(), exclude=True)
    first_session: dt.date = Field(default=dt.date(2019, 1, 2),
                                   description="first session partition (the strategy needs history before it)")
    keep_snapshots: PositiveInt = Field(default=10, description="session snapshots kept")
    # 30: XSHG closes at 15:00 (closing auction included); vendors publish the day's ETF bars within
    # minutes, so half an hour leaves room for late corrections and is still 2.5 h before the 18:00 schedule
    data_delay_minutes: int = Field(default=30, ge=0, le=43_200,
                                    description="minutes after a session's close (pool calendar) before its data "
                                                "counts as complete; runs for a session before then are refused "
                                                "unless forced")
    calendar: str | None = Field(default=None,
                                 description="the main calendar (an exchange_calendars code of a pool): its pools keep "
                                             "the plain asset keys, the daily job and schedule, and its sessions are "
                                             "the summary's; pools on other calendars get prefixed copies "
                                             "(xnys/prices), a job daily_<code> and a schedule at their market's "
                                             "close (default: the first pool's calendar)")


class PositionsConfig(_Model):
    """Where a pool's actual positions come from (see ``rotation_platform.production.positions``)."""

    source: Literal["none", "directory", "store"] = Field(
        default="none", description="none: orders against the simulated book; directory: files "
                                    "<directory>/<POOL>/<YYYY-MM-DD>.csv|.parquet; store: the 'positions' "
                                    "asset of the configured store")
    directory: Path | None = None

    @model_validator(mode="after")
    def _directory_needed(self) -> "PositionsConfig":
        if self.source == "directory" and self.directory is None:
            raise ValueError("source 'directory' needs 'directory' (a folder with one sub-folder per pool)")
        return self


#: Built-in facts per exchange_calendars code: board lot (shares) and trading currency. A market not
#: listed here needs its currency in ``markets.<CODE>.currency`` (or ``pools[].currency``).
MARKET_DEFAULTS: dict[str, dict[str, object]] = {
    "XSHG": {"lot_size": 100, "currency": "CNY"},
    "XSHE": {"lot_size": 100, "currency": "CNY"},
    "XHKG": {"lot_size": 100, "currency": "HKD"},   # HK board lots differ by security: set lot_sizes per fund
    "XNYS": {"lot_size": 1, "currency": "USD"},
    "XNAS": {"lot_size": 1, "currency": "USD"},
    "XASE": {"lot_size": 1, "currency": "USD"},
    "XTKS": {"lot_size": 1, "currency": "JPY"},     # ETFs on the TSE trade in units of 1, 10 or 100: lot_sizes
    "XLON": {"lot_size": 1, "currency": "GBP"},
    "XETR": {"lot_size": 1, "currency": "EUR"},
    "XPAR": {"lot_size": 1, "currency": "EUR"},
    "XASX": {"lot_size": 1, "currency": "AUD"},
    "XTSE": {"lot_size": 1, "currency": "CAD"},
    "XKRX": {"lot_size": 1, "currency": "KRW"},
    "XSES": {"lot_size": 1, "currency": "SGD"},
    "XBOM": {"lot_size": 1, "currency": "INR"},
}

CALENDAR_START_DEFAULT = dt.date(2004, 1, 2)
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class MarketConfig(_Model):
    """One exchange (an exchange_calendars code): what every pool on that calendar shares unless the pool
    says otherwise. Unset fields take :data:`MARKET_DEFAULTS`, ``backtest.lot_size`` and
    ``orchestration.data_delay_minutes``; :meth:`PlatformConfig.market` gives the resolved values."""

    calendar_start: dt.date = Field(
        default=CALENDAR_START_DEFAULT, description="first day the exchange calendar is built from (exchange_calendars "
                                                    "'start'); earlier history is refused, so set it before the "
                                                    "first bar of the oldest fund (e.g. 1993-01-29 for SPY)")
    lot_size: PositiveInt | None = Field(default=None, description="board lot, shares (default: the market's, e.g. "
                                                                   "100 on XSHG, 1 on XNYS)")
    currency: Currency | None = Field(default=None, description="ISO 4217 code of the market's prices")
    data_delay_minutes: int | None = Field(default=None, ge=0, le=43_200,
                                           description="minutes after this market's close before a session's data "
                                                       "counts as complete (default orchestration.data_delay_minutes)")
    holidays: tuple[dt.date, ...] = Field(
        default=(), description="weekday exchange holidays beyond the ones exchange_calendars records, e.g. next year's "
                                "XSHG holidays once the exchange publishes them (exchange_calendars 4.13.2 records XSHG "
                                "holidays through 2026): list every weekday closure of that year; the calendar then "
                                "reaches through the end of the latest year listed")

    @field_validator("holidays")
    @classmethod
    def _weekday_holidays(cls, v: tuple[dt.date, ...]) -> tuple[dt.date, ...]:
        weekend = [d for d in v if d.weekday() >= 5]
        if weekend:
            raise ValueError(f"{', '.join(map(str, weekend))} {'is a' if len(weekend) == 1 else 'are'} weekend day(s); "
                             f"list weekday closures only (weekends are never sessions)")
        return tuple(sorted(set(v)))


class SummaryConfig(_Model):
    """The combined cross-pool view."""

    base_currency: Currency = Field(default="CNY", description="currency the combined view is reported in")
    fx: dict[Currency, Path] = Field(
        default_factory=dict, description="currency -> file of 'date,rate' (units of base_currency per one unit of the "
                                          "currency, one row per day); pools in a currency without a series are "
                                          "combined per currency instead")


class PlatformConfig(_Model):
    """The whole resolved configuration of one deployment."""

    name: str = Field(pattern=NAME_PATTERN)
    pools: tuple[PoolConfig, ...] = Field(min_length=1)
    data: DataConfig = DataConfig()
    factors: FactorConfig = FactorConfig()
    screening: ScreeningConfig = ScreeningConfig()
    wfo: WFOConfig = WFOConfig()
    backtest: BacktestConfig = BacktestConfig()
    strategy: StrategyConfig = StrategyConfig()
    fuses: FuseThresholds = FuseThresholds()
    storage: StorageConfig = StorageConfig()
    notifications: NotificationConfig = NotificationConfig()
    orchestration: OrchestrationConfig = OrchestrationConfig()
    positions: PositionsConfig = PositionsConfig()
    markets: dict[str, MarketConfig] = Field(
        default_factory=dict, description="per exchange_calendars code (XSHG, XNYS, ...): calendar start, board lot, "
                                          "currency and data delay of that market's pools")
    summary: SummaryConfig = SummaryConfig()

    @model_validator(mode="before")
    @classmethod
    def _grid_trend_filter(cls, data: object) -> object:
        """``wfo.grid.trend_filter`` left out: the grid tries ``strategy.trend_filter`` only."""
        if not isinstance(data, dict):
            return data
        strategy = data.get("strategy")
        chosen = strategy.get("trend_filter") if isinstance(strategy, dict) else getattr(strategy, "trend_filter", None)
        wfo = data.get("wfo", {})
        if chosen is None or not isinstance(wfo, dict):
            return data
        grid = wfo.get("grid", {})
        if isinstance(grid, dict) and "trend_filter" not in grid:
            data = {**data, "wfo": {**wfo, "grid": {**grid, "trend_filter": (chosen,)}}}
        return data

    @model_validator(mode="after")
    def _pools_consistent(self) -> "PlatformConfig":
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate pool names: {names}")
        owner: dict[str, str] = {}
        for p in self.pools:
            for s in p.symbols:
                if s in owner:
                    raise ValueError(f"symbol {s} is in pools {owner[s]} and {p.name}; a fund belongs to one pool")
                owner[s] = p.name
        for p in self.pools:
            if p.defensive is None and self.strategy.cash_policy == "defensive":
                raise ValueError(f"strategy.cash_policy is 'defensive' but pool {p.name} has no defensive fund; set "
                                 f"pools[{p.name}].defensive to a bond or money-market fund of the pool or choose "
                                 f"cash_policy pro_rata or cash")
        for p in self.pools:
            if len(p.symbols) < self.screening.min_obs:
                raise ValueError(f"pool {p.name} has {len(p.symbols)} funds but screening.min_obs is "
                                 f"{self.screening.min_obs}: its cross-sectional rank ICs could never be computed; "
                                 + (f"add funds to pools[{p.name}].symbols or lower screening.min_obs to "
                                    f"{len(p.symbols)}" if len(p.symbols) >= 3 else
                                    f"a pool needs at least 3 funds for the factor screen; add funds to "
                                    f"pools[{p.name}].symbols"))
        total = sum(p.summary_weight for p in self.pools)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"pool summary weights must add up to 1, got {total:g}")
        return self

    def pool(self, name: str) -> PoolConfig:
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(f"no pool named {name!r}; pools: {[p.name for p in self.pools]}")

    @property
    def pool_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.pools)

    @property
    def calendars(self) -> tuple[str, ...]:
        """The pools' calendars, in the order their first pool appears."""
        return tuple(dict.fromkeys(p.calendar for p in self.pools))

    def market(self, code: str) -> "ResolvedMarket":
        """The market of calendar ``code`` with every default filled in (``markets.<code>``, then
        :data:`MARKET_DEFAULTS`, ``backtest.lot_size`` and ``orchestration.data_delay_minutes``)."""
        given = self.markets.get(code, MarketConfig())
        known = MARKET_DEFAULTS.get(code, {})
        lot = given.lot_size or known.get("lot_size", self.backtest.lot_size)
        delay = given.data_delay_minutes
        return ResolvedMarket(code=code, calendar_start=given.calendar_start, lot_size=int(lot),  # type: ignore[arg-type]
                              currency=given.currency or known.get("currency"),  # type: ignore[arg-type]
                              data_delay_minutes=self.orchestration.data_delay_minutes if delay is None else delay)

    def pool_currency(self, name: str) -> str:
        """The currency of pool ``name``'s prices: ``pools[].currency``, else its market's."""
        pool = self.pool(name)
        return pool.currency or self.market(pool.calendar).currency  # type: ignore[return-value]

    @model_validator(mode="after")
    def _markets_known(self) -> "PlatformConfig":
        import exchange_calendars as xcals

        names = set(xcals.get_calendar_names(include_aliases=True))
        unknown = sorted(set(self.markets) - names)
        if unknown:
            raise ValueError(f"markets names unknown exchange calendars {unknown}; use exchange_calendars codes such "
                             f"as XSHG or XNYS")
        main = self.orchestration.calendar
        if main is not None and main not in self.calendars:
            raise ValueError(f"orchestration.calendar {main!r} is not the calendar of any pool (pools use "
                             f"{list(self.calendars)}); set it to one of them or leave it out")
        for p in self.pools:
            if p.currency is None and self.market(p.calendar).currency is None:
                raise ValueError(f"pool {p.name} trades on {p.calendar}, whose currency is not known; set "
                                 f"pools[{p.name}].currency or markets.{p.calendar}.currency (e.g. USD)")
        return self


@dataclass(frozen=True)
class ResolvedMarket:
    """A market's settings with the defaults filled in (:meth:`PlatformConfig.market`)."""

    code: str
    calendar_start: dt.date
    lot_size: int
    currency: str | None
    data_delay_minutes: int
