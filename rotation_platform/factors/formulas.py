"""Factor formulas, written in the :class:`~rotation_platform.factors.graph.Context` vocabulary.

Every public function here takes a context and the factor's parameters and returns a
:class:`~rotation_platform.factors.graph.Term`; :mod:`rotation_platform.factors.registry` names and
registers them. Conventions:

* ``p`` is the configured price field (``close`` by default); OHLC indicators (stochastic, Williams
  %R, CCI, ATR, range estimators) use the ``high``, ``low``, ``close`` and ``open`` fields themselves.
* ``r`` is the log return ``log(p / p_prev)`` and ``rs`` the simple return between consecutive bars
  of the fund (a suspension is not a bar, so the return spans it).
* EMAs (EMA distance, MACD, RSI and ATR smoothing) use TA-Lib's smoothing constants (``2 / (n + 1)``;
  Wilder's ``1 / n``) with finite memory (:func:`~rotation_platform.factors.graph.ewm_window`).
* Volatilities are annualised with 252 sessions; standard deviations are sample (``ddof=1``) except
  in Bollinger bands (population, as TA-Lib).
* Ratios with a zero denominator and other undefined values are NaN (the engine turns every
  non-finite result into NaN).
"""

from __future__ import annotations

import numpy as np

from rotation_platform.factors.graph import Context, Term

__all__ = [
    "ANNUALISATION",
    "log_return", "simple_return", "sma", "ema", "wilder", "comoment", "variance", "correlation",
    "roc", "mom_skip", "mom_accel", "ret_sharpe",
    "ma_dist", "ema_dist", "ma_cross", "macd_line", "macd_signal", "macd_hist",
    "rsi", "stoch_k", "stoch_d", "stoch_j", "willr", "cci", "aroonosc", "boll_pctb", "boll_width",
    "vol_cc", "vol_parkinson", "vol_gk", "vol_regime", "natr", "atr_pct", "downside_vol",
    "skew", "kurt", "maxdd", "dist_high", "dist_low",
    "trend_slope", "trend_r2", "trend_score",
    "volume_ratio", "amount_ratio", "log_amount", "amount_cv", "obv_slope", "amihud",
    "pv_corr", "rv_corr",
    "intraday_ret", "overnight_ret", "hl_range", "clv", "gap_abs",
    "up_ratio", "ret_max", "ret_min",
    "premium", "premium_mean", "premium_z",
]

ANNUALISATION = 252.0
_LN2 = float(np.log(2.0))


# --------------------------------------------------------------------------------------- element-wise
def _ratio_m1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a / b - 1.0


def _log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.log(a / b)


def _log(a: np.ndarray) -> np.ndarray:
    return np.log(a)


def _exp_m1(a: np.ndarray) -> np.ndarray:
    return np.exp(a) - 1.0


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a / b


def _div_c(a: np.ndarray, c: float) -> np.ndarray:
    return a / c


def _sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a - b


def _mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a * b


def _square(a: np.ndarray) -> np.ndarray:
    return a * a


def _abs(a: np.ndarray) -> np.ndarray:
    return np.abs(a)


def _pos(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0.0)  # NaN stays NaN


def _neg_part(a: np.ndarray) -> np.ndarray:
    return np.maximum(-a, 0.0)


def _min0(a: np.ndarray) -> np.ndarray:
    return np.minimum(a, 0.0)


def _is_up(a: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(a), np.nan, (a > 0.0).astype(np.float64))


def _variance(comoment: np.ndarray, n: float, ddof: float) -> np.ndarray:
    """``sum((x - mean)^2) / (n - ddof)``, floored at 0 against rounding."""
    return np.maximum(comoment / (n - ddof), 0.0)


def _annual_vol(var: np.ndarray) -> np.ndarray:
    return np.sqrt(var * ANNUALISATION)


