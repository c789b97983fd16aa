"""The factor set: size, coverage of the required families, consistent metadata, generated docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotation_platform.factors import (
    FACTOR_SET_VERSION,
    FAMILIES,
    REGISTRY,
    FactorError,
    families,
    render_markdown,
    select_factors,
)
from rotation_platform.factors.graph import EWM_TOLERANCE, ewm_window

DOC = Path(__file__).resolve().parents[2] / "docs" / "factors.md"

REQUIRED_FAMILIES = {
    "momentum", "moving_average", "macd", "rsi", "stochastic", "cci", "williams_r", "bollinger",
    "volatility", "atr", "downside", "moments", "drawdown", "range_position", "trend", "volume", "obv",
    "liquidity", "price_volume", "intraday", "cross_section", "premium",
}


def test_at_least_209_factors_per_pool_without_nav() -> None:
    core = select_factors("all", nav=False)
    assert len(core) >= 209
    assert len({s.name for s in core}) == len(core)
    assert {s.family for s in core} | {"premium"} >= REQUIRED_FAMILIES
    assert all(not s.requires for s in core)


def test_premium_factors_only_with_nav() -> None:
    with_nav = select_factors("all", nav=True)
    extra = [s for s in with_nav if s.requires]
    assert extra and {s.family for s in extra} == {"premium"}
    assert len(with_nav) == len(select_factors("all")) + len(extra)


def test_required_windows_are_covered() -> None:
    roc = {s.windows[0] for s in REGISTRY.values() if s.kind == "roc"}
    assert min(roc) == 5 and max(roc) == 250
    kinds = {s.kind for s in REGISTRY.values()}
    for kind in ("ma_dist", "ema_dist", "macd_line", "rsi", "stoch_k", "stoch_j", "cci", "willr", "boll_pctb",
                 "boll_width", "vol_cc", "vol_parkinson", "vol_gk", "natr", "downside_vol", "skew", "kurt",
                 "maxdd", "dist_high", "dist_low", "trend_slope", "trend_r2", "volume_ratio", "amount_ratio",
                 "obv_slope", "amihud", "pv_corr", "intraday_ret", "overnight_ret", "hl_range", "cs_rank",
                 "cs_z", "premium"):
        assert kind in kinds, kind


@pytest.mark.parametrize("name", list(REGISTRY))
def test_spec_is_consistent(name: str) -> None:
    spec = REGISTRY[name]
    assert spec.family in FAMILIES
    assert spec.direction in (1, -1)
    assert spec.windows and all(isinstance(w, int) and w >= 1 for w in spec.windows)
    assert 1 <= spec.min_history <= spec.lookback
    assert spec.description
    if spec.cross_sectional:
        base = REGISTRY[spec.base]  # type: ignore[index]
        assert (spec.min_history, spec.lookback, spec.direction) == (base.min_history, base.lookback, base.direction)
    else:
        assert spec.formula is not None and spec.kind


def test_history_is_derived_from_the_formulas() -> None:
    """Spot checks of the symbolic derivation against hand counts."""
    assert REGISTRY["roc_20"].min_history == 21            # 20 bars back plus the bar itself
    assert REGISTRY["ma_dist_20"].min_history == 20
    assert REGISTRY["ma_dist_20"].lookback == 39           # anchored running sum: 2 w - 1
    assert REGISTRY["vol_cc_20"].min_history == 21         # returns need the previous bar
    assert REGISTRY["maxdd_60"].lookback == 60             # exact window kernel
    assert REGISTRY["stoch_d_14"].min_history == 14 + 2 + 2
    assert REGISTRY["mom_accel_60"].min_history == 121
    assert REGISTRY["aroonosc_25"].min_history == 26       # TA-Lib's window of n + 1 bars
    assert REGISTRY["ema_dist_10"].min_history == ewm_window(2 / 11, 10)
    assert REGISTRY["rsi_14"].min_history == ewm_window(1 / 14, 14) + 1
    assert (1 - 2 / 11) ** (ewm_window(2 / 11, 10) - 10) <= EWM_TOLERANCE


def test_select_factors_filters_and_errors() -> None:
    vol = select_factors(["volatility", "cross_section"])
    assert {s.family for s in vol} == {"volatility", "cross_section"}
    assert [s.name for s in select_factors(names=["rsi_14", "roc_5"])] == ["roc_5", "rsi_14"]
    with pytest.raises(FactorError, match="unknown factor families"):
        select_factors(["no_such_family"])
    with pytest.raises(FactorError, match="unknown factor"):
        select_factors(names=["no_such_factor"])
    with pytest.raises(FactorError, match="needs NAV"):
        select_factors(names=["premium"])
    with pytest.raises(FactorError, match="selects no factor"):
        select_factors(["premium"])
    assert families()[0] == "momentum" and set(families()) == set(FAMILIES)


def test_docs_equal_the_generated_table() -> None:
    text = render_markdown()
    assert DOC.is_file(), "docs/factors.md is missing; write render_markdown() to it"
    assert DOC.read_text(encoding="utf-8") == text, "docs/factors.md is stale; regenerate it with render_markdown()"
    assert f"version **{FACTOR_SET_VERSION}**" in text
    for spec in REGISTRY.values():
        assert f"| `{spec.name}` | {spec.family} |" in text
