"""Correctness on real fund data: every factor against the plain pandas reference, and every
indicator TA-Lib has against TA-Lib, to 1e-9 relative after warm-up.

Tolerance: ``|ours - ref| <= 1e-9 * max(|ref|, scale)``; ``scale`` is the largest ``|ref|`` of the
series (a floor for values that cross zero) unless a natural unit is given (the price for MACD).
"Warm-up" is the factor's ``min_history``: EMA-type factors keep finite memory (see
``docs/factors.md``), so TA-Lib's SMA-seeded recursion and ours agree to ~1e-11 from there on.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import talib
from numpy.lib.stride_tricks import sliding_window_view

from rotation_platform.data.panel import PricePanel
from rotation_platform.factors import REGISTRY, FactorPanel, compute_panel, families
from rotation_platform.factors.reference import reference_factors

Check = Callable[..., int]


@pytest.fixture(scope="module")
def reference(real_panel: PricePanel) -> dict[str, pd.DataFrame]:
    return reference_factors(real_panel, 1)


def _warm(name: str) -> int:
    return REGISTRY[name].min_history - 1


# --------------------------------------------------------------------------------------- pandas reference
def test_every_factor_matches_the_pandas_reference(real_panel: PricePanel, real_factors: FactorPanel,
                                                   reference: dict[str, pd.DataFrame], close_check: Check) -> None:
    assert_close = close_check
    checked: dict[str, int] = {}
    for name in real_factors.names:
        spec = REGISTRY[name]
        ours = real_factors.factor(name)
        ref = reference[name]
        if spec.cross_sectional:
            # rank / z-score among the funds that have the base value: feed the reference our base's
            # NaN pattern (EMA-type bases start later in the engine than TA-Lib-style recursions)
            base = real_factors.factor(spec.base)  # type: ignore[arg-type]
            raw = reference[spec.base].where(base.notna())  # type: ignore[index]
            count = raw.notna().sum(axis=1)
            if spec.transform == "rank":
                ref = raw.rank(axis=1, pct=True)
            else:
                std = raw.std(axis=1)
                ref = raw.sub(raw.mean(axis=1), axis=0).div(std.where(std > 0), axis=0)
            ref = ref.where(count >= 2)
        n = 0
        for sym in real_factors.symbols:
            a = ours[sym].to_numpy()
            b = ref[sym].to_numpy()
            first_bar = int(np.argmax(np.isfinite(real_panel.frames["close"][sym].to_numpy())))
            n += assert_close(a, b, start=first_bar + spec.min_history, what=f"{name} {sym}")
        checked[name] = n
    assert set(checked) == set(real_factors.names) and min(checked.values()) > 500
    assert {REGISTRY[n].family for n in checked} == set(families()) - {"premium"}


def test_premium_factors_match_the_pandas_reference(real_panel: PricePanel, real_nav: pd.DataFrame,
                                                    close_check: Check) -> None:
    assert_close = close_check
    names = [s.name for s in REGISTRY.values() if s.family == "premium"]
    ours = compute_panel(real_panel, 1, nav=real_nav, names=names)
    ref = reference_factors(real_panel, 1, nav=real_nav, names=names)
    for name in names:
        n = assert_close(ours.factor(name)["513100"].to_numpy(), ref[name]["513100"].to_numpy(), start=0,
                         what=name)
        assert n > 1000


# --------------------------------------------------------------------------------------- TA-Lib
def _per_fund(real_bars, real_factors: FactorPanel,
              check: Callable[[str, Callable[[str], np.ndarray], Callable[[str], np.ndarray]], int]) -> int:
    """Run ``check(symbol, field, raw)`` per fund over the bars whose value is published (the last
    ``lag`` sessions' bars have theirs after the panel's end); TA-Lib runs on those bars only."""
    total = 0
    lag = int(real_factors.meta["lag"])  # type: ignore[arg-type]
    for sym in real_factors.symbols:
        m = int((real_bars.rows(sym) + lag < len(real_factors.sessions)).sum())
        total += check(sym, lambda f, s=sym: np.ascontiguousarray(real_bars.field(s, f)[:m]),
                       lambda n, s=sym: real_bars.raw(real_factors, n, s)[:m])
    return total


def test_moving_averages_vs_talib(real_bars, real_factors: FactorPanel, close_check: Check) -> None:
    assert_close = close_check

    def check(sym, field, raw):
        p = field("close")
        n = 0
        for w in (5, 10, 20, 40, 60, 120, 250):
            n += assert_close(p / (1.0 + raw(f"ma_dist_{w}")), talib.SMA(p, w), start=_warm(f"ma_dist_{w}"),
                              scale=0.0, what=f"SMA {w} {sym}")
        for w in (5, 10, 20):
            n += assert_close(p / (1.0 + raw(f"ema_dist_{w}")), talib.EMA(p, w), start=_warm(f"ema_dist_{w}"),
                              scale=0.0, what=f"EMA {w} {sym}")
        for s, lg in ((5, 20), (10, 60), (20, 120), (60, 250)):
            n += assert_close(1.0 + raw(f"ma_cross_{s}_{lg}"), talib.SMA(p, s) / talib.SMA(p, lg),
                              start=_warm(f"ma_cross_{s}_{lg}"), scale=0.0, what=f"SMA cross {s}/{lg} {sym}")
        return n

    assert _per_fund(real_bars, real_factors, check) > 50_000


def test_macd_vs_talib(real_bars, real_factors: FactorPanel, close_check: Check) -> None:
    assert_close = close_check

    def check(sym, field, raw):
        p = field("close")
        n = 0
        for f, s, g in ((12, 26, 9), (6, 13, 5)):
            line, signal, hist = talib.MACD(p, f, s, g)
            tag = f"{f}_{s}_{g}"
            for ours, theirs, part in ((raw(f"macd_line_{tag}"), line, "line"),
                                       (raw(f"macd_signal_{tag}"), signal, "signal"),
                                       (raw(f"macd_hist_{tag}"), hist, "hist")):
                n += assert_close(ours * p, theirs, start=_warm(f"macd_{part}_{tag}"), scale=p,
                                  what=f"MACD {tag} {part} {sym}")
        return n

    assert _per_fund(real_bars, real_factors, check) > 10_000


def test_oscillators_vs_talib(real_bars, real_factors: FactorPanel, close_check: Check) -> None:
    assert_close = close_check

    def check(sym, field, raw):
        h, lo, c = field("high"), field("low"), field("close")
        n = 0
        for w in (6, 9, 14):
            n += assert_close(raw(f"rsi_{w}"), talib.RSI(c, w), start=_warm(f"rsi_{w}"), scale=100.0,
                              what=f"RSI {w} {sym}")
        for k in (9, 14, 20):
            slowk, slowd = talib.STOCH(h, lo, c, fastk_period=k, slowk_period=3, slowk_matype=0,
                                       slowd_period=3, slowd_matype=0)
            n += assert_close(raw(f"stoch_k_{k}"), slowk, start=_warm(f"stoch_k_{k}"), scale=100.0,
                              what=f"STOCH K {k} {sym}")
            n += assert_close(raw(f"stoch_d_{k}"), slowd, start=_warm(f"stoch_d_{k}"), scale=100.0,
                              what=f"STOCH D {k} {sym}")
            n += assert_close(raw(f"stoch_j_{k}"), 3 * slowk - 2 * slowd, start=_warm(f"stoch_j_{k}"),
                              scale=100.0, what=f"KDJ J {k} {sym}")
        for w in (10, 14, 20, 60, 120):
            n += assert_close(raw(f"willr_{w}"), talib.WILLR(h, lo, c, w), start=_warm(f"willr_{w}"),
                              scale=100.0, what=f"WILLR {w} {sym}")
        for w in (10, 14, 20, 40, 60):
            n += assert_close(raw(f"cci_{w}"), talib.CCI(h, lo, c, w), start=_warm(f"cci_{w}"),
                              what=f"CCI {w} {sym}")
        for w in (14, 25, 60):
            n += assert_close(raw(f"aroonosc_{w}"), talib.AROONOSC(h, lo, w), start=_warm(f"aroonosc_{w}"),
                              scale=100.0, what=f"AROONOSC {w} {sym}")
        for w in (10, 20, 40, 60):
            upper, mid, lower = talib.BBANDS(c, w, 2.0, 2.0, 0)
            n += assert_close(raw(f"boll_pctb_{w}"), (c - lower) / (upper - lower), start=_warm(f"boll_pctb_{w}"),
                              what=f"BBANDS %B {w} {sym}")
            n += assert_close(raw(f"boll_width_{w}"), (upper - lower) / mid, start=_warm(f"boll_width_{w}"),
                              what=f"BBANDS width {w} {sym}")
        return n

    assert _per_fund(real_bars, real_factors, check) > 100_000


def test_returns_and_ranges_vs_talib(real_bars, real_factors: FactorPanel, close_check: Check) -> None:
    assert_close = close_check

    def check(sym, field, raw):
        h, lo, c, v = field("high"), field("low"), field("close"), field("volume")
        n = 0
        for w in (5, 10, 20, 40, 60, 120, 250):
            ours = raw(f"roc_{w}")
            n += assert_close(ours, talib.ROCP(c, w), start=_warm(f"roc_{w}"), what=f"ROCP {w} {sym}")
            n += assert_close(ours * 100.0, talib.ROC(c, w), start=_warm(f"roc_{w}"), what=f"ROC {w} {sym}")
            mom = talib.MOM(c, w)
            n += assert_close(ours, mom / (c - mom), start=_warm(f"roc_{w}"), what=f"MOM {w} {sym}")
        for w in (20, 60, 120, 250):
            n += assert_close(c / (1.0 + raw(f"dist_high_{w}")), talib.MAX(h, w), start=_warm(f"dist_high_{w}"),
                              scale=0.0, what=f"MAX {w} {sym}")
            n += assert_close(c / (1.0 + raw(f"dist_low_{w}")), talib.MIN(lo, w), start=_warm(f"dist_low_{w}"),
                              scale=0.0, what=f"MIN {w} {sym}")
        for s, lg in ((1, 20), (5, 20), (5, 60), (20, 120), (20, 250)):
            short = v if s == 1 else talib.SMA(v, s)
            n += assert_close(raw(f"volume_ratio_{s}_{lg}"), short / talib.SMA(v, lg),
                              start=_warm(f"volume_ratio_{s}_{lg}"), scale=0.0, what=f"volume SMA {s}/{lg} {sym}")
        return n

    assert _per_fund(real_bars, real_factors, check) > 100_000


def test_volatility_and_atr_vs_talib(real_bars, real_factors: FactorPanel, close_check: Check) -> None:
    assert_close = close_check

    def check(sym, field, raw):
        h, lo, c = field("high"), field("low"), field("close")
        r = np.log(c / np.concatenate([[np.nan], c[:-1]]))
        n = 0
        for w in (5, 10, 14):
            n += assert_close(raw(f"natr_{w}") * 100.0, talib.NATR(h, lo, c, w), start=_warm(f"natr_{w}"),
                              scale=0.0, what=f"NATR {w} {sym}")
            n += assert_close(raw(f"natr_{w}") * c, talib.ATR(h, lo, c, w), start=_warm(f"natr_{w}"),
                              scale=0.0, what=f"ATR {w} {sym}")
        for w in (20, 60):
            n += assert_close(raw(f"atr_pct_{w}"), talib.SMA(talib.TRANGE(h, lo, c), w) / c,
                              start=_warm(f"atr_pct_{w}"), scale=0.0, what=f"TRANGE SMA {w} {sym}")
        for w in (5, 10, 20, 40, 60, 120, 250):
            sample = talib.STDDEV(r, w, 1.0) * np.sqrt(w / (w - 1.0)) * np.sqrt(252.0)
            n += assert_close(raw(f"vol_cc_{w}"), sample, start=_warm(f"vol_cc_{w}"), what=f"STDDEV {w} {sym}")
        return n

    assert _per_fund(real_bars, real_factors, check) > 50_000


def test_trend_obv_and_correlation_vs_talib(real_bars, real_factors: FactorPanel, close_check: Check) -> None:
    assert_close = close_check

    def check(sym, field, raw):
        c, v = field("close"), field("volume")
        y = np.log(c)
        t = np.arange(len(c), dtype=np.float64)
        r = np.log(c / np.concatenate([[np.nan], c[:-1]]))
        obv = talib.OBV(c, v)
        n = 0
        for w in (10, 20, 60, 120, 250):
            n += assert_close(raw(f"trend_slope_{w}") / 252.0, talib.LINEARREG_SLOPE(y, w),
                              start=_warm(f"trend_slope_{w}"), what=f"LINEARREG_SLOPE {w} {sym}")
            n += assert_close(raw(f"trend_r2_{w}"), talib.CORREL(y, t, w) ** 2, start=_warm(f"trend_r2_{w}"),
                              what=f"CORREL(log p, t)^2 {w} {sym}")
        for w in (10, 20, 60, 120):
            # OBV least-squares slope per bar over the window, over TA-Lib's SMA of volume
            slope = np.full(len(c), np.nan)
            view = sliding_window_view(obv, w)
            x = np.arange(w) - (w - 1) / 2.0
            slope[w - 1:] = (view - view.mean(axis=1, keepdims=True)) @ x / (x @ x)
            n += assert_close(raw(f"obv_slope_{w}"), slope / talib.SMA(v, w), start=_warm(f"obv_slope_{w}"),
                              what=f"OBV slope {w} {sym}")
        for w in (10, 20, 60):
            n += assert_close(raw(f"pv_corr_{w}"), talib.CORREL(c, v, w), start=_warm(f"pv_corr_{w}"),
                              scale=1.0, what=f"CORREL(p, v) {w} {sym}")
            n += assert_close(raw(f"rv_corr_{w}"), talib.CORREL(r, v, w), start=_warm(f"rv_corr_{w}"),
                              scale=1.0, what=f"CORREL(r, v) {w} {sym}")
        return n

    assert _per_fund(real_bars, real_factors, check) > 50_000
