"""The factor set: every factor's name, family, windows, expected direction and history needs.

Factors are families x windows. Each entry names a formula of :mod:`.formulas` and its parameters;
``min_history`` (bars a fund needs before the factor has a value) and ``lookback`` (bars that
reproduce a value bit for bit) are derived from the formula itself (symbolic evaluation, see
:mod:`.graph`), never typed by hand. Cross-sectional factors (family ``cross_section``) transform a
base factor across the funds of the pool at each session; they inherit the base's history needs.

``direction`` is the sign of the relation to forward returns a researcher expects before looking at
data (+1: higher is better, -1: lower is better); screening measures the real one.

:func:`render_markdown` writes ``docs/factors.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from rotation_platform.errors import RotationError
from rotation_platform.factors import formulas as fm
from rotation_platform.factors.graph import EWM_TOLERANCE, Context, Term

__all__ = [
    "FACTOR_SET_VERSION",
    "FAMILIES",
    "REGISTRY",
    "AMOUNT_FACTORS",
    "FactorError",
    "FactorSpec",
    "families",
    "get",
    "select_factors",
    "render_markdown",
]

#: Version of the factor set; bump it whenever a definition, window or the NaN rule changes.
FACTOR_SET_VERSION = "1"


class FactorError(RotationError):
    """A factor request cannot be served: unknown name, family or set version, bad lag or input."""


@dataclass(frozen=True)
class FactorSpec:
    """One registered factor.

    ``kind`` / ``params``: the formula's name in :mod:`.formulas` and its arguments (for
    cross-sectional factors ``kind`` is ``cs_rank`` or ``cs_z`` and ``base`` the transformed factor).
    """

    name: str
    family: str
    windows: tuple[int, ...]
    direction: Literal[1, -1]
    description: str
    min_history: int = 0
    lookback: int = 0
    requires: tuple[str, ...] = ()
    formula: Callable[[Context], Term] | None = field(default=None, repr=False, compare=False)
    transform: Literal["rank", "zscore"] | None = None
    base: str | None = None
    kind: str = ""
    params: tuple[object, ...] = ()

    @property
    def cross_sectional(self) -> bool:
        return self.transform is not None

    def term(self, ctx: Context) -> Term:
        """The factor's formula evaluated in ``ctx`` (time-series factors only)."""
        if self.formula is None:
            raise FactorError(f"factor {self.name!r} is cross-sectional; it has no per-fund formula")
        return self.formula(ctx)


FAMILIES: Mapping[str, str] = MappingProxyType({
    "momentum": "Returns over 5-250 sessions, momentum skipping the last month, acceleration",
    "risk_adjusted": "Mean over standard deviation of daily log returns",
    "moving_average": "Distance from simple and exponential moving averages, average crossovers",
    "macd": "MACD line, signal and histogram over the price",
    "rsi": "Wilder's relative strength index",
    "stochastic": "Stochastic oscillator / KDJ (slow K, D and J)",
    "cci": "Commodity Channel Index",
    "williams_r": "Williams %R",
    "aroon": "Aroon oscillator",
    "bollinger": "Bollinger %B and band width",
    "volatility": "Close-to-close, Parkinson and Garman-Klass volatility; short/long volatility ratio",
    "atr": "Average true range over the close (Wilder and simple)",
    "downside": "Downside semi-deviation",
    "moments": "Skewness and excess kurtosis of daily log returns",
    "drawdown": "Maximum drawdown within the window",
    "range_position": "Distance from the rolling high and low",
    "trend": "Slope and R^2 of log price on time, and their product",
    "volume": "Volume and turnover ratios, turnover level and variability",
    "obv": "Slope of on-balance volume",
    "liquidity": "Amihud illiquidity",
    "price_volume": "Price-volume and return-volume correlation",
    "intraday": "Intraday and overnight returns, gaps, range and close location",
    "distribution": "Share of up days, best and worst day",
    "cross_section": "Rank and z-score within the pool at each session",
    "premium": "Premium of the price over NAV (only when NAV is given)",
})