def _sharpe(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return mean / np.sqrt(var) * np.sqrt(ANNUALISATION)


def _correlation(cxy: np.ndarray, cxx: np.ndarray, cyy: np.ndarray) -> np.ndarray:
    den = cxx * cyy
    return np.where(den > 0.0, cxy / np.sqrt(den), np.nan)


def _rsi(gain: np.ndarray, loss: np.ndarray) -> np.ndarray:
    return 100.0 * gain / (gain + loss)


def _stoch_fastk(c: np.ndarray, hh: np.ndarray, ll: np.ndarray) -> np.ndarray:
    return (c - ll) / (hh - ll) * 100.0


def _willr(c: np.ndarray, hh: np.ndarray, ll: np.ndarray) -> np.ndarray:
    return (hh - c) / (hh - ll) * -100.0


def _stoch_j(k: np.ndarray, d: np.ndarray) -> np.ndarray:
    return 3.0 * k - 2.0 * d


def _typical(h: np.ndarray, low: np.ndarray, c: np.ndarray) -> np.ndarray:
    return (h + low + c) / 3.0


def _cci(tp: np.ndarray, mean: np.ndarray, mad: np.ndarray) -> np.ndarray:
    return (tp - mean) / (0.015 * mad)


def _aroonosc(age_low: np.ndarray, age_high: np.ndarray, n: float) -> np.ndarray:
    return (age_low - age_high) * (100.0 / n)


def _boll_std(comoment: np.ndarray, n: float) -> np.ndarray:
    return np.sqrt(np.maximum(comoment / n, 0.0))


def _boll_pctb(p: np.ndarray, mean: np.ndarray, std: np.ndarray, k: float) -> np.ndarray:
    upper = mean + k * std
    lower = mean - k * std
    return (p - lower) / (upper - lower)


def _boll_width(mean: np.ndarray, std: np.ndarray, k: float) -> np.ndarray:
    return (mean + k * std - (mean - k * std)) / mean


def _true_range(h: np.ndarray, low: np.ndarray, c_prev: np.ndarray) -> np.ndarray:
    return np.maximum(h, c_prev) - np.minimum(low, c_prev)


def _gk_term(h: np.ndarray, low: np.ndarray, o: np.ndarray, c: np.ndarray) -> np.ndarray:
    hl = np.log(h / low)
    co = np.log(c / o)
    return 0.5 * hl * hl - (2.0 * _LN2 - 1.0) * co * co


def _parkinson_vol(mean_sq: np.ndarray) -> np.ndarray:
    return np.sqrt(mean_sq / (4.0 * _LN2) * ANNUALISATION)


def _gk_vol(mean_term: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(mean_term, 0.0) * ANNUALISATION)


def _skew(s1: np.ndarray, s2: np.ndarray, s3: np.ndarray, n: float) -> np.ndarray:
    a = s1 / n
    b = s2 / n - a * a
    c = s3 / n - a * a * a - 3.0 * a * b
    return np.where(b > 0.0, np.sqrt(n * (n - 1.0)) * c / ((n - 2.0) * b * np.sqrt(b)), np.nan)


def _kurt(s1: np.ndarray, s2: np.ndarray, s3: np.ndarray, s4: np.ndarray, n: float) -> np.ndarray:
    a = s1 / n
    b = s2 / n - a * a
    c = s3 / n - a * a * a - 3.0 * a * b
    d = s4 / n - a * a * a * a - 6.0 * b * a * a - 4.0 * c * a
    k = (n * n - 1.0) * d / (b * b) - 3.0 * (n - 1.0) ** 2
    return np.where(b > 0.0, k / ((n - 2.0) * (n - 3.0)), np.nan)


def _cube(a: np.ndarray) -> np.ndarray:
    return a * a * a


def _fourth(a: np.ndarray) -> np.ndarray:
    sq = a * a
    return sq * sq


def _trend_sxy(s: np.ndarray, lin: np.ndarray, n: float) -> np.ndarray:
    """Least-squares ``sum((x - xbar) * y)`` with ``x`` the bar number (oldest 0) from age sums."""
    return (n - 1.0) / 2.0 * s - lin


def _slope(sxy: np.ndarray, n: float) -> np.ndarray:
    return sxy / (n * (n * n - 1.0) / 12.0) * ANNUALISATION


def _r2(sxy: np.ndarray, syy: np.ndarray, n: float) -> np.ndarray:
    sxx = n * (n * n - 1.0) / 12.0
    return np.where(syy > 0.0, sxy * sxy / (sxx * syy), np.nan)


def _signed_volume(c: np.ndarray, c_prev: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.sign(c - c_prev) * v


def _obv_sxy(s: np.ndarray, lin: np.ndarray, quad: np.ndarray, n: float) -> np.ndarray:
    """Least-squares ``sum((x - xbar) * OBV)`` over the window from the OBV increments' age sums."""
    return ((n - 1.0) * s + (n - 2.0) * lin - quad) / 2.0


def _obv_slope(sxy: np.ndarray, mean_volume: np.ndarray, n: float) -> np.ndarray:
    return sxy / (n * (n * n - 1.0) / 12.0) / mean_volume


def _illiquidity(rs: np.ndarray, amount: np.ndarray) -> np.ndarray:
    return np.abs(rs) / amount * 1e8


def _clv(h: np.ndarray, low: np.ndarray, c: np.ndarray) -> np.ndarray:
    rng = h - low
    return np.where(rng > 0.0, ((c - low) - (h - c)) / rng, np.where(np.isnan(rng), np.nan, 0.0))


def _cv(var: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return np.sqrt(var) / mean


def _zscore(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return (x - mean) / np.sqrt(var)


# --------------------------------------------------------------------------------------- building blocks
def log_return(ctx: Context) -> Term:
    """``log(p / p_prev)``."""
    p = ctx.price()
    return ctx.map(_log_ratio, p, ctx.prev(p))


def simple_return(ctx: Context) -> Term:
    """``p / p_prev - 1``."""
    p = ctx.price()
    return ctx.map(_ratio_m1, p, ctx.prev(p))


def sma(ctx: Context, x: Term, window: int) -> Term:
    """Simple moving average (sum / n, as TA-Lib's SMA)."""
    return ctx.map(_div_c, ctx.rsum(x, window), consts=(float(window),))


def ema(ctx: Context, x: Term, span: int) -> Term:
    """EMA with TA-Lib's ``k = 2 / (span + 1)``."""
    return ctx.ewm(x, 2.0 / (span + 1.0), span)


def wilder(ctx: Context, x: Term, period: int) -> Term:
    """Wilder's smoothing (``k = 1 / period``), as in TA-Lib's RSI and ATR."""
    return ctx.ewm(x, 1.0 / period, period)


def comoment(ctx: Context, x: Term, window: int) -> Term:
    """Rolling sum of squared deviations from the window mean."""
    _, _, c = ctx.cov(x, x, window)
    return c


def variance(ctx: Context, x: Term, window: int, ddof: int = 1) -> Term:
    """Rolling variance (``ddof=1``: sample)."""
    return ctx.map(_variance, comoment(ctx, x, window), consts=(float(window), float(ddof)))


def correlation(ctx: Context, x: Term, y: Term, window: int) -> Term:
    """Rolling Pearson correlation."""
    _, _, cxy = ctx.cov(x, y, window)
    return ctx.map(_correlation, cxy, comoment(ctx, x, window), comoment(ctx, y, window))


def _hh_ll(ctx: Context, window: int) -> tuple[Term, Term]:
    hh, _ = ctx.rmax(ctx.field("high"), window)
    ll, _ = ctx.rmin(ctx.field("low"), window)
    return hh, ll


# --------------------------------------------------------------------------------------- momentum
def roc(ctx: Context, window: int) -> Term:
    """Simple return over ``window`` bars (TA-Lib ROCP)."""
    p = ctx.price()
    return ctx.map(_ratio_m1, p, ctx.prev(p, window))


def mom_skip(ctx: Context, window: int, skip: int) -> Term:
    """Return from ``window`` bars ago to ``skip`` bars ago (momentum without the latest ``skip``)."""
    p = ctx.price()
    return ctx.map(_ratio_m1, ctx.prev(p, skip), ctx.prev(p, window))


def mom_accel(ctx: Context, window: int) -> Term:
    """Return over the last ``window`` bars minus the return over the ``window`` bars before."""
    r = roc(ctx, window)
    return ctx.map(_sub, r, ctx.prev(r, window))


def ret_sharpe(ctx: Context, window: int) -> Term:
    """Annualised mean / std of log returns over the window."""
    r = log_return(ctx)
    return ctx.map(_sharpe, sma(ctx, r, window), variance(ctx, r, window))


# --------------------------------------------------------------------------------------- averages
def ma_dist(ctx: Context, window: int) -> Term:
    """``p / SMA(p) - 1``."""
    p = ctx.price()
    return ctx.map(_ratio_m1, p, sma(ctx, p, window))


def ema_dist(ctx: Context, span: int) -> Term:
    """``p / EMA(p) - 1``."""
    p = ctx.price()
    return ctx.map(_ratio_m1, p, ema(ctx, p, span))


def ma_cross(ctx: Context, short: int, long: int) -> Term:
    """``SMA(short) / SMA(long) - 1``."""
    p = ctx.price()
    return ctx.map(_ratio_m1, sma(ctx, p, short), sma(ctx, p, long))


def _macd(ctx: Context, fast: int, slow: int, signal: int) -> tuple[Term, Term]:
    p = ctx.price()
    line = ctx.map(_sub, ema(ctx, p, fast), ema(ctx, p, slow))
    return line, ema(ctx, line, signal)


def macd_line(ctx: Context, fast: int, slow: int, signal: int) -> Term:
    """MACD line ``EMA(fast) - EMA(slow)`` over the price."""
    line, _ = _macd(ctx, fast, slow, signal)
    return ctx.map(_div, line, ctx.price())


def macd_signal(ctx: Context, fast: int, slow: int, signal: int) -> Term:
    """MACD signal line ``EMA(signal)`` of the MACD line, over the price."""
    _, sig = _macd(ctx, fast, slow, signal)
    return ctx.map(_div, sig, ctx.price())


def macd_hist(ctx: Context, fast: int, slow: int, signal: int) -> Term:
    """MACD histogram (line - signal) over the price."""
    line, sig = _macd(ctx, fast, slow, signal)
    return ctx.map(_div, ctx.map(_sub, line, sig), ctx.price())


# --------------------------------------------------------------------------------------- oscillators
def rsi(ctx: Context, period: int) -> Term:
    """Wilder's RSI of the price (TA-Lib RSI), 0..100."""
    p = ctx.price()
    d = ctx.map(_sub, p, ctx.prev(p))
    return ctx.map(_rsi, wilder(ctx, ctx.map(_pos, d), period), wilder(ctx, ctx.map(_neg_part, d), period))


def _stoch(ctx: Context, fastk: int, smooth: int) -> tuple[Term, Term]:
    hh, ll = _hh_ll(ctx, fastk)
    k_fast = ctx.map(_stoch_fastk, ctx.field("close"), hh, ll)
    k = sma(ctx, k_fast, smooth)
    return k, sma(ctx, k, smooth)


def stoch_k(ctx: Context, fastk: int, smooth: int) -> Term:
    """Slow %K: SMA(smooth) of the fast stochastic (TA-Lib STOCH slowk, SMA smoothing)."""
    k, _ = _stoch(ctx, fastk, smooth)
    return k


def stoch_d(ctx: Context, fastk: int, smooth: int) -> Term:
    """Slow %D: SMA(smooth) of slow %K (TA-Lib STOCH slowd)."""
    _, d = _stoch(ctx, fastk, smooth)
    return d


def stoch_j(ctx: Context, fastk: int, smooth: int) -> Term:
    """KDJ's J line: ``3 K - 2 D``."""
    k, d = _stoch(ctx, fastk, smooth)
    return ctx.map(_stoch_j, k, d)


def willr(ctx: Context, window: int) -> Term:
    """Williams %R (TA-Lib WILLR), -100..0."""
    hh, ll = _hh_ll(ctx, window)
    return ctx.map(_willr, ctx.field("close"), hh, ll)


def cci(ctx: Context, window: int) -> Term:
    """Commodity Channel Index on the typical price (TA-Lib CCI)."""
    tp = ctx.map(_typical, ctx.field("high"), ctx.field("low"), ctx.field("close"))
    mean = sma(ctx, tp, window)
    return ctx.map(_cci, tp, mean, ctx.meandev(tp, mean, window))


def aroonosc(ctx: Context, window: int) -> Term:
    """Aroon oscillator (TA-Lib AROONOSC): extremes over ``window + 1`` bars, -100..100."""
    _, age_high = ctx.rmax(ctx.field("high"), window + 1)
    _, age_low = ctx.rmin(ctx.field("low"), window + 1)
    return ctx.map(_aroonosc, age_low, age_high, consts=(float(window),))


def _boll(ctx: Context, window: int) -> tuple[Term, Term, Term]:
    p = ctx.price()
    std = ctx.map(_boll_std, comoment(ctx, p, window), consts=(float(window),))
    return p, sma(ctx, p, window), std


def boll_pctb(ctx: Context, window: int, k: float) -> Term:
    """Bollinger %B: position of the price between the bands ``SMA +- k * std`` (population std)."""
    p, mean, std = _boll(ctx, window)
    return ctx.map(_boll_pctb, p, mean, std, consts=(float(k),))


def boll_width(ctx: Context, window: int, k: float) -> Term:
    """Bollinger band width ``(upper - lower) / SMA``."""
    _, mean, std = _boll(ctx, window)
    return ctx.map(_boll_width, mean, std, consts=(float(k),))


# --------------------------------------------------------------------------------------- volatility
def vol_cc(ctx: Context, window: int) -> Term:
    """Annualised close-to-close volatility (sample std of log returns)."""
    return ctx.map(_annual_vol, variance(ctx, log_return(ctx), window))


def vol_parkinson(ctx: Context, window: int) -> Term:
    """Parkinson high-low volatility, annualised."""
    hl = ctx.map(_log_ratio, ctx.field("high"), ctx.field("low"))
    return ctx.map(_parkinson_vol, sma(ctx, ctx.map(_square, hl), window))


def vol_gk(ctx: Context, window: int) -> Term:
    """Garman-Klass OHLC volatility, annualised (the variance estimate floored at 0)."""
    term = ctx.map(_gk_term, ctx.field("high"), ctx.field("low"), ctx.field("open"), ctx.field("close"))
    return ctx.map(_gk_vol, sma(ctx, term, window))


def vol_regime(ctx: Context, short: int, long: int) -> Term:
    """Short over long close-to-close volatility."""
    return ctx.map(_div, vol_cc(ctx, short), vol_cc(ctx, long))


def _true_range_term(ctx: Context) -> Term:
    return ctx.map(_true_range, ctx.field("high"), ctx.field("low"), ctx.prev(ctx.field("close")))


def natr(ctx: Context, period: int) -> Term:
    """ATR (Wilder) over the close (TA-Lib NATR / 100)."""
    return ctx.map(_div, wilder(ctx, _true_range_term(ctx), period), ctx.field("close"))


def atr_pct(ctx: Context, window: int) -> Term:
    """Simple average true range over the close."""
    return ctx.map(_div, sma(ctx, _true_range_term(ctx), window), ctx.field("close"))


def downside_vol(ctx: Context, window: int) -> Term:
    """Annualised downside semi-deviation of log returns (target 0)."""
    dn = ctx.map(_min0, log_return(ctx))
    return ctx.map(_annual_vol, sma(ctx, ctx.map(_square, dn), window))


def _moment_sums(ctx: Context, x: Term, window: int, order: int) -> list[Term]:
    powers = [x, ctx.map(_square, x), ctx.map(_cube, x), ctx.map(_fourth, x)]
    return [ctx.rsum(t, window) for t in powers[:order]]


def skew(ctx: Context, window: int) -> Term:
    """Sample skewness of log returns (bias-corrected, as pandas ``rolling().skew()``)."""
    s = _moment_sums(ctx, log_return(ctx), window, 3)
    return ctx.map(_skew, *s, consts=(float(window),))


def kurt(ctx: Context, window: int) -> Term:
    """Sample excess kurtosis of log returns (bias-corrected, as pandas ``rolling().kurt()``)."""
    s = _moment_sums(ctx, log_return(ctx), window, 4)
    return ctx.map(_kurt, *s, consts=(float(window),))


# --------------------------------------------------------------------------------------- drawdown, range
def maxdd(ctx: Context, window: int) -> Term:
    """Maximum drawdown of the price within the window (``<= 0``)."""
    return ctx.map(_exp_m1, ctx.maxdd(ctx.map(_log, ctx.price()), window))


def dist_high(ctx: Context, window: int) -> Term:
    """``p / max(high over window) - 1`` (``<= 0`` for the close)."""
    hh, _ = ctx.rmax(ctx.field("high"), window)
    return ctx.map(_ratio_m1, ctx.price(), hh)


def dist_low(ctx: Context, window: int) -> Term:
    """``p / min(low over window) - 1`` (``>= 0`` for the close)."""
    ll, _ = ctx.rmin(ctx.field("low"), window)
    return ctx.map(_ratio_m1, ctx.price(), ll)


# --------------------------------------------------------------------------------------- trend
def _trend(ctx: Context, window: int) -> tuple[Term, Term, Term]:
    y = ctx.map(_log, ctx.price())
    s, lin, _ = ctx.agesum(y, window)
    sxy = ctx.map(_trend_sxy, s, lin, consts=(float(window),))
    return sxy, comoment(ctx, y, window)


def trend_slope(ctx: Context, window: int) -> Term:
    """Least-squares slope of log price on time, per session x 252."""
    sxy, _ = _trend(ctx, window)
    return ctx.map(_slope, sxy, consts=(float(window),))


def trend_r2(ctx: Context, window: int) -> Term:
    """R^2 of the least-squares fit of log price on time."""
    sxy, syy = _trend(ctx, window)
    return ctx.map(_r2, sxy, syy, consts=(float(window),))


def trend_score(ctx: Context, window: int) -> Term:
    """Annualised log slope x R^2 (trend strength weighted by its fit)."""
    return ctx.map(_mul, trend_slope(ctx, window), trend_r2(ctx, window))


# --------------------------------------------------------------------------------------- volume, liquidity
def _avg(ctx: Context, x: Term, window: int) -> Term:
    return x if window == 1 else sma(ctx, x, window)


def volume_ratio(ctx: Context, short: int, long: int) -> Term:
    """Average volume (shares) over ``short`` bars / over ``long`` bars."""
    v = ctx.field("volume")
    return ctx.map(_div, _avg(ctx, v, short), sma(ctx, v, long))


def amount_ratio(ctx: Context, short: int, long: int) -> Term:
    """Average turnover (CNY) over ``short`` bars / over ``long`` bars."""
    a = ctx.field("amount")
    return ctx.map(_div, _avg(ctx, a, short), sma(ctx, a, long))


def log_amount(ctx: Context, window: int) -> Term:
    """Log of the average daily turnover (CNY)."""
    return ctx.map(_log, sma(ctx, ctx.field("amount"), window))


def amount_cv(ctx: Context, window: int) -> Term:
    """Coefficient of variation of daily turnover."""
    a = ctx.field("amount")
    return ctx.map(_cv, variance(ctx, a, window), sma(ctx, a, window))


def obv_slope(ctx: Context, window: int) -> Term:
    """Least-squares slope of on-balance volume over the window, per bar, over the mean volume."""
    c = ctx.field("close")
    v = ctx.field("volume")
    d = ctx.map(_signed_volume, c, ctx.prev(c), v)
    s, lin, quad = ctx.agesum(d, window)
    sxy = ctx.map(_obv_sxy, s, lin, quad, consts=(float(window),))
    return ctx.map(_obv_slope, sxy, sma(ctx, v, window), consts=(float(window),))


def amihud(ctx: Context, window: int) -> Term:
    """Amihud illiquidity: mean ``|simple return| / turnover`` per 100 million CNY."""
    return sma(ctx, ctx.map(_illiquidity, simple_return(ctx), ctx.field("amount")), window)


def pv_corr(ctx: Context, window: int) -> Term:
    """Correlation of price and volume levels."""
    return correlation(ctx, ctx.price(), ctx.field("volume"), window)


def rv_corr(ctx: Context, window: int) -> Term:
    """Correlation of log return and volume."""
    return correlation(ctx, log_return(ctx), ctx.field("volume"), window)


# --------------------------------------------------------------------------------------- intraday
def intraday_ret(ctx: Context, window: int) -> Term:
    """Mean open-to-close log return."""
    return sma(ctx, ctx.map(_log_ratio, ctx.field("close"), ctx.field("open")), window)


def _gap(ctx: Context) -> Term:
    return ctx.map(_log_ratio, ctx.field("open"), ctx.prev(ctx.field("close")))


def overnight_ret(ctx: Context, window: int) -> Term:
    """Mean overnight gap ``log(open / previous close)``."""
    return sma(ctx, _gap(ctx), window)


def gap_abs(ctx: Context, window: int) -> Term:
    """Mean absolute overnight gap."""
    return sma(ctx, ctx.map(_abs, _gap(ctx)), window)


def hl_range(ctx: Context, window: int) -> Term:
    """Mean intraday range ``log(high / low)``."""
    return sma(ctx, ctx.map(_log_ratio, ctx.field("high"), ctx.field("low")), window)


def clv(ctx: Context, window: int) -> Term:
    """Mean close location value ``((c - l) - (h - c)) / (h - l)`` (0 when ``h == l``, as TA-Lib AD)."""
    return sma(ctx, ctx.map(_clv, ctx.field("high"), ctx.field("low"), ctx.field("close")), window)


# --------------------------------------------------------------------------------------- distribution
def up_ratio(ctx: Context, window: int) -> Term:
    """Fraction of bars with a positive return."""
    return sma(ctx, ctx.map(_is_up, log_return(ctx)), window)


def ret_max(ctx: Context, window: int) -> Term:
    """Largest single-bar simple return in the window."""
    mx, _ = ctx.rmax(simple_return(ctx), window)
    return mx


def ret_min(ctx: Context, window: int) -> Term:
    """Smallest single-bar simple return in the window."""
    mn, _ = ctx.rmin(simple_return(ctx), window)
    return mn


# --------------------------------------------------------------------------------------- NAV premium
def premium(ctx: Context) -> Term:
    """Latest known premium of the close over NAV (the ``premium`` input)."""
    return ctx.field("premium")


def premium_mean(ctx: Context, window: int) -> Term:
    """Mean premium over the window."""
    return sma(ctx, ctx.field("premium"), window)


def premium_z(ctx: Context, window: int) -> Term:
    """Premium z-score against its own window mean and sample std."""
    q = ctx.field("premium")
    return ctx.map(_zscore, q, sma(ctx, q, window), variance(ctx, q, window))
