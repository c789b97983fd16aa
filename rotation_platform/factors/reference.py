"""Plain pandas implementations of every registered factor: the correctness reference of the tests
and the speed baseline of ``python -m benchmarks factors``.

Written independently of the numba path: pandas ``rolling`` / ``ewm`` / ``rank`` and numpy sliding
windows, on each fund's own bars (rows with every price field finite), then placed back on the
sessions and shifted by ``lag`` with ``DataFrame.shift``. Conventions follow :mod:`.formulas`; EMAs are
TA-Lib's recursion (seeded with the SMA of the first ``span`` values) computed by ``ewm(adjust=False)``
over the whole history, so they agree with the engine's finite-memory EMAs after its ``min_history``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.factors.registry import REGISTRY, FactorError, FactorSpec, select_factors

__all__ = ["reference_factors"]

ANN = 252.0
LN2 = np.log(2.0)


class _Bars:
    """Each fund's bars, packed to the top (row k = the fund's k-th bar), with cached derivations."""

    def __init__(self, panel: PricePanel, price_field: str, premium: pd.DataFrame | None):
        frames = {f: panel.frames[f] for f in PRICE_FIELDS}
        valid = np.ones(panel.shape, dtype=bool)
        for f in PRICE_FIELDS:
            valid &= np.isfinite(frames[f].to_numpy())
        self.valid = pd.DataFrame(valid, index=panel.sessions, columns=panel.symbols)
        self.sessions = panel.sessions
        self.symbols = panel.symbols
        n = int(valid.sum(axis=0).max()) if valid.size else 0
        self.index = pd.RangeIndex(max(n, 1))
        self.f: dict[str, pd.DataFrame] = {}
        sources = dict(frames)
        if premium is not None:
            sources["premium"] = premium
        for name, frame in sources.items():
            cols = {}
            for sym in self.symbols:
                col = frame[sym][self.valid[sym]].reset_index(drop=True)
                cols[sym] = col.reindex(self.index)
            self.f[name] = pd.DataFrame(cols, index=self.index)
        self.p = self.f[price_field]
        self._cache: dict[str, pd.DataFrame] = {}

    def cached(self, key: str, fn: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def unpack(self, packed: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(np.nan, index=self.sessions, columns=self.symbols)
        for sym in self.symbols:
            mask = self.valid[sym].to_numpy()
            n = int(mask.sum())
            col = out[sym].to_numpy(copy=True)
            col[mask] = packed[sym].to_numpy()[:n]
            out[sym] = col
        return out.replace([np.inf, -np.inf], np.nan)

    # -- shared series
    @property
    def r(self) -> pd.DataFrame:
        return self.cached("r", lambda: np.log(self.p / self.p.shift(1)))

    @property
    def rs(self) -> pd.DataFrame:
        return self.cached("rs", lambda: self.p / self.p.shift(1) - 1.0)

    @property
    def tr(self) -> pd.DataFrame:
        def make() -> pd.DataFrame:
            h, low, pc = self.f["high"], self.f["low"], self.f["close"].shift(1)
            return pd.DataFrame(np.maximum(h.to_numpy(), pc.to_numpy()) - np.minimum(low.to_numpy(), pc.to_numpy()),
                                index=h.index, columns=h.columns)
        return self.cached("tr", make)


def seeded_ema(x: pd.DataFrame, alpha: float, span: int) -> pd.DataFrame:
    """TA-Lib's EMA recursion per column: NaN until the first ``span`` finite values, then their mean,
    then ``e = alpha * x + (1 - alpha) * e``."""
    out = {}
    for col in x.columns:
        s = x[col]
        first = s.first_valid_index()
        seeded = pd.Series(np.nan, index=s.index)
        if first is not None and first + span - 1 < len(s):
            start = first + span - 1
            seeded.iloc[start] = s.iloc[first: start + 1].mean()
            seeded.iloc[start + 1:] = s.iloc[start + 1:]
        out[col] = seeded.ewm(alpha=alpha, adjust=False).mean()
    res = pd.DataFrame(out, index=x.index)
    return res.where(x.notna())


def _windows(x: pd.DataFrame, w: int, fn: Callable[[np.ndarray], np.ndarray]) -> pd.DataFrame:
    """Apply ``fn`` to every length-``w`` window (rows of a sliding-window view) of each column."""
    out = np.full(x.shape, np.nan)
    arr = x.to_numpy()
    for j in range(arr.shape[1]):
        if arr.shape[0] >= w:
            view = sliding_window_view(arr[:, j], w)
            res = fn(view)
            res[np.isnan(view).any(axis=1)] = np.nan
            out[w - 1:, j] = res
    return pd.DataFrame(out, index=x.index, columns=x.columns)


def _sma(x: pd.DataFrame, w: int) -> pd.DataFrame:
    return x if w == 1 else x.rolling(w).mean()


def _stoch(b: _Bars, n: int, smooth: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    def make() -> tuple[pd.DataFrame, pd.DataFrame]:
        hh = b.f["high"].rolling(n).max()
        ll = b.f["low"].rolling(n).min()
        fastk = (b.f["close"] - ll) / (hh - ll) * 100.0
        k = fastk.rolling(smooth).mean()
        return k, k.rolling(smooth).mean()
    return b.cached(f"stoch{n},{smooth}", make)  # type: ignore[arg-type, return-value]


def _macd(b: _Bars, f: int, s: int, g: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    def make() -> tuple[pd.DataFrame, pd.DataFrame]:
        line = seeded_ema(b.p, 2.0 / (f + 1), f) - seeded_ema(b.p, 2.0 / (s + 1), s)
        return line, seeded_ema(line, 2.0 / (g + 1), g)
    return b.cached(f"macd{f},{s},{g}", make)  # type: ignore[arg-type, return-value]


def _time_like(x: pd.DataFrame) -> pd.DataFrame:
    t = np.arange(len(x), dtype=np.float64)
    return pd.DataFrame(np.repeat(t[:, None], x.shape[1], axis=1), index=x.index, columns=x.columns)


def _pair_windows(x: pd.DataFrame, y: pd.DataFrame, w: int,
                  fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> pd.DataFrame:
    """``fn`` on every pair of aligned length-``w`` windows of two frames (sliding-window views)."""
    out = np.full(x.shape, np.nan)
    xa, ya = x.to_numpy(), y.to_numpy()
    for j in range(xa.shape[1]):
        if xa.shape[0] >= w:
            vx, vy = sliding_window_view(xa[:, j], w), sliding_window_view(ya[:, j], w)
            with np.errstate(all="ignore"):
                res = fn(vx, vy)
            res[np.isnan(vx).any(axis=1) | np.isnan(vy).any(axis=1)] = np.nan
            out[w - 1:, j] = res
    return pd.DataFrame(out, index=x.index, columns=x.columns)


def _centered(vx: np.ndarray, vy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-pass co-moments of window pairs: sum(dx * dy), sum(dx^2), sum(dy^2)."""
    dx = vx - vx.mean(axis=1, keepdims=True)
    dy = vy - vy.mean(axis=1, keepdims=True)
    return (dx * dy).sum(axis=1), (dx * dx).sum(axis=1), (dy * dy).sum(axis=1)