# --------------------------------------------------------------------------------------- declarations
def _bind(fn: Callable[..., Term], *params: object) -> Callable[[Context], Term]:
    def formula(ctx: Context) -> Term:
        return fn(ctx, *params)

    formula.__qualname__ = f"{fn.__name__}{params}"
    formula.__doc__ = fn.__doc__
    return formula


#: One-line definitions, formatted with the formula's parameters.
_TEXT: Mapping[str, str] = MappingProxyType({
    "roc": "Simple return over {0} bars (TA-Lib ROCP)",
    "mom_skip": "Return from {0} bars ago to {1} bars ago",
    "mom_accel": "Return over the last {0} bars minus the return over the {0} bars before",
    "ret_sharpe": "Mean / std of daily log returns over {0} bars, annualised",
    "ma_dist": "Price / SMA({0}) - 1",
    "ema_dist": "Price / EMA({0}) - 1",
    "ma_cross": "SMA({0}) / SMA({1}) - 1",
    "macd_line": "MACD line EMA({0}) - EMA({1}), over the price",
    "macd_signal": "MACD({0}, {1}) signal line EMA({2}), over the price",
    "macd_hist": "MACD({0}, {1}, {2}) histogram, over the price",
    "rsi": "Wilder RSI({0}) of the price (TA-Lib RSI), 0..100",
    "stoch_k": "Slow %K: SMA({1}) of fast %K({0}) (TA-Lib STOCH), 0..100",
    "stoch_d": "Slow %D: SMA({1}) of slow %K, fast %K({0}) (TA-Lib STOCH)",
    "stoch_j": "KDJ J line 3K - 2D of the stochastic({0}, {1}, {1})",
    "willr": "Williams %R({0}) (TA-Lib WILLR), -100..0",
    "cci": "CCI({0}) of the typical price (TA-Lib CCI)",
    "aroonosc": "Aroon oscillator({0}) (TA-Lib AROONOSC), -100..100",
    "boll_pctb": "Bollinger %B, SMA({0}) +- {1} population std (TA-Lib BBANDS)",
    "boll_width": "Bollinger band width over the SMA, SMA({0}) +- {1} std",
    "vol_cc": "Close-to-close volatility of log returns over {0} bars, annualised",
    "vol_parkinson": "Parkinson high-low volatility over {0} bars, annualised",
    "vol_gk": "Garman-Klass OHLC volatility over {0} bars, annualised",
    "vol_regime": "Close-to-close volatility over {0} bars / over {1} bars",
    "natr": "Wilder ATR({0}) / close (TA-Lib NATR / 100)",
    "atr_pct": "SMA({0}) of the true range / close",
    "downside_vol": "Downside semi-deviation of log returns over {0} bars, annualised",
    "skew": "Skewness of log returns over {0} bars (bias-corrected)",
    "kurt": "Excess kurtosis of log returns over {0} bars (bias-corrected)",
    "maxdd": "Maximum drawdown of the price within {0} bars (<= 0)",
    "dist_high": "Price / highest high of {0} bars - 1",
    "dist_low": "Price / lowest low of {0} bars - 1",
    "trend_slope": "Least-squares slope of log price on time over {0} bars, x 252",
    "trend_r2": "R^2 of log price on time over {0} bars",
    "trend_score": "Annualised log-price slope x R^2 over {0} bars",
    "volume_ratio": "Mean volume over {0} bars / over {1} bars",
    "amount_ratio": "Mean turnover over {0} bars / over {1} bars",
    "log_amount": "Log of the mean daily turnover (amount, the pool's currency) over {0} bars",
    "amount_cv": "Coefficient of variation of daily turnover over {0} bars",
    "obv_slope": "Least-squares slope of OBV over {0} bars / mean volume",
    "amihud": "Amihud illiquidity over {0} bars: mean abs(return) / turnover per 100m of the pool's currency",
    "pv_corr": "Correlation of price and volume over {0} bars",
    "rv_corr": "Correlation of log return and volume over {0} bars",
    "intraday_ret": "Mean open-to-close log return over {0} bars",
    "overnight_ret": "Mean overnight gap log(open / previous close) over {0} bars",
    "hl_range": "Mean intraday range log(high / low) over {0} bars",
    "clv": "Mean close location value ((c - l) - (h - c)) / (h - l) over {0} bars",
    "gap_abs": "Mean absolute overnight gap over {0} bars",
    "up_ratio": "Share of bars with a positive return over {0} bars",
    "ret_max": "Best single-bar return over {0} bars",
    "ret_min": "Worst single-bar return over {0} bars",
    "premium": "Latest known premium of the close over NAV",
    "premium_mean": "Mean premium over NAV over {0} bars",
    "premium_z": "Premium z-score against its mean and std over {0} bars",
})


