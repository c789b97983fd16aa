"""The engine: output shape and metadata, the single lag, NaN and history rules, the two entry
points agreeing bit for bit, options and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rotation_platform.config.models import FactorConfig
from rotation_platform.data.panel import PricePanel
from rotation_platform.factors import (
    REGISTRY,
    FactorError,
    FactorPanel,
    apply_lag,
    compute_cross_section,
    compute_panel,
    required_lookback,
    select_factors,
    valid_bars,
)
from rotation_platform.factors import nb
from rotation_platform.factors.engine import _plan, resolve_config
from rotation_platform.factors.graph import Context


def test_output_shape_names_and_metadata(synth_panel: PricePanel, synth_factors: FactorPanel) -> None:
    n_sessions, n_funds = synth_panel.shape
    names = [s.name for s in select_factors()]
    assert synth_factors.shape == (n_sessions, n_funds, len(names))
    assert synth_factors.values.shape == (n_sessions, n_funds, len(names))
    assert list(synth_factors.names) == names
    assert synth_factors.sessions.equals(synth_panel.sessions)
    assert list(synth_factors.symbols) == synth_panel.symbols
    assert synth_factors.data.dtype == np.float64
    meta = synth_factors.meta
    assert meta["set_version"] == "1" and meta["lag"] == 1 and meta["price_field"] == "close"
    assert meta["n_factors"] == len(names) and meta["mode"] == "panel" and meta["nav"] is False
    assert meta["lookback"] == max(s.lookback for s in select_factors())
    assert meta["synthetic"] is True
    # the value of factor k for fund j at session t is the same number in every view
    k, t, j = names.index("rsi_14"), 700, 2
    assert synth_factors.values[t, j, k] == synth_factors.data[k, t, j] == \
        synth_factors.factor("rsi_14").iloc[t, j] == synth_factors.cross_section(synth_panel.sessions[t]).iloc[j, k]


def test_the_lag_is_a_plain_shift_with_nan_fill(synth_panel: PricePanel, synth_factors: FactorPanel) -> None:
    two = compute_panel(synth_panel, 2)
    assert two.meta["lag"] == 2
    np.testing.assert_array_equal(two.data[:, 2:], synth_factors.data[:, 1:-1])
    assert np.isnan(two.data[:, :2]).all()
    assert np.isnan(synth_factors.data[:, 0]).all()
    # nothing wraps around: the panel's last bars never reach the first rows
    five = compute_panel(synth_panel, FactorConfig(lag=5))
    np.testing.assert_array_equal(five.data[:, 5:], synth_factors.data[:, 1:-4])


def test_apply_lag_semantics() -> None:
    raw = np.arange(12, dtype=float).reshape(4, 3)
    out = np.empty_like(raw)
    apply_lag(raw, 1, out)
    np.testing.assert_array_equal(out[1:], raw[:-1])
    assert np.isnan(out[0]).all()
    apply_lag(raw, 9, out)
    assert np.isnan(out).all()
    with pytest.raises(FactorError):
        apply_lag(raw, -1, out)


def test_min_history_is_exact_for_every_factor(synth_panel: PricePanel, synth_factors: FactorPanel) -> None:
    """On a clean fund, the first raw value is at bar ``min_history - 1`` (published ``lag`` later)."""
    j = synth_panel.symbols.index("S00")
    for k, name in enumerate(synth_factors.names):
        col = synth_factors.data[k, :, j]
        first = int(np.argmax(np.isfinite(col)))
        assert np.isfinite(col).any(), name
        assert first == REGISTRY[name].min_history - 1 + 1, (name, first, REGISTRY[name].min_history)


def test_late_listing_gets_nan_until_it_has_history(synth_panel: PricePanel, synth_factors: FactorPanel) -> None:
    j = synth_panel.symbols.index("S01")  # first bar at session 300
    for k, name in enumerate(synth_factors.names):
        spec = REGISTRY[name]
        if spec.cross_sectional:
            continue
        col = synth_factors.data[k, :, j]
        assert np.isnan(col[: 300 + spec.min_history]).all(), name
        if 300 + spec.min_history < len(col):
            assert np.isfinite(col[300 + spec.min_history:]).any(), name


def test_suspensions_are_skipped_not_gaps(synth_panel: PricePanel, synth_factors: FactorPanel) -> None:
    """Fund S02 has no bar on sessions 400, 401 and 650: no value is published the session after,
    and the 250-bar momentum continues right after instead of restarting."""
    j = synth_panel.symbols.index("S02")
    roc = synth_factors.factor("roc_250").iloc[:, j].to_numpy()
    assert np.isnan(roc[[401, 402, 651]]).all()
    assert np.isfinite(roc[403]) and np.isfinite(roc[652])
    close = synth_panel.frames["close"].iloc[:, j].to_numpy()
    bars = np.flatnonzero(np.isfinite(close))
    k = int(np.searchsorted(bars, 402))  # the bar of session 402 is k-th of the fund
    assert roc[403] == close[402] / close[bars[k - 250]] - 1.0


def test_fund_without_data_at_the_end_has_nan(synth_panel: PricePanel, synth_factors: FactorPanel) -> None:
    j = synth_panel.symbols.index("S03")
    n = synth_panel.shape[0]
    assert np.isnan(synth_factors.data[:, n - 149:, j]).all()
    assert not synth_factors.available[n - 149:, j].any()
    assert synth_factors.available[n - 151, j]


@pytest.mark.parametrize("session", [0, 1, 2, 25, 299, 330, 600, 700, 899])
def test_cross_section_equals_the_panel_bit_for_bit(synth_panel: PricePanel, synth_factors: FactorPanel,
                                                    session: int) -> None:
    cs = compute_cross_section(synth_panel, session, 1)
    assert cs.meta["mode"] == "cross_section"
    assert cs.sessions[0] == synth_panel.sessions[session]
    assert cs.equals(synth_factors.select(start=synth_panel.sessions[session], end=synth_panel.sessions[session]))
    np.testing.assert_array_equal(cs.available[0], synth_factors.available[session])


def test_cross_section_on_real_data_all_lags(real_panel: PricePanel, real_factors: FactorPanel) -> None:
    sessions = real_panel.sessions
    for t in (len(sessions) - 1, len(sessions) - 400, 2500, 1000):
        cs = compute_cross_section(real_panel, sessions[t], 1)
        assert np.array_equal(cs.data[:, 0], real_factors.data[:, t], equal_nan=True), sessions[t]
    lag3 = compute_panel(real_panel, 3)
    cs = compute_cross_section(real_panel, 3000, 3)
    assert np.array_equal(cs.data[:, 0], lag3.data[:, 3000], equal_nan=True)


def test_every_declared_lookback_reproduces_the_value(real_panel: PricePanel) -> None:
    """For every factor, evaluating only its own ``lookback`` bars (at several cut points, so the
    re-anchoring phase varies) gives the full-history value bit for bit."""
    cfg = resolve_config(1)
    plan = _plan(cfg, False, None, "close")
    j = real_panel.symbols.index("510500")
    valid = valid_bars(real_panel)[:, j]
    rows = np.flatnonzero(valid)
    fields = {f: real_panel.array(f)[rows, j][:, None].copy() for f in ("open", "high", "low", "close",
                                                                        "volume", "amount")}
    full = Context(fields, np.zeros(1, dtype=np.int64))
    for spec in plan.series:
        full_vals = full.value(spec.term(full))[:, 0]
        for end in (1500, 1501, 1777, 2311, len(rows) - 1):
            start = end + 1 - spec.lookback
            part_fields = {f: np.ascontiguousarray(v[start: end + 1]) for f, v in fields.items()}
            part = Context(part_fields, np.array([start], dtype=np.int64))
            got = part.value(spec.term(part))[-1, 0]
            assert np.array_equal(got, full_vals[end], equal_nan=True), (spec.name, end)


def test_required_lookback_and_panel_independence_of_chunks(synth_panel: PricePanel,
                                                            synth_factors: FactorPanel) -> None:
    assert required_lookback(2) == max(s.lookback for s in select_factors()) + 2
    chunked = compute_panel(synth_panel, 1, chunk_funds=1)
    assert chunked.equals(synth_factors)


def test_float32_families_and_names(synth_panel: PricePanel, synth_factors: FactorPanel) -> None:
    f32 = compute_panel(synth_panel, FactorConfig(dtype="float32"))
    assert f32.data.dtype == np.float32 and f32.meta["dtype"] == "float32"
    np.testing.assert_array_equal(f32.data, synth_factors.data.astype(np.float32))
    fam = compute_panel(synth_panel, FactorConfig(families=("rsi", "cross_section")))
    assert {REGISTRY[n].family for n in fam.names} == {"rsi", "cross_section"}
    k_full = synth_factors.names.index("cs_rank_roc_20")
    np.testing.assert_array_equal(fam.factor("cs_rank_roc_20").to_numpy(), synth_factors.data[k_full])
    some = compute_panel(synth_panel, 1, names=["vol_cc_20", "cs_z_vol_cc_20"])
    assert some.names == ("vol_cc_20", "cs_z_vol_cc_20")


def test_open_price_field(synth_panel: PricePanel) -> None:
    fp = compute_panel(synth_panel, 1, price_field="open", names=["roc_5", "willr_14"])
    opens = synth_panel.frames["open"]["S00"].to_numpy()
    assert fp.factor("roc_5")["S00"].iloc[100] == opens[99] / opens[94] - 1.0
    assert fp.meta["price_field"] == "open"
    base = compute_panel(synth_panel, 1, names=["willr_14"])
    np.testing.assert_array_equal(fp.factor("willr_14").to_numpy(), base.factor("willr_14").to_numpy())


def test_nav_premium_factors(real_panel: PricePanel, real_nav: pd.DataFrame) -> None:
    with_nav = compute_panel(real_panel, 1, nav=real_nav)
    without = compute_panel(real_panel, 1)
    assert "premium" in with_nav.names and "premium" not in without.names
    assert with_nav.n_factors == without.n_factors + 4
    prem = with_nav.factor("premium")
    assert prem.drop(columns="513100").isna().all().all()
    # premium of session d is an input of d + nav_delay and published lag sessions later
    close = real_panel.frames["close"]["513100"]
    d = real_panel.sessions.get_loc(pd.Timestamp("2024-06-14"))
    expected = close.iloc[d] / real_nav["513100"].iloc[d] - 1.0
    assert prem["513100"].iloc[d + 2] == pytest.approx(expected, rel=1e-15)
    same_day = compute_panel(real_panel, 1, nav=real_nav, nav_delay=0, names=["premium"])
    assert same_day.factor("premium")["513100"].iloc[d + 1] == pytest.approx(expected, rel=1e-15)
    k = with_nav.names.index("premium_z_60")
    assert np.isfinite(with_nav.data[k]).sum() > 500
    cs = compute_cross_section(real_panel, d + 2, 1, nav=real_nav)
    assert np.array_equal(cs.data[:, 0], with_nav.data[:, d + 2], equal_nan=True)


def test_conversions(synth_factors: FactorPanel) -> None:
    frames = synth_factors.to_frames()
    assert list(frames) == list(synth_factors.names)
    assert frames["roc_20"].index.name == "session" and frames["roc_20"].columns.name == "symbol"
    long = synth_factors.to_long()
    assert list(long.columns[:2]) == ["session", "symbol"]
    assert len(long) == int((~np.isnan(synth_factors.data).all(axis=0)).sum())
    row = long[(long.session == synth_factors.sessions[500]) & (long.symbol == "S04")].iloc[0]
    assert row["rsi_14"] == synth_factors.factor("rsi_14")["S04"].iloc[500]
    tidy = synth_factors.select(names=["roc_5", "rsi_6"]).to_tidy()
    assert set(tidy.columns) == {"session", "symbol", "factor", "value"}
    assert len(tidy) == int(np.isfinite(synth_factors.select(names=["roc_5", "rsi_6"]).data).sum())
    sub = synth_factors.select(names=["roc_5"], start=synth_factors.sessions[10], end=synth_factors.sessions[19])
    assert sub.shape == (10, synth_factors.shape[1], 1) and sub.meta["n_factors"] == 1


def test_stats(synth_factors: FactorPanel) -> None:
    st = synth_factors.stats()
    assert list(st.index) == list(synth_factors.names)
    assert {"family", "coverage", "std", "cs_std", "zero_variance", "meets_min_coverage"} <= set(st.columns)
    assert ((st.coverage > 0.0) & (st.coverage <= 1.0)).all()
    assert st.coverage.idxmin().startswith("macd_")  # the longest history on 900 sessions
    assert not st.zero_variance.any()
    roc = synth_factors.factor("roc_5").to_numpy()
    avail = synth_factors.available
    assert st.loc["roc_5", "coverage"] == pytest.approx(np.isfinite(roc[avail]).sum() / avail.sum())
    assert st.loc["roc_5", "std"] == pytest.approx(np.nanstd(roc))


def test_errors(synth_panel: PricePanel) -> None:
    with pytest.raises(FactorError, match="lag"):
        compute_panel(synth_panel, 0)
    with pytest.raises(FactorError, match="set_version"):
        compute_panel(synth_panel, FactorConfig(set_version="2"))
    with pytest.raises(FactorError, match="not a session"):
        compute_cross_section(synth_panel, "1999-01-04")
    with pytest.raises(FactorError, match="outside"):
        compute_cross_section(synth_panel, 10_000)
    with pytest.raises(FactorError, match="price_field"):
        compute_panel(synth_panel, 1, price_field="high")  # type: ignore[arg-type]
    with pytest.raises(FactorError, match="DatetimeIndex"):
        compute_panel(synth_panel, 1, nav=pd.DataFrame({"S00": [1.0]}))
    early = compute_cross_section(synth_panel, 0, 1)
    assert np.isnan(early.data).all() and not early.available.any()


def test_cross_section_reads_only_the_lookback(real_panel: PricePanel, real_factors: FactorPanel) -> None:
    """Changing every bar older than the lookback window leaves the cross-section unchanged."""
    t = len(real_panel.sessions) - 1
    keep_from = t - required_lookback(1) - 5  # a few spare sessions for suspensions in the window
    assert keep_from > 1000
    frames = {k: v.copy() for k, v in real_panel.frames.items()}
    for frame in frames.values():
        frame.iloc[:keep_from] = frame.iloc[:keep_from] * 3.0 + 1.0
    cs = compute_cross_section(PricePanel(frames, real_panel.meta), t, 1)
    assert np.array_equal(cs.data[:, 0], real_factors.data[:, t], equal_nan=True)
    full = compute_panel(PricePanel(frames, real_panel.meta), 1)
    assert not np.array_equal(full.data[:, keep_from + 300], real_factors.data[:, keep_from + 300], equal_nan=True)


def test_kernels_are_called_with_one_signature_each(synth_panel: PricePanel) -> None:
    """Few kernels, few signatures: each dispatcher compiled once for float64 C arrays (the lag
    kernel also for the strided output views of fund chunks)."""
    compute_panel(synth_panel, 1)
    compute_cross_section(synth_panel, 800, 1)
    for name in ("rolling_sum_nb", "rolling_ewm_nb", "rolling_agesum_nb", "rolling_cov_nb", "rolling_max_nb",
                 "rolling_meandev_nb", "rolling_maxdd_nb", "cs_rank_nb", "cs_zscore_nb", "pack_nb"):
        sigs = getattr(nb, name).signatures
        assert len(sigs) == 1, (name, sigs)
        assert all(str(arg).startswith(("array(float64, 2d, C)", "int64", "float64", "array(int64"))
                   for arg in sigs[0]), (name, sigs)


def test_degenerate_inputs(synth_panel: PricePanel) -> None:
    """A fund without a single bar and a history shorter than most windows: NaN, no failure."""
    frames = {k: v.iloc[:40].copy() for k, v in synth_panel.frames.items()}
    for frame in frames.values():
        frame["S05"] = np.nan
    short = PricePanel(frames, synth_panel.meta)
    fp = compute_panel(short, 1)
    j = short.symbols.index("S05")
    assert np.isnan(fp.data[:, :, j]).all()
    assert np.isfinite(fp.factor("roc_5").to_numpy()[:, 0]).sum() == 40 - 6
    assert np.isnan(fp.factor("roc_250").to_numpy()).all()
    cs = compute_cross_section(short, 39, 1)
    assert np.array_equal(cs.data[:, 0], fp.data[:, 39], equal_nan=True)