def _corr(vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
    cxy, cxx, cyy = _centered(vx, vy)
    return np.where(cxx * cyy > 0, cxy / np.sqrt(cxx * cyy), np.nan)


def _corr_frames(x: pd.DataFrame, y: pd.DataFrame, w: int) -> pd.DataFrame:
    """Rolling Pearson correlation, two-pass per window (pandas' running ``rolling().corr`` drifts by
    up to ~1e-10 over thousands of rows on price and volume levels)."""
    return _pair_windows(x, y, w, _corr)


def _slope(y: pd.DataFrame, w: int) -> pd.DataFrame:
    t = _time_like(y)
    return y.rolling(w).cov(t) / t.rolling(w).var()


def _r2(y: pd.DataFrame, w: int) -> pd.DataFrame:
    return _corr_frames(y, _time_like(y), w) ** 2


def _boll(b: _Bars, w: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    return b.p.rolling(w).mean(), b.p.rolling(w).std(ddof=0)


def _aroon_age(view: np.ndarray, largest: bool) -> np.ndarray:
    rev = view[:, ::-1]
    return (np.argmax(rev, axis=1) if largest else np.argmin(rev, axis=1)).astype(np.float64)


def _maxdd(view: np.ndarray) -> np.ndarray:
    return (view / np.maximum.accumulate(view, axis=1) - 1.0).min(axis=1)


def _mad(view: np.ndarray) -> np.ndarray:
    return np.abs(view - view.mean(axis=1, keepdims=True)).mean(axis=1)


def _clv(b: _Bars) -> pd.DataFrame:
    h, low, c = b.f["high"], b.f["low"], b.f["close"]
    rng = h - low
    return (((c - low) - (h - c)) / rng).where(rng > 0, 0.0).where(rng.notna())


_KINDS: dict[str, Callable[..., pd.DataFrame]] = {
    "roc": lambda b, w: b.p / b.p.shift(w) - 1.0,
    "mom_skip": lambda b, w, skip: b.p.shift(skip) / b.p.shift(w) - 1.0,
    "mom_accel": lambda b, w: (b.p / b.p.shift(w) - 1.0) - (b.p / b.p.shift(w) - 1.0).shift(w),
    "ret_sharpe": lambda b, w: b.r.rolling(w).mean() / b.r.rolling(w).std() * np.sqrt(ANN),
    "ma_dist": lambda b, w: b.p / b.p.rolling(w).mean() - 1.0,
    "ema_dist": lambda b, w: b.p / seeded_ema(b.p, 2.0 / (w + 1), w) - 1.0,
    "ma_cross": lambda b, s, lg: b.p.rolling(s).mean() / b.p.rolling(lg).mean() - 1.0,
    "macd_line": lambda b, f, s, g: _macd(b, f, s, g)[0] / b.p,
    "macd_signal": lambda b, f, s, g: _macd(b, f, s, g)[1] / b.p,
    "macd_hist": lambda b, f, s, g: (_macd(b, f, s, g)[0] - _macd(b, f, s, g)[1]) / b.p,
    "rsi": lambda b, w: (lambda g, lo: 100.0 * g / (g + lo))(
        seeded_ema(b.p.diff().clip(lower=0.0), 1.0 / w, w), seeded_ema((-b.p.diff()).clip(lower=0.0), 1.0 / w, w)),
    "stoch_k": lambda b, n, sm: _stoch(b, n, sm)[0],
    "stoch_d": lambda b, n, sm: _stoch(b, n, sm)[1],
    "stoch_j": lambda b, n, sm: 3.0 * _stoch(b, n, sm)[0] - 2.0 * _stoch(b, n, sm)[1],
    "willr": lambda b, w: -100.0 * (b.f["high"].rolling(w).max() - b.f["close"])
    / (b.f["high"].rolling(w).max() - b.f["low"].rolling(w).min()),
    "cci": lambda b, w: (lambda tp: (tp - tp.rolling(w).mean()) / (0.015 * _windows(tp, w, _mad)))(
        (b.f["high"] + b.f["low"] + b.f["close"]) / 3.0),
    "aroonosc": lambda b, w: 100.0 / w * (_windows(b.f["low"], w + 1, lambda v: _aroon_age(v, False))
                                          - _windows(b.f["high"], w + 1, lambda v: _aroon_age(v, True))),
    "boll_pctb": lambda b, w, k: (lambda m, s: (b.p - (m - k * s)) / (2 * k * s))(*_boll(b, w)),
    "boll_width": lambda b, w, k: (lambda m, s: 2 * k * s / m)(*_boll(b, w)),
    "vol_cc": lambda b, w: b.r.rolling(w).std() * np.sqrt(ANN),
    "vol_parkinson": lambda b, w: np.sqrt((np.log(b.f["high"] / b.f["low"]) ** 2).rolling(w).mean()
                                          / (4 * LN2) * ANN),
    "vol_gk": lambda b, w: np.sqrt((0.5 * np.log(b.f["high"] / b.f["low"]) ** 2
                                    - (2 * LN2 - 1) * np.log(b.f["close"] / b.f["open"]) ** 2)
                                   .rolling(w).mean().clip(lower=0.0) * ANN),
    "vol_regime": lambda b, s, lg: b.r.rolling(s).std() / b.r.rolling(lg).std(),
    "natr": lambda b, w: seeded_ema(b.tr, 1.0 / w, w) / b.f["close"],
    "atr_pct": lambda b, w: b.tr.rolling(w).mean() / b.f["close"],
    "downside_vol": lambda b, w: np.sqrt((b.r.clip(upper=0.0) ** 2).rolling(w).mean() * ANN),
    "skew": lambda b, w: b.r.rolling(w).skew(),
    "kurt": lambda b, w: b.r.rolling(w).kurt(),
    "maxdd": lambda b, w: _windows(b.p, w, _maxdd),
    "dist_high": lambda b, w: b.p / b.f["high"].rolling(w).max() - 1.0,
    "dist_low": lambda b, w: b.p / b.f["low"].rolling(w).min() - 1.0,
    "trend_slope": lambda b, w: _slope(np.log(b.p), w) * ANN,
    "trend_r2": lambda b, w: _r2(np.log(b.p), w),
    "trend_score": lambda b, w: _slope(np.log(b.p), w) * ANN * _r2(np.log(b.p), w),
    "volume_ratio": lambda b, s, lg: _sma(b.f["volume"], s) / b.f["volume"].rolling(lg).mean(),
    "amount_ratio": lambda b, s, lg: _sma(b.f["amount"], s) / b.f["amount"].rolling(lg).mean(),
    "log_amount": lambda b, w: np.log(b.f["amount"].rolling(w).mean()),
    "amount_cv": lambda b, w: b.f["amount"].rolling(w).std() / b.f["amount"].rolling(w).mean(),
    "obv_slope": lambda b, w: _slope((np.sign(b.f["close"].diff()) * b.f["volume"]).cumsum(skipna=True)
                                     .where(b.f["close"].diff().notna()), w) / b.f["volume"].rolling(w).mean(),
    "amihud": lambda b, w: (b.rs.abs() / b.f["amount"] * 1e8).replace([np.inf, -np.inf], np.nan).rolling(w).mean(),
    "pv_corr": lambda b, w: _corr_frames(b.p, b.f["volume"], w),
    "rv_corr": lambda b, w: _corr_frames(b.r, b.f["volume"], w),
    "intraday_ret": lambda b, w: np.log(b.f["close"] / b.f["open"]).rolling(w).mean(),
    "overnight_ret": lambda b, w: np.log(b.f["open"] / b.f["close"].shift(1)).rolling(w).mean(),
    "gap_abs": lambda b, w: np.log(b.f["open"] / b.f["close"].shift(1)).abs().rolling(w).mean(),
    "hl_range": lambda b, w: np.log(b.f["high"] / b.f["low"]).rolling(w).mean(),
    "clv": lambda b, w: _clv(b).rolling(w).mean(),
    "up_ratio": lambda b, w: (b.r > 0).astype(float).where(b.r.notna()).rolling(w).mean(),
    "ret_max": lambda b, w: b.rs.rolling(w).max(),
    "ret_min": lambda b, w: b.rs.rolling(w).min(),
    "premium": lambda b: b.f["premium"],
    "premium_mean": lambda b, w: b.f["premium"].rolling(w).mean(),
    "premium_z": lambda b, w: (b.f["premium"] - b.f["premium"].rolling(w).mean()) / b.f["premium"].rolling(w).std(),
}


def _premium(panel: PricePanel, nav: pd.DataFrame, nav_delay: int) -> pd.DataFrame:
    frame = nav.copy()
    frame.columns = [str(c) for c in frame.columns]
    frame = frame.reindex(index=panel.sessions, columns=panel.symbols)
    prem = (panel.frames["close"] / frame - 1.0).replace([np.inf, -np.inf], np.nan)
    return prem.shift(nav_delay) if nav_delay else prem


def _cross_section(spec: FactorSpec, raw: pd.DataFrame) -> pd.DataFrame:
    count = raw.notna().sum(axis=1)
    if spec.transform == "rank":
        out = raw.rank(axis=1, pct=True, method="average")
    else:
        std = raw.std(axis=1, ddof=1)
        out = raw.sub(raw.mean(axis=1), axis=0).div(std.where(std > 0), axis=0)
    return out.where(count >= 2, np.nan)


def reference_factors(panel: PricePanel, lag: int = 1, *, names: Sequence[str] | None = None,
                      nav: pd.DataFrame | None = None, nav_delay: int = 1,
                      price_field: str = "close") -> dict[str, pd.DataFrame]:
    """Every selected factor as a sessions x symbols frame, lagged like the engine's output."""
    if lag < 1:
        raise FactorError(f"lag must be >= 1, got {lag}")
    specs = select_factors("all", nav=nav is not None, names=names)
    bars = _Bars(panel, price_field, None if nav is None else _premium(panel, nav, nav_delay))
    raw: dict[str, pd.DataFrame] = {}

    def series(spec: FactorSpec) -> pd.DataFrame:
        if spec.name not in raw:
            raw[spec.name] = bars.unpack(_KINDS[spec.kind](bars, *spec.params))
        return raw[spec.name]

    out = {}
    with np.errstate(all="ignore"):
        for spec in specs:
            if spec.cross_sectional:
                values = _cross_section(spec, series(REGISTRY[spec.base]))  # type: ignore[index]
            else:
                values = series(spec)
            out[spec.name] = values.shift(lag)
    return out