_DECLARED: list[FactorSpec] = []


def _add(name: str, family: str, windows: Sequence[int], direction: Literal[1, -1],
         fn: Callable[..., Term], *params: object, requires: tuple[str, ...] = ()) -> None:
    text = _TEXT[fn.__name__].format(*params)
    _DECLARED.append(FactorSpec(name, family, tuple(int(w) for w in windows), direction, text,
                                requires=requires, formula=_bind(fn, *params), kind=fn.__name__,
                                params=tuple(params)))


def _declare() -> None:
    for w in (5, 10, 20, 40, 60, 120, 250):
        _add(f"roc_{w}", "momentum", (w,), 1, fm.roc, w)
    for w in (60, 120, 250):
        _add(f"mom_skip_{w}", "momentum", (w, 20), 1, fm.mom_skip, w, 20)
    for w in (20, 60, 120):
        _add(f"mom_accel_{w}", "momentum", (w,), 1, fm.mom_accel, w)
    for w in (20, 60, 120, 250):
        _add(f"ret_sharpe_{w}", "risk_adjusted", (w,), 1, fm.ret_sharpe, w)

    for w in (5, 10, 20, 40, 60, 120, 250):
        _add(f"ma_dist_{w}", "moving_average", (w,), 1, fm.ma_dist, w)
    for w in (5, 10, 20):
        _add(f"ema_dist_{w}", "moving_average", (w,), 1, fm.ema_dist, w)
    for s, lg in ((5, 20), (10, 60), (20, 120), (60, 250)):
        _add(f"ma_cross_{s}_{lg}", "moving_average", (s, lg), 1, fm.ma_cross, s, lg)
    for f, s, g in ((12, 26, 9), (6, 13, 5)):
        _add(f"macd_line_{f}_{s}_{g}", "macd", (f, s, g), 1, fm.macd_line, f, s, g)
        _add(f"macd_signal_{f}_{s}_{g}", "macd", (f, s, g), 1, fm.macd_signal, f, s, g)
        _add(f"macd_hist_{f}_{s}_{g}", "macd", (f, s, g), 1, fm.macd_hist, f, s, g)

    for w in (6, 9, 14):
        _add(f"rsi_{w}", "rsi", (w,), 1, fm.rsi, w)
    for n in (9, 14, 20):
        _add(f"stoch_k_{n}", "stochastic", (n, 3), 1, fm.stoch_k, n, 3)
        _add(f"stoch_d_{n}", "stochastic", (n, 3, 3), 1, fm.stoch_d, n, 3)
        _add(f"stoch_j_{n}", "stochastic", (n, 3, 3), 1, fm.stoch_j, n, 3)
    for w in (10, 14, 20, 40, 60):
        _add(f"cci_{w}", "cci", (w,), 1, fm.cci, w)
    for w in (10, 14, 20, 60, 120):
        _add(f"willr_{w}", "williams_r", (w,), 1, fm.willr, w)
    for w in (14, 25, 60):
        _add(f"aroonosc_{w}", "aroon", (w,), 1, fm.aroonosc, w)
    for w in (10, 20, 40, 60):
        _add(f"boll_pctb_{w}", "bollinger", (w,), 1, fm.boll_pctb, w, 2.0)
        _add(f"boll_width_{w}", "bollinger", (w,), -1, fm.boll_width, w, 2.0)

    for w in (5, 10, 20, 40, 60, 120, 250):
        _add(f"vol_cc_{w}", "volatility", (w,), -1, fm.vol_cc, w)
    for w in (5, 10, 20, 60, 120):
        _add(f"vol_parkinson_{w}", "volatility", (w,), -1, fm.vol_parkinson, w)
    for w in (5, 10, 20, 60, 120):
        _add(f"vol_gk_{w}", "volatility", (w,), -1, fm.vol_gk, w)
    for s, lg in ((5, 60), (20, 120), (20, 250)):
        _add(f"vol_regime_{s}_{lg}", "volatility", (s, lg), -1, fm.vol_regime, s, lg)
    for w in (5, 10, 14):
        _add(f"natr_{w}", "atr", (w,), -1, fm.natr, w)
    for w in (20, 60):
        _add(f"atr_pct_{w}", "atr", (w,), -1, fm.atr_pct, w)
    for w in (20, 60, 120, 250):
        _add(f"downside_vol_{w}", "downside", (w,), -1, fm.downside_vol, w)
    for w in (20, 60, 120, 250):
        _add(f"skew_{w}", "moments", (w,), -1, fm.skew, w)
    for w in (20, 60, 120, 250):
        _add(f"kurt_{w}", "moments", (w,), -1, fm.kurt, w)

    for w in (20, 60, 120, 250):
        _add(f"maxdd_{w}", "drawdown", (w,), 1, fm.maxdd, w)
    for w in (20, 60, 120, 250):
        _add(f"dist_high_{w}", "range_position", (w,), 1, fm.dist_high, w)
    for w in (20, 60, 120, 250):
        _add(f"dist_low_{w}", "range_position", (w,), 1, fm.dist_low, w)
    for w in (10, 20, 60, 120, 250):
        _add(f"trend_slope_{w}", "trend", (w,), 1, fm.trend_slope, w)
    for w in (10, 20, 60, 120, 250):
        _add(f"trend_r2_{w}", "trend", (w,), 1, fm.trend_r2, w)
    for w in (20, 60, 120, 250):
        _add(f"trend_score_{w}", "trend", (w,), 1, fm.trend_score, w)

    for s, lg in ((1, 20), (5, 20), (5, 60), (20, 120), (20, 250)):
        _add(f"volume_ratio_{s}_{lg}", "volume", (s, lg), 1, fm.volume_ratio, s, lg)
    for s, lg in ((5, 20), (5, 60), (20, 120), (20, 250)):
        _add(f"amount_ratio_{s}_{lg}", "volume", (s, lg), 1, fm.amount_ratio, s, lg)
    for w in (5, 20, 60, 250):
        _add(f"log_amount_{w}", "volume", (w,), 1, fm.log_amount, w)
    for w in (20, 60):
        _add(f"amount_cv_{w}", "volume", (w,), -1, fm.amount_cv, w)
    for w in (10, 20, 60, 120):
        _add(f"obv_slope_{w}", "obv", (w,), 1, fm.obv_slope, w)
    for w in (5, 20, 60, 120, 250):
        _add(f"amihud_{w}", "liquidity", (w,), -1, fm.amihud, w)
    for w in (10, 20, 60):
        _add(f"pv_corr_{w}", "price_volume", (w,), -1, fm.pv_corr, w)
    for w in (10, 20, 60):
        _add(f"rv_corr_{w}", "price_volume", (w,), 1, fm.rv_corr, w)

    for w in (5, 20, 60):
        _add(f"intraday_ret_{w}", "intraday", (w,), 1, fm.intraday_ret, w)
    for w in (5, 20, 60):
        _add(f"overnight_ret_{w}", "intraday", (w,), -1, fm.overnight_ret, w)
    for w in (5, 20, 60):
        _add(f"hl_range_{w}", "intraday", (w,), -1, fm.hl_range, w)
    for w in (5, 20, 60):
        _add(f"clv_{w}", "intraday", (w,), 1, fm.clv, w)
    for w in (20, 60):
        _add(f"gap_abs_{w}", "intraday", (w,), -1, fm.gap_abs, w)
    for w in (20, 60, 120):
        _add(f"up_ratio_{w}", "distribution", (w,), 1, fm.up_ratio, w)
    for w in (20, 60):
        _add(f"ret_max_{w}", "distribution", (w,), -1, fm.ret_max, w)
    for w in (20, 60):
        _add(f"ret_min_{w}", "distribution", (w,), 1, fm.ret_min, w)

    nav = ("nav",)
    _add("premium", "premium", (1,), -1, fm.premium, requires=nav)
    for w in (5, 20):
        _add(f"premium_mean_{w}", "premium", (w,), -1, fm.premium_mean, w, requires=nav)
    _add("premium_z_60", "premium", (60,), -1, fm.premium_z, 60, requires=nav)


#: Time-series factors the cross-sectional family transforms.
CROSS_SECTION_BASES: tuple[str, ...] = (
    "roc_5", "roc_20", "roc_60", "roc_120", "roc_250", "ma_dist_20", "ma_dist_60", "vol_cc_20",
    "vol_cc_60", "rsi_14", "trend_score_60", "amihud_20", "maxdd_60", "ret_sharpe_60",
)


def _build() -> dict[str, FactorSpec]:
    _declare()
    specs: dict[str, FactorSpec] = {}
    for spec in _DECLARED:
        term = spec.term(Context(None))
        specs[spec.name] = FactorSpec(spec.name, spec.family, spec.windows, spec.direction,
                                      spec.description, term.min_history, term.lookback,
                                      spec.requires, spec.formula, kind=spec.kind, params=spec.params)
    for transform, prefix, label in (("rank", "cs_rank", "Percentile rank within the pool of"),
                                     ("zscore", "cs_z", "Z-score within the pool of")):
        for base_name in CROSS_SECTION_BASES:
            b = specs[base_name]
            name = f"{prefix}_{base_name}"
            specs[name] = FactorSpec(name, "cross_section", b.windows, b.direction,
                                     f"{label} {base_name}", b.min_history, b.lookback, b.requires,
                                     None, transform, base_name, kind=prefix)  # type: ignore[arg-type]
    _DECLARED.clear()
    unknown = {s.family for s in specs.values()} - set(FAMILIES)
    if unknown:
        raise FactorError(f"factor families without a description: {sorted(unknown)}")
    return specs


#: Every registered factor by name, in registry order.
REGISTRY: Mapping[str, FactorSpec] = MappingProxyType(_build())


def families() -> tuple[str, ...]:
    """Family names in registry order."""
    return tuple(dict.fromkeys(s.family for s in REGISTRY.values()))


def _reads_amount(spec: FactorSpec) -> bool:
    """Whether a time-series factor's formula reads the ``amount`` (turnover) field."""
    ctx = Context(None)
    spec.term(ctx)
    return ("field", "amount") in ctx.touched


_AMOUNT_SERIES = {s.name for s in REGISTRY.values() if not s.cross_sectional and _reads_amount(s)}
#: Factors that read ``amount`` (turnover), directly or through their cross-sectional base, in registry order:
#: ``amount_ratio_*``, ``log_amount_*``, ``amount_cv_*``, ``amihud_*`` and the ranks / z-scores of
#: ``amihud_20``. Without an amount they have no value; ``data.amount: drop_factors`` leaves them out.
AMOUNT_FACTORS: tuple[str, ...] = tuple(s.name for s in REGISTRY.values()
                                        if s.name in _AMOUNT_SERIES or s.base in _AMOUNT_SERIES)


def get(name: str) -> FactorSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise FactorError(f"unknown factor {name!r}; see docs/factors.md for the registered names") from None


def select_factors(families: Iterable[str] | Literal["all"] = "all", *, nav: bool = False,
                   names: Iterable[str] | None = None) -> tuple[FactorSpec, ...]:
    """The factors of a request, in registry order.

    ``families``: ``"all"`` or family names (``FactorConfig.families``); ``names``: restrict further to
    these factors; ``nav``: include factors that need NAV data (without it they are left out).
    """
    if families == "all":
        fams = set(FAMILIES)
    else:
        fams = set(families)
        unknown = sorted(fams - set(FAMILIES))
        if unknown:
            raise FactorError(f"unknown factor families {unknown}; known: {list(FAMILIES)}")
    wanted = None
    if names is not None:
        wanted = set(names)
        for n in wanted:
            get(n)
    out = []
    for spec in REGISTRY.values():
        if spec.family not in fams or (wanted is not None and spec.name not in wanted):
            continue
        if "nav" in spec.requires and not nav:
            if wanted is not None:
                raise FactorError(f"factor {spec.name!r} needs NAV data; pass nav=")
            continue
        out.append(spec)
    if not out:
        raise FactorError("the request selects no factor (check families / names / nav)")
    return tuple(out)


# --------------------------------------------------------------------------------------- docs
def render_markdown() -> str:
    """The text of ``docs/factors.md``: rules, families and one row per registered factor."""
    specs = list(REGISTRY.values())
    core = [s for s in specs if not s.requires]
    lines = [
        "# Factor set",
        "",
        "Generated by `rotation_platform.factors.registry.render_markdown()`; do not edit by hand "
        "(a test compares this file with the generated text).",
        "",
        f"Factor set version **{FACTOR_SET_VERSION}**: {len(core)} factors in "
        f"{len({s.family for s in core})} families for every pool, plus {len(specs) - len(core)} "
        "premium factors when NAV data is given.",
        "",
        "## Rules",
        "",
        "* **Timing.** A factor's raw value at session *t* uses data through the close of *t*; the "
        "engine then shifts every factor by `lag` sessions (>= 1, NaN fill, no wrap-around), so the "
        "published value at *t* uses data through *t - lag* only.",
        "* **Bars.** A fund's bar is a session where all of open, high, low, close, volume and amount "
        "are finite. Windows count the fund's own bars: a suspension is skipped, not a gap. A session "
        "without a bar has no raw value.",
        "* **NaN.** A window that is incomplete or contains a non-finite intermediate gives NaN; so "
        "does an undefined ratio (zero denominator). A fund listed late is NaN until it has "
        "`min history` bars.",
        "* **History.** `min history` is the bars a fund needs before the first value; `lookback` the "
        "bars that reproduce a value bit for bit (running sums are re-anchored every window). "
        "`compute_cross_section` reads the largest lookback plus the lag.",
        f"* **EMAs** use TA-Lib's constants with finite memory: an EMA keeps the bars where its weight, "
        f"relative to TA-Lib's seeded recursion, is above {EWM_TOLERANCE:g}; its `min history` is that "
        "memory.",
        "* **Direction** is the expected sign of the relation to forward returns "
        "(+1 higher is better, -1 lower is better).",
        "",
        "## Families",
        "",
        "| family | factors | description |",
        "|---|---:|---|",
    ]
    for fam, text in FAMILIES.items():
        n = sum(1 for s in specs if s.family == fam)
        lines.append(f"| {fam} | {n} | {text} |")
    lines += [
        "",
        "## Factors",
        "",
        "| name | family | window(s) | direction | min history | lookback | definition |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for s in specs:
        wins = ", ".join(str(w) for w in s.windows)
        sign = "+1" if s.direction > 0 else "-1"
        lines.append(f"| `{s.name}` | {s.family} | {wins} | {sign} | {s.min_history} | {s.lookback} | "
                     f"{s.description} |")
    return "\n".join(lines) + "\n"
